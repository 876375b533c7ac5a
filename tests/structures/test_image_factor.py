"""Image factor patterns: against a brute-force definition, torchsparsegradutils' PairwiseEncoder, and as the factor
of a SparseMultivariateNormal (log_prob vs the dense normal with precision L Lᵀ)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from sparseprec import sparse_mm
from sparseprec.distributions import SparseMultivariateNormal
from sparseprec.structures.image_factor import ImageFactorPattern, image_factor_pattern, image_offsets

F64 = torch.float64
LAYOUTS = [torch.sparse_csr, torch.sparse_coo]
LAYOUT_IDS = ["csr", "coo"]


def _rows_cols(p: ImageFactorPattern) -> tuple[torch.Tensor, torch.Tensor]:
    if p.layout == torch.sparse_coo:
        return p.indices[0].long(), p.indices[1].long()
    crow = p.crow_indices.long()
    return torch.repeat_interleave(torch.arange(p.n, device=crow.device), crow.diff()), p.col_indices.long()


def _pairs(p: ImageFactorPattern) -> set[tuple[int, int]]:
    rows, cols = _rows_cols(p)
    return set(zip(rows.tolist(), cols.tolist(), strict=True))


def _brute_force(shape, channels, offsets) -> set[tuple[int, int]]:
    """Every (i, j) whose pixels differ by one of the offsets: the definition, over all n² pairs."""
    volume = (channels, *shape)
    pixels = np.array(list(itertools.product(*map(range, volume))))  # row-major order = linear index order
    difference = pixels[:, None, :] - pixels[None, :, :]
    keep = np.zeros(difference.shape[:2], dtype=bool)
    for o in offsets:
        keep |= np.all(difference == np.array(o), axis=-1)
    return set(zip(*map(np.ndarray.tolist, np.nonzero(keep)), strict=True))


# ---- offsets ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ndim, radius, full_count",
    [(1, 1.0, 2), (1, 2.0, 4), (2, 1.0, 4), (2, 1.5, 8), (2, 2.0, 12), (3, 1.0, 6), (3, math.sqrt(2), 18),
     (3, math.sqrt(3), 26), (3, 2.0, 32), (2, 0.5, 0), (4, 1.0, 8)],
)  # fmt: skip
def test_offsets_are_the_lattice_points_of_the_ball(ndim, radius, full_count):
    both = image_offsets(ndim, radius=radius, triangle=None)
    assert len(both) == full_count
    assert all(o[0] == 0 and 0 < sum(x * x for x in o) <= radius**2 + 1e-12 for o in both)
    lower, upper = image_offsets(ndim, radius=radius), image_offsets(ndim, radius=radius, triangle="upper")
    assert sorted(lower + upper) == sorted(both)
    assert sorted(upper) == sorted(tuple(-x for x in o) for o in lower)


@pytest.mark.parametrize("relation, count", [("independent", 4), ("indep", 4), ("intra", 4 + 2), ("inter", 4 + 2 + 16)])
def test_offsets_channel_relations(relation, count):
    offsets = image_offsets(2, 3, radius=1.5, relation=relation)
    assert len(offsets) == count
    assert len(set(offsets)) == count
    if relation == "inter":
        assert (2, 1, -1) in offsets and (1, -1, 1) in offsets and (-1, 0, 1) not in offsets


# ---- the pattern by definition -------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("triangle", ["lower", "upper", None])
@pytest.mark.parametrize(
    "shape, channels, radius, relation",
    [((6,), 1, 2.0, "independent"), ((4, 5), 1, 1.5, "independent"), ((3, 4), 2, 1.0, "inter"),
     ((3, 3, 2), 2, 1.5, "intra"), ((2, 3, 2, 2), 1, 1.0, "independent"), ((5, 4), 3, 0.0, "intra")],
)  # fmt: skip
def test_pattern_matches_definition(shape, channels, radius, relation, triangle, layout):
    p = image_factor_pattern(shape, channels, radius=radius, relation=relation, triangle=triangle, layout=layout)
    n = channels * math.prod(shape)
    assert p.size == (n, n) and p.n == n
    offsets = image_offsets(len(shape), channels, radius=radius, relation=relation, triangle=triangle)
    assert p.offsets == ((0,) * (1 + len(shape)), *offsets)
    assert _pairs(p) == _brute_force(shape, channels, p.offsets)
    rows, cols = _rows_cols(p)
    # stored order: row-major sorted and unique (sorted CSR / coalesced COO)
    keys = rows * n + cols
    assert bool((keys[1:] > keys[:-1]).all())
    if triangle == "lower":
        assert bool((rows >= cols).all())
    elif triangle == "upper":
        assert bool((rows <= cols).all())
    # each entry's offset is the difference of its pixels; the diagonal mask marks exactly i == j
    volume = (channels, *shape)
    pix_r = np.stack(np.unravel_index(rows.numpy(), volume), -1)
    pix_c = np.stack(np.unravel_index(cols.numpy(), volume), -1)
    np.testing.assert_array_equal(pix_r - pix_c, np.array(p.offsets)[p.offset_index.numpy()])
    assert torch.equal(p.diagonal_mask, rows == cols)
    assert torch.equal(p.map_index, p.offset_index * n + rows)


def test_upper_is_the_transpose_of_lower():
    lower = image_factor_pattern((4, 3), 3, radius=1.5, relation="inter")
    upper = image_factor_pattern((4, 3), 3, radius=1.5, relation="inter", triangle="upper")
    both = image_factor_pattern((4, 3), 3, radius=1.5, relation="inter", triangle=None)
    assert _pairs(upper) == {(j, i) for i, j in _pairs(lower)}
    assert _pairs(both) == _pairs(lower) | _pairs(upper)


def test_no_diagonal_and_explicit_offsets():
    p = image_factor_pattern((3, 4), 2, offsets=[(0, 0, 2), (1, 0, -1), (1, 5, 0)], diagonal=False)
    assert p.offsets == ((0, 0, 2), (1, 0, -1), (1, 5, 0))  # kept as given; (1, 5, 0) reaches outside: no entries
    assert _pairs(p) == _brute_force((3, 4), 2, p.offsets)
    assert not bool(p.diagonal_mask.any())
    assert set(p.offset_index.tolist()) == {0, 1}
    q = image_factor_pattern((3, 4), 2, offsets=[(0, 0, -1), (1, 0, 0)], triangle=None)
    assert _pairs(q) == _brute_force((3, 4), 2, q.offsets)


def test_radius_default_and_zero():
    assert image_factor_pattern((4, 4)).offsets == ((0, 0, 0), (0, 0, 1), (0, 1, 0))
    p = image_factor_pattern((4, 4), radius=0.0)
    assert p.offsets == ((0, 0, 0),) and p.nnz == 16


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
def test_index_dtype_and_device(index_dtype, layout, device):
    p = image_factor_pattern((5, 4), 2, radius=1.5, relation="intra", layout=layout, index_dtype=index_dtype,
                             device=device)  # fmt: skip
    assert p.index_dtype == index_dtype and p.device.type == device.type
    reference = image_factor_pattern((5, 4), 2, radius=1.5, relation="intra", layout=layout)
    assert _pairs(p.to("cpu")) == _pairs(reference)
    values = torch.rand(p.nnz, dtype=F64, device=device) + 1
    A = p.matrix(values)
    assert A.layout == layout and A.device.type == device.type
    moved = reference.to(device)
    assert moved.device.type == device.type and torch.equal(moved.offset_index.cpu(), reference.offset_index)


# ---- values ----------------------------------------------------------------------------------------------------------
def test_values_from_offsets_and_maps():
    p = image_factor_pattern((4, 5), 2, radius=1.5, relation="inter")
    theta = torch.randn(p.num_offsets, dtype=F64)
    rows, cols = _rows_cols(p)
    A = p.matrix(p.values_from_offsets(theta)).to_dense()
    assert torch.equal(A[rows, cols], theta[p.offset_index])
    # a map per offset, read at the row pixel of each entry
    maps = torch.randn(3, p.num_offsets, 2, 4, 5, dtype=F64)
    values = p.values_from_maps(maps)
    assert values.shape == (3, p.nnz)
    assert torch.equal(values, maps.reshape(3, p.num_offsets, p.n)[:, p.offset_index, rows])
    batched = p.matrix(values)
    assert batched.shape == (3, p.n, p.n)
    for b in range(3):
        assert torch.equal(batched.to_dense()[b], p.matrix(values[b]).to_dense())
    # stationary values through maps equal values_from_offsets
    constant = theta[:, None, None, None].expand(p.num_offsets, 2, 4, 5)
    assert torch.equal(p.values_from_maps(constant), p.values_from_offsets(theta))


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
def test_gradient_only_at_stored_entries(layout):
    p = image_factor_pattern((3, 3), 2, radius=1.0, relation="intra", layout=layout)
    rows, cols = _rows_cols(p)
    B = torch.randn(p.n, 3, dtype=F64)
    v = torch.randn(p.nnz, dtype=F64, requires_grad=True)
    (sparse_mm(p.matrix(v), B) ** 2).sum().backward()
    w = v.detach().clone().requires_grad_(True)
    dense = torch.zeros(p.n, p.n, dtype=F64).index_put((rows, cols), w)
    ((dense @ B) ** 2).sum().backward()
    torch.testing.assert_close(v.grad, w.grad)


# ---- as the factor of a SparseMultivariateNormal -------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize(
    "shape, channels, radius, relation",
    [((7,), 1, 2.0, "independent"), ((4, 4), 2, 1.5, "inter"), ((3, 2, 3), 3, 1.0, "intra")],
)
def test_lower_pattern_is_a_precision_tril(shape, channels, radius, relation, layout):
    torch.manual_seed(0)
    p = image_factor_pattern(shape, channels, radius=radius, relation=relation, layout=layout)
    values = torch.where(p.diagonal_mask, 1.0 + torch.rand(p.nnz, dtype=F64), 0.3 * torch.randn(p.nnz, dtype=F64))
    L = p.matrix(values)
    loc = torch.randn(p.n, dtype=F64)
    sparse = SparseMultivariateNormal(loc, precision_tril=L, validate_args=True)
    Ld = L.to_dense()
    dense = torch.distributions.MultivariateNormal(loc, precision_matrix=Ld @ Ld.T)
    x = dense.sample((5,))
    torch.testing.assert_close(sparse.log_prob(x), dense.log_prob(x))
    # the LDLᵀ form on the strictly lower pattern
    strict = image_factor_pattern(shape, channels, radius=radius, relation=relation, layout=layout, diagonal=False)
    d = 0.5 + torch.rand(p.n, dtype=F64)
    off = strict.matrix(0.3 * torch.randn(strict.nnz, dtype=F64))
    U = torch.eye(p.n, dtype=F64) + off.to_dense()
    ldl = SparseMultivariateNormal(loc, precision_tril=off, diagonal=d)
    dense_ldl = torch.distributions.MultivariateNormal(loc, precision_matrix=U @ torch.diag(d) @ U.T)
    torch.testing.assert_close(ldl.log_prob(x), dense_ldl.log_prob(x))


def test_log_prob_gradcheck_through_the_pattern():
    p = image_factor_pattern((3, 3), 2, radius=1.5, relation="inter")
    x = torch.randn(4, p.n, dtype=F64)
    theta = torch.randn(p.num_offsets, dtype=F64) * 0.2

    def log_prob(theta):
        values = p.values_from_offsets(theta)
        values = torch.where(p.diagonal_mask, values.exp(), values)
        return SparseMultivariateNormal(torch.zeros(p.n, dtype=F64), precision_tril=p.matrix(values)).log_prob(x)

    assert gradcheck(log_prob, (theta.requires_grad_(True),))


# ---- errors ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"shape": (0, 3)}, ValueError, "shape must hold one or more positive sizes"),
        ({"shape": ()}, ValueError, "shape must hold one or more positive sizes"),
        ({"shape": (2.5, 3)}, TypeError, "shape must hold ints"),
        ({"shape": 5}, TypeError, "shape must be a tuple"),
        ({"channels": 0}, ValueError, "channels must be a positive int"),
        ({"radius": -1.0}, ValueError, "radius must be finite and >= 0"),
        ({"radius": float("nan")}, ValueError, "radius must be finite"),
        ({"radius": True}, TypeError, "radius must be a real number"),
        ({"relation": "cross"}, ValueError, "relation must be 'independent'"),
        ({"relation": "inter"}, ValueError, "needs channels >= 2"),
        ({"triangle": "both"}, ValueError, "triangle must be 'lower', 'upper' or None"),
        ({"diagonal": 1}, TypeError, "diagonal must be a bool"),
        ({"layout": torch.sparse_csc}, TypeError, "layout must be torch.sparse_csr or torch.sparse_coo"),
        ({"index_dtype": torch.int16}, TypeError, "index_dtype must be torch.int32 or torch.int64"),
        ({"offsets": [(0, 1)]}, ValueError, r"offsets\[0\] must have length 1 \+ len\(shape\) = 3"),
        ({"offsets": [(0, 0, 0)]}, ValueError, "zero offset"),
        ({"offsets": [(0, 0, 1), (0, 0, 1)]}, ValueError, "distinct"),
        ({"offsets": [(0, 0, -1)]}, ValueError, "not in the lower triangle"),
        ({"offsets": [(0, 0.5, 1)]}, TypeError, r"offsets\[0\] must hold ints"),
        ({"offsets": [(0, 0, 1)], "radius": 1.0}, ValueError, "radius or offsets, not both"),
        ({"offsets": [(0, 0, 1)], "relation": "inter", "channels": 2}, ValueError, "relation applies to radius"),
    ],
)
def test_errors(kwargs, error, match):
    arguments = {"shape": (3, 4)} | kwargs
    with pytest.raises(error, match=match):
        image_factor_pattern(**arguments)


def test_value_errors():
    p = image_factor_pattern((3, 4), radius=1.0)
    with pytest.raises(ValueError, match=r"values must have shape \(\*batch, nnz\)"):
        p.matrix(torch.zeros(p.nnz + 1))
    with pytest.raises(TypeError, match="values must have dtype"):
        p.matrix(torch.zeros(p.nnz, dtype=torch.int64))
    with pytest.raises(ValueError, match="values must be 1-D"):
        image_factor_pattern((3, 4), layout=torch.sparse_coo).matrix(torch.zeros(2, p.nnz))
    with pytest.raises(ValueError, match="theta must have shape"):
        p.values_from_offsets(torch.zeros(4))
    with pytest.raises(ValueError, match=r"maps must have shape \(\*batch, 3, 1, 3, 4\)"):
        p.values_from_maps(torch.zeros(3, 1, 4, 3))
    with pytest.raises(ValueError, match="ndim must be a positive int"):
        image_offsets(0)


# ---- torchsparsegradutils' PairwiseEncoder -------------------------------------------------------------------------
# Its upper=False is our "lower" for every relation; upper=True / None are our "upper" / None for "indep". For
# "intra"/"inter" its channel offsets only step up (c > 0), so its upper=None / upper=True are a subset of ours
# (documented difference) and are reproduced exactly by passing its offsets explicitly with triangle=None.
TRIANGLE_OF_UPPER = {False: "lower", True: "upper", None: None}


def _encoder(radius, volume_shape, diag, upper, relation, layout, index_dtype):
    encoders = pytest.importorskip("torchsparsegradutils.encoders")
    return encoders.PairwiseEncoder(radius, volume_shape, diag, upper, relation, layout, index_dtype)


def _encoder_pairs(encoder) -> set[tuple[int, int]]:
    if encoder.layout == torch.sparse_coo:
        return set(map(tuple, encoder.indices.t().tolist()))
    crow = encoder.crow_indices.long()
    rows = torch.repeat_interleave(torch.arange(crow.numel() - 1), crow.diff())
    return set(zip(rows.tolist(), encoder.col_indices.tolist(), strict=True))


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("diag", [True, False], ids=["diag", "nodiag"])
@pytest.mark.parametrize("upper", [None, True, False], ids=["both", "upper", "lower"])
@pytest.mark.parametrize("channels, relation", [(1, "indep"), (3, "indep"), (3, "intra"), (3, "inter")])
@pytest.mark.parametrize("radius", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("shape", [(6,), (4, 5), (3, 4, 3)], ids=["1d", "2d", "3d"])
def test_same_index_set_as_pairwise_encoder(shape, radius, channels, relation, upper, diag, layout, index_dtype):
    encoder = _encoder(radius, (channels, *shape), diag, upper, relation, layout, index_dtype)
    p = image_factor_pattern(shape, channels, radius=radius, relation=relation, triangle=TRIANGLE_OF_UPPER[upper],
                             diagonal=diag, layout=layout, index_dtype=index_dtype)  # fmt: skip
    theirs = _encoder_pairs(encoder)
    if relation == "indep" or upper is False:
        assert _pairs(p) == theirs
        assert list(p.offsets) == list(encoder.offsets)  # same order, so per-offset value maps carry over
        if layout == torch.sparse_csr:
            assert torch.equal(p.crow_indices, encoder.crow_indices) and torch.equal(p.col_indices, encoder.col_indices)
    else:
        assert _pairs(p) > theirs  # ours also holds the couplings to lower channels (c < 0)
    exact = image_factor_pattern(shape, channels, offsets=[o for o in encoder.offsets if any(o)], triangle=None,
                                 diagonal=diag, layout=layout, index_dtype=index_dtype)  # fmt: skip
    assert _pairs(exact) == theirs


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("channels, relation", [(1, "indep"), (2, "inter")])
def test_same_matrix_as_pairwise_encoder_from_value_maps(channels, relation, layout):
    shape = (4, 3, 3)
    encoder = _encoder(1.5, (channels, *shape), True, False, relation, layout, torch.int64)
    p = image_factor_pattern(shape, channels, radius=1.5, relation=relation, layout=layout)
    maps = torch.randn(p.num_offsets, channels, *shape, dtype=F64)
    torch.testing.assert_close(p.matrix(p.values_from_maps(maps)).to_dense(), encoder(maps).to_dense())

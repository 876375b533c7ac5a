"""Index data is checked once per sparsity pattern: a bad index is a clear ``ValueError``, never a dropped entry.

torch builds sparse tensors without checking their indices unless asked (``check_invariants=False`` is its default),
so every case below is a tensor torch accepts. Each must be refused, naming the argument, the offending entry (position
and value) and the allowed range, before any index work can crash or silently drop the entry.
"""

from __future__ import annotations

import pytest
import torch

import sparseprec
from sparseprec import pattern as _pattern
from sparseprec import sparse_mm, sparse_triangular_solve
from sparseprec.cholesky import cholesky
from sparseprec.distributions import GMRF
from sparseprec.solvers import CG, sparse_generic_solve

D = torch.float64


def _coo(indices, size, *, is_coalesced=None, values=None):
    indices = torch.tensor(indices)
    if values is None:
        values = torch.arange(1.0, indices.shape[1] + 1, dtype=D)
    return torch.sparse_coo_tensor(indices, values, size, is_coalesced=is_coalesced, check_invariants=False)


def _csr(crow, col, size, *, values=None, index_dtype=torch.int64):
    crow, col = torch.tensor(crow, dtype=index_dtype), torch.tensor(col, dtype=index_dtype)
    if values is None:
        values = torch.arange(1.0, col.numel() + 1, dtype=D).reshape(col.shape)
    return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


# Bad square (2, 2) matrices, lower triangular apart from their defect, so that every op (the triangular solve
# included) would otherwise accept them: (id, builder, message pattern).
BAD_2D = [
    (
        "coo-column-past-end",
        lambda: _coo([[0, 1, 1], [0, 0, 7]], (2, 2)),
        r"indices\[1, 2\] = 7, expected 0 <= index < 2",
    ),
    (
        "coo-negative-row",
        lambda: _coo([[0, 1, -1], [0, 0, 1]], (2, 2)),
        r"indices\[0, 2\] = -1, expected 0 <= index < 2",
    ),
    ("coo-negative-column", lambda: _coo([[0, 1, 1], [0, -3, 1]], (2, 2)), r"indices\[1, 1\] = -3"),
    ("coo-row-past-end", lambda: _coo([[0, 2, 1], [0, 0, 1]], (2, 2)), r"dimension 0 \(rows\): indices\[0, 1\] = 2"),
    (
        "coo-marked-coalesced-unsorted",
        lambda: _coo([[1, 0, 1], [0, 0, 1]], (2, 2), is_coalesced=True),
        r"marked coalesced but its indices are not sorted and unique: entry 1 at \(0, 0\) follows entry 0 at \(1, 0\)",
    ),
    (
        "coo-marked-coalesced-duplicate",
        lambda: _coo([[0, 1, 1, 1], [0, 0, 1, 1]], (2, 2), is_coalesced=True),
        r"marked coalesced but its indices are not sorted and unique: entry 3",
    ),
    (
        "csr-decreasing-crow",
        lambda: _csr([0, 2, 1], [0, 0, 1], (2, 2)),
        r"decreasing row pointers: crow_indices\[2\] = 1 < crow_indices\[1\] = 2",
    ),
    ("csr-crow-not-from-zero", lambda: _csr([1, 1, 3], [0, 0, 1], (2, 2)), r"crow_indices\[0\] = 1, expected 0"),
    ("csr-crow-not-to-nnz", lambda: _csr([0, 1, 2], [0, 0, 1], (2, 2)), r"crow_indices\[2\] = 2, expected nnz = 3"),
    ("csr-crow-too-long", lambda: _csr([0, 1, 3, 3], [0, 0, 1], (2, 2)), r"crow_indices of shape \(3,\).*got \(4,\)"),
    (
        "csr-column-past-end",
        lambda: _csr([0, 1, 3], [0, 0, 7], (2, 2)),
        r"column index out of range: col_indices\[2\] = 7, expected 0 <= column < 2",
    ),
    ("csr-negative-column", lambda: _csr([0, 1, 3], [0, -1, 1], (2, 2)), r"col_indices\[1\] = -1"),
    (
        "csr-unsorted-row",
        lambda: _csr([0, 1, 3], [0, 1, 0], (2, 2)),
        r"not strictly increasing in row 1: col_indices\[2\] = 0 follows col_indices\[1\] = 1",
    ),
    (
        "csr-duplicate-column",
        lambda: _csr([0, 1, 3], [0, 0, 0], (2, 2)),
        r"not strictly increasing in row 1: col_indices\[2\] = 0 follows col_indices\[1\] = 0",
    ),
    (
        "csr-int32-decreasing-crow",
        lambda: _csr([0, 2, 1], [0, 0, 1], (2, 2), index_dtype=torch.int32),
        r"decreasing row pointers",
    ),
]

BAD_BATCHED = [
    (
        "coo-batch-past-end",
        lambda: _coo([[0, 2], [0, 1], [0, 1]], (2, 2, 2)),
        r"dimension 0 \(batch\): indices\[0, 1\] = 2, expected 0 <= index < 2",
    ),
    ("coo-batched-column-past-end", lambda: _coo([[0, 1], [0, 1], [0, 5]], (2, 2, 2)), r"indices\[2, 1\] = 5"),
    (
        "csr-batched-unsorted-row",
        lambda: _csr([[0, 1, 3], [0, 1, 3]], [[0, 0, 1], [0, 1, 0]], (2, 2, 2)),
        r"not strictly increasing in batch 1, row 1: col_indices\[1, 2\] = 0 follows col_indices\[1, 1\] = 1",
    ),
    (
        "csr-batched-crow-not-to-nnz",
        lambda: _csr([[0, 1, 3], [0, 1, 2]], [[0, 0, 1], [0, 0, 1]], (2, 2, 2)),
        r"crow_indices\[1, 2\] = 2, expected nnz = 3",
    ),
]


def _ids(cases):
    return [case[0] for case in cases]


@pytest.fixture(autouse=True)
def _fresh_cache():
    _pattern.clear_caches()
    yield
    _pattern.clear_caches()


def _mm(A, B):
    return sparse_mm(A, B)


def _mm_transpose(A, B):
    return sparse_mm(A, B, transpose=True)


def _triangular(A, B):
    return sparse_triangular_solve(A, B, upper=False)


def _generic(A, B):
    return sparse_generic_solve(A, B, solve=CG(rtol=1e-10))


OPS_2D = [_mm, _mm_transpose, _triangular, _generic]


@pytest.mark.parametrize("op", OPS_2D, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize(("case", "build", "message"), BAD_2D, ids=_ids(BAD_2D))
def test_ops_refuse_bad_indices(case, build, message, op):
    with pytest.raises(ValueError, match=r"^A (has|is|must).*" + message):
        op(build(), torch.ones(2, 1, dtype=D))


@pytest.mark.parametrize("op", [_mm, _triangular], ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize(("case", "build", "message"), BAD_BATCHED, ids=_ids(BAD_BATCHED))
def test_ops_refuse_bad_batched_indices(case, build, message, op):
    with pytest.raises(ValueError, match=r"^A (has|is|must).*" + message):
        op(build(), torch.ones(2, 2, 1, dtype=D))


def test_column_past_the_end_is_not_dropped():
    # the example: (1, 7) of a 2 x 2 matrix used to vanish from the product
    A = _coo([[0, 1, 1], [0, 0, 7]], (2, 2), values=torch.tensor([2.0, 1.0, 5.0], dtype=D))
    with pytest.raises(ValueError, match=r"A has an index out of range in dimension 1 \(columns\)"):
        sparse_mm(A, torch.ones(2, 1, dtype=D))


def test_mixed_index_dtypes_are_a_type_error():
    A = torch.sparse_csr_tensor(
        torch.tensor([0, 1, 3], dtype=torch.int32), torch.tensor([0, 0, 1]), torch.ones(3, dtype=D), (2, 2),
        check_invariants=False,
    )  # fmt: skip
    with pytest.raises(TypeError, match=r"A must have crow_indices and col_indices of the same dtype"):
        sparse_mm(A, torch.ones(2, 1, dtype=D))


def test_csr_values_that_do_not_match_the_columns_are_refused():
    A = _csr([0, 1, 3], [0, 0, 1], (2, 2), values=torch.ones(4, dtype=D))
    with pytest.raises(ValueError, match=r"A must store one value per column index, got values of shape \(4,\)"):
        sparse_mm(A, torch.ones(2, 1, dtype=D))


# ---- valid edge cases are accepted (and computed right) -------------------------------------------------------------
VALID = [
    ("coo-uncoalesced-duplicates-any-order", lambda: _coo([[1, 0, 1, 1], [1, 0, 0, 1]], (2, 3))),
    ("coo-coalesced", lambda: _coo([[0, 1, 1], [2, 0, 1]], (2, 3), is_coalesced=True)),
    ("coo-empty", lambda: _coo(torch.zeros(2, 0, dtype=torch.int64).tolist(), (2, 3))),
    ("csr-empty-rows", lambda: _csr([0, 0, 2, 2], [0, 2], (3, 3))),
    ("csr-int32", lambda: _csr([0, 1, 3], [0, 0, 2], (2, 3), index_dtype=torch.int32)),
    ("csr-no-entries", lambda: _csr([0, 0, 0], [], (2, 3))),
    ("csr-batched", lambda: _csr([[0, 1, 2], [0, 0, 2]], [[1, 0], [0, 1]], (2, 2, 2))),
    ("coo-batched-uncoalesced", lambda: _coo([[1, 0, 1], [0, 1, 0], [1, 0, 1]], (2, 2, 2))),
]


@pytest.mark.parametrize(("case", "build"), VALID, ids=_ids(VALID))
def test_valid_patterns_pass_and_multiply_right(case, build):
    A = build()
    B = torch.randn(*A.shape[:-2], A.shape[-1], 2, dtype=D)
    torch.testing.assert_close(sparse_mm(A, B), A.to_dense() @ B)


def test_empty_matrices_pass():
    for A in (torch.zeros(0, 0, dtype=D).to_sparse_csr(), torch.zeros(0, 0, dtype=D).to_sparse()):
        _pattern.pattern_of(A)


# ---- construction helpers -------------------------------------------------------------------------------------------
def test_sparse_coo_tensor_with_a_bad_index_is_refused_before_use():
    v = torch.ones(3, dtype=D, requires_grad=True)
    with pytest.raises(ValueError, match=r"index out of range in dimension 1 \(columns\): indices\[1, 2\] = 7"):
        A = sparseprec.ops.sparse_coo_tensor(torch.tensor([[0, 1, 1], [0, 0, 7]]), v, (2, 2))
        sparse_mm(A, torch.ones(2, 1, dtype=D))  # (the check fires on construction or, at the latest, here)


def test_sparse_coo_tensor_with_a_negative_index_is_refused_before_use():
    v = torch.ones(3, dtype=D, requires_grad=True)
    with pytest.raises(ValueError, match=r"indices\[0, 1\] = -1, expected 0 <= index < 2"):
        A = sparseprec.ops.sparse_coo_tensor(torch.tensor([[0, -1, 1], [0, 0, 1]]), v, (2, 2))
        sparse_triangular_solve(A, torch.ones(2, 1, dtype=D), upper=False)


@pytest.mark.parametrize(
    ("crow", "col", "message"),
    [
        ([0, 2, 1], [0, 0, 1], r"decreasing row pointers: crow_indices\[2\] = 1 < crow_indices\[1\] = 2"),
        ([0, 1, 3], [0, 0, 9], r"col_indices\[2\] = 9, expected 0 <= column < 2"),
        ([0, 1, 3], [0, 1, 0], r"not strictly increasing in row 1"),
    ],
)
def test_sparse_csr_tensor_with_bad_indices_is_refused_before_use(crow, col, message):
    v = torch.ones(3, dtype=D, requires_grad=True)
    with pytest.raises(ValueError, match=message):
        A = sparseprec.ops.sparse_csr_tensor(torch.tensor(crow), torch.tensor(col), v, (2, 2))
        sparse_mm(A, torch.ones(2, 1, dtype=D))


# ---- distributions and factorisation ------------------------------------------------------------------------------
# symmetric positive definite apart from their index defect
BAD_PRECISIONS = [
    (
        "coo-column-past-end",
        lambda: _coo([[0, 0, 1, 1], [0, 7, 0, 1]], (2, 2), values=torch.tensor([2.0, 1.0, 1.0, 2.0], dtype=D)),
        r"indices\[1, 1\] = 7, expected 0 <= index < 2",
    ),
    (
        "coo-negative-row",
        lambda: _coo([[0, 0, 1, -1], [0, 1, 0, 1]], (2, 2), values=torch.tensor([2.0, 1.0, 1.0, 2.0], dtype=D)),
        r"indices\[0, 3\] = -1, expected 0 <= index < 2",
    ),
    (
        "csr-decreasing-crow",
        lambda: _csr([0, 3, 1], [0, 1, 0, 1], (2, 2), values=torch.tensor([2.0, 1.0, 1.0, 2.0], dtype=D)),
        r"decreasing row pointers: crow_indices\[2\] = 1 < crow_indices\[1\] = 3",
    ),
]


@pytest.mark.parametrize(("case", "build", "message"), BAD_PRECISIONS, ids=_ids(BAD_PRECISIONS))
def test_cholesky_refuses_bad_indices(case, build, message):
    with pytest.raises(ValueError, match=message):
        cholesky(build())


@pytest.mark.parametrize(("case", "build", "message"), BAD_PRECISIONS, ids=_ids(BAD_PRECISIONS))
def test_gmrf_refuses_bad_indices(case, build, message):
    loc = torch.zeros(2, dtype=D)
    with pytest.raises(ValueError):  # validated: through the precision's constraint
        GMRF(loc, build())
    with pytest.raises(ValueError, match=message):  # unvalidated: on first use, never a wrong density
        GMRF(loc, build(), validate_args=False).log_prob(torch.zeros(2, dtype=D))


# ---- once per pattern, and never cached when bad --------------------------------------------------------------------
def test_bad_pattern_is_never_cached():
    good = torch.eye(2, dtype=D).to_sparse_csr()
    _pattern.pattern_of(good)
    assert len(_pattern._CACHE) == 1
    bad = _coo([[0, 1, 1], [0, 0, 7]], (2, 2))
    for _ in range(2):  # refused every time: nothing was remembered
        with pytest.raises(ValueError, match="out of range"):
            _pattern.pattern_of(bad)
        assert len(_pattern._CACHE) == 1
    # the same values in a valid tensor are accepted afterwards
    torch.testing.assert_close(
        sparse_mm(_coo([[0, 1, 1], [0, 0, 1]], (2, 2)), torch.ones(2, 1, dtype=D)),
        torch.tensor([[1.0], [5.0]], dtype=D),
    )


def test_check_runs_on_a_cache_miss_only(monkeypatch):
    calls = []
    original = _pattern.check_sparse_indices

    def counting(A, name):
        calls.append(name)
        original(A, name)

    monkeypatch.setattr(_pattern, "check_sparse_indices", counting)
    idx = torch.tensor([[0, 1, 1], [0, 0, 1]])
    B = torch.ones(2, 1, dtype=D)
    for step in range(4):  # rebuilt every step from the same indices, and from fresh copies of them
        indices = idx if step % 2 else idx.clone()
        sparse_mm(torch.sparse_coo_tensor(indices, torch.ones(3, dtype=D), (2, 2)), B)
    assert calls == ["A"]


def test_in_place_corruption_of_a_cached_pattern_is_caught():
    A = torch.tensor([[1.0, 0.0], [2.0, 3.0]], dtype=D).to_sparse_csr()
    B = torch.ones(2, 1, dtype=D)
    sparse_mm(A, B)
    A.col_indices()[2] = 5  # same memory, new version: the cached pattern is stale and the new one is checked
    with pytest.raises(ValueError, match=r"col_indices\[2\] = 5"):
        sparse_mm(A, B)


def test_pattern_of_names_the_argument():
    with pytest.raises(ValueError, match=r"^Q has an index out of range"):
        _pattern.pattern_of(_coo([[0, 1], [0, 3]], (2, 2)), name="Q")
    with pytest.raises(ValueError, match=r"^A has an index out of range"):
        _pattern.pattern_of(_coo([[0, 1], [0, 3]], (2, 2)))


def test_user_given_sparse_patterns_are_checked():
    # the `pattern=` of the sparse-precision guides and variational distributions goes through lower_pattern_pairs
    from sparseprec._validation import lower_pattern_pairs

    with pytest.raises(ValueError, match=r"^pattern has an index out of range in dimension 1 \(columns\)"):
        lower_pattern_pairs(_coo([[0, 1], [0, 7]], (3, 3)), 3, "n")
    with pytest.raises(ValueError, match=r"^pattern has decreasing row pointers"):
        lower_pattern_pairs(_csr([0, 2, 1, 2], [0, 1], (3, 3)), 3, "n")

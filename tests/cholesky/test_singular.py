"""Singular and numerically singular precisions: every backend, ordering and path refuses them with
``sparseprec.NotPositiveDefiniteError`` naming the column of ``Q`` (original ordering); well-conditioned ones pass.

The threshold (docstring of ``cholesky``): pivot ``d_j`` is singular when ``d_j <= 10 n ε₆₄ S_j + ε Q_jj``, ``ε`` the
epsilon of ``Q``'s dtype and ``S_j`` the largest diagonal entry of ``Q`` in column ``j``'s elimination subtree.
"""

from __future__ import annotations

import re

import pytest
import torch

import sparseprec
from sparseprec import NotPositiveDefiniteError
from sparseprec.cholesky import (
    SparseCholesky,
    available_backends,
    cholesky,
    diag_inverse,
    selected_inverse,
    sparse_cholesky_solve,
    sparse_logdet,
)
from sparseprec.distributions import GMRF
from sparseprec.structures import grid_laplacian
from tests.conftest import sparse_from_dense
from tests.solvers.problems import grid_laplacian as shifted_grid_laplacian
from tests.solvers.problems import spd_matrix

F64, F32 = torch.float64, torch.float32
EPS64 = torch.finfo(F64).eps
CASES = [
    (backend, ordering)
    for backend in available_backends()
    for ordering in {"cholmod": ["amd", "natural"], "scipy": ["mmd", "rcm", "natural"]}[backend]
]
MESSAGE = r"not positive definite.*at column (\d+) of Q \(original ordering; elimination step (\d+)"


def named_column(error: NotPositiveDefiniteError) -> int:
    """The column named by the message, which must be the one in ``.column``."""
    match = re.search(MESSAGE, str(error))
    assert match is not None, str(error)
    assert int(match.group(1)) == error.column
    return error.column


def with_singular_pair(dtype=F64, a: int = 5, b: int = 20, coupling: float = 2.0) -> tuple[torch.Tensor, tuple]:
    """A 36-node SPD grid precision whose nodes ``a`` and ``b`` are cut off from the rest and form the 2 × 2 block
    ``[[2, c], [c, 2]]``: singular for ``c = 2``, so the breakdown can only be at ``a`` or ``b``."""
    Q = shifted_grid_laplacian(6, shift=0.3).to_dense()
    for k in (a, b):
        Q[k, :] = 0.0
        Q[:, k] = 0.0
    Q[a, a] = Q[b, b] = 2.0
    Q[a, b] = Q[b, a] = coupling
    return Q.to(dtype), (a, b)


def last_eliminated(backend: str, ordering: str, nodes: tuple, dtype=F64) -> int:
    """Of ``nodes``, the one eliminated last by the ordering of this pattern (from a positive definite twin)."""
    Q, _ = with_singular_pair(dtype, *nodes, coupling=1.0)
    perm = cholesky(Q.to_sparse_csr(), backend=backend, ordering=ordering).perm.tolist()
    return max(nodes, key=perm.index)


@pytest.mark.parametrize("backend, ordering", CASES)
@pytest.mark.parametrize("shape", [(4, 4), (3, 7), (5, 6, 2)])
def test_singular_grid_laplacian_is_refused_on_every_path(backend, ordering, shape):
    # constants are in the null space: det = 0, and rounding leaves a pivot of order n ε instead of 0
    L = grid_laplacian(shape)
    n = L.shape[0]
    with pytest.raises(NotPositiveDefiniteError, match=MESSAGE) as info:
        cholesky(L, backend=backend, ordering=ordering)
    assert 0 <= named_column(info.value) < n
    assert isinstance(info.value, torch.linalg.LinAlgError)
    with pytest.raises(NotPositiveDefiniteError, match=MESSAGE):
        sparse_logdet(L, backend=backend, ordering=ordering)
    with pytest.raises(NotPositiveDefiniteError, match=MESSAGE):
        sparse_cholesky_solve(L, torch.ones(n, dtype=F64), backend=backend, ordering=ordering)
    with pytest.raises(NotPositiveDefiniteError, match=MESSAGE):
        diag_inverse(L, backend=backend, ordering=ordering)


@pytest.mark.parametrize("backend", available_backends())
def test_issue_example_both_backends_agree(backend):
    # sparse_logdet(grid_laplacian((4, 4))) returned -22.92 with CHOLMOD
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite"):
        sparse_logdet(grid_laplacian((4, 4)), backend=backend)


@pytest.mark.parametrize("backend", available_backends())
def test_gmrf_with_a_singular_precision(backend):
    L = grid_laplacian((4, 4))
    loc = torch.zeros(16, dtype=F64)
    with pytest.raises(ValueError, match="positive definite"):
        GMRF(loc, L, cholesky=SparseCholesky(backend), validate_args=True)
    with pytest.raises(NotPositiveDefiniteError, match=MESSAGE):
        GMRF(loc, L, cholesky=SparseCholesky(backend), validate_args=False).log_prob(loc)


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("backend, ordering", CASES)
def test_exactly_singular_block_names_its_column_in_the_original_ordering(backend, ordering, dtype):
    Q, nodes = with_singular_pair(dtype)
    expected = last_eliminated(backend, ordering, nodes, dtype)
    with pytest.raises(NotPositiveDefiniteError, match=rf"at column {expected} of Q \(original ordering") as info:
        cholesky(Q.to_sparse_csr(), backend=backend, ordering=ordering)
    assert named_column(info.value) == expected
    # the backend's own error is chained, never let out
    cause = info.value.__cause__
    if backend == "cholmod":
        assert type(cause).__module__.startswith("sksparse")
    assert not isinstance(cause, NotPositiveDefiniteError)


@pytest.mark.parametrize("backend, ordering", CASES)
def test_zero_and_negative_isolated_diagonal_entries(backend, ordering):
    # an isolated node's pivot is its diagonal entry, whatever the ordering
    Q = shifted_grid_laplacian(6, shift=0.3).to_dense()
    Q[11, :] = 0.0
    Q[:, 11] = 0.0  # (its diagonal entry is kept, as an explicit zero, by the mask below)
    mask = (Q != 0) | torch.eye(36, dtype=torch.bool)
    with pytest.raises(NotPositiveDefiniteError, match=r"at column 11 of Q.*pivot 0 is not positive"):
        cholesky(sparse_from_dense(Q, mask, "csr"), backend=backend, ordering=ordering)
    Q[11, 11] = -1e-300
    with pytest.raises(NotPositiveDefiniteError, match=r"at column 11 of Q.*is not positive"):
        cholesky(sparse_from_dense(Q, mask, "csr"), backend=backend, ordering=ordering)
    Q[11, 11] = 1e-300  # tiny but isolated: its pivot is exact, nothing is singular
    factor = cholesky(sparse_from_dense(Q, mask, "csr"), backend=backend, ordering=ordering)
    torch.testing.assert_close(factor.logdet(), torch.logdet(Q), rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("backend, ordering", CASES)
def test_float32_values_that_round_to_singular(backend, ordering):
    # [[2, c], [c, 2]] with c = 2 − 1e-9: positive definite in float64, exactly singular once rounded to float32
    Q, nodes = with_singular_pair(F64, coupling=2.0 - 1e-9)
    factor = cholesky(Q.to_sparse_csr(), backend=backend, ordering=ordering)
    torch.testing.assert_close(factor.logdet(), torch.logdet(Q), rtol=1e-6, atol=0.0)
    expected = last_eliminated(backend, ordering, nodes, F32)
    with pytest.raises(NotPositiveDefiniteError, match=rf"at column {expected} of Q"):
        cholesky(Q.to(F32).to_sparse_csr(), backend=backend, ordering=ordering)


@pytest.mark.parametrize("backend, ordering", CASES)
def test_threshold_on_a_two_by_two(backend, ordering):
    # Q = [[1, 1], [1, 1 + δ]]: the second pivot is δ (or δ / (1 + δ) in the other order), against
    # 10 · n ε₆₄ S_j + ε Q_jj ≈ 21 ε₆₄ in float64 and ≈ ε₃₂ in float32 (n = 2, S_j ≈ Q_jj ≈ 1)
    def Q(delta: float, dtype) -> torch.Tensor:
        return torch.tensor([[1.0, 1.0], [1.0, 1.0 + delta]], dtype=F64).to(dtype).to_sparse_csr()

    for delta, dtype, singular in [
        (10 * EPS64, F64, True),
        (50 * EPS64, F64, False),
        (2.0**-23, F32, True),  # one unit of float32 rounding at 1: what float64 accepts easily
        (2.0**-23, F64, False),
        (2.0**-21, F32, False),
    ]:
        if singular:
            with pytest.raises(NotPositiveDefiniteError, match="below the singularity threshold"):
                cholesky(Q(delta, dtype), backend=backend, ordering=ordering)
        else:
            factor = cholesky(Q(delta, dtype), backend=backend, ordering=ordering)
            # (δ is computed as 1 − 1 / (1 + δ) in one of the two orders: a few % off at δ = 50 ε₆₄)
            expected = torch.log(torch.tensor(delta, dtype=F64)).to(dtype)
            torch.testing.assert_close(factor.logdet(), expected, rtol=0.0, atol=0.05)


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("backend, ordering", CASES)
def test_well_conditioned_matrices_are_never_refused(backend, ordering, dtype):
    n = 144
    g = torch.Generator().manual_seed(3)
    scale = torch.exp(torch.empty(n, dtype=F64).uniform_(-7.0, 7.0, generator=g))  # six decades either way
    grid = shifted_grid_laplacian(12, shift=0.3).to_dense()
    graph, _ = spd_matrix(150, density=0.03)
    blocks = torch.block_diag(1e12 * grid[:72, :72], 1e-12 * grid[72:, 72:])
    for dense in [
        grid,
        graph,
        scale[:, None] * grid * scale[None, :],
        shifted_grid_laplacian(12, shift=1e-3).to_dense(),
    ]:
        factor = cholesky(dense.to(dtype).to_sparse_csr(), backend=backend, ordering=ordering)
        reference = torch.logdet(dense.to(dtype).to(F64))
        torch.testing.assert_close(factor.logdet().to(F64), reference, rtol=1e-5 if dtype == F32 else 1e-10, atol=1e-3)
    if dtype == F64:  # very different scales in separate blocks: each is judged on its own subtree
        factor = cholesky(blocks.to_sparse_csr(), backend=backend, ordering=ordering)
        torch.testing.assert_close(factor.logdet(), torch.logdet(blocks), rtol=1e-12, atol=1e-8)


@pytest.mark.parametrize("backend", available_backends())
def test_refactorisation_with_a_cached_analysis_is_checked_too(backend):
    good, nodes = with_singular_pair(F64, coupling=1.0)
    bad, _ = with_singular_pair(F64, coupling=2.0)
    mask = (good != 0) | (bad != 0)
    first = cholesky(sparse_from_dense(good, mask, "csr"), backend=backend)
    start = sparseprec.cache_info().symbolic_analyses
    Q = sparse_from_dense(bad, mask, "csr")
    with pytest.raises(NotPositiveDefiniteError, match=MESSAGE) as info:
        cholesky(Q, backend=backend)
    assert info.value.column in nodes
    with pytest.raises(NotPositiveDefiniteError, match=MESSAGE):
        sparse_logdet(Q, backend=backend)
    again = cholesky(sparse_from_dense(good, mask, "csr"), backend=backend)
    assert (
        sparseprec.cache_info().symbolic_analyses == start
    )  # one analysis for the pattern, reused with every set of values
    torch.testing.assert_close(again.logdet(), first.logdet())


def test_wrong_factor_argument_is_a_type_error():
    Q = shifted_grid_laplacian(4, shift=0.3)
    with pytest.raises(TypeError, match=r"factor must be a CholeskyFactor.*selected_inverse\(cholesky\(Q\)\).*got a"):
        selected_inverse(Q)
    with pytest.raises(TypeError, match=r"factor must be a CholeskyFactor.*got list"):
        selected_inverse([1.0])
    with pytest.raises(TypeError, match=r"Q must be a sparse COO/CSR SPD tensor or a CholeskyFactor.*got a dense"):
        diag_inverse(Q.to_dense())
    with pytest.raises(TypeError, match=r"Q must be a sparse COO/CSR SPD tensor or a CholeskyFactor.*got str"):
        diag_inverse("Q")
    factor = cholesky(Q)
    with pytest.raises(ValueError, match="apply only when Q is a sparse tensor.*got backend='scipy'"):
        diag_inverse(factor, backend="scipy")
    torch.testing.assert_close(diag_inverse(factor), torch.linalg.inv(Q.to_dense()).diagonal())

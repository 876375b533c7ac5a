"""Sparse Cholesky factors against dense torch: log-determinants, solves, the factor itself, the symbolic cache."""

from __future__ import annotations

import pytest
import torch

import sparseprec
from sparseprec import NotPositiveDefiniteError
from sparseprec.cholesky import available_backends, cholesky
from tests.conftest import sparse_from_dense
from tests.solvers.problems import grid_laplacian, spd_matrix

BACKENDS = list(available_backends())
ORDERINGS = {"cholmod": ["amd", "natural"], "scipy": ["mmd", "rcm", "natural"]}


def banded(n: int, bandwidth: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    A = torch.zeros(n, n, dtype=torch.float64)
    for d in range(1, bandwidth + 1):
        v = torch.randn(n - d, generator=g, dtype=torch.float64)
        A += torch.diag(v, d) + torch.diag(v, -d)
    return A + torch.diag(A.abs().sum(1) + 1.0)


def problems():
    grid = grid_laplacian(12, shift=0.3).to_dense()
    graph, _ = spd_matrix(150, density=0.03)
    return {"grid": grid, "graph": graph, "banded": banded(120)}


def stored(Q: torch.Tensor, triangle: str) -> torch.Tensor:
    """The mask of what a Q with this `triangle` stores (the full pattern of Q's nonzeros, or one triangle)."""
    mask = Q != 0
    return {"full": mask, "lower": mask.tril(), "upper": mask.triu()}[triangle]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["grid", "graph", "banded"])
@pytest.mark.parametrize("triangle", ["full", "lower", "upper"])
@pytest.mark.parametrize("layout", ["coo", "csr", "csr32", "coo_uncoalesced"])
def test_logdet_solve_and_factor_match_dense(backend, name, triangle, layout):
    Qd = problems()[name]
    Q = sparse_from_dense(Qd, stored(Qd, triangle), layout)
    factor = cholesky(Q, backend=backend, triangle=triangle)
    torch.testing.assert_close(factor.logdet(), torch.logdet(Qd), rtol=1e-12, atol=1e-10)
    B = torch.randn(Qd.shape[0], 3, dtype=torch.float64)
    torch.testing.assert_close(factor.solve(B), torch.linalg.solve(Qd, B), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(factor.solve(B[:, 0]), torch.linalg.solve(Qd, B[:, 0]), rtol=1e-10, atol=1e-12)
    # L Lᵀ = Q[perm][:, perm], L lower triangular with a positive diagonal
    p, L = factor.perm, factor.L.to_dense()
    assert torch.equal(L, L.tril()) and bool((L.diagonal() > 0).all())
    torch.testing.assert_close(L @ L.T, Qd[p][:, p], rtol=1e-12, atol=1e-12)
    # the triangular solves work in the permuted ordering: Q⁻¹ b = Pᵀ L⁻ᵀ L⁻¹ P b
    Y = factor.solve_Lt(factor.solve_L(B[p]))
    X = torch.empty_like(Y)
    X[p] = Y
    torch.testing.assert_close(X, torch.linalg.solve(Qd, B), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_orderings_and_float32(backend):
    Qd = problems()["grid"]
    for ordering in ORDERINGS[backend]:
        factor = cholesky(Qd.to_sparse_csr(), backend=backend, ordering=ordering)
        assert factor.ordering == ordering
        torch.testing.assert_close(factor.logdet(), torch.logdet(Qd))
    factor = cholesky(Qd.float().to_sparse_csr(), backend=backend)
    assert factor.logdet().dtype == torch.float32 and factor.solve(torch.ones(144)).dtype == torch.float32
    torch.testing.assert_close(factor.logdet().double(), torch.logdet(Qd), rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs scikit-sparse for CHOLMOD")
def test_backends_agree():
    Qd = problems()["graph"]
    Q = Qd.to_sparse_csr()
    a, b = cholesky(Q, backend="cholmod"), cholesky(Q, backend="scipy")
    torch.testing.assert_close(a.logdet(), b.logdet(), rtol=1e-13, atol=0)
    B = torch.randn(150, 2, dtype=torch.float64)
    torch.testing.assert_close(a.solve(B), b.solve(B), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_symbolic_analysis_is_cached_per_pattern(backend):
    Qd = problems()["grid"]
    Q = Qd.to_sparse_csr()
    start = sparseprec.cache_info().symbolic_analyses
    first = cholesky(Q, backend=backend)
    assert sparseprec.cache_info().symbolic_analyses == start + 1
    # same pattern, new values (and a new tensor holding equal indices): numeric refactorisation only
    scaled = torch.sparse_csr_tensor(Q.crow_indices().clone(), Q.col_indices().clone(), Q.values() * 2.0, Q.shape)
    second = cholesky(scaled, backend=backend)
    assert sparseprec.cache_info().symbolic_analyses == start + 1
    log2 = torch.log(torch.tensor(2.0, dtype=torch.float64))
    torch.testing.assert_close(second.logdet(), first.logdet() + 144 * log2)
    assert torch.equal(first.perm, second.perm)
    # a new pattern, another ordering, or another triangle is a new analysis
    cholesky(problems()["banded"].to_sparse_csr(), backend=backend)
    assert sparseprec.cache_info().symbolic_analyses == start + 2
    cholesky(Q, backend=backend, ordering="natural")
    assert sparseprec.cache_info().symbolic_analyses == start + 3
    cholesky(sparse_from_dense(Qd, stored(Qd, "lower"), "csr"), backend=backend, triangle="lower")
    assert sparseprec.cache_info().symbolic_analyses == start + 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_not_positive_definite_names_the_column(backend):
    Qd = problems()["banded"].clone()
    Qd[57, 57] = -5.0  # 57 breaks down; every leading principal minor in any ordering that keeps it before its
    Qd[57, :57] = 0.0  # neighbours... isolate it so the breakdown is at 57 whatever the ordering
    Qd[:57, 57] = 0.0
    Qd[57, 58:] = 0.0
    Qd[58:, 57] = 0.0
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite.*at column 57") as info:
        cholesky(Qd.to_sparse_csr(), backend=backend)
    assert info.value.column == 57
    assert isinstance(info.value, torch.linalg.LinAlgError)


@pytest.mark.parametrize("backend", BACKENDS)
def test_indefinite_matrix_is_refused(backend):
    Qd = problems()["grid"] - 2.0 * torch.eye(144, dtype=torch.float64)  # smallest eigenvalue < 0
    with pytest.raises(NotPositiveDefiniteError, match="at column"):
        cholesky(Qd.to_sparse_csr(), backend=backend)


def test_input_errors():
    Qd = problems()["grid"]
    Q = Qd.to_sparse_csr()
    with pytest.raises(ValueError, match=r"Q is not symmetric: Q\[0, 1\]"):
        bad = Qd.clone()
        bad[0, 1] += 0.5
        cholesky(bad.to_sparse_csr())
    with pytest.raises(ValueError, match="stores entry .* but not .*pattern is not symmetric"):
        bad = Qd.clone()
        bad[0, 5] = 0.5
        cholesky(bad.to_sparse_csr())
    with pytest.raises(ValueError, match="triangle='lower' but stores entry \\(0, 1\\) above the diagonal"):
        cholesky(Q, triangle="lower")
    with pytest.raises(ValueError, match="no stored diagonal entry in row 3"):
        bad = Qd.clone()
        bad[3, 3] = 0.0
        cholesky(bad.to_sparse_csr())
    with pytest.raises(ValueError, match="non-finite value nan at entry"):
        cholesky(torch.sparse_csr_tensor(Q.crow_indices(), Q.col_indices(), Q.values() * float("nan"), Q.shape))
    with pytest.raises(ValueError, match="Q is empty"):
        cholesky(torch.zeros(0, 0, dtype=torch.float64).to_sparse_csr())
    with pytest.raises(TypeError, match="Q must be a sparse COO or CSR tensor"):
        cholesky(Qd)
    with pytest.raises(ValueError, match="Q must be square"):
        cholesky(Qd[:, :10].to_sparse())
    with pytest.raises(ValueError, match="backend must be"):
        cholesky(Q, backend="mkl")
    with pytest.raises(ValueError, match="ordering must be one of"):
        cholesky(Q, backend="scipy", ordering="metis")
    with pytest.raises(ValueError, match="triangle must be one of"):
        cholesky(Q, triangle="both")
    factor = cholesky(Q)
    with pytest.raises(ValueError, match="B must have 144 rows"):
        factor.solve(torch.ones(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="B must have Q's dtype"):
        factor.solve(torch.ones(144))

"""The Cholesky layer's settings objects: SparseCholesky (the solver protocol of CG) and the log-det estimators."""

from __future__ import annotations

import pickle

import pytest
import torch

from sparseprec import NotPositiveDefiniteError
from sparseprec.cholesky import ExactLogDet, SLQLogDet, SparseCholesky, available_backends
from sparseprec.solvers import CG, Status
from tests.solvers.problems import grid_laplacian

F64 = torch.float64


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("columns", [None, 3])
def test_solve_matches_dense_and_reports_like_a_solver(backend, columns):
    Q = grid_laplacian(6, shift=0.3)
    Qd = Q.to_dense()
    g = torch.Generator().manual_seed(0)
    B = torch.randn((36,) if columns is None else (36, columns), generator=g, dtype=F64)
    solution = SparseCholesky(backend=backend).solve(Q, B)
    torch.testing.assert_close(solution.value, torch.linalg.solve(Qd, B))
    shape = B.shape[1:]
    assert solution.converged.shape == shape and bool(solution.converged.all())
    assert solution.iterations.shape == shape and solution.status is Status.SUCCESS and solution.success
    expected = torch.linalg.vector_norm((B - Qd @ solution.value).reshape(36, -1), dim=0).reshape(shape)
    torch.testing.assert_close(solution.residual_norm, expected, rtol=0, atol=1e-12)
    assert "SparseCholesky" in solution.message
    torch.testing.assert_close(SparseCholesky(backend=backend)(Q, B), solution.value)


def test_gradients_are_exact_and_agree_with_cg():
    # d(sum X)/dQ_ij under the symmetric convention, the same from the direct and the iterative solver
    Q1 = grid_laplacian(4, shift=0.5).requires_grad_()
    Q2 = grid_laplacian(4, shift=0.5).requires_grad_()
    b = torch.linspace(-1.0, 1.0, 16, dtype=F64, requires_grad=True)
    SparseCholesky()(Q1, b).sum().backward()
    g1 = b.grad.clone()
    b.grad = None
    CG(rtol=1e-12)(Q2, b).sum().backward()
    torch.testing.assert_close(g1, b.grad)
    Qd = Q1.detach().to_dense()
    lam = torch.linalg.solve(Qd, torch.ones(16, dtype=F64))
    x = torch.linalg.solve(Qd, b.detach())
    full = -0.5 * (torch.outer(lam, x) + torch.outer(x, lam))  # symmetrised -Λ Xᵀ
    crow, col = Q1.crow_indices(), Q1.col_indices()
    rows = torch.repeat_interleave(torch.arange(16), crow[1:] - crow[:-1])
    torch.testing.assert_close(Q1.grad.values(), full[rows, col])
    pair_sums = lambda v: v + v.new_zeros(16, 16).index_put((rows, col), v).T[rows, col]  # noqa: E731
    torch.testing.assert_close(pair_sums(Q2.grad.values()), pair_sums(Q1.grad.values()), rtol=1e-8, atol=1e-10)


def test_factor_and_estimators():
    Q = grid_laplacian(5, shift=1.0)
    settings = SparseCholesky(backend="scipy")
    factor = settings.factor(Q)
    assert factor.backend == "scipy"
    exact = ExactLogDet(cholesky=settings)
    torch.testing.assert_close(exact(Q), torch.logdet(Q.to_dense()))
    torch.testing.assert_close(exact(Q, factor=factor), torch.logdet(Q.to_dense()))
    assert exact.exact and not SLQLogDet().exact
    slq = SLQLogDet(num_probes=400, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(slq(Q), torch.logdet(Q.to_dense()), rtol=2e-2, atol=0)


def test_settings_are_values():
    assert SparseCholesky() == SparseCholesky(backend="auto")
    assert hash(SparseCholesky(backend="scipy", ordering="rcm")) == hash(
        SparseCholesky(backend="scipy", ordering="rcm")
    )
    assert pickle.loads(pickle.dumps(ExactLogDet())) == ExactLogDet()
    with pytest.raises(AttributeError):
        SparseCholesky().backend = "scipy"


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="backend must be 'auto', 'cholmod' or 'scipy', got 'dense'"):
        SparseCholesky(backend="dense")
    with pytest.raises(TypeError, match="backend must be a string, got int"):
        SparseCholesky(backend=1)
    with pytest.raises(ValueError, match="ordering must be one of"):
        SparseCholesky(backend="scipy", ordering="nested")
    with pytest.raises(TypeError, match="lanczos_steps must be an int"):
        SLQLogDet(lanczos_steps=2.5)
    with pytest.raises(ValueError, match="cg_rtol must be positive"):
        SLQLogDet(cg_rtol=-1.0)


def test_not_positive_definite_and_bad_right_hand_side():
    Q = grid_laplacian(3, shift=0.0)  # singular: constant null vector
    with pytest.raises(NotPositiveDefiniteError):
        SparseCholesky().solve(Q, torch.ones(9, dtype=F64))
    with pytest.raises(ValueError, match="B must have 9 rows"):
        SparseCholesky().solve(grid_laplacian(3, shift=1.0), torch.ones(4, dtype=F64))
    with pytest.raises(TypeError, match="A must be a sparse"):
        SparseCholesky().solve(torch.eye(3, dtype=F64), torch.ones(3, dtype=F64))

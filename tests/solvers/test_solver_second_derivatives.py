"""Second derivatives through the Krylov solvers called directly (``CG()(A, B)``): exact for a sparse ``A`` (the ops'
solve rule), a clear error for a dense or callable ``A`` (differentiable once)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradgradcheck

import sparseprec
from sparseprec.ops import sparse_csr_tensor
from sparseprec.solvers import CG, MINRES, BiCGSTAB

DT = torch.float64


def _tridiagonal(n: int):
    """A symmetric tridiagonal pattern and the map from its lower values ``w`` to the stored values (tied)."""
    rows = torch.cat([torch.arange(n), torch.arange(1, n), torch.arange(n - 1)])
    cols = torch.cat([torch.arange(n), torch.arange(n - 1), torch.arange(1, n)])
    order = torch.argsort(rows * n + cols)
    rows, cols = rows[order], cols[order]
    crow = torch.zeros(n + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    # parameters: n diagonal values then n - 1 off-diagonal values
    take = torch.where(rows == cols, rows, n + torch.minimum(rows, cols))
    return crow, cols, take


@pytest.mark.parametrize("solver", [CG(rtol=1e-13), MINRES(rtol=1e-13), BiCGSTAB(rtol=1e-13)], ids=str)
def test_krylov_solve_gradgradcheck_sparse(solver):
    n = 5
    crow, cols, take = _tridiagonal(n)
    w = torch.cat([torch.full((n,), 3.0, dtype=DT), torch.linspace(-0.5, 0.7, n - 1, dtype=DT)]).requires_grad_()
    B = torch.randn(n, 2, dtype=DT, generator=torch.Generator().manual_seed(0), requires_grad=True)
    fn = lambda w, B: solver(sparse_csr_tensor(crow, cols, w[take], (n, n)), B)  # noqa: E731
    assert gradgradcheck(fn, (w, B), atol=1e-6)


def test_krylov_hessian_of_quadratic_matches_inverse():
    n = 6
    crow, cols, take = _tridiagonal(n)
    w = torch.cat([torch.full((n,), 2.5, dtype=DT), torch.full((n - 1,), -1.0, dtype=DT)])
    A = sparse_csr_tensor(crow, cols, w[take], (n, n))
    b = torch.linspace(-1.0, 1.0, n, dtype=DT)
    H = torch.autograd.functional.hessian(lambda b: 0.5 * b @ CG(rtol=1e-13)(A, b), b)
    torch.testing.assert_close(H, torch.linalg.inv(A.to_dense()))


def test_krylov_dense_operand_is_differentiable_once():
    A = (torch.eye(4, dtype=DT) * 3 + 0.5).requires_grad_()
    b = torch.ones(4, dtype=DT, requires_grad=True)
    x = CG(rtol=1e-12)(A, b)
    (gb,) = torch.autograd.grad(x.square().sum(), b, create_graph=True)
    torch.testing.assert_close(gb.detach(), torch.linalg.solve(A.detach(), 2 * x.detach()))
    with pytest.raises(sparseprec.NotTwiceDifferentiableError, match="dense or callable"):
        torch.autograd.grad(gb.sum(), A)


@pytest.mark.parametrize("kind", ["dense", "callable"])
def test_krylov_dense_or_callable_linear_loss_raises_not_zero(kind):
    """A loss linear in X gives a constant incoming gradient: the derivative must still be tied to A (a Hessian came
    back silently zero)."""
    M = torch.tensor([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]], dtype=DT)
    b = torch.tensor([1.0, 2.0, 3.0], dtype=DT)
    A = M.clone().requires_grad_()
    operator = A if kind == "dense" else (lambda v: A @ v)
    (g,) = torch.autograd.grad(CG(rtol=1e-12)(operator, b).sum(), A, create_graph=True)
    assert g.requires_grad
    with pytest.raises(sparseprec.NotTwiceDifferentiableError):
        torch.autograd.grad(g.sum(), A)


def test_krylov_sparse_solve_frees_without_the_cycle_collector():
    import gc
    import weakref

    n = 6
    crow, cols, take = _tridiagonal(n)
    w = torch.cat([torch.full((n,), 3.0, dtype=DT), torch.full((n - 1,), -1.0, dtype=DT)]).requires_grad_()
    gc.disable()
    try:
        X = CG(rtol=1e-12)(sparse_csr_tensor(crow, cols, w[take], (n, n)), torch.ones(n, 2, dtype=DT))
        ref = weakref.ref(X)
        del X
        assert ref() is None  # freed by reference counting alone
    finally:
        gc.enable()

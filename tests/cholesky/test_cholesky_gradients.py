"""Gradients of sparse_cholesky_solve against dense autograd, and gradcheck."""

from __future__ import annotations

import pytest
import torch

from sparseprec.cholesky import available_backends, sparse_cholesky_solve
from tests.cholesky.test_cholesky_factor import problems, stored
from tests.conftest import dense_grad_at_pattern, rebuild, sparse_from_dense, stored_values
from tests.solvers.test_gradients import symmetric_values

BACKENDS = list(available_backends())


def symmetric_dense_gradient(Qd: torch.Tensor, B: torch.Tensor, weights: torch.Tensor, triangle: str):
    """The gradient w.r.t. the stored values as documented, from torch's dense solve: a symmetric read of ∂L/∂Q."""
    Q = Qd.clone().requires_grad_()
    Bd = B.clone().requires_grad_()
    (torch.linalg.solve(Q, Bd) * weights).sum().backward()
    G = Q.grad
    sym = G + G.T
    if triangle == "full":
        return 0.5 * sym, Bd.grad
    return sym - torch.diag(G.diagonal()), Bd.grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("triangle", ["full", "lower", "upper"])
@pytest.mark.parametrize("layout", ["coo", "csr", "csr32", "coo_uncoalesced"])
@pytest.mark.parametrize("k", [None, 3])
def test_gradients_match_dense(backend, triangle, layout, k):
    Qd = problems()["graph"]
    n = Qd.shape[0]
    Q = sparse_from_dense(Qd, stored(Qd, triangle), layout).requires_grad_()
    B = torch.randn(n, dtype=torch.float64) if k is None else torch.randn(n, k, dtype=torch.float64)
    Bs = B.clone().requires_grad_()
    weights = torch.randn(B.shape, dtype=torch.float64)
    X = sparse_cholesky_solve(Q, Bs, backend=backend, triangle=triangle)
    torch.testing.assert_close(X, torch.linalg.solve(Qd, B))
    (X * weights).sum().backward()
    grad_Q, grad_B = symmetric_dense_gradient(Qd, B, weights, triangle)
    torch.testing.assert_close(Bs.grad, grad_B)
    assert Q.grad.layout == Q.layout
    torch.testing.assert_close(stored_values(Q.grad), dense_grad_at_pattern(grad_Q, Q.grad))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_tied_full_storage(backend):
    Qd = problems()["grid"][:30, :30]
    Q = Qd.to_sparse_csr()
    theta, spread = symmetric_values(Q)
    theta.requires_grad_()
    B = torch.randn(30, 2, dtype=torch.float64, requires_grad=True)

    def f(theta, B):
        return sparse_cholesky_solve(rebuild(Q, theta[spread]), B, backend=backend)

    assert torch.autograd.gradcheck(f, (theta, B))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("triangle", ["lower", "upper"])
def test_gradcheck_one_triangle(backend, triangle):
    Qd = problems()["banded"][:25, :25]
    Q = sparse_from_dense(Qd, stored(Qd, triangle), "csr")
    values = Q.values().clone().requires_grad_()
    B = torch.randn(25, dtype=torch.float64, requires_grad=True)

    def f(values, B):
        return sparse_cholesky_solve(rebuild(Q, values), B, backend=backend, triangle=triangle)

    assert torch.autograd.gradcheck(f, (values, B))

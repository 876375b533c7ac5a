"""Gradients of solver calls (implicit function theorem) against dense autograd and gradcheck."""

from __future__ import annotations

import pytest
import torch

from sparseprec.solvers import CG, MINRES, SSOR, BiCGSTAB, Jacobi
from tests.conftest import dense_grad_at_pattern, rebuild, stored_values
from tests.solvers.problems import as_kind, indefinite_matrix, nonsymmetric_matrix, spd_matrix

CASES = [(CG, spd_matrix), (MINRES, indefinite_matrix), (BiCGSTAB, nonsymmetric_matrix)]
IDS = ["CG-spd", "MINRES-indefinite", "BiCGSTAB-nonsymmetric"]


def dense_reference(A, B, weights):
    Ad = A.clone().requires_grad_()
    Bd = B.clone().requires_grad_()
    (torch.linalg.solve(Ad, Bd) * weights).sum().backward()
    return Ad.grad, Bd.grad


@pytest.mark.parametrize("solver,make", CASES, ids=IDS)
@pytest.mark.parametrize("layout", ["coo", "csr", "csr32", "coo_uncoalesced"])
@pytest.mark.parametrize("k", [None, 3])
def test_sparse_gradients_match_dense(solver, make, layout, k):
    n = 30
    A, mask = make(n)
    B = torch.randn(n, dtype=torch.float64) if k is None else torch.randn(n, k, dtype=torch.float64)
    weights = torch.randn(B.shape, dtype=torch.float64)
    As = as_kind(A, mask, layout).requires_grad_()
    Bs = B.clone().requires_grad_()
    X = solver(rtol=1e-13)(As, Bs)
    (X * weights).sum().backward()
    grad_A, grad_B = dense_reference(A, B, weights)
    torch.testing.assert_close(Bs.grad, grad_B, rtol=1e-7, atol=1e-9)
    G = As.grad
    assert G.layout == As.layout
    if layout.startswith("csr"):
        assert torch.equal(G.crow_indices(), As.crow_indices()) and torch.equal(G.col_indices(), As.col_indices())
    torch.testing.assert_close(stored_values(G), dense_grad_at_pattern(grad_A, G), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("solver,make", CASES, ids=IDS)
def test_dense_operator_gradients(solver, make):
    A, _ = make(25)
    B = torch.randn(25, 2, dtype=torch.float64)
    weights = torch.randn(25, 2, dtype=torch.float64)
    Ad, Bd = A.clone().requires_grad_(), B.clone().requires_grad_()
    (solver(rtol=1e-13)(Ad, Bd) * weights).sum().backward()
    grad_A, grad_B = dense_reference(A, B, weights)
    torch.testing.assert_close(Ad.grad, grad_A, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(Bd.grad, grad_B, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("solver", [CG, MINRES])
def test_callable_operator_gradients_reach_captured_tensors(solver):
    # A(θ) v = A0 v + θ v: dL/dθ = -Λᵀ X summed, and dL/dA0 through the callable's own graph
    A0, _ = spd_matrix(20)
    theta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    A0p = A0.clone().requires_grad_()
    B = torch.randn(20, 2, dtype=torch.float64)
    X = solver(rtol=1e-13)(lambda v: A0p @ v + theta * v, B)
    X.square().sum().backward()
    theta_ref = theta.detach().clone().requires_grad_()
    A0_ref = A0.clone().requires_grad_()
    torch.linalg.solve(A0_ref + theta_ref * torch.eye(20, dtype=torch.float64), B).square().sum().backward()
    torch.testing.assert_close(theta.grad, theta_ref.grad, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(A0p.grad, A0_ref.grad, rtol=1e-7, atol=1e-10)


def test_bicgstab_refuses_gradients_through_a_callable():
    A, _ = nonsymmetric_matrix(10)
    B = torch.ones(10, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match="BiCGSTAB cannot differentiate a solve with a callable A"):
        BiCGSTAB()(lambda v: A @ v, B)
    # without a gradient request it solves
    torch.testing.assert_close(BiCGSTAB(rtol=1e-12)(lambda v: A @ v, B.detach()), torch.linalg.solve(A, B.detach()))
    with pytest.raises(TypeError, match="preconditioned by a plain callable"):
        BiCGSTAB(preconditioner=lambda r: r)(A.to_sparse_csr(), B)


@pytest.mark.parametrize("preconditioner", ["class", "jacobi", "ssor"])
def test_bicgstab_gradient_uses_the_transposed_preconditioner(preconditioner):
    A, mask = nonsymmetric_matrix(30)
    As = as_kind(A, mask, "csr").requires_grad_()
    M = {"class": SSOR, "jacobi": Jacobi(As), "ssor": SSOR(As, omega=0.8)}[preconditioner]
    B = torch.randn(30, 2, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(30, 2, dtype=torch.float64)
    (BiCGSTAB(rtol=1e-13, preconditioner=M)(As, B) * weights).sum().backward()
    grad_A, grad_B = dense_reference(A, B.detach(), weights)
    torch.testing.assert_close(B.grad, grad_B, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(As.grad.values(), dense_grad_at_pattern(grad_A, As.grad), rtol=1e-7, atol=1e-9)


def symmetric_values(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a symmetric CSR ``A``: one parameter per (i <= j) entry and the index that spreads it to all entries."""
    coo = A.to_sparse_coo().coalesce()
    i, j = coo.indices()
    n = A.shape[0]
    key = torch.minimum(i, j) * n + torch.maximum(i, j)
    unique, inverse = torch.unique(key, return_inverse=True)
    first = torch.zeros(unique.numel(), dtype=torch.long).scatter_(0, inverse, torch.arange(key.numel()))
    return coo.values()[first].clone(), inverse


@pytest.mark.parametrize("solver,make", [(CG, spd_matrix), (MINRES, indefinite_matrix)], ids=["CG", "MINRES"])
def test_gradcheck_symmetric_solvers(solver, make):
    # the symmetric solvers refuse a non-symmetric A, so gradcheck perturbs tied (i, j)/(j, i) parameters
    A, mask = make(12)
    As = as_kind(A, mask, "csr")
    theta, spread = symmetric_values(As)
    theta.requires_grad_()
    B = torch.randn(12, 2, dtype=torch.float64, requires_grad=True)

    def f(theta, B):
        return solver(rtol=1e-14, atol=1e-300)(rebuild(As, theta[spread]), B)

    assert torch.autograd.gradcheck(f, (theta, B), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_gradcheck_bicgstab(layout):
    A, mask = nonsymmetric_matrix(12)
    As = as_kind(A, mask, layout)
    values = stored_values(As).clone().requires_grad_()
    B = torch.randn(12, dtype=torch.float64, requires_grad=True)

    def f(values, B):
        return BiCGSTAB(rtol=1e-13)(rebuild(As, values), B)

    assert torch.autograd.gradcheck(f, (values, B), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_no_graph_without_gradients():
    A, mask = spd_matrix(10)
    As = as_kind(A, mask, "csr").requires_grad_()
    with torch.no_grad():
        X = CG()(As, torch.ones(10, dtype=torch.float64))
    assert X.grad_fn is None and not X.requires_grad
    assert CG()(As.detach(), torch.ones(10, dtype=torch.float64)).grad_fn is None


def test_large_grid_solve_and_gradient_stay_sparse():
    # n = 90 000: any n × n intermediate would need 65 GB; the solve and its gradient need O(nnz + n k)
    from sparseprec import sparse_generic_solve
    from tests.solvers.problems import grid_laplacian

    A = grid_laplacian(300, shift=1.0).requires_grad_()
    B = torch.randn(90_000, 2, dtype=torch.float64, requires_grad=True)
    X = sparse_generic_solve(A, B, solve=CG(rtol=1e-8))
    X.sum().backward()
    assert A.grad.layout == torch.sparse_csr and A.grad.values().shape == A.values().shape
    residual = B.detach() - (A.detach() @ X.detach())
    assert float(residual.norm() / B.detach().norm()) < 1e-7

"""The solvers and sparse_generic_solve on every device (``device`` fixture) agree with the CPU and dense torch."""

from __future__ import annotations

import pytest
import torch

from sparseprec import sparse_generic_solve
from sparseprec.solvers import CG, MINRES, SSOR, BiCGSTAB, Jacobi
from tests.solvers.problems import as_kind, indefinite_matrix, nonsymmetric_matrix, spd_matrix

CASES = [(CG, spd_matrix), (MINRES, indefinite_matrix), (BiCGSTAB, nonsymmetric_matrix)]


def _solve(solver, A, mask, layout, B, device) -> tuple[torch.Tensor, ...]:
    """``solver.solve(A, B)`` on ``device`` with the gradients of ``Σ X²`` w.r.t. ``B`` and ``A``, on the CPU."""
    Ad = as_kind(A, mask, layout).to(device, copy=True).requires_grad_()
    Bd = B.to(device, copy=True).requires_grad_()
    solution = solver.solve(Ad, Bd)
    assert solution.converged.device.type == device.type and solution.value.device.type == device.type
    solution.value.square().sum().backward()
    grad_A = Ad.grad.to_dense() if Ad.grad.layout != torch.strided else Ad.grad
    return solution.value.detach().cpu(), Bd.grad.cpu(), grad_A.cpu()


@pytest.mark.parametrize("solver,make", CASES, ids=["CG", "MINRES", "BiCGSTAB"])
@pytest.mark.parametrize("layout", ["coo", "csr", "dense"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_solve_and_gradients_on_device_match_cpu_and_dense(device, solver, make, layout, dtype):
    A, mask = make(40)
    A = A.to(dtype)
    B = torch.randn(40, 3, dtype=dtype, generator=torch.Generator().manual_seed(0))
    settings = solver(rtol=1e-5 if dtype == torch.float32 else 1e-12)
    on_device = _solve(settings, A, mask, layout, B, device)
    tol = {"rtol": 1e-3, "atol": 1e-3} if dtype == torch.float32 else {"rtol": 1e-8, "atol": 1e-9}
    for ours, cpu in zip(on_device, _solve(settings, A, mask, layout, B, torch.device("cpu")), strict=True):
        torch.testing.assert_close(ours, cpu, **tol)
    # dense reference in float64: X = A⁻¹B, ∂B = A⁻ᵀ 2X, ∂A = −∂B Xᵀ (at the stored entries for a sparse A)
    A64, B64 = A.double(), B.double()
    X = torch.linalg.solve(A64, B64)
    grad_B = torch.linalg.solve(A64.T, 2 * X)
    grad_A = -grad_B @ X.T
    expected = (X, grad_B, grad_A if layout == "dense" else grad_A * mask)
    for ours, reference in zip(on_device, expected, strict=True):
        torch.testing.assert_close(ours.double(), reference, **tol)


@pytest.mark.parametrize("preconditioner", [Jacobi, SSOR])
def test_preconditioners_on_device(device, preconditioner):
    A, mask = spd_matrix(40)
    As = as_kind(A, mask, "csr").to(device)
    B = torch.randn(40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).to(device)
    X = CG(rtol=1e-12, preconditioner=preconditioner)(As, B)
    assert X.device.type == device.type
    torch.testing.assert_close(X.cpu(), torch.linalg.solve(A, B.cpu()))


def test_generic_solve_on_device(device):
    A, mask = nonsymmetric_matrix(30)
    As = as_kind(A, mask, "csr").to(device, copy=True).requires_grad_()
    B = torch.randn(30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Bd = B.to(device, copy=True).requires_grad_()
    X = sparse_generic_solve(As, Bd, solve=BiCGSTAB(rtol=1e-12))
    X.sum().backward()
    torch.testing.assert_close(X.detach().cpu(), torch.linalg.solve(A, B))
    assert As.grad.device.type == device.type and As.grad.layout == torch.sparse_csr
    # ∂B = A⁻ᵀ 1 and ∂A = −∂B Xᵀ at the stored entries
    grad_B = torch.linalg.solve(A.T, torch.ones_like(B))
    torch.testing.assert_close(Bd.grad.cpu(), grad_B)
    torch.testing.assert_close(As.grad.to_dense().cpu(), -(grad_B @ torch.linalg.solve(A, B).T) * mask)

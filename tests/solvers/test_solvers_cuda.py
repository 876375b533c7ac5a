"""The solvers and sparse_generic_solve on CUDA agree with the CPU results (skipped where no GPU is present)."""

from __future__ import annotations

import pytest
import torch

from sparseprec import sparse_generic_solve
from sparseprec.solvers import CG, MINRES, SSOR, BiCGSTAB, Jacobi
from tests.solvers.problems import as_kind, indefinite_matrix, nonsymmetric_matrix, spd_matrix

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CASES = [(CG, spd_matrix), (MINRES, indefinite_matrix), (BiCGSTAB, nonsymmetric_matrix)]


@pytest.mark.parametrize("solver,make", CASES, ids=["CG", "MINRES", "BiCGSTAB"])
@pytest.mark.parametrize("layout", ["coo", "csr", "dense"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_solve_and_gradients_cuda_match_cpu(solver, make, layout, dtype):
    A, mask = make(40)
    A = A.to(dtype)
    B = torch.randn(40, 3, dtype=dtype, generator=torch.Generator().manual_seed(0))
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    results = []
    for device in ["cpu", "cuda"]:
        Ad = as_kind(A, mask, layout).to(device).requires_grad_()
        Bd = B.to(device).requires_grad_()
        solution = solver(rtol=rtol).solve(Ad, Bd)
        solution.value.square().sum().backward()
        grad_A = Ad.grad.to_dense() if Ad.grad.layout != torch.strided else Ad.grad
        results.append((solution.value.detach().cpu(), Bd.grad.cpu(), grad_A.cpu()))
        assert solution.converged.device.type == device
    tol = {"rtol": 1e-3, "atol": 1e-3} if dtype == torch.float32 else {"rtol": 1e-8, "atol": 1e-9}
    for cpu, cuda in zip(*results, strict=True):
        torch.testing.assert_close(cuda, cpu, **tol)


@pytest.mark.parametrize("preconditioner", [Jacobi, SSOR])
def test_preconditioners_cuda(preconditioner):
    A, mask = spd_matrix(40)
    As = as_kind(A, mask, "csr").cuda()
    B = torch.randn(40, 2, dtype=torch.float64, device="cuda")
    X = CG(rtol=1e-12, preconditioner=preconditioner)(As, B)
    torch.testing.assert_close(X.cpu(), torch.linalg.solve(A, B.cpu()))


def test_generic_solve_cuda():
    A, mask = nonsymmetric_matrix(30)
    As = as_kind(A, mask, "csr").cuda().requires_grad_()
    B = torch.randn(30, 2, dtype=torch.float64, device="cuda", requires_grad=True)
    X = sparse_generic_solve(As, B, solve=BiCGSTAB(rtol=1e-12))
    X.sum().backward()
    Ad = A.clone().requires_grad_()
    torch.linalg.solve(Ad, B.detach().cpu()).sum().backward()
    torch.testing.assert_close(X.detach().cpu(), torch.linalg.solve(A, B.detach().cpu()))
    assert As.grad.device.type == "cuda" and As.grad.layout == torch.sparse_csr

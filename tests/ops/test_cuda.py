"""The ops on CUDA agree with the CPU results (skipped where no GPU is present)."""

from __future__ import annotations

import pytest
import torch

from sparseprec import sparse_mm, sparse_triangular_solve
from tests.ops.test_triangular import triangular_problem

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("layout", ["coo", "csr", "coo_uncoalesced"])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("transpose", [False, True])
def test_triangular_solve_cuda_matches_cpu(layout, batched, transpose):
    A, _, B = triangular_problem(layout, batched, upper=False, unitriangular=False, n=30, p=4)
    results = []
    for device in ["cpu", "cuda"]:
        Ad = A.to(device).detach().requires_grad_()
        Bd = B.to(device).requires_grad_()
        X = sparse_triangular_solve(Ad, Bd, upper=False, transpose=transpose)
        X.square().sum().backward()
        grad_A = Ad.grad.to_dense() if Ad.grad.layout == torch.sparse_csr else Ad.grad.coalesce().to_dense()
        results.append((X.cpu(), Bd.grad.cpu(), grad_A.cpu()))
    for cpu, cuda in zip(*results, strict=True):
        torch.testing.assert_close(cuda, cpu)


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("p", [1, 3])
def test_mm_cuda_matches_cpu(layout, p):
    A, _, B = triangular_problem(layout, False, upper=True, unitriangular=False, n=30, p=p)
    results = []
    for device in ["cpu", "cuda"]:
        Ad = A.to(device).detach().requires_grad_()
        Bd = B.to(device).requires_grad_()
        C = sparse_mm(Ad, Bd)
        C.square().sum().backward()
        grad_A = Ad.grad.to_dense() if Ad.grad.layout == torch.sparse_csr else Ad.grad.coalesce().to_dense()
        results.append((C.cpu(), Bd.grad.cpu(), grad_A.cpu()))
    for cpu, cuda in zip(*results, strict=True):
        torch.testing.assert_close(cuda, cpu)

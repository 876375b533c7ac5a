"""The ops on every device (``device`` fixture: CPU, and CUDA where present) agree with the CPU and dense torch."""

from __future__ import annotations

import pytest
import torch

from sparseprec import sparse_mm, sparse_triangular_solve
from tests.ops.test_triangular import dense_solve, triangular_problem


def _dense_grad(G: torch.Tensor) -> torch.Tensor:
    return G.to_dense() if G.layout == torch.sparse_csr else G.coalesce().to_dense()


def _run(op, A: torch.Tensor, B: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``op(A, B)`` on ``device`` with the gradients of ``Σ op(A, B)²``, all brought back to the CPU."""
    # copies: on the CPU ``.to`` returns the tensor itself, and requires_grad_ would mark the caller's input
    Ad = A.detach().to(device, copy=True).requires_grad_()
    Bd = B.to(device, copy=True).requires_grad_()
    C = op(Ad, Bd)
    assert C.device.type == device.type
    C.square().sum().backward()
    assert Ad.grad.device.type == device.type and Bd.grad.device.type == device.type
    return C.detach().cpu(), Bd.grad.cpu(), _dense_grad(Ad.grad).cpu()


def _dense_reference(op, dense: torch.Tensor, mask: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The same quantities by dense torch autograd, the gradient w.r.t. ``A`` read at the stored entries only."""
    Ad = dense.clone().requires_grad_()
    Bd = B.clone().requires_grad_()
    C = op(Ad, Bd)
    C.square().sum().backward()
    return C.detach(), Bd.grad, Ad.grad * mask


@pytest.mark.parametrize("layout", ["coo", "csr", "coo_uncoalesced"])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("transpose", [False, True])
def test_triangular_solve_on_device_matches_cpu_and_dense(device, layout, batched, transpose):
    A, dense, B = triangular_problem(layout, batched, upper=False, unitriangular=False, n=30, p=4)

    def solve(A, B):
        return sparse_triangular_solve(A, B, upper=False, transpose=transpose)

    on_device = _run(solve, A, B, device)
    for ours, cpu in zip(on_device, _run(solve, A, B, torch.device("cpu")), strict=True):
        torch.testing.assert_close(ours, cpu)
    reference = _dense_reference(lambda A, B: dense_solve(A, B, False, False, transpose), dense, dense != 0, B)
    for ours, expected in zip(on_device, reference, strict=True):
        torch.testing.assert_close(ours, expected)


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("p", [1, 3])
def test_mm_on_device_matches_cpu_and_dense(device, layout, p):
    A, dense, B = triangular_problem(layout, False, upper=True, unitriangular=False, n=30, p=p)
    on_device = _run(sparse_mm, A, B, device)
    for ours, cpu in zip(on_device, _run(sparse_mm, A, B, torch.device("cpu")), strict=True):
        torch.testing.assert_close(ours, cpu)
    for ours, expected in zip(on_device, _dense_reference(torch.matmul, dense, dense != 0, B), strict=True):
        torch.testing.assert_close(ours, expected)

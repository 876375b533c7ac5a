"""The Cholesky layer on every device (``device`` fixture): tensors off the CPU are factorised on the CPU and the
results come back to their device, equal to the CPU's and to dense torch."""

from __future__ import annotations

import torch

from sparseprec.cholesky import cholesky, diag_inverse, slq_logdet, sparse_cholesky_solve, sparse_logdet
from tests.cholesky.test_cholesky_factor import problems


def _logdet_and_solve(Qd: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``log det Q + Σ Q⁻¹B`` on ``device``, its gradients w.r.t. Q's stored values and B, and diag(Q⁻¹), on the CPU."""
    Q = Qd.to_sparse_csr().to(device).requires_grad_()
    B = torch.ones(Qd.shape[0], 2, dtype=torch.float64, device=device, requires_grad=True)
    value = sparse_logdet(Q) + sparse_cholesky_solve(Q, B).sum()
    value.backward()
    factor = cholesky(Q.detach())
    assert factor.logdet().device.type == device.type and factor.L.device.type == device.type
    assert Q.grad.device.type == device.type and B.grad.device.type == device.type
    return value.detach().cpu(), Q.grad.values().cpu(), B.grad.cpu(), diag_inverse(factor).cpu()


def test_cholesky_layer_on_device_matches_cpu_and_dense(device):
    Qd = problems()["grid"]
    on_device = _logdet_and_solve(Qd, device)
    for ours, cpu in zip(on_device, _logdet_and_solve(Qd, torch.device("cpu")), strict=True):
        torch.testing.assert_close(ours, cpu)
    value, _, grad_B, variance = on_device
    inverse = torch.linalg.inv(Qd)
    B = torch.ones(Qd.shape[0], 2, dtype=torch.float64)
    torch.testing.assert_close(value, torch.logdet(Qd) + torch.linalg.solve(Qd, B).sum())
    torch.testing.assert_close(grad_B, inverse.T @ torch.ones_like(B))  # ∂/∂B Σ Q⁻¹B = Q⁻ᵀ 1
    torch.testing.assert_close(variance, inverse.diagonal())


def test_slq_runs_on_device(device):
    Qd = problems()["grid"]
    Q = Qd.to_sparse_csr().to(device)
    estimate = slq_logdet(Q, num_probes=256, generator=torch.Generator().manual_seed(0))
    assert estimate.device.type == device.type
    # 256 probes on this 144 x 144 grid: the estimate is within 2 % of the exact log-determinant
    torch.testing.assert_close(estimate.cpu(), torch.logdet(Qd), rtol=2e-2, atol=0)

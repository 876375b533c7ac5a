"""CUDA tensors are factorised on the CPU and results come back to the GPU (skipped where no GPU is present)."""

from __future__ import annotations

import pytest
import torch

from sparseprec.cholesky import cholesky, diag_inverse, slq_logdet, sparse_cholesky_solve, sparse_logdet
from tests.cholesky.test_cholesky_factor import problems

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cholesky_layer_on_cuda_matches_cpu():
    Qd = problems()["grid"]
    results = []
    for device in ["cpu", "cuda"]:
        Q = Qd.to_sparse_csr().to(device).requires_grad_()
        B = torch.ones(Qd.shape[0], 2, dtype=torch.float64, device=device, requires_grad=True)
        value = sparse_logdet(Q) + sparse_cholesky_solve(Q, B).sum()
        value.backward()
        factor = cholesky(Q.detach())
        assert factor.logdet().device.type == device and factor.L.device.type == device
        results.append((value.detach().cpu(), Q.grad.values().cpu(), B.grad.cpu(), diag_inverse(factor).cpu()))
    for cpu, cuda in zip(*results, strict=True):
        torch.testing.assert_close(cuda, cpu)


def test_slq_runs_on_cuda():
    Qd = problems()["grid"]
    Q = Qd.to_sparse_csr().cuda()
    estimate = slq_logdet(Q, num_probes=256, generator=torch.Generator().manual_seed(0))
    assert estimate.device.type == "cuda"
    torch.testing.assert_close(estimate.cpu(), torch.logdet(Qd), rtol=2e-2, atol=0)

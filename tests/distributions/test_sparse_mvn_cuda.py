"""SparseMultivariateNormal on CUDA agrees with the CPU (skipped where no GPU is present)."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from sparseprec.distributions import SparseMultivariateNormal
from tests.distributions.smvn_cases import FORM_IDS, FORMS, make_case

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize(("form", "ldl"), FORMS, ids=FORM_IDS)
def test_cuda_matches_cpu(form, ldl):
    case = make_case(form, ldl, "csr", n=30, density=0.2, loc_batch=(2,))
    x = torch.randn(3, 2, 30, dtype=torch.float64)
    results = []
    for device in ["cpu", "cuda"]:
        L = case.L.to(device).requires_grad_()
        kwargs = {f"{form}_tril": L}
        if ldl:
            kwargs["diagonal"] = case.d.to(device)
        dist = SparseMultivariateNormal(case.loc.to(device), **kwargs)
        value = dist.log_prob(x.to(device)).sum() + dist.entropy().sum()
        value.backward()
        torch.manual_seed(0)
        sample = dist.rsample((4,))
        assert sample.device.type == device
        kl = kl_divergence(Independent(Normal(x[0].to(device), 1.0), 1), dist) if form == "precision" else value
        results.append([t.detach().cpu() for t in (value, L.grad.values(), dist.variance, kl)])
    for cpu, cuda in zip(*results, strict=True):
        torch.testing.assert_close(cuda, cpu)


def test_gmrf_and_icar_on_cuda_match_cpu():
    from sparseprec.distributions import GMRF, IntrinsicGMRF
    from sparseprec.structures import adjacency_from_pairs, car, icar

    W = adjacency_from_pairs([(0, 1), (1, 2), (2, 3), (3, 0), (1, 3)])
    x = torch.randn(3, 4, dtype=torch.float64)
    results = []
    for device in ["cpu", "cuda"]:
        rho = torch.tensor(0.5, dtype=torch.float64, device=device, requires_grad=True)
        Q = car(W, rho, 2.0, dtype=torch.float64)
        value = GMRF(torch.zeros(4, dtype=torch.float64, device=device), Q).log_prob(x.to(device)).sum()
        value.backward()
        intrinsic = IntrinsicGMRF(torch.zeros(4, dtype=torch.float64, device=device), icar(W).detach().to(device))
        sample = intrinsic.sample((2,))
        assert sample.device.type == device
        results.append([t.detach().cpu() for t in (value, rho.grad, intrinsic.variance)])
    for cpu, cuda in zip(*results, strict=True):
        torch.testing.assert_close(cuda, cpu)

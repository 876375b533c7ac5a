"""The distributions on every device (``device`` fixture: CPU, and CUDA where present) agree with the CPU and with
dense torch: densities, gradients, samples' device, variances and KL divergences."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from sparseprec.distributions import GMRF, IntrinsicGMRF, SparseMultivariateNormal
from sparseprec.structures import adjacency_from_pairs, car, icar
from tests.distributions.smvn_cases import FORM_IDS, FORMS, dense_from_values, dense_reference, make_case

CPU = torch.device("cpu")


def _smvn_results(case, x: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    """log_prob + entropy (summed), its gradient w.r.t. the factor's values, the variance and a KL, on the CPU."""
    form, ldl = case.form, case.ldl
    L = case.L.to(device, copy=True).requires_grad_()
    kwargs = {f"{form}_tril": L}
    if ldl:
        kwargs["diagonal"] = case.d.to(device)
    dist = SparseMultivariateNormal(case.loc.to(device), **kwargs)
    value = dist.log_prob(x.to(device)).sum() + dist.entropy().sum()
    value.backward()
    torch.manual_seed(0)
    sample = dist.rsample((4,))
    assert sample.device.type == device.type and L.grad.device.type == device.type
    kl = kl_divergence(Independent(Normal(x[0].to(device), 1.0), 1), dist) if form == "precision" else value
    with torch.no_grad():  # a precision form's variance carries no gradient (and says so when asked for one)
        variance = dist.variance
    return [t.detach().cpu() for t in (value, L.grad.values(), variance, kl)]


@pytest.mark.parametrize(("form", "ldl"), FORMS, ids=FORM_IDS)
def test_sparse_mvn_on_device_matches_cpu_and_dense(device, form, ldl):
    case = make_case(form, ldl, "csr", n=30, density=0.2, loc_batch=(2,))
    x = torch.randn(3, 2, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    on_device = _smvn_results(case, x, device)
    for ours, cpu in zip(on_device, _smvn_results(case, x, CPU), strict=True):
        torch.testing.assert_close(ours, cpu)
    # dense torch: the value, its gradient w.r.t. the stored values, the variance and the KL
    values = case.L.values().clone().requires_grad_()
    ref = dense_reference(form, dense_from_values(case, values), case.d, case.loc)
    value = ref.log_prob(x).sum() + ref.entropy().sum()
    value.backward()
    value_, grad_, variance_, kl_ = on_device
    torch.testing.assert_close(value_, value.detach())
    torch.testing.assert_close(grad_, values.grad)
    torch.testing.assert_close(variance_, ref.variance.detach())
    if form == "precision":
        diagonal = MultivariateNormal(x[0], covariance_matrix=torch.eye(30, dtype=torch.float64))
        expected = kl_divergence(diagonal, dense_reference(form, case.L_dense, case.d, case.loc))
        torch.testing.assert_close(kl_, expected)


W = adjacency_from_pairs([(0, 1), (1, 2), (2, 3), (3, 0), (1, 3)])


def _gmrf_and_icar_results(x: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    """A CAR GMRF's summed log_prob and its gradient in rho; an ICAR's variances; all on the CPU."""
    rho = torch.tensor(0.5, dtype=torch.float64, device=device, requires_grad=True)
    Q = car(W, rho, 2.0, dtype=torch.float64)
    assert Q.device.type == device.type
    value = GMRF(torch.zeros(4, dtype=torch.float64, device=device), Q).log_prob(x.to(device)).sum()
    value.backward()
    intrinsic = IntrinsicGMRF(torch.zeros(4, dtype=torch.float64, device=device), icar(W).detach().to(device))
    sample = intrinsic.sample((2,))
    assert sample.device.type == device.type
    return [t.detach().cpu() for t in (value, rho.grad, intrinsic.variance)]


def test_gmrf_and_icar_on_device_match_cpu_and_dense(device):
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    on_device = _gmrf_and_icar_results(x, device)
    for ours, cpu in zip(on_device, _gmrf_and_icar_results(x, CPU), strict=True):
        torch.testing.assert_close(ours, cpu)
    rho = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    value = MultivariateNormal(torch.zeros(4, dtype=torch.float64), precision_matrix=car(W, rho, 2.0).to_dense())
    value = value.log_prob(x).sum()
    value.backward()
    value_, grad_, variance_ = on_device
    torch.testing.assert_close(value_, value.detach())
    torch.testing.assert_close(grad_, rho.grad)
    # one connected component with a sum-to-zero constraint: the covariance is the pseudo-inverse of Q
    torch.testing.assert_close(variance_, torch.linalg.pinv(icar(W).detach().to_dense()).diagonal())

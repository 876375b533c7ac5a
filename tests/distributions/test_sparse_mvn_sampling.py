"""Statistical tests of SparseMultivariateNormal's sampler (fixed seeds)."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from tests.distributions.smvn_cases import FORM_IDS, FORMS, make_case

NUM_SAMPLES = 20_000


@pytest.mark.parametrize(("form", "ldl"), FORMS, ids=FORM_IDS)
def test_sample_mean_and_covariance(form, ldl):
    case = make_case(form, ldl, "csr", n=6, batch=2)
    dist, ref = case.dist(), case.reference()
    torch.manual_seed(0)
    x = dist.sample((NUM_SAMPLES,))  # (N, 2, 6)
    Sigma = ref.covariance_matrix
    sd = Sigma.diagonal(dim1=-2, dim2=-1).sqrt()
    # the sample mean's standard error is sd / sqrt(N): allow 4.5 standard errors per coordinate
    assert ((x.mean(0) - case.loc).abs() <= 4.5 * sd / NUM_SAMPLES**0.5).all()
    centred = x - x.mean(0)
    covariance = torch.einsum("sbi,sbj->bij", centred, centred) / (NUM_SAMPLES - 1)
    # Var(sample cov_ij) = (Σ_ii Σ_jj + Σ_ij²) / N for Gaussian data
    se = ((sd[..., :, None] * sd[..., None, :]) ** 2 + Sigma**2).sqrt() / NUM_SAMPLES**0.5
    assert ((covariance - Sigma).abs() <= 4.5 * se).all()


@pytest.mark.parametrize(("form", "ldl"), FORMS, ids=FORM_IDS)
def test_whitened_samples_are_standard_normal(form, ldl):
    case = make_case(form, ldl, "coo", n=10, density=0.5, seed=4)
    dist, ref = case.dist(), case.reference()
    torch.manual_seed(1)
    x = dist.sample((NUM_SAMPLES,))
    z = torch.linalg.solve_triangular(ref.scale_tril, (x - case.loc).unsqueeze(-1), upper=False).squeeze(-1)
    # each whitened coordinate ~ N(0, 1), and |z|² ~ chi²(n): Kolmogorov-Smirnov tests at the 1e-3 level
    for i in range(10):
        assert stats.kstest(z[:, i].numpy(), "norm").pvalue > 1e-3
    assert stats.kstest(z.square().sum(-1).numpy(), "chi2", args=(10,)).pvalue > 1e-3
    # and the coordinates are uncorrelated
    correlation = torch.corrcoef(z.T)
    assert (correlation - torch.eye(10, dtype=torch.float64)).abs().max() < 4.5 / NUM_SAMPLES**0.5

"""Statistical tests of SparseMultivariateNormal's sampler beyond the moments of the registry (fixed seeds)."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from tests.distributions.smvn_cases import FORM_IDS, FORMS, make_case

NUM_SAMPLES = 20_000


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

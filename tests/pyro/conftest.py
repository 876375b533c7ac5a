"""Helpers for the Pyro tests."""

from __future__ import annotations

import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def _fresh_pyro():
    """Pyro's parameter store is global and guides name parameters after their class: start each test clean."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


def _set_guide_posterior(guide, mean: torch.Tensor, precision: torch.Tensor) -> None:
    """Put N(mean, precision⁻¹) into an AutoSparseMultivariateNormal: precision = (I + L)ᵀ D (I + L), L strictly lower.

    With R the reversal, R P R = C Cᵀ (Cholesky) gives P = U Uᵀ, U = R C R upper; so D = diag(U)², I + L = Uᵀ / diag(U)
    row-wise. The pattern must hold every non-zero of L (the caller's problem makes it so).
    """
    U = torch.linalg.cholesky(precision.flip(0, 1)).flip(0, 1)
    B = U.T / U.diagonal()[:, None]
    rows, cols = guide.factor_pattern
    outside = B.tril(-1).clone()
    outside[rows, cols] = 0
    assert float(outside.abs().max()) < 1e-10, "the posterior's factor has entries outside the guide's pattern"
    scale = U.diagonal().reciprocal()
    with torch.no_grad():
        guide.loc.copy_(mean)
        guide.factor_values.copy_(B[rows, cols])
        guide.scale_raw.copy_(scale + torch.log(-torch.expm1(-scale)))


@pytest.fixture
def set_guide_posterior():
    return _set_guide_posterior

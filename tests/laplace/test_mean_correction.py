"""``LaplaceApproximation.mean_correction``: the first-order skewness correction of the posterior mean, checked against
its dense formula and against the exact posterior mean by quadrature."""

from __future__ import annotations

import math

import torch

from sparseprec.distributions import GMRF
from sparseprec.laplace import Gaussian, LatentGaussianModel, Poisson, inla
from sparseprec.structures import ar1

F64 = torch.float64


def test_zero_for_a_gaussian_likelihood():
    prior = GMRF(torch.zeros(6, dtype=F64), ar1(6, 0.5))
    y = torch.linspace(-1.0, 2.0, 6, dtype=F64)
    fit = LatentGaussianModel(prior, Gaussian(torch.tensor(2.0, dtype=F64))).laplace(y)
    assert float(fit.mean_correction.abs().max()) == 0.0


def test_equals_the_dense_formula_with_an_observation_matrix():
    """½ H⁻¹ Aᵀ (f''' ⊙ diag(A H⁻¹ Aᵀ)) with dense algebra, f''' = −E e^η for Poisson."""
    g = torch.Generator().manual_seed(3)
    n, m = 6, 9
    A_dense = torch.rand(m, n, generator=g, dtype=F64) * (torch.rand(m, n, generator=g) < 0.4)
    A_dense[torch.arange(m), torch.arange(m) % n] = 1.0
    prior = GMRF(torch.zeros(n, dtype=F64), ar1(n, 0.6, tau=2.0))
    y = torch.tensor([0.0, 1, 3, 0, 2, 5, 1, 0, 2], dtype=F64)
    exposure = torch.linspace(0.5, 2.0, m, dtype=F64)
    fit = LatentGaussianModel(prior, Poisson(exposure=exposure), obs_matrix=A_dense.to_sparse_csr()).laplace(y)
    x = fit.result.x
    mu = exposure * torch.exp(A_dense @ x)
    H = prior.precision.to_dense() + A_dense.T @ torch.diag(mu) @ A_dense
    Sigma = torch.linalg.inv(H)
    d = torch.diagonal(A_dense @ Sigma @ A_dense.T)
    expected = 0.5 * Sigma @ (A_dense.T @ (-mu * d))
    torch.testing.assert_close(fit.mean_correction, expected, rtol=1e-10, atol=1e-12)


def test_moves_the_mode_towards_the_exact_posterior_mean():
    """One node, x ~ N(0, 1), y ~ Poisson(e^x) with y = 2: the exact posterior mean by quadrature; the corrected mean
    is nearer to it than the mode (the error shrinks from O(1/information) to a smaller order)."""
    prior = GMRF(torch.zeros(1, dtype=F64), torch.eye(1, dtype=F64).to_sparse_csr())
    y = torch.tensor([2.0], dtype=F64)
    fit = LatentGaussianModel(prior, Poisson()).laplace(y)
    grid = torch.linspace(-8.0, 8.0, 200_001, dtype=F64)
    log_density = -0.5 * grid**2 + 2.0 * grid - grid.exp()
    weights = torch.exp(log_density - log_density.max())
    exact = float((weights * grid).sum() / weights.sum())
    mode = float(fit.result.x[0])
    corrected = mode + float(fit.mean_correction[0])
    assert abs(corrected - exact) < 0.25 * abs(mode - exact)
    assert math.isclose(mode, 0.442854, abs_tol=1e-5)  # the root of 2 − x − eˣ = 0


def test_inla_strategies_differ_by_the_correction():
    y = torch.tensor([0.0, 1.0, 0.0, 2.0, 1.0, 0.0], dtype=F64)

    def build(theta):
        return LatentGaussianModel(GMRF(torch.zeros(6, dtype=F64), ar1(6, 0.5, tau=theta[0].exp())), Poisson())

    def log_prior(theta):  # log τ ~ N(0, 1): the data alone would send τ to infinity
        return -0.5 * theta[0] ** 2

    gaussian = inla(build, torch.zeros(1, dtype=F64), y, log_prior=log_prior, strategy="gaussian")
    corrected = inla(build, torch.zeros(1, dtype=F64), y, log_prior=log_prior)
    torch.testing.assert_close(gaussian.weights, corrected.weights)
    shifts = torch.stack([build(theta).laplace(y).mean_correction for theta in corrected.points])
    torch.testing.assert_close(corrected.latent_mean, gaussian.latent_mean + corrected.weights @ shifts)
    assert bool((corrected.latent_mean < gaussian.latent_mean).all())  # Poisson: f''' < 0 pulls the mean below the mode

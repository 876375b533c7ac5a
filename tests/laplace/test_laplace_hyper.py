r"""Hyper-parameters of latent Gaussian models: ``fit_hyperparameters`` and ``inla`` against direct computations.

References are computed here from :math:`\log\tilde p(y \mid \theta)` itself (``model.laplace(y)`` at each θ): a dense
grid of θ for the maximiser, the weights recomputed at INLA's design points, and an independent fine-grid numerical
integration over a 1-D θ (trapezoid rule on :math:`\log\tilde p(y \mid \theta) + \log p(\theta)`, mixing the Gaussian
approximations). ``mixture_quantiles`` is checked against SciPy. Float64, fixed seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import torch

from sparseprec.distributions import GMRF
from sparseprec.laplace import LatentGaussianModel, Poisson, fit_hyperparameters, inla, mixture_quantiles
from sparseprec.structures import ar1

F64 = torch.float64
N = 12
RHO = 0.7
LEVEL = math.log(3.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny problems: torch's intra-op threads only add synchronisation on a loaded machine (restored after)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _data(seed: int = 0) -> torch.Tensor:
    """Counts from an AR(1) field (τ = 2, ρ = 0.7) around log 3."""
    g = torch.Generator().manual_seed(seed)
    Q = ar1(N, RHO, tau=2.0).to_dense()
    x = torch.linalg.cholesky(torch.linalg.inv(Q)) @ torch.randn(N, generator=g, dtype=F64)
    return torch.poisson(torch.exp(LEVEL + x), generator=g)


Y = _data()


def build(theta: torch.Tensor) -> LatentGaussianModel:
    """θ = (log τ,): AR(1) prior with ρ = 0.7 around log 3, Poisson counts."""
    prior = GMRF(torch.full((N,), LEVEL, dtype=F64), ar1(N, RHO, tau=theta[0].exp()))
    return LatentGaussianModel(prior, Poisson())


def build_2d(theta: torch.Tensor) -> LatentGaussianModel:
    """θ = (log τ, logit ρ)."""
    rho = 2 * torch.sigmoid(theta[1]) - 1
    prior = GMRF(torch.full((N,), LEVEL, dtype=F64), ar1(N, rho, tau=theta[0].exp()))
    return LatentGaussianModel(prior, Poisson())


def log_prior(theta: torch.Tensor) -> torch.Tensor:
    """log τ ~ N(0.5, 1)."""
    return torch.distributions.Normal(torch.tensor(0.5, dtype=F64), 1.0).log_prob(theta[0])


def log_prior_2d(theta: torch.Tensor) -> torch.Tensor:
    normal = torch.distributions.Normal(torch.zeros(2, dtype=F64), torch.tensor([1.0, 1.5], dtype=F64))
    return normal.log_prob(theta).sum()


def profile(thetas, prior=None) -> list[dict]:
    """``log p̃(y | θ) (+ log p(θ))``, the mode and the marginal variances at each scalar θ (Newton warm-started)."""
    out, x0 = [], None
    for t in thetas:
        theta = torch.tensor([float(t)], dtype=F64)
        fit = build(theta).laplace(Y, x0=x0)
        x0 = fit.mode.detach()
        value = float(fit.log_marginal_likelihood()) + (0.0 if prior is None else float(prior(theta)))
        out.append({"theta": float(t), "value": value, "mode": x0, "variance": fit.variance})
    return out


def grid_argmax(centre: float, half_width: float, step: float, prior=None) -> tuple[float, float]:
    thetas = np.arange(centre - half_width, centre + half_width + step / 2, step)
    rows = profile(thetas, prior)
    best = max(rows, key=lambda r: r["value"])
    return best["theta"], best["value"]


# ------------------------------------------------------------------------------ a. type-II ML and MAP over log τ


@pytest.mark.parametrize("prior", [None, log_prior], ids=["ml", "map"])
def test_fit_hyperparameters_maximises_on_a_dense_grid(prior):
    fit = fit_hyperparameters(build, torch.zeros(1, dtype=F64), Y, log_prior=prior)
    assert fit.converged
    theta = float(fit.theta[0])
    assert abs(float(fit.gradient[0])) < 1e-5
    coarse, _ = grid_argmax(0.5, 4.5, 0.1, prior)
    assert abs(theta - coarse) <= 0.1 + 1e-12, (theta, coarse)
    fine, best = grid_argmax(coarse, 0.1, 0.002, prior)
    assert abs(theta - fine) <= 0.002 + 1e-12, (theta, fine)
    assert fit.value >= best - 1e-9
    # the gradient there, recomputed directly by autograd
    t = fit.theta.clone().requires_grad_(True)
    value = build(t).laplace(Y).log_marginal_likelihood() + (0.0 if prior is None else prior(t))
    (gradient,) = torch.autograd.grad(value, t)
    assert abs(float(gradient[0])) < 1e-5
    torch.testing.assert_close(float(value.detach()), fit.value, rtol=0, atol=1e-9)


def test_map_differs_from_ml_by_the_prior():
    ml = fit_hyperparameters(build, torch.zeros(1, dtype=F64), Y)
    map_ = fit_hyperparameters(build, torch.zeros(1, dtype=F64), Y, log_prior=log_prior)
    # at the MAP, d log p̃ / dθ = −d log p(θ)/dθ = (θ − 0.5)
    t = map_.theta.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(build(t).laplace(Y).log_marginal_likelihood(), t)
    torch.testing.assert_close(float(gradient[0]), float(map_.theta[0]) - 0.5, rtol=0, atol=1e-5)
    # the prior pulls θ towards its mean 0.5
    assert abs(float(map_.theta[0]) - 0.5) < abs(float(ml.theta[0]) - 0.5)


# ---------------------------------------------------------------------------------------------- b. INLA, 1-D θ


@pytest.fixture(scope="module")
def inla_1d():
    """INLA with latent marginals centred at the modes (the references below integrate those Gaussians)."""
    return inla(build, torch.zeros(1, dtype=F64), Y, log_prior=log_prior, strategy="gaussian")


@pytest.fixture(scope="module")
def fine_grid(inla_1d) -> dict:
    """Trapezoid integration of p(θ | y) ∝ p̃(y | θ) p(θ) over 400 points spanning ±7 sd of θ, and the mixture of the
    Gaussian approximations with those weights."""
    centre = float(inla_1d.theta_mode[0])
    sd = math.sqrt(float(inla_1d.theta_covariance[0, 0]))
    thetas = np.linspace(centre - 7 * sd, centre + 7 * sd, 400)
    rows = profile(thetas, log_prior)
    log_density = np.array([r["value"] for r in rows])
    density = np.exp(log_density - log_density.max())
    trapezoid = np.full(thetas.size, thetas[1] - thetas[0])
    trapezoid[[0, -1]] /= 2
    w = density * trapezoid
    w /= w.sum()
    weights = torch.from_numpy(w)
    modes = torch.stack([r["mode"] for r in rows])
    variances = torch.stack([r["variance"] for r in rows])
    mean = weights @ modes
    sd_x = (weights @ (variances + modes.square()) - mean.square()).sqrt()
    theta_mean = float(np.sum(w * thetas))
    theta_sd = math.sqrt(float(np.sum(w * (thetas - theta_mean) ** 2)))
    # the median of the piecewise-linear density
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(thetas))])
    cdf /= cdf[-1]
    median = float(np.interp(0.5, cdf, thetas))
    return {"mean": mean, "sd": sd_x, "theta_mean": theta_mean, "theta_sd": theta_sd, "theta_median": median}


def test_inla_weights_are_the_normalised_laplace_posterior(inla_1d):
    result = inla_1d
    assert result.points.shape[1] == 1 and result.points.shape[0] >= 5
    values, modes = [], []
    for theta in result.points:
        fit = build(theta).laplace(Y)
        values.append(float(fit.log_marginal_likelihood()) + float(log_prior(theta)))
        modes.append(fit.mode.detach())
    values = torch.tensor(values, dtype=F64)
    weights = torch.exp(values - values.max())
    weights = weights / weights.sum()
    torch.testing.assert_close(result.weights, weights, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(result.log_density - result.log_density.max(), values - values.max(), rtol=0, atol=1e-8)
    torch.testing.assert_close(result.latent_mean, weights @ torch.stack(modes), rtol=0, atol=1e-8)
    torch.testing.assert_close(float(result.weights.sum()), 1.0, rtol=0, atol=1e-12)
    # the design is equispaced in the standardised coordinate with step dz around the mode
    z = (result.points[:, 0] - result.theta_mode[0]) / float(result.theta_covariance[0, 0]) ** 0.5
    torch.testing.assert_close(z, result.z[:, 0], rtol=0, atol=1e-10)
    steps = torch.diff(torch.sort(result.z[:, 0]).values)
    torch.testing.assert_close(steps, torch.full_like(steps, 0.75), rtol=0, atol=1e-12)


def test_inla_latent_marginals_match_fine_grid_integration(inla_1d, fine_grid):
    result, reference = inla_1d, fine_grid
    sd = reference["sd"]
    assert bool(((result.latent_mean - reference["mean"]).abs() < 0.05 * sd).all()), (
        result.latent_mean - reference["mean"]
    ) / sd
    assert bool(((result.latent_sd - sd).abs() < 0.05 * sd).all()), (result.latent_sd - sd) / sd
    # the linear predictor is the latent field here (A = I, no offset)
    torch.testing.assert_close(result.predictor_mean, result.latent_mean, rtol=0, atol=1e-12)


def test_inla_theta_marginal_matches_fine_grid_integration(inla_1d, fine_grid):
    result, reference = inla_1d, fine_grid
    theta_sd = reference["theta_sd"]
    assert abs(float(result.theta_mean[0]) - reference["theta_mean"]) < 0.05 * theta_sd
    assert abs(float(result.theta_sd[0]) - theta_sd) < 0.05 * theta_sd
    median = float(result.theta_quantiles(0.5)[0])
    assert abs(median - reference["theta_median"]) < 0.1 * theta_sd, (median, reference["theta_median"])


# ---------------------------------------------------------------------------------------------- c. INLA, 2-D θ


def test_inla_two_hyperparameters():
    diff_logdens = 6.0
    result = inla(build_2d, torch.zeros(2, dtype=F64), Y, log_prior=log_prior_2d, diff_logdens=diff_logdens)
    K = result.points.shape[0]
    assert result.points.shape == (K, 2) and K >= 9
    assert len(set(result.z[:, 0].tolist())) >= 3 and len(set(result.z[:, 1].tolist())) >= 3  # a grid in both axes
    torch.testing.assert_close(float(result.weights.sum()), 1.0, rtol=0, atol=1e-12)
    assert bool((result.weights > 0).all())
    assert float((result.log_density.max() - result.log_density).max()) <= diff_logdens + 1e-6
    torch.testing.assert_close(result.weights, torch.softmax(result.log_density, 0), rtol=1e-10, atol=1e-14)
    # the mode is the best point up to the optimiser's tolerance
    assert float(result.log_density.max()) - float(result.log_density[(result.z == 0).all(1)][0]) < 1e-6
    q = torch.tensor([0.025, 0.25, 0.5, 0.75, 0.975], dtype=F64)
    for name, quantiles in [
        ("latent", result.latent_quantiles(q)),
        ("predictor", result.predictor_quantiles(q)),
        ("theta", result.theta_quantiles(q)),
    ]:
        assert bool((torch.diff(quantiles, dim=0) > 0).all()), name
    assert bool((result.theta_sd > 0).all()) and bool((result.latent_sd > 0).all())
    eigenvalues = torch.linalg.eigvalsh(result.theta_covariance)
    assert bool((eigenvalues > 0).all())


# -------------------------------------------------------------------------------------------- d. mixture quantiles


def test_mixture_quantiles_one_component_is_the_normal_quantile():
    means = torch.tensor([[0.3, -2.0, 10.0]], dtype=F64)
    sds = torch.tensor([[1.0, 0.1, 4.0]], dtype=F64)
    q = torch.tensor([0.001, 0.025, 0.5, 0.8, 0.999], dtype=F64)
    ours = mixture_quantiles(torch.ones(1, dtype=F64), means, sds, q)
    expected = scipy.stats.norm.ppf(q.numpy()[:, None], loc=means.numpy(), scale=sds.numpy())
    torch.testing.assert_close(ours, torch.from_numpy(expected), rtol=0, atol=1e-10)
    single = mixture_quantiles(torch.ones(1, dtype=F64), means, sds, 0.8)
    assert single.shape == (3,)
    torch.testing.assert_close(single, ours[3], rtol=0, atol=1e-12)


def test_mixture_quantiles_invert_the_mixture_cdf():
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=F64)
    means = torch.tensor([[-1.0, 0.0], [0.5, 3.0], [2.0, 3.5]], dtype=F64)
    sds = torch.tensor([[0.3, 1.0], [1.0, 0.2], [0.5, 2.0]], dtype=F64)
    qs = [0.01, 0.2, 0.5, 0.9, 0.995]
    ours = mixture_quantiles(weights, means, sds, torch.tensor(qs, dtype=F64))
    w, m, s = weights.numpy(), means.numpy(), sds.numpy()
    for j in range(2):

        def cdf(x, j=j):
            return float(np.sum(w * scipy.stats.norm.cdf(x, loc=m[:, j], scale=s[:, j])))

        for i, q in enumerate(qs):
            expected = scipy.optimize.brentq(lambda x, q=q: cdf(x) - q, -50, 50, xtol=1e-14, rtol=1e-15)
            assert abs(float(ours[i, j]) - expected) < 1e-9, (i, j, float(ours[i, j]), expected)


def test_mixture_quantiles_refuses_q_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"\bq\b.*\(0, 1\)"):
        mixture_quantiles(torch.ones(1, dtype=F64), torch.zeros(1, 1, dtype=F64), torch.ones(1, 1, dtype=F64), 1.0)

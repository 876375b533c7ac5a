r"""``sparseprec.pyro.LaplaceMarginal``: the Laplace marginal likelihood :math:`\log\tilde p(y \mid \theta)` as a Pyro
distribution over the observations.

Specification checked here:

- ``LaplaceMarginal(model).log_prob(y)`` is ``model.laplace(y).log_marginal_likelihood()``, value and gradient w.r.t.
  the hyper-parameters, on a registry of latent Gaussian models (proper and intrinsic priors, stacked intercepts,
  Poisson, Bernoulli and negative binomial observations, a likelihood parameter among the hyper-parameters).
- For a Gaussian likelihood it is the exact marginal :meth:`sparseprec.GMRF.log_marginal_likelihood` (1e-10), with
  the same gradient.
- In a Pyro model (``pyro.sample("y", LaplaceMarginal(build(θ)), obs=y)``) SVI with an ``AutoNormal`` guide lowers
  the loss and NUTS returns finite draws; a shared ``WarmStart`` carries the last mode from call to call.
- The distribution's shapes: ``batch_shape ()``, ``event_shape (m,)``, ``sample`` shapes, ``expand``; its errors.
- ``posterior_draws`` shapes.

Float64, fixed seeds; all problems have at most 10 latent entries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal, init_to_value

from sparseprec.distributions import GMRF, ICAR
from sparseprec.laplace import (
    Bernoulli,
    Gaussian,
    LatentGaussianModel,
    NegativeBinomial,
    Poisson,
    WarmStart,
    posterior_draws,
)
from sparseprec.pyro import LaplaceMarginal
from sparseprec.structures import ar1, grid_adjacency, grid_laplacian

F64 = torch.float64
N = 8
LEVEL = math.log(3.0)


def _eye_csr(n: int, scale: float = 1.0) -> torch.Tensor:
    return (scale * torch.eye(n, dtype=F64)).to_sparse_csr()


def _intercept_matrix(n: int) -> torch.Tensor:
    """``A = [1, I]`` ``(n, n + 1)``: η_i = β₀ + x_i."""
    return torch.cat([torch.ones(n, 1, dtype=F64), torch.eye(n, dtype=F64)], dim=1).to_sparse_csr()


# ---- the registry of models: build(theta) -> LatentGaussianModel, observations, a point theta -----------------------
def _poisson_ar1(theta: torch.Tensor) -> LatentGaussianModel:
    prior = GMRF(torch.full((N,), LEVEL, dtype=F64), ar1(N, 0.6, tau=theta[0].exp()))
    return LatentGaussianModel(prior, Poisson())


def _bernoulli_lattice(theta: torch.Tensor) -> LatentGaussianModel:
    precision = grid_laplacian((3, 3), dtype=F64) + _eye_csr(9, 0.5)
    return LatentGaussianModel(GMRF(torch.zeros(9, dtype=F64), precision * theta[0].exp()), Bernoulli())


def _negative_binomial_intercept(theta: torch.Tensor) -> LatentGaussianModel:
    prior = [
        GMRF(torch.zeros(1, dtype=F64), _eye_csr(1, 0.01)),
        GMRF(torch.zeros(N, dtype=F64), ar1(N, 0.6, tau=theta[0].exp())),
    ]
    likelihood = NegativeBinomial(dispersion=theta[1].exp())
    return LatentGaussianModel(prior, likelihood, obs_matrix=_intercept_matrix(N))


def _poisson_icar_intercept(theta: torch.Tensor) -> LatentGaussianModel:
    W = grid_adjacency((3, 3)).to(F64)
    prior = [GMRF(torch.full((1,), LEVEL, dtype=F64), _eye_csr(1, 0.01)), ICAR(W, theta[0].exp())]
    return LatentGaussianModel(prior, Poisson(), obs_matrix=_intercept_matrix(9))


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[torch.Tensor], LatentGaussianModel]
    y: tuple[float, ...]
    theta: tuple[float, ...]


CASES = [
    Case("poisson_ar1", _poisson_ar1, (1, 0, 3, 2, 4, 1, 2, 5), (0.3,)),
    Case("bernoulli_lattice", _bernoulli_lattice, (1, 0, 1, 1, 0, 0, 1, 1, 1), (-0.5,)),
    Case("negative_binomial_intercept", _negative_binomial_intercept, (0, 2, 7, 1, 3, 12, 4, 0), (0.2, 1.0)),
    Case("poisson_icar_intercept", _poisson_icar_intercept, (2, 5, 3, 0, 4, 6, 1, 3, 8), (0.5,)),
]


def _y(case: Case) -> torch.Tensor:
    return torch.tensor(case.y, dtype=F64)


def _theta(case: Case) -> torch.Tensor:
    return torch.tensor(case.theta, dtype=F64, requires_grad=True)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_log_prob_is_the_laplace_marginal_likelihood_with_its_gradient(case):
    theta = _theta(case)
    value = LaplaceMarginal(case.build(theta)).log_prob(_y(case))
    (gradient,) = torch.autograd.grad(value, theta)

    reference_theta = _theta(case)
    reference = case.build(reference_theta).laplace(_y(case)).log_marginal_likelihood()
    (reference_gradient,) = torch.autograd.grad(reference, reference_theta)

    assert value.shape == ()
    torch.testing.assert_close(value, reference, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gradient, reference_gradient, rtol=1e-8, atol=1e-10)


def test_gaussian_likelihood_gives_the_exact_marginal():
    """y = A x + e, x ~ GMRF(μ, Q(τ)), e ~ N(0, 1/w): the Laplace approximation is exact."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.tensor([0, 2, 3, 5, 7])
    A = torch.eye(N, dtype=F64)[rows].to_sparse_csr()
    y = torch.randn(rows.numel(), dtype=F64, generator=generator)
    mu = torch.full((N,), 0.2, dtype=F64)

    def gradients(log_marginal: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        log_tau = torch.tensor(0.4, dtype=F64, requires_grad=True)
        log_w = torch.tensor(1.2, dtype=F64, requires_grad=True)
        value = log_marginal(log_tau.exp(), log_w.exp())
        return value, torch.autograd.grad(value, (log_tau, log_w))

    def laplace(tau, w):
        model = LatentGaussianModel(GMRF(mu, ar1(N, 0.6, tau=tau)), Gaussian(noise_precision=w), obs_matrix=A)
        return LaplaceMarginal(model).log_prob(y)

    def exact(tau, w):
        return GMRF(mu, ar1(N, 0.6, tau=tau)).log_marginal_likelihood(A, y, w)

    value, gradient = gradients(laplace)
    reference, reference_gradient = gradients(exact)
    torch.testing.assert_close(value, reference, rtol=0, atol=1e-10)
    for g, r in zip(gradient, reference_gradient, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-10)


# ---- in Pyro: SVI, NUTS, warm starts --------------------------------------------------------------------------------
POISSON = CASES[0]


def _pyro_model(warm: WarmStart) -> Callable[[], None]:
    y = _y(POISSON)

    def model() -> None:
        log_tau = pyro.sample("log_tau", dist.Normal(torch.tensor(0.0, dtype=F64), 1.0))
        pyro.sample("y", LaplaceMarginal(POISSON.build(log_tau.unsqueeze(0)), warm_start=warm), obs=y)

    return model


def test_svi_over_the_hyper_parameter_lowers_the_loss():
    warm = WarmStart()
    model = _pyro_model(warm)
    start = {"log_tau": torch.tensor(2.5, dtype=F64)}  # far from the posterior (mode near 0)
    guide = AutoNormal(model, init_loc_fn=init_to_value(values=start))
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.1}), Trace_ELBO())
    losses = [svi.step() for _ in range(40)]
    assert all(math.isfinite(loss) for loss in losses)
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.5
    assert warm.x is not None and warm.x.shape == (N,)


def test_nuts_over_the_hyper_parameter_gives_finite_draws():
    warm = WarmStart()
    mcmc = MCMC(NUTS(_pyro_model(warm)), num_samples=20, warmup_steps=20, disable_progbar=True)
    mcmc.run()
    draws = mcmc.get_samples()["log_tau"]
    assert draws.shape == (20,)
    assert bool(torch.isfinite(draws).all())
    assert float(draws.std()) > 0  # it moved
    assert warm.x is not None and bool(torch.isfinite(warm.x).all())


def test_warm_start_is_shared_across_calls(monkeypatch):
    y = _y(POISSON)
    warm = WarmStart()
    first = LaplaceMarginal(POISSON.build(torch.tensor([0.0], dtype=F64)), warm_start=warm)
    assert first.warm_start is warm and warm.x is None
    first.log_prob(y)
    assert warm.x is not None and warm.x.shape == (N,)
    stored = warm.x.clone()

    model = POISSON.build(torch.tensor([0.3], dtype=F64))
    starts = []
    original = model.laplace

    def spy(y, *, x0=None, newton=None):
        starts.append(x0)
        return original(y, x0=x0, newton=newton)

    monkeypatch.setattr(model, "laplace", spy)
    fit = LaplaceMarginal(model, warm_start=warm).laplace(y)
    assert len(starts) == 1 and torch.equal(starts[0], stored)  # Newton started from the last mode
    assert torch.equal(warm.x, fit.result.x)  # and the new mode is stored

    own = LaplaceMarginal(POISSON.build(torch.tensor([0.0], dtype=F64)))
    assert isinstance(own.warm_start, WarmStart) and own.warm_start is not warm
    own.log_prob(y)
    assert own.warm_start.x is not None


# ---- shapes and errors ----------------------------------------------------------------------------------------------
def _distribution() -> LaplaceMarginal:
    return LaplaceMarginal(POISSON.build(torch.tensor([0.0], dtype=F64)))


def test_shapes():
    d = _distribution()
    assert d.batch_shape == () and d.event_shape == (N,)
    torch.manual_seed(0)
    for sample_shape in [(), (3,)]:
        draws = d.sample(sample_shape)
        assert draws.shape == torch.Size(sample_shape) + (N,)
        assert bool((draws >= 0).all()) and torch.equal(draws, draws.round())  # Poisson counts


def test_expand():
    d = _distribution()
    assert d.expand(()) is d
    assert d.expand(torch.Size()) is d
    with pytest.raises(ValueError, match="LaplaceMarginal"):
        d.expand((2,))


@pytest.mark.parametrize(
    "value",
    [torch.zeros(N + 1, dtype=F64), torch.zeros(2, N, dtype=F64), torch.tensor(1.0, dtype=F64), [0.0] * N],
    ids=["too_long", "batched", "scalar", "list"],
)
def test_wrong_value_shape_raises(value):
    with pytest.raises(ValueError, match=rf"value must be one observation vector of shape \({N},\)"):
        _distribution().log_prob(value)


def test_type_errors():
    with pytest.raises(TypeError, match="model must be a sparseprec.laplace.LatentGaussianModel, got GMRF"):
        LaplaceMarginal(GMRF(torch.zeros(N, dtype=F64), ar1(N, 0.6)))
    with pytest.raises(TypeError, match="warm_start must be a sparseprec.laplace.WarmStart or None, got Tensor"):
        LaplaceMarginal(POISSON.build(torch.tensor([0.0], dtype=F64)), warm_start=torch.zeros(N))


def test_posterior_draws_shapes():
    theta_draws = torch.tensor([[-0.5], [0.0], [0.5], [1.0]], dtype=F64)
    draws = posterior_draws(POISSON.build, theta_draws, _y(POISSON))
    assert draws.shape == (4, N)
    assert bool(torch.isfinite(draws).all()) and not draws.requires_grad
    case = CASES[2]  # two hyper-parameters, a stacked latent vector of N + 1
    draws = posterior_draws(case.build, torch.tensor([case.theta] * 3, dtype=F64), _y(case))
    assert draws.shape == (3, N + 1)
    with pytest.raises(ValueError, match="theta_draws must be a 2-D tensor"):
        posterior_draws(POISSON.build, torch.zeros(3, dtype=F64), _y(POISSON))

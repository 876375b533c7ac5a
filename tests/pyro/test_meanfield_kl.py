"""``TraceMeanField_ELBO`` uses the registered KL divergences when the guide's site is a hand-written
``Normal(m, s).to_event(1)`` against a ``GMRF``/``CAR`` prior or a precision-form ``SparseMultivariateNormal``: the KL
term is then exact, so the loss of a prior-only model is the KL itself (computed here independently with dense torch
``MultivariateNormal``s) and does not change from call to call; with a likelihood, the loss is that exact KL minus the
log-likelihood at the guide's one draw. Pyro's ``AutoNormal`` is not such a guide (its sites at the model's names are
``Delta``s), so Pyro falls back to a Monte-Carlo estimate: docs/pyro.md says so, and the last test checks it.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.autoguide import AutoNormal
from torch.distributions import MultivariateNormal, kl_divergence

import sparseprec.pyro as sp
from sparseprec.structures import adjacency_from_pairs, ar1

F64 = torch.float64
N = 6
EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (1, 3), (3, 4), (4, 5)]


def _gmrf():
    Q = ar1(N, 0.6, 1.5).detach()
    return sp.GMRF(torch.linspace(-1.0, 1.0, N, dtype=F64), Q), Q.to_dense()


def _car():
    prior = sp.CAR(adjacency_from_pairs(EDGES), 0.7, 2.0, loc=torch.full((N,), 0.3, dtype=F64))
    return prior, prior.precision_matrix.detach().to_dense()


def _precision_form():
    Q = ar1(N, -0.4, 0.8).detach().to_dense()
    L = torch.linalg.cholesky(Q).to_sparse_csr()
    return sp.SparseMultivariateNormal(torch.arange(N, dtype=F64) / N, precision_tril=L), Q


PRIORS = {"GMRF": _gmrf, "CAR": _car, "SparseMultivariateNormal(precision_tril=...)": _precision_form}


@pytest.fixture(params=list(PRIORS))
def prior(request):
    """(prior as a Pyro distribution, its dense precision)."""
    return PRIORS[request.param]()


def _guide_parameters():
    g = torch.Generator().manual_seed(3)
    return torch.randn(N, generator=g, dtype=F64), 0.4 + torch.rand(N, generator=g, dtype=F64)


def _dense_kl(m, s, prior, Q) -> float:
    """KL(N(m, diag s²) ‖ N(μ, Q⁻¹)) by dense torch, independent of sparseprec's registered KL."""
    q = MultivariateNormal(m, covariance_matrix=torch.diag(s**2))
    p = MultivariateNormal(prior.loc.detach(), precision_matrix=Q)
    return float(kl_divergence(q, p))


def test_prior_only_loss_is_the_exact_kl_and_deterministic(prior):
    p, Q = prior
    m, s = _guide_parameters()

    def model():
        pyro.sample("x", p)

    def guide():
        pyro.sample("x", dist.Normal(m, s).to_event(1))

    elbo = TraceMeanField_ELBO()
    pyro.set_rng_seed(1)
    first = elbo.loss(model, guide)
    pyro.set_rng_seed(2)  # another draw from the guide: an exact KL does not see it
    second = elbo.loss(model, guide)
    assert first == second
    assert first == pytest.approx(_dense_kl(m, s, p, Q), rel=1e-10, abs=1e-12)


def test_with_a_likelihood_the_loss_is_the_exact_kl_minus_the_log_likelihood_at_the_draw(prior):
    p, Q = prior
    m, s = _guide_parameters()
    y = torch.linspace(-0.5, 1.5, N, dtype=F64)
    noise = 0.7

    def model():
        x = pyro.sample("x", p)
        pyro.sample("y", dist.Normal(x, noise).to_event(1), obs=y)

    def guide():
        pyro.sample("x", dist.Normal(m, s).to_event(1))

    pyro.set_rng_seed(5)
    x = pyro.poutine.trace(guide).get_trace().nodes["x"]["value"]  # the draw the loss below will use
    pyro.set_rng_seed(5)
    loss = TraceMeanField_ELBO().loss(model, guide)
    expected = _dense_kl(m, s, p, Q) - float(torch.distributions.Normal(x, noise).log_prob(y).sum())
    assert loss == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_autonormal_gets_a_monte_carlo_estimate_not_the_registered_kl():
    p, _ = _gmrf()

    def model():
        pyro.sample("x", p)

    guide = AutoNormal(model)
    elbo = TraceMeanField_ELBO()
    losses = []
    for seed in (1, 2):
        pyro.set_rng_seed(seed)
        losses.append(elbo.loss(model, guide))
    assert losses[0] != losses[1]  # the KL term is estimated from the guide's draw

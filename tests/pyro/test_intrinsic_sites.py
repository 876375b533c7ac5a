"""Intrinsic (ICAR) sites under Pyro's inference: the guides and NUTS work on the constraint subspace."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from torch.distributions import biject_to

import sparseprec.pyro as sp
from sparseprec.structures import adjacency_from_pairs

F64 = torch.float64
PAIRS = [(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 5), (5, 6), (6, 3), (6, 7)]
N, NOISE, TAU = 8, 0.7, 2.0


def _problem():
    W = adjacency_from_pairs(PAIRS, n=N)
    y = torch.randn(N, generator=torch.Generator().manual_seed(3), dtype=F64)

    def model():
        x = pyro.sample("x", sp.ICAR(W, tau=TAU, validate_args=True))
        pyro.sample("y", dist.Normal(x, NOISE).to_event(1), obs=y)

    # exact posterior on {1ᵀx = 0} from an orthonormal basis B of the subspace (independent of any pinning)
    Q = sp.ICAR(W, tau=TAU).precision.to_dense()
    B = torch.linalg.svd(torch.eye(N, dtype=F64) - 1.0 / N)[0][:, : N - 1]
    P = B.T @ Q @ B + B.T @ B / NOISE**2
    cov = B @ torch.linalg.inv(P) @ B.T
    mean = cov @ y / NOISE**2
    evidence = dist.MultivariateNormal(
        torch.zeros(N, dtype=F64), NOISE**2 * torch.eye(N, dtype=F64) + torch.linalg.pinv(Q)
    )
    return model, y, mean, cov, evidence.log_prob(y)


def test_the_sparse_guide_pattern_is_the_pinned_precision_and_samples_satisfy_the_constraint():
    model, *_ = _problem()
    guide = sp.AutoSparseMultivariateNormal(model)
    sample = guide()["x"].detach()
    assert guide.latent_dim == N - 1
    assert abs(float(sample.sum())) < 1e-10
    lower_edges_without_pinned = sum(
        1 for a, b in PAIRS if int(guide.prototype_trace.nodes["x"]["fn"]._pinned) not in (a, b)
    )
    assert guide.factor_values.numel() == lower_edges_without_pinned


def test_the_exact_posterior_in_the_guide_gives_the_evidence(set_guide_posterior):
    """Guide = exact posterior of the free coordinates (dense pattern): every ELBO particle equals log p(y)."""
    model, y, mean, cov, log_evidence = _problem()
    rows, cols = torch.tril_indices(N - 1, N - 1, -1)
    guide = sp.AutoSparseMultivariateNormal(model, pattern=torch.stack([rows, cols]))
    guide()
    transform = biject_to(guide.prototype_trace.nodes["x"]["fn"].support)
    A = torch.autograd.functional.jacobian(transform, torch.zeros(N - 1, dtype=F64))  # x = A z (e = 0)
    Ainv = torch.linalg.pinv(A)
    z_precision = torch.linalg.inv(Ainv @ cov @ Ainv.T)
    set_guide_posterior(guide, Ainv @ mean, z_precision)
    with torch.no_grad():
        torch.testing.assert_close(guide.median()["x"], mean)
    loss = Trace_ELBO(num_particles=8, vectorize_particles=True).loss(model, guide)
    assert loss == pytest.approx(-float(log_evidence), rel=1e-9)


@pytest.mark.parametrize("guide_class", [sp.AutoSparseMultivariateNormal, AutoNormal])
def test_svi_recovers_the_posterior_mean_on_the_subspace(guide_class):
    model, _, mean, cov, _ = _problem()
    guide = guide_class(model)
    svi = SVI(model, guide, pyro.optim.ClippedAdam({"lr": 0.03, "lrd": 0.998}), Trace_ELBO(num_particles=16,
              vectorize_particles=True))  # fmt: skip
    for _ in range(800):
        svi.step()
    median = guide.median()["x"]
    assert abs(float(median.sum())) < 1e-10
    torch.testing.assert_close(median, mean, atol=0.06, rtol=0)


def test_nuts_samples_the_constrained_posterior():
    model, _, mean, cov, _ = _problem()
    mcmc = MCMC(NUTS(model), num_samples=600, warmup_steps=200, disable_progbar=True)
    mcmc.run()
    x = mcmc.get_samples()["x"]
    assert float(x.sum(-1).abs().max()) < 1e-10
    standard_error = (cov.diagonal() / 600).sqrt()  # i.i.d. rate; NUTS draws on this Gaussian are near-independent
    assert bool(((x.mean(0) - mean).abs() < 5 * standard_error).all())
    torch.testing.assert_close(x.var(0), cov.diagonal(), rtol=0.25, atol=0)

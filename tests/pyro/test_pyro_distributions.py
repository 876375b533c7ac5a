"""sparseprec's Pyro distributions under Pyro's conventions: plates, masks, SVI, NUTS, Predictive, pickling."""

from __future__ import annotations

import pickle

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoNormal
from scipy import stats

import sparseprec.pyro as sp
from sparseprec.structures import adjacency_from_pairs, ar1, car, icar

F64 = torch.float64
EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (1, 3), (3, 4), (4, 5)]


def _distributions():
    W = adjacency_from_pairs(EDGES)
    Q = car(W, 0.5, 2.0).detach()
    L = torch.linalg.cholesky(Q.to_dense()).to_sparse_csr()
    loc = torch.linspace(-1, 1, 6, dtype=F64)
    return {
        "SparseMultivariateNormal": (sp.SparseMultivariateNormal(loc, precision_tril=L), Q.to_dense()),
        "GMRF": (sp.GMRF(loc, Q), Q.to_dense()),
        "CAR": (sp.CAR(W, 0.5, 2.0, loc=loc), Q.to_dense()),
        "ICAR": (sp.ICAR(W, 2.0), None),
        "IntrinsicGMRF": (sp.IntrinsicGMRF(loc, icar(W, 2.0).detach()), None),
    }


NAMES = list(_distributions())


@pytest.mark.parametrize("name", NAMES)
def test_plates_expand_without_a_wrapper(name):
    d, _ = _distributions()[name]

    def model():
        with pyro.plate("outer", 2, dim=-2), pyro.plate("inner", 3, dim=-1):
            return pyro.sample("x", d)

    trace = pyro.poutine.trace(model).get_trace()
    site = trace.nodes["x"]
    assert type(site["fn"]) is type(d)  # no ExpandedDistribution
    assert site["fn"].batch_shape == (2, 3) and site["value"].shape == (2, 3, 6)
    trace.compute_log_prob()
    assert site["log_prob"].shape == (2, 3)


@pytest.mark.parametrize("name", ["SparseMultivariateNormal", "GMRF", "CAR"])
def test_log_prob_matches_scipy(name):
    d, Q = _distributions()[name]
    x = d.sample((4,))
    reference = stats.multivariate_normal(d.mean.numpy(), torch.linalg.inv(Q).numpy()).logpdf(x.numpy())
    torch.testing.assert_close(d.log_prob(x), torch.from_numpy(reference))


@pytest.mark.parametrize("name", NAMES)
def test_mask_to_event_shape_inference_and_pickle(name):
    d, _ = _distributions()[name]
    x = d.sample()
    assert d.mask(False).log_prob(x) == 0
    expanded = d.expand((3,))
    assert expanded.to_event(1).event_shape == (3, 6) and expanded.to_event(1).log_prob(expanded.sample()).shape == ()
    again = pickle.loads(pickle.dumps(d))
    torch.testing.assert_close(again.log_prob(x), d.log_prob(x))
    arg_shapes = {
        "SparseMultivariateNormal": {"loc": (6,), "precision_tril": (6, 6)},
        "GMRF": {"loc": (6,), "precision": (6, 6)},
        "CAR": {"adjacency": (6, 6), "rho": (), "tau": ()},
        "ICAR": {"adjacency": (6, 6)},
        "IntrinsicGMRF": {"loc": (2, 6), "precision": (6, 6)},
    }[name]
    batch, event = type(d).infer_shapes(**arg_shapes)
    assert event == (6,) and batch == ((2,) if name == "IntrinsicGMRF" else ())


def _conjugate_model(Q, y, noise):
    def model():
        x = pyro.sample("x", sp.GMRF(torch.zeros(Q.shape[0], dtype=F64), Q))
        with pyro.plate("obs", y.shape[0]):
            pyro.sample("y", dist.Normal(x, noise), obs=y)

    return model


def test_trace_elbo_with_the_exact_posterior_as_guide_is_the_log_marginal_likelihood():
    Q = ar1(8, 0.8, 1.0).detach()
    y = torch.randn(8, dtype=F64)
    noise = 0.5
    prior = sp.GMRF(torch.zeros(8, dtype=F64), Q)
    A = torch.eye(8, dtype=F64).to_sparse_csr()
    posterior = prior.condition(A, y, 1 / noise**2)
    L = torch.linalg.cholesky(posterior.precision_matrix.detach().to_dense()).to_sparse_csr()

    def guide():
        pyro.sample("x", sp.SparseMultivariateNormal(posterior.loc.detach(), precision_tril=L))

    loss = Trace_ELBO(num_particles=5).loss(_conjugate_model(Q, y, noise), guide)
    expected = -prior.log_marginal_likelihood(A, y, 1 / noise**2)
    assert loss == pytest.approx(float(expected), rel=1e-10)


def test_svi_recovers_the_exact_posterior():
    Q = ar1(6, 0.7, 1.0).detach()
    y = torch.randn(6, dtype=F64)
    noise = 0.7
    model = _conjugate_model(Q, y, noise)
    guide = AutoNormal(model, init_scale=0.5)
    svi = SVI(model, guide, pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.996}), TraceMeanField_ELBO(num_particles=8))
    for _ in range(600):
        svi.step()
    posterior = sp.GMRF(torch.zeros(6, dtype=F64), Q).condition(torch.eye(6, dtype=F64).to_sparse_csr(), y, noise**-2)
    mean = guide.median()["x"]
    torch.testing.assert_close(mean, posterior.loc, atol=0.05, rtol=0)
    # a mean-field guide's variances are the reciprocal diagonal of the posterior precision (not the marginals)
    scale = guide.quantiles([0.8413])["x"][0] - mean
    expected = posterior.precision_matrix.detach().to_dense().diagonal().rsqrt()
    torch.testing.assert_close(scale, expected, rtol=0.1, atol=0)


def test_trace_mean_field_elbo_uses_the_registered_kl():
    Q = ar1(5, 0.5, 1.0).detach()
    guide_dist = dist.Normal(torch.zeros(5, dtype=F64), torch.ones(5, dtype=F64)).to_event(1)
    kl = torch.distributions.kl_divergence(guide_dist, sp.GMRF(torch.zeros(5, dtype=F64), Q))
    expected = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(torch.zeros(5, dtype=F64), torch.eye(5, dtype=F64)),
        torch.distributions.MultivariateNormal(torch.zeros(5, dtype=F64), precision_matrix=Q.to_dense()),
    )
    torch.testing.assert_close(kl, expected)


def test_nuts_and_predictive():
    W = adjacency_from_pairs(EDGES)

    def model(y=None):
        rho = pyro.sample("rho", dist.Uniform(torch.tensor(0.0, dtype=F64), torch.tensor(0.95, dtype=F64)))
        x = pyro.sample("x", sp.CAR(W, rho, 1.0))
        with pyro.plate("obs", 6):
            return pyro.sample("y", dist.Normal(x, 0.5), obs=y)

    y = torch.randn(6, dtype=F64)
    mcmc = MCMC(NUTS(model), num_samples=20, warmup_steps=20, disable_progbar=True)
    mcmc.run(y)
    samples = mcmc.get_samples()
    assert samples["x"].shape == (20, 6) and torch.isfinite(samples["x"]).all()
    assert ((samples["rho"] > 0) & (samples["rho"] < 0.95)).all()
    predictive = Predictive(model, samples)(None)
    assert predictive["y"].shape == (20, 6)


@pytest.mark.parametrize(
    ("name", "arg_shapes", "message"),
    [
        ("CAR", {"adjacency": (6, 6), "rho": (3,), "tau": (2,)}, "do not broadcast"),
        ("CAR", {"adjacency": (6, 6), "rho": (), "tau": (2,), "loc": (3, 6)}, "do not broadcast"),
        ("ICAR", {"adjacency": (6, 6), "tau": (2,), "loc": (3, 6)}, "do not broadcast"),
        ("GMRF", {"loc": (3, 6), "precision": (2, 6, 6)}, "do not broadcast"),
        ("IntrinsicGMRF", {"loc": (3, 6), "precision": (2, 6, 6)}, "do not broadcast"),
        ("SparseMultivariateNormal", {"loc": (3, 6), "precision_tril": (1, 6, 6)}, "not broadcast"),
        ("SparseMultivariateNormal", {"loc": (4, 6), "precision_tril": (2, 6, 6)}, "do not broadcast"),
    ],
)
def test_infer_shapes_refuses_what_the_constructor_refuses(name, arg_shapes, message):
    with pytest.raises(ValueError, match=message):
        getattr(sp, name).infer_shapes(**arg_shapes)


def test_infer_shapes_broadcasts_batched_hyper_parameters():
    # as car(W, rho, tau) and CAR(...): the batch shape is the broadcast of rho's, tau's and loc's batch shapes
    assert sp.CAR.infer_shapes(adjacency=(6, 6), rho=(), tau=(), loc=(3, 6)) == ((3,), (6,))
    assert sp.CAR.infer_shapes(adjacency=(6, 6), rho=(1,), tau=()) == ((1,), (6,))
    assert sp.CAR.infer_shapes(adjacency=(6, 6), rho=(4,), tau=(3, 1)) == ((3, 4), (6,))
    assert sp.GMRF.infer_shapes(loc=(6,), precision=(2, 6, 6)) == ((2,), (6,))

"""sparseprec.arviz.from_mcmc: a Pyro NUTS run through ArviZ's own converter (posterior, diverging, observed data,
log-likelihood), deterministic sites moved to the posterior, several runs as chains; on tiny runs (a few dozen
draws)."""

from __future__ import annotations

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS

from sparseprec.arviz import area_coords, from_mcmc

F64 = torch.float64
NAMES = ["north", "east", "south", "west"]
Y = torch.tensor([1.0, 4.0, 2.0, 0.0], dtype=F64)


def model():
    """An intercept and an effect per area, a deterministic rate, Poisson counts; the areas in a plate, so that the
    model takes a batch of draws (``Predictive(parallel=True)``) and ArviZ's log-likelihood is pointwise."""
    intercept = pyro.sample("intercept", dist.Normal(torch.zeros((), dtype=F64), 2.0))
    with pyro.plate("areas", 4):
        effect = pyro.sample("effect", dist.Normal(torch.zeros((), dtype=F64), 1.0))
        rate = pyro.deterministic("rate", (intercept + effect).exp())
        pyro.sample("y", dist.Poisson(rate), obs=Y)


def _run(seed: int, draws: int = 25) -> MCMC:
    pyro.set_rng_seed(seed)
    mcmc = MCMC(NUTS(model, max_tree_depth=5), num_samples=draws, warmup_steps=25, disable_progbar=True)
    mcmc.run()
    return mcmc


@pytest.fixture(scope="module")
def runs() -> list[MCMC]:
    return [_run(0), _run(1)]


COORDS, DIMS = area_coords(NAMES, ["effect", "rate", "y"], dim="area")


@pytest.mark.parametrize("parallel", [False, True])
def test_groups_dims_coords_and_values(runs, parallel):
    mcmc = runs[0]
    idata = from_mcmc(mcmc, coords=COORDS, dims=DIMS, log_likelihood=True, parallel=parallel)
    assert set(idata.groups()) == {"posterior", "sample_stats", "log_likelihood", "observed_data"}
    posterior = idata.posterior
    assert sorted(posterior.data_vars) == ["effect", "intercept", "rate"]
    assert posterior["effect"].dims == ("chain", "draw", "area") and list(posterior["area"].values) == NAMES
    samples = mcmc.get_samples(group_by_chain=True)
    for name in ("intercept", "effect"):
        np.testing.assert_array_equal(posterior[name].values, samples[name].numpy())
    # the deterministic site, recomputed from the draws, is in the posterior and nowhere else
    expected = (samples["intercept"].unsqueeze(-1) + samples["effect"]).exp().numpy()
    np.testing.assert_allclose(posterior["rate"].values, expected, rtol=1e-12)
    assert posterior["rate"].dims == ("chain", "draw", "area")
    assert list(idata.observed_data.data_vars) == ["y"] and list(idata.log_likelihood.data_vars) == ["y"]
    np.testing.assert_array_equal(idata.observed_data["y"].values, Y.numpy())
    log_lik = dist.Poisson(torch.from_numpy(expected)).log_prob(Y).numpy()
    np.testing.assert_allclose(idata.log_likelihood["y"].values, log_lik, rtol=1e-10)
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "area")
    # ArviZ's converter: Pyro's per-draw divergences
    diverging = idata.sample_stats["diverging"]
    assert diverging.dtype == bool and diverging.shape == (1, 25)
    assert int(diverging.sum()) == len(mcmc.diagnostics()["divergences"]["chain 0"])


def test_without_log_likelihood_the_deterministic_site_leaves_observed_data_only(runs):
    idata = from_mcmc(runs[0], coords=COORDS, dims=DIMS, log_likelihood=False)
    assert set(idata.groups()) == {"posterior", "sample_stats", "observed_data"}
    assert list(idata.observed_data.data_vars) == ["y"]


def test_runs_become_chains_and_summary_has_diagnostics(runs):
    idata = from_mcmc(runs, coords=COORDS, dims=DIMS, log_likelihood=False)
    assert dict(idata.posterior.sizes) == {"chain": 2, "draw": 25, "area": 4}
    assert list(idata.posterior["chain"].values) == [0, 1]
    for c, run in enumerate(runs):
        np.testing.assert_array_equal(idata.posterior["effect"].values[c], run.get_samples()["effect"].numpy())
    assert idata.sample_stats["diverging"].shape == (2, 25)
    table = az.summary(idata, var_names=["intercept", "rate"], hdi_prob=0.95, round_to="none")
    columns = ["mean", "sd", "hdi_2.5%", "hdi_97.5%", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"]
    assert list(table.columns) == columns
    assert list(table.index) == ["intercept"] + [f"rate[{name}]" for name in NAMES]
    assert np.isfinite(table.values).all()
    together = torch.cat([run.get_samples()["intercept"] for run in runs])
    assert table.loc["intercept", "mean"] == pytest.approx(float(together.mean()), rel=1e-12)


def test_a_model_without_deterministic_sites():
    def plain():
        mu = pyro.sample("mu", dist.Normal(torch.zeros(2, dtype=F64), 1.0).to_event(1))
        pyro.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=torch.tensor([0.3, -0.2], dtype=F64))

    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(plain), num_samples=10, warmup_steps=10, disable_progbar=True)
    mcmc.run()
    idata = from_mcmc(mcmc, log_likelihood=False)
    assert list(idata.posterior.data_vars) == ["mu"] and idata.posterior["mu"].dims == ("chain", "draw", "mu_dim_0")


def test_bad_input_is_refused(runs):
    with pytest.raises(TypeError, match=r"mcmc must be a pyro.infer.MCMC, got dict"):
        from_mcmc({"mu": torch.zeros(3)})
    with pytest.raises(TypeError, match=r"mcmc\[1\] must be a pyro.infer.MCMC, got str"):
        from_mcmc([runs[0], "run"])
    with pytest.raises(ValueError, match=r"non-empty sequence of them, got an empty sequence"):
        from_mcmc([])
    unrun = MCMC(NUTS(model), num_samples=5, warmup_steps=5)
    with pytest.raises(ValueError, match=r"mcmc has not been run: call its run\(...\) before converting it"):
        from_mcmc(unrun)
    with pytest.raises(ValueError, match=r"dims\['effect'\] names 2 dimension\(s\) \['area', 'x'\], but 'effect'"):
        from_mcmc(runs[0], dims={"effect": ["area", "x"]})
    with pytest.raises(ValueError, match=r"coords\['area'\] has 3 labels, but 'rate' has 4 entries along 'area'"):
        from_mcmc(runs[0], coords={"area": NAMES[:3]}, dims={"rate": ["area"]})
    with pytest.raises(TypeError, match=r"parallel must be a bool, got str"):
        from_mcmc(runs[0], parallel="yes")
    with pytest.raises(TypeError, match=r"log_likelihood must be a bool or None, got int"):
        from_mcmc(runs[0], log_likelihood=1)

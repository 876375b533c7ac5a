"""sparseprec.arviz.from_draws and area_coords: the InferenceData of draws that do not come from Pyro's MCMC (SVI guide
draws, Laplace draws of the latent field, INLA mixture draws), with the right groups, dims and coordinates, and values
equal to the draws given."""

from __future__ import annotations

import subprocess
import sys

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from sparseprec.arviz import area_coords, from_draws
from sparseprec.distributions import GMRF
from sparseprec.laplace import LatentGaussianModel, Poisson, inla, posterior_draws
from sparseprec.structures import ar1

F64 = torch.float64
NAMES = ["Aberdeen", "Banff", "Caithness", "Dundee"]


def _draws(num: int = 12, dtype: torch.dtype = F64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "intercept": torch.randn(num, generator=g, dtype=dtype),
        "effect": torch.randn(num, 4, generator=g, dtype=dtype),
        "grid": torch.randn(num, 2, 3, generator=g, dtype=dtype),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chains", [1, 2, 3])
def test_values_are_the_draws_split_into_consecutive_chains(chains, dtype):
    draws = _draws(12, dtype)
    coords, dims = area_coords(NAMES, ["effect"], dim="area")
    idata = from_draws(draws, coords=coords, dims=dims, chains=chains)
    assert idata.groups() == ["posterior"]
    posterior = idata.posterior
    assert dict(posterior.sizes) == {"chain": chains, "draw": 12 // chains, "area": 4, "grid_dim_0": 2, "grid_dim_1": 3}
    assert posterior["effect"].dims == ("chain", "draw", "area")
    assert list(posterior["area"].values) == NAMES
    per_chain = 12 // chains
    for name, value in draws.items():
        array = posterior[name].values
        assert array.dtype == value.numpy().dtype
        for c in range(chains):  # draw s of chain c is row c * D + s
            np.testing.assert_array_equal(array[c], value[c * per_chain : (c + 1) * per_chain].numpy())


def test_names_of_sites_a_route_lacks_are_ignored_and_numpy_arrays_accepted():
    coords, dims = area_coords(NAMES, ["effect", "theta", "phi", "relative_risk"])  # one dims for every route
    draws = {"effect": np.arange(20.0).reshape(5, 4)}
    idata = from_draws(draws, coords=coords, dims=dims)
    np.testing.assert_array_equal(idata.posterior["effect"].values[0], draws["effect"])
    assert idata.posterior["effect"].dims == ("chain", "draw", "district")


def test_log_likelihood_and_observed_data_groups():
    g = torch.Generator().manual_seed(1)
    y = torch.tensor([2.0, 0.0, 5.0, 1.0], dtype=F64)
    rate = torch.rand(40, 4, generator=g, dtype=F64) * 3 + 0.5
    log_lik = dist.Poisson(rate).log_prob(y)
    coords, dims = area_coords(NAMES, ["rate", "y"])
    idata = from_draws({"rate": rate}, coords=coords, dims=dims, chains=2, log_likelihood={"y": log_lik},
                       observed_data={"y": y})  # fmt: skip
    assert set(idata.groups()) == {"posterior", "log_likelihood", "observed_data"}
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "district")
    np.testing.assert_array_equal(idata.log_likelihood["y"].values.reshape(40, 4), log_lik.numpy())
    assert idata.observed_data["y"].dims == ("district",)
    np.testing.assert_array_equal(idata.observed_data["y"].values, y.numpy())
    assert idata.posterior.attrs["inference_library"] == "sparseprec"


def test_summary_columns_of_independent_draws():
    idata = from_draws(_draws(400), coords={"area": NAMES}, dims={"effect": ["area"]})
    table = az.summary(idata, var_names=["intercept", "effect"], kind="stats", hdi_prob=0.95, round_to="none")
    assert list(table.columns) == ["mean", "sd", "hdi_2.5%", "hdi_97.5%"]
    assert list(table.index) == ["intercept"] + [f"effect[{name}]" for name in NAMES]
    effect = _draws(400)["effect"]
    np.testing.assert_allclose(table["mean"].values[1:], effect.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(table["sd"].values[1:], effect.std(0).numpy(), rtol=1e-12)  # ddof = 1 in both
    selected = az.summary(idata, var_names=["effect"], coords={"area": ["Dundee", "Banff"]}, kind="stats")
    assert list(selected.index) == ["effect[Dundee]", "effect[Banff]"]


def test_svi_guide_draws():
    """The SVI route: draws of a fitted autoguide through ``Predictive``, a deterministic site included."""
    y = torch.tensor([1.0, 3.0, 0.0, 2.0], dtype=F64)

    def model():
        mu = pyro.sample("mu", dist.Normal(torch.zeros(4, dtype=F64), 1.0).to_event(1))
        pyro.deterministic("rate", mu.exp(), event_dim=1)
        pyro.sample("y", dist.Poisson(mu.exp()).to_event(1), obs=y)

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = pyro.infer.autoguide.AutoNormal(model)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), pyro.infer.Trace_ELBO())
    for _ in range(20):
        svi.step()
    draws = pyro.infer.Predictive(model, guide=guide, num_samples=30, return_sites=["mu", "rate"])()
    coords, dims = area_coords(NAMES, ["mu", "rate"])
    idata = from_draws(draws, coords=coords, dims=dims)
    assert idata.posterior["rate"].shape == (1, 30, 4)
    np.testing.assert_array_equal(idata.posterior["mu"].values[0], draws["mu"].numpy())
    np.testing.assert_allclose(idata.posterior["rate"].values, np.exp(idata.posterior["mu"].values), rtol=1e-12)


def _ar1_poisson(n: int = 6):
    g = torch.Generator().manual_seed(2)
    y = torch.poisson(torch.full((n,), 2.0, dtype=F64), generator=g)

    def build(theta):
        return LatentGaussianModel(GMRF(torch.zeros(n, dtype=F64), ar1(n, 0.5, tau=theta[0].exp())), Poisson())

    return build, y


def test_laplace_draws_of_the_latent_field():
    """The Laplace route: posterior_draws for a few hyper-parameter draws, named by blocks of the latent field."""
    build, y = _ar1_poisson()
    theta = torch.tensor([[0.0], [0.3], [-0.2], [0.1]], dtype=F64)
    x = posterior_draws(build, theta, y)
    coords = {"time": [f"t{i}" for i in range(6)]}
    idata = from_draws({"log_tau": theta[:, 0], "x": x}, coords=coords, dims={"x": ["time"]}, chains=2)
    assert idata.posterior["x"].dims == ("chain", "draw", "time") and idata.posterior["x"].shape == (2, 2, 6)
    np.testing.assert_array_equal(idata.posterior["x"].values.reshape(4, 6), x.numpy())
    np.testing.assert_array_equal(idata.posterior["log_tau"].values.reshape(4), theta[:, 0].numpy())


def test_inla_mixture_draws():
    """The INLA route: a grid point by its weight, then the Gaussian marginal there (draws of each marginal)."""
    build, y = _ar1_poisson()

    def log_prior(theta):
        return torch.distributions.Normal(torch.zeros(1, dtype=F64), 1.0).log_prob(theta).sum()

    result = inla(build, torch.zeros(1, dtype=F64), y, log_prior=log_prior)
    g = torch.Generator().manual_seed(3)
    point = torch.multinomial(result.weights, 500, replacement=True, generator=g)
    x = result.latent_means[point] + result.latent_variances[point].sqrt() * torch.randn(500, 6, generator=g, dtype=F64)
    idata = from_draws({"x": x}, coords={"time": list(range(6))}, dims={"x": ["time"]})
    np.testing.assert_array_equal(idata.posterior["x"].values[0], x.numpy())
    table = az.summary(idata, kind="stats", round_to="none")
    mean_error = np.abs(table["mean"].values - result.latent_mean.numpy()) / result.latent_sd.numpy()
    assert mean_error.max() < 0.25  # 500 draws: a standard error of 0.045 sd


BAD = [
    ([1.0], {}, TypeError, r"draws must be a mapping of site names to tensors, got list"),
    ({}, {}, ValueError, r"draws must hold at least one site, got an empty mapping"),
    ({"a": [1.0, 2.0]}, {}, TypeError, r"draws\['a'\] must be a torch.Tensor or a numpy.ndarray, got list"),
    ({1: torch.zeros(3)}, {}, TypeError, r"draws must be keyed by site names \(str\), got the key 1"),
    ({"a": torch.tensor(1.0)}, {}, ValueError, r"draws\['a'\] must have a leading draw dimension, got a 0-D value"),
    ({"a": torch.zeros(4), "b": torch.zeros(5, 2)}, {}, ValueError,
     r"draws\['b'\] has 5 draws \(shape \(5, 2\)\), but 'a' has 4: every value must have the same leading"),
    ({"a": torch.zeros(4)}, {"chains": 3}, ValueError, r"chains \(3\) must divide the number of draws \(4\)"),
    ({"a": torch.zeros(4)}, {"chains": 0}, ValueError, r"chains must be an integer >= 1, got 0"),
    ({"a": torch.zeros(4)}, {"chains": True}, TypeError, r"chains must be an integer >= 1, got bool True"),
    ({"a": torch.zeros(4)}, {"chains": 2.0}, TypeError, r"chains must be an integer >= 1, got float 2.0"),
    ({"a": torch.zeros(4, 3)}, {"dims": {"a": ["x", "y"]}}, ValueError,
     r"dims\['a'\] names 2 dimension\(s\) \['x', 'y'\], but 'a' has 1 after the draw dimension \(event shape \(3,\)\)"),
    ({"a": torch.zeros(4, 3)}, {"dims": {"a": ["chain", "x"]}}, ValueError,
     r"dims\['a'\] must not use ArviZ's own dimension 'chain'"),
    ({"a": torch.zeros(4, 3)}, {"dims": {"a": ["x"]}, "coords": {"x": ["p", "q"]}}, ValueError,
     r"coords\['x'\] has 2 labels, but 'a' has 3 entries along 'x'"),
    ({"a": torch.zeros(4, 3), "b": torch.zeros(4, 2)}, {"dims": {"a": ["x"], "b": ["x"]}}, ValueError,
     r"dimension 'x' has 3 entries in 'a' but 2 in 'b'"),
    ({"a": torch.zeros(4)}, {"log_likelihood": {"y": torch.zeros(5)}}, ValueError,
     r"log_likelihood\['y'\] has 5 draws \(shape \(5,\)\), but draws have 4"),
    ({"a": torch.zeros(4)}, {"coords": ["x"]}, TypeError, r"coords must be a mapping of dimension names to labels"),
    ({"a": torch.zeros(4, 3).to_sparse()}, {}, TypeError, r"draws\['a'\] must be a dense \(strided\) tensor"),
]  # fmt: skip


@pytest.mark.parametrize("draws, kwargs, error, message", BAD, ids=[b[-1][:40] for b in BAD])
def test_bad_input_is_refused_naming_the_entry(draws, kwargs, error, message):
    with pytest.raises(error, match=message):
        from_draws(draws, **kwargs)


def test_area_coords():
    coords, dims = area_coords(NAMES, ("theta", "relative_risk"))
    assert coords == {"district": NAMES} and dims == {"theta": ["district"], "relative_risk": ["district"]}
    assert area_coords(NAMES, [], dim="county") == ({"county": NAMES}, {})


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        (("abc", ["x"]), {}, TypeError, r"names must be a sequence of strings, got the string 'abc'"),
        (([], ["x"]), {}, ValueError, r"names must name at least one area"),
        ((["a", 2], ["x"]), {}, TypeError, r"names must be strings, got int 2 at position 1"),
        ((["a", "b", "a"], ["x"]), {}, ValueError, r"names must be distinct, got 'a' at positions 0 and 2"),
        ((["a"], "x"), {}, TypeError, r"sites must be an iterable of site names, got the string 'x'"),
        ((["a"], [3]), {}, TypeError, r"sites must be strings, got int 3"),
        ((["a"], ["x"]), {"dim": "draw"}, ValueError, r"dim must not be 'chain' or 'draw'"),
        ((["a"], ["x"]), {"dim": 1}, TypeError, r"dim must be a string, got int 1"),
    ],
)
def test_area_coords_refuses_bad_input(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        area_coords(*args, **kwargs)


def test_without_arviz_the_import_names_the_extra():
    code = "import sys\nsys.modules['arviz'] = None\nimport sparseprec.arviz"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "ImportError: sparseprec.arviz needs ArviZ, which is not installed: pip install 'sparseprec[arviz]'" in (
        result.stderr
    )


def test_the_core_does_not_import_arviz():
    code = "import sys, sparseprec, sparseprec.laplace, sparseprec.datasets, sparseprec.pyro\n"
    code += "assert 'arviz' not in sys.modules, 'arviz loaded'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr

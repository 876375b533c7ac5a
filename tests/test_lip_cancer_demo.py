"""The README's main demo (BYM2 disease mapping): runs end to end on few steps; NUTS comparison as a slow test."""

from __future__ import annotations

import functools
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from pyro.infer import NUTS

from sparseprec.examples import lip_cancer

pytestmark = pytest.mark.examples

STATS = ["mean", "sd", "hdi_2.5%", "hdi_97.5%"]
DIAGNOSTICS = [*STATS, "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"]
SCALAR_LABELS = ["intercept β0", "AFF effect β1 (per 10 %)", "total s.d. σ", "spatial share ρ"]


def test_the_demo_command_runs_end_to_end(tmp_path):
    png = tmp_path / "map.png"
    command = [sys.executable, "-m", "sparseprec.examples.lip_cancer", "--steps", "40", "--samples", "200",
               "--output", str(png), "--quiet"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Laplace (mean, sd, 95 % HDI; ArviZ):" in out
    header = next(line for line in out.splitlines() if "hdi_2.5%" in line)
    assert header.split() == STATS
    for label in SCALAR_LABELS:
        assert label in out
    assert sum(line.startswith("RR ") for line in out.splitlines()) == 6
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


@pytest.mark.parametrize("method, key", [("svi", "SVI"), ("laplace", "Laplace")])
def test_summary_rows_are_ordered_intervals(method, key):
    argv = ["--method", method, "--steps", "30", "--samples", "300", "--no-plot", "--quiet", "--islands"]
    summaries = lip_cancer.main(argv)
    table = summaries[key]
    assert list(table.columns) == STATS
    assert len(table) == 4 + 6 and list(table.index[:4]) == SCALAR_LABELS
    assert all(label.startswith("RR ") for label in table.index[4:])
    for label, row in table.iterrows():
        assert math.isfinite(row["mean"]) and row["sd"] > 0, label
        assert row["hdi_2.5%"] <= row["mean"] <= row["hdi_97.5%"], label
    assert 0 < table.loc["spatial share ρ", "hdi_2.5%"] and table.loc["spatial share ρ", "hdi_97.5%"] < 1
    assert table.loc["total s.d. σ", "hdi_2.5%"] > 0


def test_every_route_names_its_sites_alike():
    """SVI and Laplace draws become InferenceData with the same variables, dims and district coordinates as the NUTS
    route's, values equal to the draws, the pointwise Poisson log-likelihood and the observed counts."""
    data = lip_cancer.load_scotland_lip_cancer()
    names = data.district_names()
    model = lip_cancer.bym2_model(data)
    guide, _ = lip_cancer.fit_svi(model, data, steps=5, progress=False)
    routes = {
        "SVI": lip_cancer.svi_samples(model, guide, 50),
        "Laplace": lip_cancer.laplace_samples(lip_cancer.fit_laplace(data), 50),
    }
    for route, draws in routes.items():
        assert set(draws) == set(lip_cancer.SITES), route
        idata = lip_cancer.to_inference_data(draws, data)
        assert set(idata.groups()) == {"posterior", "log_likelihood", "observed_data"}
        posterior = idata.posterior
        assert set(posterior.data_vars) == set(lip_cancer.SITES)
        for site in ("theta", "phi", "relative_risk"):
            assert posterior[site].dims == ("chain", "draw", "district"), (route, site)
            np.testing.assert_array_equal(posterior[site].values[0], draws[site].numpy())
        assert posterior["sigma"].dims == ("chain", "draw")
        assert list(posterior["district"].values) == names
        expected = torch.distributions.Poisson(data.expected * draws["relative_risk"]).log_prob(data.observed.double())
        np.testing.assert_allclose(idata.log_likelihood["cases"].values[0], expected.numpy(), rtol=1e-12)
        np.testing.assert_array_equal(idata.observed_data["cases"].values, data.observed.numpy())


@pytest.fixture
def quick_nuts(monkeypatch):
    """NUTS with trees of at most 3 leapfrog steps: a few dozen draws of the demo model in seconds (a short warm-up
    otherwise leaves a tiny step size and trees of 1023 steps)."""
    monkeypatch.setattr(lip_cancer, "NUTS", functools.partial(NUTS, max_tree_depth=2))


def test_nuts_adds_rhat_and_ess_and_the_comparison(quick_nuts, capsys):
    argv = ["--nuts", "--nuts-samples", "10", "--nuts-warmup", "10", "--no-plot", "--quiet"]
    summaries = lip_cancer.main(argv)
    out = capsys.readouterr().out
    assert list(summaries) == ["Laplace", "NUTS"]
    assert list(summaries["Laplace"].columns) == STATS and list(summaries["NUTS"].columns) == DIAGNOSTICS
    assert list(summaries["NUTS"].index) == list(summaries["Laplace"].index)  # the same rows, the same districts
    assert np.isfinite(summaries["NUTS"][["ess_bulk", "ess_tail", "r_hat"]].values).all()
    assert "NUTS: 2 chains of 10 warm-up + 10 draws in" in out and "divergent transitions" in out
    assert "NUTS (mean, sd, 95 % HDI, MCSE, ESS (bulk, tail), R-hat; ArviZ):" in out
    assert "Laplace vs NUTS, all 56 relative risks: largest |mean difference|" in out
    assert sum(line.startswith("RR ") for line in out.splitlines()) == 12


def test_run_nuts_gives_inference_data(quick_nuts):
    data = lip_cancer.load_scotland_lip_cancer()
    idata = lip_cancer.run_nuts(lip_cancer.bym2_model(data), data, num_samples=10, warmup=10, chains=2, progress=False)
    assert set(idata.groups()) == {"posterior", "sample_stats", "log_likelihood", "observed_data"}
    assert set(idata.posterior.data_vars) == set(lip_cancer.SITES)
    assert dict(idata.posterior.sizes) == {"chain": 2, "draw": 10, "district": 56}
    assert idata.sample_stats["diverging"].shape == (2, 10)
    risk = torch.from_numpy(idata.posterior["relative_risk"].values)
    expected = torch.distributions.Poisson(data.expected * risk).log_prob(data.observed.double())
    np.testing.assert_allclose(idata.log_likelihood["cases"].values, expected.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(idata.observed_data["cases"].values, data.observed.numpy())


def test_the_svi_demo_writes_the_map_and_the_elbo_trace(tmp_path):
    png = tmp_path / "svi.png"
    lip_cancer.main(["--method", "svi", "--steps", "20", "--samples", "100", "--output", str(png), "--quiet"])
    assert png.exists() and png.stat().st_size > 20_000


def _geodataframe(data):
    """The districts as a GeoDataFrame: the data's own ``to_geodataframe`` where it exists, else one built here."""
    if hasattr(data, "to_geodataframe"):
        return data.to_geodataframe()
    import geopandas
    import shapely

    shapes = [shapely.MultiPolygon([shapely.Polygon(ring) for ring in parts]) for parts in data.district_polygons()]
    return geopandas.GeoDataFrame({"name": data.district_names()}, geometry=shapes, crs=None)


def test_the_map_from_the_geodataframe_is_the_map_from_the_polygons(tmp_path, monkeypatch):
    pytest.importorskip("geopandas")
    import matplotlib.pyplot as plt

    data = lip_cancer.load_scotland_lip_cancer()
    risk = np.exp(np.linspace(-1.2, 1.5, data.num_districts))
    frames = []

    def district_frame(d):
        frames.append(_geodataframe(d))
        return frames[-1]

    monkeypatch.setattr(lip_cancer, "_district_frame", district_frame)
    lip_cancer.save_figure(tmp_path / "frame.png", data, risk, None, method="test")
    assert len(frames) == 1  # drawn from the GeoDataFrame
    monkeypatch.setattr(lip_cancer, "_district_frame", lambda d: None)  # as without GeoPandas
    lip_cancer.save_figure(tmp_path / "polygons.png", data, risk, None, method="test")
    a, b = plt.imread(tmp_path / "frame.png"), plt.imread(tmp_path / "polygons.png")
    assert a.shape == b.shape
    assert float(np.abs(a - b).mean()) < 1e-3 and float((np.abs(a - b).max(-1) > 0.1).mean()) < 1e-3


def test_without_geopandas_the_map_is_drawn_from_the_polygons(tmp_path, monkeypatch):
    data = lip_cancer.load_scotland_lip_cancer()
    if hasattr(type(data), "to_geodataframe"):

        def missing(self):
            raise ImportError("to_geodataframe needs GeoPandas: pip install 'sparseprec[spatial]'")

        monkeypatch.setattr(type(data), "to_geodataframe", missing)
    assert lip_cancer._district_frame(data) is None
    lip_cancer.save_figure(tmp_path / "map.png", data, np.ones(data.num_districts) * 1.5, None)
    assert (tmp_path / "map.png").stat().st_size > 20_000


def test_without_arviz_the_demo_says_what_to_install():
    code = "import sys\nsys.modules['arviz'] = None\nimport sparseprec.examples.lip_cancer"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "the lip cancer demo prints its posterior summary with ArviZ, which is not installed: pip install " in (
        result.stderr
    )
    assert "sparseprec[examples]" in result.stderr


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        lip_cancer.main(["--steps", "0"])


@pytest.mark.slow
def test_svi_agrees_with_nuts():
    """Full fit vs NUTS on the same model: every relative risk within 0.5 NUTS posterior s.d., β1 within 0.5 s.d."""
    data = lip_cancer.load_scotland_lip_cancer()
    model = lip_cancer.bym2_model(data)
    guide, _ = lip_cancer.fit_svi(model, data, steps=3000, progress=False)
    svi = lip_cancer.svi_samples(model, guide, 4000)
    nuts = lip_cancer.run_nuts(model, data, num_samples=500, warmup=500, chains=2, progress=False).posterior
    nuts_risk = nuts["relative_risk"].values.reshape(-1, data.num_districts)
    gap = np.abs(svi["relative_risk"].mean(0).numpy() - nuts_risk.mean(0)) / nuts_risk.std(0, ddof=1)
    assert float(gap.max()) < 0.5
    nuts_beta = nuts["aff_effect"].values.reshape(-1)
    beta_gap = abs(float(svi["aff_effect"].mean()) - nuts_beta.mean()) / nuts_beta.std(ddof=1)
    assert beta_gap < 0.5

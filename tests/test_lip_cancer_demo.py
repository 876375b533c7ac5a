"""The README's main demo (BYM2 disease mapping): runs end to end on few steps; NUTS comparison as a slow test."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from sparseprec.examples import lip_cancer

pytestmark = pytest.mark.examples


def test_the_demo_command_runs_end_to_end(tmp_path):
    png = tmp_path / "map.png"
    command = [sys.executable, "-m", "sparseprec.examples.lip_cancer", "--steps", "40", "--samples", "200",
               "--output", str(png), "--quiet"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for label in ("intercept β0", "AFF effect β1", "total s.d. σ", "spatial share ρ"):
        assert label in out
    assert sum(line.startswith("RR ") for line in out.splitlines()) == 6
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


@pytest.mark.parametrize("method, key", [("svi", "SVI"), ("laplace", "Laplace")])
def test_summary_rows_are_ordered_intervals(method, key):
    argv = ["--method", method, "--steps", "30", "--samples", "300", "--no-plot", "--quiet", "--islands"]
    summaries = lip_cancer.main(argv)
    rows = summaries[key].rows
    assert len(rows) == 4 + 6
    for label, mean, low, high in rows:
        assert math.isfinite(mean) and low <= mean <= high, label
    assert 0 < summaries[key].get("spatial share ρ")[1] and summaries[key].get("spatial share ρ")[2] < 1
    assert summaries[key].get("total s.d. σ")[1] > 0


def test_the_svi_demo_writes_the_map_and_the_elbo_trace(tmp_path):
    png = tmp_path / "svi.png"
    lip_cancer.main(["--method", "svi", "--steps", "20", "--samples", "100", "--output", str(png), "--quiet"])
    assert png.exists() and png.stat().st_size > 20_000


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
    nuts = lip_cancer.run_nuts(model, data, num_samples=1000, warmup=500, progress=False)
    gap = (svi["relative_risk"].mean(0) - nuts["relative_risk"].mean(0)).abs() / nuts["relative_risk"].std(0)
    assert float(gap.max()) < 0.5
    beta_gap = abs(float(svi["aff_effect"].mean() - nuts["aff_effect"].mean())) / float(nuts["aff_effect"].std())
    assert beta_gap < 0.5

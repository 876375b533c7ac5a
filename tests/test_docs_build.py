"""The Sphinx site (docs/) builds from the source tree with warnings as errors (autodoc of every public module)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_sphinx_build_is_warning_free(tmp_path):
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(tmp_path / "html")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    pages = {p.name for p in (tmp_path / "html").glob("*.html")}
    guide = {
        "concepts",
        "choosing_a_solver",
        "gmrf_modelling",
        "laplace",
        "pyro",
        "gpytorch",
        "migration",
        "benchmarks",
        "reliability",
    }
    assert {"index.html", "api.html"} | {f"{page}.html" for page in guide} <= pages
    assert (tmp_path / "html" / "_images").is_dir()
    for page in ("concepts", "choosing_a_solver", "gmrf_modelling", "gpytorch", "pyro"):  # the worked examples' figures
        assert ".png" in (tmp_path / "html" / f"{page}.html").read_text()
    api = (tmp_path / "html" / "api.html").read_text()
    for name in (
        "SparseMultivariateNormal",
        "AutoSparseMultivariateNormal",
        "PrecisionInverseLinearOperator",
        "cholesky",
        "LatentGaussianModel",
        "ConstrainedGMRF",
        "LaplaceMarginal",
    ):
        assert name in api

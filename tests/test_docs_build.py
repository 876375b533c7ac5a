"""The Sphinx site (docs/) builds from the source tree with warnings as errors and nitpicky references, without
running the example gallery (tests/test_examples.py runs the examples; `make -C docs html` runs them into the site),
and every public name has its own API page."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LAYERS = ["pattern", "ops", "solvers", "cholesky", "structures", "distributions", "laplace", "datasets", "pyro",
          "gpytorch", "arviz", "distributed"]  # fmt: skip
GUIDE = ["getting_started", "concepts", "choosing_a_solver", "gmrf_modelling", "laplace", "spatial", "pyro", "gpytorch",
         "migration", "benchmarks", "reliability"]  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built once with -W, nitpicky and plot_gallery=0 (a fresh doctree and output directory)."""
    out = tmp_path_factory.mktemp("docs")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-D", "plot_gallery=0", "-b", "html",
               "-d", str(out / "doctrees"), str(DOCS), str(out / "html")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out / "html"


def test_pages_and_figures(site):
    pages = {p.name for p in site.glob("*.html")}
    assert {"index.html", "api.html"} | {f"{page}.html" for page in GUIDE} <= pages
    assert (site / "auto_examples" / "index.html").is_file()
    for page in ("concepts", "choosing_a_solver", "gmrf_modelling", "gpytorch", "pyro"):  # the worked examples' figures
        assert ".png" in (site / f"{page}.html").read_text()
    index = (site / "index.html").read_text()
    assert index.index("getting_started.html") < index.index("concepts.html"), "getting started comes first"


def test_every_public_name_has_an_api_page(site):
    """One page per name of each subpackage's __all__ (modules among them get a page with their members)."""
    missing = []
    for layer in LAYERS:
        module = importlib.import_module(f"sparseprec.{layer}")
        assert (site / "api" / f"sparseprec.{layer}.html").is_file(), f"no page for sparseprec.{layer}"
        missing += [f"sparseprec.{layer}.{n}" for n in module.__all__
                    if not (site / "api" / f"sparseprec.{layer}.{n}.html").is_file()]  # fmt: skip
    assert not missing, f"public names without an API page: {missing}"
    api = (site / "api.html").read_text()
    for name in ("SparseMultivariateNormal", "AutoSparseMultivariateNormal", "PrecisionInverseLinearOperator",
                 "cholesky", "LatentGaussianModel", "ConstrainedGMRF", "LaplaceMarginal"):  # fmt: skip
        assert name in api


def test_external_names_link_to_their_projects_and_maths_is_local(site):
    page = (site / "api" / "sparseprec.distributions.SparseMultivariateNormal.html").read_text()
    assert "https://docs.pytorch.org/docs/stable/" in page  # torch.Tensor, torch.distributions.Distribution, ...
    maths = (site / "laplace.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in maths
    assert "cdn.jsdelivr" not in maths and "mathjax@" not in maths, "MathJax must come from the site, not a CDN"
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()

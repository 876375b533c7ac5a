"""Every example in examples/ runs (fast settings), reaches its own correctness check and writes its figure; every
example the docs mention is one of them."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sparseprec.cholesky import available_backends

pytestmark = pytest.mark.examples

ROOT = Path(__file__).resolve().parents[1]
_CHOLMOD = "cholmod" in available_backends()
EXAMPLES = ROOT / "examples"
# script -> (a line its output must contain, the figure it writes or None)
EXPECTED = {
    "ops_demo.py": ("true 0.800", None),
    "gp_correlated_noise.py": ("RMSE of the posterior mean vs the true field", "gp_correlated_noise.png"),
    "gp_sparse_variational.py": ("sparse precision, 4 neighbours (sparseprec)", "gp_sparse_variational.png"),
    "choosing_a_solver.py": ("ConvergenceError NOT_POSITIVE_DEFINITE", "choosing_a_solver.png"),
    "fill_in_and_logdet.py": ("nesdis: nnz(L)" if _CHOLMOD else "mmd: nnz(L)", "fill_in_and_logdet.png"),
    "gmrf_modelling.py": ("RMSE of the posterior mean vs the true field", "gmrf_modelling.png"),
    "pyro_sparse_guide.py": ("AutoSparseMVN (sparseprec)", "pyro_sparse_guide.png"),
    "laplace_lattice.py": ("Laplace vs NUTS: max |mean difference|", "laplace_lattice.png"),
    "learned_image_factor.py": ("free factor", "learned_image_factor.png"),
    "atlas.py": ("outcomes fitted", "atlas.png"),
    "lip_cancer_demo.py": ("Laplace (mean, sd, 95 % HDI; ArviZ):", "lip_cancer.png"),
    "nc_sids.py": ("fixed effects within 0.2 posterior s.d.", "nc_sids.png"),
}


# .ci/run builds the documentation site first, whose gallery runs every example with --quick; with this variable set
# to the built site, each example's check is read from its gallery page (the output captured in that run) instead of
# running the script a second time.
BUILT_SITE = os.environ.get("SPARSEPREC_DOCS_HTML")


def _gallery_page(script: str) -> Path | None:
    if not BUILT_SITE:
        return None
    page = Path(BUILT_SITE) / "auto_examples" / f"{Path(script).stem}.html"
    return page if page.is_file() else None


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script, tmp_path):
    line, figure = EXPECTED[script]
    page = _gallery_page(script)
    if page is not None:
        text = html.unescape(page.read_text())
        assert "Total running time of the script" in text, f"{page} was built without running {script}"
        assert "Traceback" not in text, f"{script} failed in the gallery build: see {page}"
        assert line in text, f"{script}'s gallery output lacks {line!r}"
        if figure is not None:  # the PNG the script wrote, shown on its page by the gallery's scraper
            images = re.findall(rf'src="([^"]*sphx_glr_{Path(script).stem}_\d+\.png)"', text)
            assert images, f"{script}'s figure is missing from its gallery page"
            assert (page.parent / images[0]).stat().st_size > 10_000
        return
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick"], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert line in result.stdout
    if figure is not None:
        assert (tmp_path / figure).stat().st_size > 10_000  # a PNG with content, written where the script ran


def test_every_example_is_tested_and_every_documented_example_exists():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    mentioned = {name for doc in documents for name in re.findall(r"examples/(\w+\.py)", doc.read_text())}
    assert mentioned <= set(EXPECTED), f"documented but not in examples/: {sorted(mentioned - set(EXPECTED))}"
    assert set(EXPECTED) - {"ops_demo.py"} <= mentioned, "an example with a figure that no page shows"


def test_every_embedded_figure_exists():
    for doc in sorted((ROOT / "docs").glob("*.md")):
        for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", doc.read_text()):
            assert (doc.parent / image).is_file(), f"{doc.name} embeds missing {image}"

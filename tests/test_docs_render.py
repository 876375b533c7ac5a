"""The built site renders in a browser: headless Chromium runs the page's MathJax (shipped with the site, no network)
and the formulas come out as MathJax output; no example of the gallery failed.

Run after building the site (`make -C docs html`):
`SPARSEPREC_DOCS_HTML=docs/_build/html pytest tests/test_docs_render.py` (default: docs/_build/html). Skips, saying
why, where Chromium or the built site is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("SPARSEPREC_DOCS_HTML", ROOT / "docs" / "_build" / "html")).resolve()  # (a file URI)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def browser() -> str:
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found is None:
        pytest.skip(f"no headless browser found (looked for {', '.join(BROWSERS)}; Debian: apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        pytest.skip(f"no built site at {SITE} (build it with `make -C docs html`, or set SPARSEPREC_DOCS_HTML)")
    return SITE


def _rendered(browser: str, page: Path, tmp_path: Path) -> str:
    """The page's DOM after its scripts ran (MathJax typesets on load; the virtual time budget lets it finish)."""
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000", "--dump-dom",
               page.as_uri()]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_maths_is_rendered_by_mathjax(browser, site, tmp_path):
    page = site / "laplace.html"
    source = page.read_text()
    formulas = source.count('class="math')
    assert formulas > 0, "the Laplace page has no formula to render"
    dom = _rendered(browser, page, tmp_path)
    assert dom.count("<mjx-container") >= formulas // 2, "MathJax did not typeset the page's formulas"
    assert "<mjx-merror" not in dom, "MathJax reported a TeX error"  # (its stylesheet names mjx-merror too)


def test_no_gallery_example_failed(site):
    gallery = site / "auto_examples"
    pages = sorted(p for p in gallery.glob("*.html") if p.name != "index.html" and not p.name.startswith("sg_"))
    assert pages, f"the gallery at {gallery} has no example pages"
    failed = [p.name for p in pages if "sphx-glr-script-out" in p.read_text() and "Traceback" in p.read_text()]
    assert not failed, f"examples whose page shows a traceback: {failed}"
    not_run = [p.name for p in pages if not re.search(r"Total running time of the script:", p.read_text())]
    assert not not_run, f"examples not executed in this build (built with plot_gallery=0?): {not_run}"

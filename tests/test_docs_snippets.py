"""The Python blocks of the README and the docs run as written (self-contained ones), and every block is accounted
for: a new block must either run or be listed here as a fragment with the example that holds its complete code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# (document, index of the block in it) -> where the complete, tested code is
FRAGMENTS = {
    ("solvers.md", 0): "an API overview with Q and B left open; the solvers' doctests and tests/solvers",
    ("gmrf_modelling.md", 0): "examples/gmrf_modelling.py (rw2_smoothing), run by tests/test_examples.py",
    ("gmrf_modelling.md", 1): "examples/gmrf_modelling.py (matern_kriging), run by tests/test_examples.py",
    ("gmrf_modelling.md", 2): "sparseprec/examples/lip_cancer.py, run by tests/test_lip_cancer_demo.py",
    ("distributed.md", 2): "a cluster's scheduler address; the same fit_many call runs on a LocalCluster in block 1 "
    "and tests/distributed",
    ("distributed.md", 3): "dask-jobqueue on SLURM; the same fit_many call runs on a LocalCluster in block 1 and "
    "tests/distributed",
}


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for document in DOCUMENTS:
        for index, code in enumerate(re.findall(r"```python\n(.*?)```", document.read_text(), flags=re.S)):
            found.append((document.name, index, code))
    return found


BLOCKS = _blocks()


def test_every_fragment_is_still_a_block():
    assert set(FRAGMENTS) <= {(name, index) for name, index, _ in BLOCKS}


@pytest.mark.parametrize(
    "name, index, code",
    [block for block in BLOCKS if block[:2] not in FRAGMENTS],
    ids=[f"{name}-{index}" for name, index, _ in BLOCKS if (name, index) not in FRAGMENTS],
)
def test_block_runs(name, index, code, tmp_path):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, f"{name} block {index} failed:\n{result.stderr[-3000:]}"

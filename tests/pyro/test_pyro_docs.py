"""The code example of docs/pyro.md runs (with fewer SVI steps)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pyro
import pytest

pytestmark = pytest.mark.docs

DOC = Path(__file__).resolve().parents[2] / "docs" / "pyro.md"


def test_the_pyro_docs_example_runs():
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    code = code.replace("range(200)", "range(20)")
    pyro.clear_param_store()
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    assert math.isfinite(namespace["svi"].evaluate_loss())
    pyro.clear_param_store()

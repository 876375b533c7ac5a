"""The layer rule of docs/architecture.md: imports inside sparseprec point downward only, and the core never imports the
integrations' libraries.

Every module of the package is parsed (``ast``), every import read, module-level or inside a function (a call-time
import is still a dependency), relative imports resolved. A module may import its own subpackage and any lower layer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import sparseprec

PACKAGE = Path(sparseprec.__file__).parent

#: The layer of each top-level module or subpackage of sparseprec (a new one must be given its place here)
LAYERS = {
    "_validation": 0,
    "errors": 0,
    "pattern": 0.5,
    "ops": 1,
    "solvers": 2,
    "cholesky": 3,
    "structures": 4,
    "distributions": 5,
    "laplace": 5.5,
    "laplacian": 5.5,
    "inference": 5.5,
    "datasets": 5.9,  # real data sets: may use the whole core, not the integrations
    "pyro": 6,
    "gpytorch": 6,
    "distributed": 6,  # many fits with Dask (Dask imported lazily, when a client or the worker plugin is used)
    "arviz": 6,  # posteriors as arviz.InferenceData
    "examples": 7,  # runnable demos of the whole library, integrations included; nothing imports them
}
INTEGRATIONS = 6
#: third-party libraries only the integrations (and the demos above them) may import
INTEGRATION_LIBRARIES = ("pyro", "gpytorch", "linear_operator", "dask", "distributed", "arviz")


def _modules() -> list[tuple[str, Path]]:
    """``(dotted name, path)`` of every module of the package, ``__init__`` files named after their package."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["sparseprec", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """Absolute names of everything ``name`` imports, with their line numbers."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:  # ``from . import x`` may name a submodule
                candidate = f"{module}.{alias.name}"
                is_sub = candidate.startswith("sparseprec.") and _is_module(candidate)
                found.append((candidate if is_sub else module, node.lineno))
    return found


def _layer_of(name: str) -> float | None:
    parts = name.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


MODULES = [(name, path) for name, path in _modules() if name != "sparseprec"]  # the root re-exports every layer


def test_every_subpackage_has_a_layer():
    unplaced = sorted({name.split(".")[1] for name, _ in MODULES} - set(LAYERS))
    assert not unplaced, f"give these a layer in tests/test_layers.py and docs/architecture.md: {unplaced}"


def _violations(name: str, path: Path) -> list[str]:
    """The imports of module ``name`` (source at ``path``) that break the rule, one line each."""
    own = _layer_of(name)
    wrong = []
    for target, line in _imports(name, path):
        top = target.split(".")[0]
        if top in INTEGRATION_LIBRARIES and own < INTEGRATIONS:
            wrong.append(f"line {line}: {target} (only sparseprec.pyro / sparseprec.gpytorch import it)")
        if top != "sparseprec" or target.split(".")[1:2] == name.split(".")[1:2]:
            continue
        layer = _layer_of(target)
        if layer is None:  # the root package re-exports everything: importing it imports every layer
            wrong.append(f"line {line}: {target} (the package root; import the subpackage)")
        elif layer > own:
            wrong.append(f"line {line}: {target} (layer {layer} above {name.split('.')[1]}'s layer {own})")
    return wrong


@pytest.mark.parametrize("name", [name for name, _ in MODULES])
def test_imports_point_downward(name):
    wrong = _violations(name, dict(MODULES)[name])
    assert not wrong, f"{name} imports upward:\n" + "\n".join(wrong)


def test_importing_the_core_loads_no_integration_library():
    code = (
        "import sys, sparseprec, sparseprec.ops, sparseprec.solvers, sparseprec.cholesky, sparseprec.structures, "
        "sparseprec.distributions, sparseprec.datasets\n"
        f"loaded = [m for m in {INTEGRATION_LIBRARIES!r} if m in sys.modules]\n"
        "assert not loaded, loaded"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_the_checker_sees_relative_and_call_time_imports(tmp_path):
    """The checker itself, on a made-up ops module: a call-time relative import of a higher layer, of an integration
    library and of the package root are refused; a module-level import of a lower layer is not."""
    source = tmp_path / "made_up.py"
    source.write_text(
        "from ..pattern import pattern_of\n"
        "from . import _products\n"
        "def f():\n"
        "    from ..solvers import CG\n"
        "    import gpytorch\n"
        "    from .. import sparse_generic_solve\n"
    )
    wrong = _violations("sparseprec.ops.made_up", source)
    assert len(wrong) == 3, wrong
    assert "line 4: sparseprec.solvers" in wrong[0] and "gpytorch" in wrong[1] and "package root" in wrong[2]

"""Write the Sphinx inventories (``objects.inv`` format, version 2) of the external projects our documentation links
to, without the network: ``python docs/_inventories/make_inventories.py`` (run it after a docstring names a new
external object, and commit the ``*.inv`` files).

intersphinx would download each project's ``objects.inv`` at build time; CI has no network. Instead this script
collects the external dotted names our sources mention (``torch.Tensor``, ``pyro.infer.autoguide.AutoNormal``, ...)
and the external bases of our public classes, keeps those that exist in the installed packages (a name that does not
import is left out, so a typo stays a broken reference), and writes each with the URL its project's documentation
gives it. The URL schemes below are those of the projects' published sites (``docs.pytorch.org/docs/stable``,
``docs.pyro.ai/en/stable``, ...); where a project documents an object under another path than the one we use (torch's
distributions under their defining module, ``torch.nn.Parameter`` as ``torch.nn.parameter.Parameter``), the entry
points at that anchor.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SOURCES = [*ROOT.glob("sparseprec/**/*.py"), *ROOT.glob("docs/*.md"), *ROOT.glob("docs/*.rst")]
SOURCES += ROOT.glob("examples/*.py")
PROJECTS = ("torch", "pyro", "gpytorch", "linear_operator", "scipy", "numpy", "arviz", "geopandas", "distributed")
PYTHON_MODULES = ("collections.abc", "pathlib", "enum", "functools", "typing", "numbers", "dataclasses", "warnings")
BUILTINS = {  # name -> (role, page#anchor) in docs.python.org/3
    "int": ("class", "library/functions.html#int"),
    "float": ("class", "library/functions.html#float"),
    "bool": ("class", "library/functions.html#bool"),
    "complex": ("class", "library/functions.html#complex"),
    "str": ("class", "library/stdtypes.html#str"),
    "bytes": ("class", "library/stdtypes.html#bytes"),
    "tuple": ("class", "library/stdtypes.html#tuple"),
    "list": ("class", "library/stdtypes.html#list"),
    "dict": ("class", "library/stdtypes.html#dict"),
    "set": ("class", "library/stdtypes.html#set"),
    "frozenset": ("class", "library/stdtypes.html#frozenset"),
    "slice": ("class", "library/functions.html#slice"),
    "object": ("class", "library/functions.html#object"),
    "callable": ("function", "library/functions.html#callable"),
    "None": ("data", "library/constants.html#None"),
    "NotImplemented": ("data", "library/constants.html#NotImplemented"),
    "ValueError": ("exception", "library/exceptions.html#ValueError"),
    "TypeError": ("exception", "library/exceptions.html#TypeError"),
    "RuntimeError": ("exception", "library/exceptions.html#RuntimeError"),
    "IndexError": ("exception", "library/exceptions.html#IndexError"),
    "KeyError": ("exception", "library/exceptions.html#KeyError"),
    "ImportError": ("exception", "library/exceptions.html#ImportError"),
    "FloatingPointError": ("exception", "library/exceptions.html#FloatingPointError"),
    "NotImplementedError": ("exception", "library/exceptions.html#NotImplementedError"),
    "OSError": ("exception", "library/exceptions.html#OSError"),
    "ArithmeticError": ("exception", "library/exceptions.html#ArithmeticError"),
    "Exception": ("exception", "library/exceptions.html#Exception"),
    "UserWarning": ("exception", "library/exceptions.html#UserWarning"),
    "RuntimeWarning": ("exception", "library/exceptions.html#RuntimeWarning"),
    "Warning": ("exception", "library/exceptions.html#Warning"),
}
TORCH_PAGES = {  # objects torch documents on a page of their own, not under generated/
    "torch.dtype": "tensor_attributes.html#torch.dtype",
    "torch.layout": "tensor_attributes.html#torch.layout",
    "torch.device": "tensor_attributes.html#torch.device",
    "torch.memory_format": "tensor_attributes.html#torch.memory_format",
    "torch.Size": "size.html#torch.Size",
    "torch.autograd.Function": "autograd.html#torch.autograd.Function",
    "torch.nn.Parameter": "generated/torch.nn.parameter.Parameter.html#torch.nn.parameter.Parameter",
    "torch.nn.Module": "generated/torch.nn.Module.html#torch.nn.Module",
    "torch.distributions": "distributions.html#module-torch.distributions",
    "torch.sparse": "sparse.html#module-torch.sparse",
}


def _object(name: str) -> object | None:
    """The installed object at ``name``, or ``None`` where the name does not exist."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj
    return None


def _role(obj: object) -> str:
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isroutine(obj) or callable(obj):
        return "function"
    return "data"


def _canonical(obj: object, name: str) -> str:
    """``module.qualname`` of a class or function (the path its project's autodoc pages use), else ``name``."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if inspect.isclass(obj) and module and qualname and "<" not in qualname:
        return f"{module}.{qualname}"
    return name


def _torch(name: str, obj: object) -> str | None:
    import torch

    if name in TORCH_PAGES:
        return TORCH_PAGES[name]
    if name.startswith("torch.distributions."):  # one page, anchors under the defining module
        target = _canonical(obj, name) if inspect.isclass(obj) else name
        if inspect.ismodule(obj):
            return f"distributions.html#module-{name}"
        return f"distributions.html#{target}"
    if isinstance(obj, (torch.dtype, torch.layout)):  # torch.float64, torch.sparse_csr: listed, not pages
        kind = "torch.dtype" if isinstance(obj, torch.dtype) else "torch.layout"
        return TORCH_PAGES[kind]
    if inspect.ismodule(obj) or "._" in name or not (inspect.isclass(obj) or callable(obj)):
        return None
    return f"generated/{name}.html#{name}"


def _generated(base: str) -> Callable[[str, object], str | None]:
    """Projects with one generated page per public name (NumPy, SciPy, ArviZ)."""

    def url(name: str, obj: object) -> str | None:
        if "._" in name or inspect.ismodule(obj):
            return None
        return f"{base}{name}.html#{name}"

    return url


def _pyro(name: str, obj: object) -> str | None:
    """Pyro's pages (docs/source/*.rst): autoguides under ``pyro.infer.autoguide``, MCMC under its ``api`` module,
    SVI and the ELBOs and the distribution mixins under their defining modules."""
    canonical = _canonical(obj, name)
    if canonical.startswith("pyro.infer.autoguide.") and inspect.isclass(obj):
        return f"infer.autoguide.html#pyro.infer.autoguide.{obj.__qualname__}"
    if canonical == "pyro.infer.mcmc.api.MCMC":
        return "mcmc.html#pyro.infer.mcmc.api.MCMC"
    if inspect.isclass(obj) and obj.__qualname__ in ("NUTS", "HMC") and canonical.startswith("pyro.infer.mcmc"):
        return f"mcmc.html#pyro.infer.mcmc.{obj.__qualname__}"
    if canonical.startswith(("pyro.infer.svi.", "pyro.infer.elbo.", "pyro.infer.trace_elbo.",
                             "pyro.infer.trace_mean_field_elbo.")):  # fmt: skip
        return f"inference_algos.html#{canonical}"
    if canonical.startswith("pyro.distributions.torch_distribution."):
        return f"distributions.html#{canonical}"
    return None


def _gpytorch(name: str, obj: object) -> str | None:
    """GPyTorch's pages document each public class under its subpackage (``gpytorch.likelihoods.X``)."""
    pages = {"likelihoods": "likelihoods", "mlls": "marginal_log_likelihoods", "kernels": "kernels", "means": "means",
             "models": "models", "distributions": "distributions", "variational": "variational"}  # fmt: skip
    parts = name.split(".")
    if len(parts) != 3 or parts[1] not in pages or inspect.ismodule(obj) or parts[2].startswith("_"):
        return None
    return f"{pages[parts[1]]}.html#{name}"


def _linear_operator(name: str, obj: object) -> str | None:
    """linear_operator documents its base class as ``linear_operator.LinearOperator`` (linear_operator.rst)."""
    import linear_operator

    return "linear_operator.html#linear_operator.LinearOperator" if obj is linear_operator.LinearOperator else None


def _distributed(name: str, obj: object) -> str | None:
    """dask.distributed: the client API on api.html, the plugin base classes on plugins.html."""
    if name == "distributed.Client":
        return "api.html#distributed.Client"
    if name.startswith("distributed.diagnostics.plugin.") and inspect.isclass(obj):
        return f"plugins.html#{name}"
    return None


RULES: dict[str, tuple[str, Callable[[str, object], str | None]]] = {
    "torch": ("stable", _torch),
    "pyro": ("stable", _pyro),
    "gpytorch": ("stable", _gpytorch),
    "linear_operator": ("stable", _linear_operator),
    "scipy": ("stable", _generated("reference/generated/")),
    "numpy": ("stable", _generated("reference/generated/")),
    "arviz": ("stable", _generated("api/generated/")),
    "geopandas": ("stable", _generated("docs/reference/api/")),
    "distributed": ("stable", _distributed),
}


def referenced_names() -> set[str]:
    """External dotted names mentioned in our sources, and the external bases of our classes."""
    prefixes = "|".join(re.escape(p) for p in PROJECTS + PYTHON_MODULES)
    pattern = re.compile(rf"(?<![\w.])((?:{prefixes})(?:\.[A-Za-z_]\w*)+)")
    names = set()
    for path in SOURCES:
        names.update(pattern.findall(path.read_text(encoding="utf-8")))
    sys.path.insert(0, str(ROOT))
    import sparseprec  # noqa: F401

    for sub in ("pattern", "ops", "solvers", "cholesky", "structures", "distributions", "laplace", "datasets", "pyro",
                "gpytorch", "arviz", "distributed"):  # fmt: skip
        module = importlib.import_module(f"sparseprec.{sub}")
        for name in module.__all__:
            obj = getattr(module, name)
            for base in getattr(obj, "__bases__", ()) if inspect.isclass(obj) else ():
                names.add(f"{base.__module__}.{base.__qualname__}")
    return names


def write(path: Path, project: str, version: str, entries: list[tuple[str, str, str]]) -> None:
    """Write ``entries`` (name, role, uri) as a version-2 inventory."""
    lines = [f"{name} py:{role} 1 {uri} -" for name, role, uri in sorted(set(entries))]
    header = (f"# Sphinx inventory version 2\n# Project: {project}\n# Version: {version}\n"
              "# The remainder of this file is compressed using zlib.\n")  # fmt: skip
    path.write_bytes(header.encode() + zlib.compress(("\n".join(lines) + "\n").encode()))


def main() -> None:
    names = referenced_names()
    for project, (version, rule) in RULES.items():
        entries = []
        for name in sorted(n for n in names if n.split(".")[0] == project):
            obj = _object(name)
            if obj is None:
                continue
            uri = rule(name, obj)
            if uri is None:
                continue
            entries.append((name, _role(obj), uri))
            if inspect.isclass(obj) and obj.__name__[:1].islower():  # torch.no_grad: a class used as a function
                entries.append((name, "function", uri))
            canonical = _canonical(obj, name)  # show-inheritance writes bases by their defining path
            if canonical != name and canonical.split(".")[0] == project and rule(canonical, obj) is not None:
                entries.append((canonical, _role(obj), uri))
        write(HERE / f"{project}.inv", project, version, entries)
        print(f"{project}.inv: {len(entries)} names")
    python = [(name, role, uri) for name, (role, uri) in BUILTINS.items()]
    for name in sorted(n for n in names if n.startswith(PYTHON_MODULES)):
        obj = _object(name)
        if obj is None or inspect.ismodule(obj):
            continue
        module = next(m for m in PYTHON_MODULES if name.startswith(m + "."))
        python.append((name, _role(obj), f"library/{module}.html#{name}"))
    write(HERE / "python.inv", "Python", "3", python)
    print(f"python.inv: {len(python)} names")


if __name__ == "__main__":
    main()

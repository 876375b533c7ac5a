"""Sphinx configuration of the documentation site.

``make -C docs html`` builds it with the example gallery in quick mode (every script of ``examples/`` run with
``--quick``), ``make -C docs html-full`` with the examples at full size, ``make -C docs html-noplot`` without running
them. Everything the site needs is local: MathJax comes with sphinx-mathjax-offline and the inventories of the external
projects we link to are files in ``_inventories/`` (regenerate them with
``python docs/_inventories/make_inventories.py``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]  # the source tree (not an installed copy) and our Sphinx hooks

project = "sparseprec"
author = "the sparseprec developers"
copyright = "the sparseprec developers"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/mathjax: no CDN
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "executed_block",  # docs/_ext: the getting-started page's code runs at build time
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_inventories", "_ext", "_templates", "auto_examples/*.ipynb", "auto_examples/*.py"]
templates_path = ["_templates"]

# --- API pages: one per public name (docs/api/, generated at build time, not committed) ---
autosummary_generate = True
autosummary_ignore_module_all = False
napoleon_numpy_docstring = True
napoleon_google_docstring = False
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False  # torch's inherited docstrings are not valid reStructuredText

# --- Markdown pages and maths ---
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath", "amsmath"]

# --- Theme ---
html_theme = "furo"
html_title = "sparseprec"
html_static_path = ["_static"]
html_css_files = ["sparseprec.css"]

# --- Example gallery: every script of examples/ runs at build time ---
sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r".*\.py$",  # execute every example
    "within_subsection_order": "gallery_hooks.ExampleOrder",
    "reset_argv": "gallery_hooks.reset_argv",  # --quick (unless SPARSEPREC_GALLERY=full) and --output
    "image_scrapers": ("gallery_hooks.written_figure",),  # the PNG each script writes with savefig
    "reset_modules": ("matplotlib", "gallery_hooks.reset_state"),
    "reset_modules_order": "both",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 0,
    "capture_repr": (),
    "matplotlib_animations": False,
    "write_computation_times": True,
}

# --- Cross-references ---
# Our own references must resolve (nitpicky). External projects resolve through the inventories in _inventories/,
# generated offline by _inventories/make_inventories.py (CI has no network: nothing is downloaded at build time).
nitpicky = True
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", "_inventories/python.inv"),
    "torch": ("https://docs.pytorch.org/docs/stable", "_inventories/torch.inv"),
    "pyro": ("https://docs.pyro.ai/en/stable", "_inventories/pyro.inv"),
    "gpytorch": ("https://docs.gpytorch.ai/en/stable", "_inventories/gpytorch.inv"),
    "linear_operator": ("https://linear-operator.readthedocs.io/en/stable", "_inventories/linear_operator.inv"),
    "scipy": ("https://docs.scipy.org/doc/scipy", "_inventories/scipy.inv"),
    "numpy": ("https://numpy.org/doc/stable", "_inventories/numpy.inv"),
    "arviz": ("https://python.arviz.org/en/stable", "_inventories/arviz.inv"),
    "geopandas": ("https://geopandas.org/en/stable", "_inventories/geopandas.inv"),
    "distributed": ("https://distributed.dask.org/en/stable", "_inventories/distributed.inv"),
}
intersphinx_cache_limit = 0
nitpick_ignore_regex = [
    # numpy-style "Parameters" types are prose ("(n, n) sparse CSR tensor", "float, optional"): napoleon turns each
    # into a cross-reference; only dotted names of our package must resolve.
    (r"py:(class|obj)", r"(?!sparseprec\.)[^.]*"),
    (r"py:(class|obj)", r".*\s.*"),
    # names of external projects that their inventories (written by make_inventories.py) do not list: private
    # classes in signatures and bases (torch._C._TensorBase, pyro's mixins' internals) have no public page.
    (r"py:.*", r"(torch|pyro|gpytorch|linear_operator|scipy|numpy|arviz|geopandas|distributed)\..*\._.*"),
    # gpytorch's noise base class (our SparsePrecisionNoise's base) has no page in GPyTorch's documentation
    (r"py:class", r"gpytorch\.likelihoods\.noise_models\.Noise"),
]


# --- References to sparseprec objects under any path resolve to the page where the object is documented ---
# Docstrings name objects where they are defined (``sparseprec.laplace.newton.Newton``), through a re-export
# (``sparseprec.GMRF``) or relative to their module or class (``:meth:`log_prob```); the API pages document each
# object once, under its subpackage. This handler follows the path through the imported objects, so a reference to
# something that does not exist still fails the nitpicky build.
_PUBLIC: dict[int, str] = {}
_LAYERS = ("pattern", "ops", "solvers", "cholesky", "structures", "distributions", "laplace", "datasets", "pyro",
           "gpytorch", "arviz", "distributed")  # fmt: skip
_DOCUMENTED_MODULES = ("sparseprec.laplace.model", "sparseprec.laplace.likelihoods", "sparseprec.laplace.newton",
                       "sparseprec.laplace.approximation", "sparseprec.laplace.hyper",
                       "sparseprec.examples.lip_cancer")  # fmt: skip


def _subpackages() -> list:
    return [importlib.import_module(f"sparseprec.{sub}") for sub in _LAYERS]


def _public_names() -> dict[int, str]:
    """``id(object) -> documented name`` for the documented modules and the classes and functions of the
    subpackages' ``__all__``."""
    if not _PUBLIC:
        import sparseprec

        _PUBLIC[id(sparseprec)] = "sparseprec"
        _PUBLIC[id(sparseprec.NotTwiceDifferentiableError)] = "sparseprec.NotTwiceDifferentiableError"
        for sub in _LAYERS:
            module = importlib.import_module(f"sparseprec.{sub}")
            _PUBLIC.setdefault(id(module), module.__name__)
            for name in module.__all__:
                obj = getattr(module, name)
                if callable(obj) or isinstance(obj, type(module)):  # not data: ids of ints are shared
                    _PUBLIC.setdefault(id(obj), f"sparseprec.{sub}.{name}")
        for name in _DOCUMENTED_MODULES:
            _PUBLIC.setdefault(id(importlib.import_module(name)), name)
    return _PUBLIC


def _public_candidates(dotted: str) -> list[str]:
    """Documented names that ``dotted`` may mean, best first: the object itself under its documented name, then
    the enclosing documented objects (a method without a docstring links to its class's page)."""
    public = _public_names()
    parts = dotted.split(".")
    obj, path, best, modules = None, [], None, []
    for index, part in enumerate(parts):
        child = getattr(obj, part, None) if obj is not None else None
        if child is None and index == len(parts) - 1 and part in getattr(obj, "__dataclass_fields__", {}):
            break  # a dataclass field without a class-level default: documented with its class
        if child is None:
            try:
                child = importlib.import_module(".".join(parts[: index + 1]))
            except Exception:  # not a path to an object: a typo, or a prose "type" napoleon made into a reference
                return []
        obj = child
        path.append(part)
        if id(obj) in public:
            best = (public[id(obj)], index + 1)
            if isinstance(obj, type(importlib)):
                modules.append(public[id(obj)])
    if best is None:
        return []
    name, used = best
    found = [".".join([name, *parts[used:]])]
    found += [".".join([name, *parts[used:stop]]) for stop in range(len(parts) - 1, used - 1, -1)]
    found += [f"{module}.{parts[-1]}" for module in reversed(modules)]  # data re-exported by a subpackage
    return list(dict.fromkeys(found))


def _resolve_alias(app, env, node, contnode):
    """``missing-reference`` handler for ``py`` references to sparseprec objects (see above)."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    candidates = [target]
    if node.get("py:module"):
        if node.get("py:class"):
            candidates.append(f"{node['py:module']}.{node['py:class']}.{target}")
        candidates.append(f"{node['py:module']}.{target}")
    if node.get("py:module") and "." not in target:  # a bare name: a member of one class, or a name of one layer
        module = importlib.import_module(node["py:module"])
        owners = [f"{module.__name__}.{name}.{target}" for name in getattr(module, "__all__", ())
                  if isinstance(getattr(module, name), type) and hasattr(getattr(module, name), target)]  # fmt: skip
        owners += [f"{sub.__name__}.{target}" for sub in _subpackages() if target in sub.__all__]
        if len(owners) == 1:
            candidates.append(owners[0])
    domain = env.get_domain("py")
    for candidate in candidates:
        if not candidate.startswith("sparseprec."):
            continue
        for public in _public_candidates(candidate):
            for reftype in (node["reftype"], "obj"):
                resolved = domain.resolve_xref(env, node["refdoc"], app.builder, reftype, public, node, contnode)
                if resolved is not None:
                    return resolved
    return None


def setup(app):
    app.connect("missing-reference", _resolve_alias)

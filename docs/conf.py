"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build/html`` (or ``make -C docs html``)."""

project = "sparseprec"
author = "the sparseprec developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False  # torch's inherited docstrings are not valid reStructuredText
myst_heading_anchors = 3
exclude_patterns = ["_build"]
html_theme = "alabaster"

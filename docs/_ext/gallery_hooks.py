"""Hooks of the example gallery (sphinx-gallery), named by dotted path in ``docs/conf.py`` so the configuration stays
picklable.

Every script in ``examples/`` is executed in the Sphinx process as ``python examples/<name>.py --quick --output
<png>`` would run it (``--quick`` left out when ``SPARSEPREC_GALLERY=full``). The scripts save their figure with
``savefig`` (some close it afterwards), so the figure shown is the PNG the script wrote: :func:`written_figure` moves
it into the gallery's image directory. :func:`reset_state` undoes what a script may change in the process (threads,
default dtype, Pyro's parameter store, open figures) so that each example runs as it would on its own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

_THREADS = torch.get_num_threads()
_DTYPE = torch.get_default_dtype()


def full_gallery() -> bool:
    """Whether the gallery runs the examples at full size (``SPARSEPREC_GALLERY=full``) instead of ``--quick``."""
    mode = os.environ.get("SPARSEPREC_GALLERY", "quick")
    if mode not in ("quick", "full"):
        raise ValueError(f"SPARSEPREC_GALLERY must be 'quick' or 'full', got {mode!r}")
    return mode == "full"


def _written_path(script_vars: dict) -> Path:
    images = Path(script_vars["image_path_iterator"].image_path).parent
    return images / "written" / f"{Path(script_vars['src_file']).stem}.png"


def reset_argv(gallery_conf: dict, script_vars: dict) -> list[str]:
    """The command-line arguments of an example: ``--quick`` (unless full) and ``--output`` where it takes one."""
    argv = [] if full_gallery() else ["--quick"]
    if '"--output"' in Path(script_vars["src_file"]).read_text(encoding="utf-8"):
        output = _written_path(script_vars)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.unlink(missing_ok=True)
        argv += ["--output", str(output)]
    return argv


def written_figure(block, block_vars: dict, gallery_conf: dict) -> str:
    """Image scraper: the PNG the example wrote to its ``--output`` path, if it wrote one during this block."""
    from sphinx_gallery.scrapers import figure_rst

    written = _written_path(block_vars)
    if not written.is_file():
        return ""
    target = next(iter(block_vars["image_path_iterator"]))
    shutil.move(written, target)
    return figure_rst([target], gallery_conf["src_dir"])


def reset_state(gallery_conf: dict, fname: str) -> None:
    """Before and after each example: close figures, restore torch's threads and default dtype, clear Pyro's store."""
    import matplotlib.pyplot as plt
    import pyro

    plt.close("all")
    torch.set_num_threads(_THREADS)
    torch.set_default_dtype(_DTYPE)
    pyro.clear_param_store()


class ExampleOrder:
    """Gallery order: the user guide's path (disease mapping first), then the rest by file name."""

    FIRST = (
        "lip_cancer_demo.py",
        "nc_sids.py",
        "gmrf_modelling.py",
        "laplace_lattice.py",
        "atlas.py",
        "pyro_sparse_guide.py",
        "gp_correlated_noise.py",
        "gp_sparse_variational.py",
        "choosing_a_solver.py",
        "fill_in_and_logdet.py",
        "learned_image_factor.py",
        "ops_demo.py",
    )

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple[int, str]:
        name = Path(filename).name
        return (self.FIRST.index(name) if name in self.FIRST else len(self.FIRST), name)

    def __repr__(self) -> str:  # sphinx-gallery compares configurations by repr
        return f"{type(self).__name__}()"

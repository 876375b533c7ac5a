"""The ``executed-output`` directive: run the Python code block just above it at build time and show what it printed
and the PNG figures it wrote.

Used by ``getting_started.md`` so that the page shows the real output of its code (the same block
``tests/test_docs_snippets.py`` runs). The code runs in a fresh interpreter in a temporary directory, with the source
tree first on ``sys.path``; it runs only when the gallery does (not with ``-D plot_gallery=0``), and a failure fails
the build. Figures are copied to ``auto_examples/_executed/`` (generated, like the gallery).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from docutils import nodes
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective


class ExecutedOutput(SphinxDirective):
    """Show the standard output and the figures of the preceding ``python`` code block of the same document."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        blocks = [node for node in self.state.document.findall(nodes.literal_block) if node.get("language") == "python"]
        if not blocks:
            raise self.error("executed-output: no python code block above it")
        plot = str(self.config.plot_gallery).lower() not in ("0", "false", "")  # sphinx-gallery's -D plot_gallery
        if not plot:
            note = "(The output of this block is shown when the site is built with its examples.)"
            return [nodes.paragraph(text=note)]
        code = blocks[-1].astext()
        root = Path(self.env.srcdir).parent
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
               "MPLBACKEND": "Agg"}  # fmt: skip
        with tempfile.TemporaryDirectory() as work:
            result = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                                    timeout=600)  # fmt: skip
            if result.returncode != 0:
                raise ExtensionError(f"{self.env.docname}: the code block failed:\n{result.stderr[-3000:]}")
            output = nodes.literal_block(result.stdout, result.stdout, language="text")
            shown: list[nodes.Node] = [output]
            target = Path(self.env.srcdir) / "auto_examples" / "_executed"
            target.mkdir(parents=True, exist_ok=True)
            for png in sorted(Path(work).glob("*.png")):
                name = f"{Path(self.env.docname).name}_{png.name}"
                shutil.copyfile(png, target / name)
                shown.append(nodes.image(uri=f"/auto_examples/_executed/{name}", alt=png.name))
                self.env.note_dependency(str(target / name))
        return shown


def setup(app):
    app.add_directive("executed-output", ExecutedOutput)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

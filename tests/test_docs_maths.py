"""The maths on the pages that carry the most of it are LaTeX for MathJax, not Unicode in code blocks.

A "Unicode formula" is text that uses the characters plain-text maths is written with where LaTeX would be:
superscript and subscript digits and letters (``⁻¹``, ``ᵀ``, ``²``, ``₊``), vulgar fractions (``½``), operators and
relations (``√ ∑ ∏ ∫ ∂ ∇ ‖ ≈ ≠ ≤ ≥ ∝ ⊙ ∘ ↦``) and Greek letters. A code block that is not Python (a fence without a
language, ``text``, ``math`` written as a code block, an indented block) holding one of them is a formula shown as
code: it must be ``$$ … $$`` instead. Python blocks are code and may say ``# τ = 1`` in a comment.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ["concepts.md", "gmrf_modelling.md", "laplace.md", "solvers.md"]

SUPERSCRIPTS_SUBSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱᵀ₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₖₙ"
FRACTIONS = "½⅓¼¾"
OPERATORS = "√∑∏∫∂∇‖≈≠≤≥∝⊙∘↦∞±∓"
GREEK = "αβγδεζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΦΨΩ"
FORMULA_CHARACTERS = frozenset(SUPERSCRIPTS_SUBSCRIPTS + FRACTIONS + OPERATORS + GREEK)

FENCE = re.compile(r"^(?P<fence>```+|~~~+)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=fence)\s*$", re.M | re.S)
INLINE_MATH = re.compile(r"(?<![\\$])\$(?=\S)[^$\n]+?(?<=\S)\$(?!\$)")
DISPLAY_MATH = re.compile(r"^\$\$\s*$.+?^\$\$", re.M | re.S)


def _non_python_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block that is not Python, and of every indented code block."""
    blocks = []
    for match in FENCE.finditer(text):
        info = match["info"].strip().strip("{}").split(" ")[0].lower()
        if info not in ("python", "py", "pycon", "python3"):
            blocks.append((info or "(no language)", match["body"]))
    outside = FENCE.sub("", text)
    # an indented code block: 4+ spaces after a blank line, not inside a list item (those are continuation lines)
    for match in re.finditer(r"(?:^\n)((?:^ {4,}\S[^\n]*\n)+)", outside, flags=re.M):
        start = outside.rfind("\n\n", 0, match.start())
        preceding = outside[start : match.start()].lstrip("\n")
        if not re.match(r"^\s*([*+-]|\d+\.)\s", preceding) and not preceding.startswith(" "):
            blocks.append(("(indented)", match.group(1)))
    return blocks


@pytest.mark.parametrize("page", PAGES)
def test_no_unicode_formula_in_code_blocks(page):
    text = (DOCS / page).read_text()
    offending = []
    for info, body in _non_python_blocks(text):
        found = sorted(set(body) & FORMULA_CHARACTERS)
        if found:
            offending.append(f"{info} block with {''.join(found)!r}: {body.strip()[:100]!r}")
    assert not offending, f"{page}: write these formulas as $$ … $$ maths:\n" + "\n".join(offending)


@pytest.mark.parametrize("page", PAGES)
def test_page_has_latex_maths(page):
    text = FENCE.sub("", (DOCS / page).read_text())
    assert INLINE_MATH.search(text) or DISPLAY_MATH.search(text), f"{page} has no $…$ or $$…$$ maths"


def test_the_check_sees_a_unicode_formula():
    """The checks above are not vacuous: a plain fence holding a Unicode formula is found, a Python one is not."""
    page = "text\n\n```\nlog p(y) = ½ log|τR|*\n```\n\n```python\nx = 1  # τ = 1\n```\n"
    blocks = _non_python_blocks(page)
    assert [info for info, _ in blocks] == ["(no language)"]
    assert set(blocks[0][1]) & FORMULA_CHARACTERS
    assert INLINE_MATH.search("where $\\tau R + W$ is") and not INLINE_MATH.search("costs \\$5 or `$HOME`")

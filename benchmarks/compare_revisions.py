"""A/B timing of two source trees of sparseprec with one of the benchmark scripts, interleaved in one session.

A refactoring must not slow the library down; tables written weeks apart on a shared machine cannot show that, but
two trees measured in turn in one session can. This script runs ``benchmarks/<script> --no-write <args>`` from each
tree (each tree's own script, or with ``--same-script`` tree B's for both; ``PYTHONPATH`` set to the tree so its
``sparseprec`` is imported) ``--rounds``
times, alternating A, B, A, B, ..., collects the rows each run prints (Python dict literals, one per line), and
reports for every row and every timing column the median over rounds of A and of B (with their min–max over the
rounds) and the ratio B / A.

Example (the tree of a base commit checked out with ``git worktree add /tmp/base <commit>``)::

    python benchmarks/compare_revisions.py --a /tmp/base --b . --rounds 3 bench_cholesky.py --sizes 100 300

Rows are matched by their non-numeric fields; a row present in only one tree is reported as such.
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import subprocess
import sys
from pathlib import Path

TIME_KEYS = ("ms", "seconds", "time", "fwd", "bwd")


def run(tree: Path, script_tree: Path, script: str, args: list[str]) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, str(script_tree / "benchmarks" / script), "--no-write", *args]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                rows.append(ast.literal_eval(line))
            except (ValueError, SyntaxError):
                continue
    return rows


def key_of(row: dict) -> tuple:
    return tuple((k, v) for k, v in sorted(row.items()) if not isinstance(v, (int, float)) or isinstance(v, bool))


def timings(row: dict) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in row.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and any(t in k for t in TIME_KEYS)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", type=Path, required=True, help="source tree A (the reference)")
    parser.add_argument("--b", type=Path, required=True, help="source tree B")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--same-script", action="store_true", help="run tree B's script against both trees (a script A does not have)"
    )
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args()
    results: dict[str, dict[tuple, dict[str, list[float]]]] = {"A": {}, "B": {}}
    for _ in range(ns.rounds):
        for label, tree in (("A", ns.a.resolve()), ("B", ns.b.resolve())):
            script_tree = ns.b.resolve() if ns.same_script else tree
            for row in run(tree, script_tree, ns.script, ns.args):
                slot = results[label].setdefault(key_of(row), {})
                for k, v in timings(row).items():
                    slot.setdefault(k, []).append(v)
    print("| row | column | A median (min–max) | B median (min–max) | B / A | rounds |\n|---|---|---|---|---|---|")
    for key in sorted(set(results["A"]) | set(results["B"]), key=str):
        a, b = results["A"].get(key), results["B"].get(key)
        name = ", ".join(str(v) for _, v in key)
        if a is None or b is None:
            print(
                f"| {name} | — | {'missing' if a is None else 'present'} | {'missing' if b is None else 'present'} "
                "| — | — |"
            )
            continue
        for column in sorted(set(a) & set(b)):
            ma, mb = statistics.median(a[column]), statistics.median(b[column])
            ratio = mb / ma if ma > 0 else float("nan")
            spread_a = f"{ma:.4g} ({min(a[column]):.4g}–{max(a[column]):.4g})"
            spread_b = f"{mb:.4g} ({min(b[column]):.4g}–{max(b[column]):.4g})"
            print(f"| {name} | {column} | {spread_a} | {spread_b} | {ratio:.2f} | {len(a[column])}/{len(b[column])} |")


if __name__ == "__main__":
    main()

"""Benchmark of sparse least squares: sparse_generic_lstsq vs torchsparsegradutils, LSMR/LSQR vs SciPy, in one run.

Problem
    ``A`` of shape ``(m, n)``, ``m = 4n``, float64 CSR: each row holds 5 standard normal values in distinct random
    columns (full column rank: about 20 entries per column); ``B`` standard normal with ``k`` columns. n ∈ {10⁴, 10⁵}.
Rows (medians of interleaved rounds after a warm-up, with the min–max over the rounds)
    sparse_generic_lstsq fwd+bwd   ``sparse_generic_lstsq(A, B, lstsq=LSMR(atol=1e-6, btol=1e-6))`` and the backward
                                   of ``X.sum()`` w.r.t. A's stored values and B, vs torchsparsegradutils'
                                   ``sparse_generic_lstsq(A, B)`` (its LSMR, same atol = btol = 1e-6, one column at a
                                   time; its backward: two LSMR runs per column);
    LSMR / LSQR forward            ``LSMR(atol=1e-6, btol=1e-6).solve(A, b)`` (and LSQR) vs SciPy's ``lsmr``/``lsqr``
                                   on the same CSR matrix with the same tolerances, k = 1; ``ms / iter`` divides by each
                                   run's own iteration count (the per-iteration cost is what the two implementations
                                   share; their counts may differ by rounding).
Run ``python benchmarks/bench_lstsq.py`` (~10 min on 2 cores) or ``--sizes 10000`` for a quick run; the table is
written to ``docs/benchmarks.md`` between markers (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, package_version, round_times, write_section  # noqa: E402

import sparseprec  # noqa: E402
from sparseprec import sparse_generic_lstsq  # noqa: E402
from sparseprec.solvers import LSMR, LSQR  # noqa: E402

try:
    import torchsparsegradutils as tsgu
    from torchsparsegradutils.utils import lsmr as tsgu_lsmr
except ImportError:  # pragma: no cover - the comparison needs the `test` extra
    tsgu = None

BEGIN, END = "<!-- bench_lstsq:begin -->", "<!-- bench_lstsq:end -->"
TOL = 1e-6
LARGE = 50_000  # n × k above which torchsparsegradutils' fwd+bwd is timed once
PER_ROW = 5


def problem(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    m = 4 * n
    # 5 distinct columns per row: a random start and 5 distinct random offsets (mod n)
    offsets = np.stack([rng.choice(n, PER_ROW, replace=False) for _ in range(64)])
    cols = (rng.integers(0, n, m)[:, None] + offsets[rng.integers(0, 64, m)]) % n
    rows = np.repeat(np.arange(m), PER_ROW)
    As = sp.csr_matrix((rng.standard_normal(m * PER_ROW), (rows, cols.ravel())), shape=(m, n))
    As.sum_duplicates()
    As.sort_indices()
    A = torch.sparse_csr_tensor(
        torch.from_numpy(As.indptr).long(), torch.from_numpy(As.indices).long(), torch.from_numpy(As.data), (m, n)
    )
    B = torch.from_numpy(rng.standard_normal((m, k)))
    return As, A, B


def spread(times: list[float]) -> tuple[float, float, float]:
    return statistics.median(times), min(times), max(times)


def run_solvers(rows: list[dict], n: int, repeats: int) -> None:
    """LSMR/LSQR forward on one column vs SciPy (and torchsparsegradutils' lsmr): time per iteration."""
    As, A, B = problem(n, 1)
    b = B[:, 0].contiguous()
    b_np = b.numpy()
    lsmr_s, lsqr_s = LSMR(atol=TOL, btol=TOL), LSQR(atol=TOL, btol=TOL)
    its = {
        "LSMR (sparseprec)": int(lsmr_s.solve(A, b).iterations),
        "lsmr (SciPy)": int(spla.lsmr(As, b_np, atol=TOL, btol=TOL)[2]),
        "LSQR (sparseprec)": int(lsqr_s.solve(A, b).iterations),
        "lsqr (SciPy)": int(spla.lsqr(As, b_np, atol=TOL, btol=TOL)[2]),
    }
    fns = {
        "LSMR (sparseprec)": lambda: lsmr_s.solve(A, b),
        "lsmr (SciPy)": lambda: spla.lsmr(As, b_np, atol=TOL, btol=TOL),
        "LSQR (sparseprec)": lambda: lsqr_s.solve(A, b),
        "lsqr (SciPy)": lambda: spla.lsqr(As, b_np, atol=TOL, btol=TOL),
    }
    if tsgu is not None:
        its["lsmr (torchsparsegradutils)"] = int(tsgu_lsmr(A, b, atol=TOL, btol=TOL)[1])
        fns["lsmr (torchsparsegradutils)"] = lambda: tsgu_lsmr(A, b, atol=TOL, btol=TOL)
    med = {name: spread(t) for name, t in round_times(fns, repeats).items()}
    common = dict(n=n, m=4 * n, nnz=A.values().numel(), k=1, runs=repeats)
    for ours, peers in (
        ("LSMR (sparseprec)", ["lsmr (SciPy)", "lsmr (torchsparsegradutils)"]),
        ("LSQR (sparseprec)", ["lsqr (SciPy)"]),
    ):
        per_it_ours = med[ours][0] / its[ours]
        for name in [ours, *peers]:
            if name in med:
                t, lo, hi = med[name]
                rows.append(dict(common, what=name, iterations=its[name], ms=t * 1e3, lo=lo * 1e3, hi=hi * 1e3,
                                 per_it_ms=t / its[name] * 1e3, ratio=t / its[name] / per_it_ours))  # fmt: skip
                print(rows[-1], flush=True)


def run_fwd_bwd(rows: list[dict], n: int, k: int, repeats: int) -> None:
    """sparse_generic_lstsq forward + backward vs torchsparsegradutils'."""
    _, A, B = problem(n, k)
    solver = LSMR(atol=TOL, btol=TOL)

    def ours():
        Al = A.detach().requires_grad_()
        Bl = B.clone().requires_grad_()
        sparse_generic_lstsq(Al, Bl, lstsq=solver).sum().backward()

    def theirs():
        Al = A.detach().requires_grad_()
        Bl = B.clone().requires_grad_()
        tsgu.sparse_generic_lstsq(Al, Bl).sum().backward()

    fns = {"fwd+bwd (sparseprec)": ours}
    once = set()
    if tsgu is not None:
        fns["fwd+bwd (torchsparsegradutils)"] = theirs
        if n * k > LARGE:  # tens of seconds a call: timed once, without a warm-up
            once.add("fwd+bwd (torchsparsegradutils)")
    times = round_times(fns, repeats, once)
    t_ours = statistics.median(times["fwd+bwd (sparseprec)"])
    for name, t in times.items():
        med, lo, hi = spread(t)
        rows.append(dict(n=n, m=4 * n, nnz=A.values().numel(), k=k, runs=len(t), what=name, iterations=None,
                         ms=med * 1e3, lo=lo * 1e3, hi=hi * 1e3, per_it_ms=None, ratio=med / t_ours))  # fmt: skip
        print(rows[-1], flush=True)


def write_table(rows: list[dict], argv: list[str]) -> None:
    versions = (
        f"Python {platform.python_version()}; torch {torch.__version__} ({torch.get_num_threads()} threads), SciPy "
        f"{scipy.__version__}, NumPy {np.__version__}, torchsparsegradutils {package_version('torchsparsegradutils')}, "
        f"sparseprec {sparseprec.__version__}"
    )
    lines = [
        BEGIN,
        "## Sparse least squares: LSMR, LSQR, `sparse_generic_lstsq` (`benchmarks/bench_lstsq.py`)",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} cores, {platform.platform()}; {versions}. "
        f"Command: `python benchmarks/bench_lstsq.py {' '.join(argv)}`.",
        "",
        f"Problem: A is m × n with m = 4n, {PER_ROW} standard normal values per row in distinct random columns "
        f"(CSR, float64); B standard normal. Every method stops at atol = btol = {TOL:g} (SciPy's and "
        "torchsparsegradutils' default). Solver rows are forward solves of one column (`ms / iter` = time / that "
        "run's iterations; `× ours` = the row's ms / iter divided by sparseprec's, > 1: sparseprec is faster). "
        "fwd+bwd rows: `sparse_generic_lstsq` and the backward of `X.sum()` w.r.t. A's stored values and B; "
        "`× ours` = time / sparseprec's time. Medians over interleaved rounds after a warm-up, min–max in brackets.",
        "",
        "| n | m | nnz | k | method | iterations | ms (min–max) | ms / iter | × ours | runs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        its = "—" if r["iterations"] is None else str(r["iterations"])
        lines.append(
            f"| {r['n']:,} | {r['m']:,} | {r['nnz']:,} | {r['k']} | {r['what']} | {its} | {fmt(r['ms'], 1)} "
            f"({fmt(r['lo'], 1)}–{fmt(r['hi'], 1)}) | {fmt(r['per_it_ms'], 3)} | {fmt(r['ratio'], 2)} | {r['runs']} |"
        )
    lines.append(END)
    write_section(BEGIN, END, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4], help="columns of B for the fwd+bwd rows")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows: list[dict] = []
    for n in args.sizes:
        run_solvers(rows, n, args.repeats)
        for k in args.k:
            run_fwd_bwd(rows, n, k, args.repeats)
    if not args.no_write:
        write_table(rows, sys.argv[1:])


if __name__ == "__main__":
    main()

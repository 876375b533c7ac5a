"""Benchmark of the selected inverse and the exact log-determinant gradient against CHOLMOD's factorisation, single-
threaded and with default threads, in one run per thread setting.

Problems
    ``Q = I + L`` with ``L`` the 5-point Laplacian of an ``s × s`` grid (2-D; s ∈ {100, 300, 1000}, n = 10⁴ … 10⁶) and
    the 7-point Laplacian of a ``c × c × c`` grid (3-D; c ∈ {20, 40}), float64, both triangles stored (CSR).
Rows (medians of interleaved rounds after a warm-up; ``× factor`` divides by CHOLMOD's numeric factorisation with
log-determinant, analysis reused, measured in the same rounds)
    CHOLMOD factor + logdet        scikit-sparse ``analysis.cholesky(Q).logdet()`` (the reference);
    sparse_logdet value + grad     ``sparse_logdet(Q)`` forward and backward (gradient w.r.t. Q's stored values),
                                   pattern cached (what a training loop pays);
    GMRF.log_prob + backward       ``GMRF(0, precision=Q).log_prob(x)`` forward and backward w.r.t. Q's values (the
                                   target compares it with CHOLMOD analyse + factorise: ``× analyse+factor``);
    diag_inverse (factor given)    ``diag_inverse(factor)`` of a fresh factor: ``L`` extracted from CHOLMOD and the
                                   compiled Takahashi sweep;
    sweep: compiled / NumPy loop   the Takahashi sweep alone on the same ``L`` (the NumPy loop is the fallback
                                   where Numba is missing; s ≤ 300 and c ≤ 20).
Run ``python benchmarks/bench_selected_inverse.py`` (~10 min on 2 cores): it runs itself once with every thread pool
at one thread (``--threads 1``: torch, OpenBLAS/MKL through threadpoolctl) and once with the defaults, and writes one
table to ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, package_version, round_times, write_section  # noqa: E402
from problems import grid_precision  # noqa: E402

import sparseprec  # noqa: E402
from sparseprec.cholesky import cholesky, diag_inverse, sparse_logdet  # noqa: E402
from sparseprec.cholesky.takahashi import SupernodalStructure, takahashi  # noqa: E402

BEGIN, END = "<!-- bench_selected_inverse:begin -->", "<!-- bench_selected_inverse:end -->"


def grid3d_precision(c: int) -> sp.csc_matrix:
    """``Q = I + L`` with ``L`` the 7-point Laplacian of a ``c × c × c`` grid."""
    e = np.ones(c)
    T = sp.diags([-e[:-1], 2 * e, -e[:-1]], [-1, 0, 1])
    eye = sp.identity(c)
    L = sp.kron(sp.kron(T, eye), eye) + sp.kron(sp.kron(eye, T), eye) + sp.kron(sp.kron(eye, eye), T)
    return (L + sp.identity(c**3)).tocsc()


def as_torch(Qs: sp.spmatrix) -> torch.Tensor:
    Qs = Qs.tocsr()
    Qs.sort_indices()
    n = Qs.shape[0]
    crow, col = torch.from_numpy(Qs.indptr).long(), torch.from_numpy(Qs.indices).long()
    return torch.sparse_csr_tensor(crow, col, torch.from_numpy(Qs.data), (n, n))


def measure(name: str, Qs: sp.csc_matrix, repeats: int, loop: bool) -> dict:
    from sksparse.cholmod import analyze

    Q = as_torch(Qs)
    n = Q.shape[0]
    low = sp.tril(Qs).tocsc()
    analysis = analyze(low, ordering_method="amd")
    x = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def value_and_grad():
        A = Q.detach().requires_grad_()
        sparse_logdet(A).backward()

    values = Q.values().clone()

    def gmrf():
        v = values.clone().requires_grad_()
        A = sparseprec.sparse_csr_tensor(Q.crow_indices(), Q.col_indices(), v, (n, n))
        sparseprec.GMRF(torch.zeros(n, dtype=torch.float64), precision=A).log_prob(x).backward()

    factor = cholesky(Q)  # caches the analysis and the selected-inverse structure with Q's pattern
    L = sp.csc_matrix(factor.numeric.L())
    L.sort_indices()
    structure = SupernodalStructure(L)
    fns = {
        "CHOLMOD factor + logdet": lambda: analysis.cholesky(low).logdet(),
        "CHOLMOD analyse + factor": lambda: analyze(low, ordering_method="amd").cholesky(low).logdet(),
        "sparse_logdet value + grad": value_and_grad,
        "GMRF.log_prob + backward": gmrf,
        "diag_inverse (factor given)": lambda: diag_inverse(cholesky(Q)),
        "factor alone (for diag_inverse)": lambda: cholesky(Q),
        "sweep: compiled": lambda: takahashi(structure, L.data),
    }
    if loop:
        fns["sweep: NumPy loop"] = lambda: takahashi(structure, L.data, compiled=False)
    times = {k: statistics.median(v) for k, v in round_times(fns, repeats).items()}
    reference = times["CHOLMOD factor + logdet"]
    times["diag_inverse (factor given)"] -= times.pop("factor alone (for diag_inverse)")
    return {
        "problem": name,
        "n": n,
        "nnz_L": int(L.nnz),
        "supernodes": int(structure.starts.size),
        "runs": repeats,
        "times": times,
        "ratios": {k: t / reference for k, t in times.items()},
        "analyse": times["CHOLMOD analyse + factor"],
    }


def child(args: argparse.Namespace) -> None:
    """One thread setting: print one JSON line per problem."""
    if args.threads == 1:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(1)
        threadpool_limits(1)
    problems = [(f"2-D grid {s}×{s}", lambda s=s: grid_precision(s), s <= 300) for s in args.sizes]
    problems += [(f"3-D grid {c}³", lambda c=c: grid3d_precision(c), c <= 20) for c in args.cubes]
    for name, build, loop in problems:
        Qs = build()
        repeats = args.repeats if Qs.shape[0] <= 100_000 else 3
        row = measure(name, Qs, repeats, loop)
        row["threads"] = "1" if args.threads == 1 else f"default (torch {torch.get_num_threads()})"
        print(json.dumps(row), flush=True)


def table(rows: list[dict], argv: list[str]) -> str:
    lines = [
        BEGIN,
        "## Selected inverse and log-determinant gradient (`benchmarks/bench_selected_inverse.py`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), {platform.platform()}; Python "
        f"{platform.python_version()}; torch {torch.__version__}, SciPy {scipy.__version__}, NumPy {np.__version__}, "
        f"Numba {package_version('numba')}, scikit-sparse {package_version('scikit-sparse')}, sparseprec "
        f"{sparseprec.__version__}. Command: `python benchmarks/bench_selected_inverse.py {' '.join(argv)}`.",
        "",
        "`Q = I + Laplacian` (5-point 2-D, 7-point 3-D grids), float64. Seconds are medians of interleaved rounds "
        "after a warm-up; `× factor` divides by `CHOLMOD factor + logdet` (numeric factorisation, analysis reused) of "
        "the same run and thread setting. `diag_inverse` is the time beyond the factorisation (L extracted from "
        "CHOLMOD + the sweep). Threads `1`: torch and every BLAS pool at one thread; `default`: the libraries' own "
        "defaults (the sweep limits its BLAS pool to one thread itself).",
        "",
        "| problem | n | nnz(L) | supernodes | threads | CHOLMOD factor + logdet s | sparse_logdet value+grad "
        "× factor | GMRF.log_prob+bwd × analyse+factor | diag_inverse × factor | sweep compiled × factor | "
        "sweep NumPy loop × factor | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, q = r["times"], r["ratios"]
        gmrf = t["GMRF.log_prob + backward"] / r["analyse"]
        lines.append(
            f"| {r['problem']} | {r['n']:,} | {r['nnz_L']:,} | {r['supernodes']:,} | {r['threads']} | "
            f"{fmt(t['CHOLMOD factor + logdet'], 3)} | {fmt(q['sparse_logdet value + grad'])} | {fmt(gmrf)} | "
            f"{fmt(q['diag_inverse (factor given)'])} | {fmt(q['sweep: compiled'])} | "
            f"{fmt(q.get('sweep: NumPy loop'))} | {r['runs']} |"
        )
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 300, 1000], help="2-D grid sides")
    parser.add_argument("--cubes", type=int, nargs="*", default=[20, 40], help="3-D grid sides")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="(internal) run one thread setting")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.threads is not None:
        child(args)
        return
    rows = []
    for threads in (1, 0):
        command = [sys.executable, __file__, "--threads", str(threads), "--repeats", str(args.repeats)]
        command += ["--sizes", *map(str, args.sizes), "--cubes", *map(str, args.cubes)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            rows.append(json.loads(line))
            print(rows[-1]["problem"], rows[-1]["threads"], {k: round(v, 2) for k, v in rows[-1]["ratios"].items()})
    rows.sort(key=lambda r: (r["n"], r["problem"], r["threads"]))
    if not args.no_write:
        write_section(BEGIN, END, table(rows, sys.argv[1:]))


if __name__ == "__main__":
    main()

"""Benchmark of CG: sparseprec vs SciPy vs torchsparsegradutils on the grid GMRF precision, in one run.

Problem
    ``Q = κ² I + L`` with ``L`` the 5-point Laplacian of an ``s × s`` grid (``n = s²``), s ∈ {300, 1000}, float64,
    CSR; right-hand sides ``B`` standard normal with k ∈ {1, 16} columns; every solver to relative residual 1e-6
    (per column: ``‖b_j − Q x_j‖ ≤ 1e-6 ‖b_j‖``), no preconditioner.
Methods
    sparseprec      ``CG(rtol=1e-6).solve(Q, B)`` (all k columns as one block); forward + backward:
                    ``sparse_generic_solve(Q, B, solve=CG(rtol=1e-6))``, gradients w.r.t. Q's stored values and B of
                    ``X.sum()``;
    scipy           ``scipy.sparse.linalg.cg(Q, b_j, rtol=1e-6)`` once per column (forward only: no gradients);
    tsgu            ``torchsparsegradutils.sparse_generic_solve(Q, B, solve=linear_cg)`` with
                    ``LinearCGSettings(cg_tolerance=1e-6)`` (its relative-residual test, all columns), forward and
                    forward + backward.
Times are medians over interleaved rounds after one warm-up call. Iterations are per column (max over columns).

Run ``python benchmarks/bench_solvers.py`` (~25 min on 2 cores) or ``--sizes 300`` for a quick run; the table is
written to ``docs/benchmarks.md`` between markers.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse.linalg as spla
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_section  # noqa: E402
from problems import grid_precision  # noqa: E402

import sparseprec  # noqa: E402
from sparseprec import sparse_generic_solve  # noqa: E402
from sparseprec.solvers import CG  # noqa: E402

try:
    import torchsparsegradutils as tsgu
    from torchsparsegradutils.utils import linear_cg
    from torchsparsegradutils.utils.linear_cg import LinearCGSettings
except ImportError:  # pragma: no cover - the comparison needs the `test` extra
    tsgu = None

BEGIN, END = "<!-- bench_solvers:begin -->", "<!-- bench_solvers:end -->"
RTOL = 1e-6


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def problem(s: int, kappa2: float, k: int, dtype: torch.dtype):
    Q = grid_precision(s, kappa2).tocsr()
    Q.sort_indices()
    n = Q.shape[0]
    crow, col = torch.from_numpy(Q.indptr).long(), torch.from_numpy(Q.indices).long()
    A = torch.sparse_csr_tensor(crow, col, torch.from_numpy(Q.data).to(dtype), (n, n))
    B = torch.from_numpy(np.random.default_rng(0).standard_normal((n, k))).to(dtype)
    return Q.astype(np.float64 if dtype == torch.float64 else np.float32), A, B


def methods(Q, A, B) -> dict[str, tuple[Callable[[], object] | None, Callable[[], object] | None]]:
    """name -> (forward, forward+backward) closures."""
    solver = CG(rtol=RTOL)
    columns = [np.ascontiguousarray(B[:, j].numpy()) for j in range(B.shape[1])]

    def ours_fwd():
        return solver.solve(A, B)

    def ours_bwd():
        Al = A.detach().requires_grad_()
        Bl = B.detach().clone().requires_grad_()
        sparse_generic_solve(Al, Bl, solve=solver).sum().backward()

    def scipy_fwd():
        iterations = []
        for b in columns:
            count = []
            _, info = spla.cg(Q, b, rtol=RTOL, maxiter=10 * Q.shape[0], callback=count.append)
            if info != 0:
                raise RuntimeError(f"scipy cg did not converge (info={info})")
            iterations.append(len(count))
        return iterations

    out = {"sparseprec": (ours_fwd, ours_bwd), "scipy (k separate solves)": (scipy_fwd, None)}
    if tsgu is not None:
        settings = LinearCGSettings(cg_tolerance=RTOL, max_cg_iterations=10 * Q.shape[0])

        def tsgu_fwd():
            return tsgu.sparse_generic_solve(A, B, solve=linear_cg, settings=settings)

        def tsgu_bwd():
            Al = A.detach().requires_grad_()
            Bl = B.detach().clone().requires_grad_()
            tsgu.sparse_generic_solve(Al, Bl, solve=linear_cg, settings=settings).sum().backward()

        out["torchsparsegradutils"] = (tsgu_fwd, tsgu_bwd)
    return out


def iterations(name: str, Q, A, B) -> int:
    if name == "sparseprec":
        return int(CG(rtol=RTOL).solve(A, B).iterations.max())
    if name.startswith("scipy"):
        return max(methods(Q, A, B)[name][0]())
    _, info = linear_cg(A, B, tolerance=RTOL, max_iter=10 * Q.shape[0], return_info=True)
    return int(info.iterations)


def run_case(rows: list[dict], s: int, kappa2: float, k: int, dtype: torch.dtype, repeats: int) -> None:
    Q, A, B = problem(s, kappa2, k, dtype)
    fns = methods(Q, A, B)
    its = {name: iterations(name, Q, A, B) for name in fns}
    times: dict[tuple[str, str], list[float]] = {}
    for fn_pair in fns.values():  # warm-up
        for fn in fn_pair:
            if fn is not None:
                fn()
    for _ in range(repeats):
        for name, pair in fns.items():
            for phase, fn in zip(("fwd", "bwd"), pair, strict=True):
                if fn is not None:
                    times.setdefault((name, phase), []).append(timed(fn))
    med = {key: statistics.median(v) for key, v in times.items()}
    ours_fwd, ours_bwd = med[("sparseprec", "fwd")], med[("sparseprec", "bwd")]
    for name in fns:
        fwd = med[(name, "fwd")]
        bwd = med.get((name, "bwd"))
        # per iteration of one column: total time / (iterations x columns solved)
        per_col_it = fwd / (its[name] * k)
        rows.append(
            dict(
                s=s, n=s * s, nnz=A.values().numel(), k=k, dtype=str(dtype).replace("torch.", ""), method=name,
                iterations=its[name], fwd_ms=fwd * 1e3, bwd_ms=None if bwd is None else bwd * 1e3,
                per_it_ms=fwd / its[name] * 1e3, per_col_it_ms=per_col_it * 1e3,
                fwd_ratio=fwd / ours_fwd, bwd_ratio=None if bwd is None else bwd / ours_bwd, runs=repeats,
            )
        )  # fmt: skip
        print(rows[-1], flush=True)


def fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def write_table(rows: list[dict], argv: list[str], kappa2: float) -> None:
    versions = (
        f"Python {platform.python_version()}; torch {torch.__version__} ({torch.get_num_threads()} threads), SciPy "
        f"{scipy.__version__}, NumPy {np.__version__}, torchsparsegradutils "
        f"{importlib.metadata.version('torchsparsegradutils') if tsgu else 'not installed'}, sparseprec "
        f"{sparseprec.__version__}"
    )
    lines = [
        BEGIN,
        "## Krylov solvers: CG (`benchmarks/bench_solvers.py`)",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} cores, {platform.platform()}; {versions}. "
        f"Command: `python benchmarks/bench_solvers.py {' '.join(argv)}`.",
        "",
        f"Problem: `Q = κ² I + 5-point Laplacian` on an s × s grid, κ² = {kappa2:g}, CSR; B standard normal with k "
        f"columns; every method to relative residual {RTOL:g} per column, no preconditioner. sparseprec iterates the "
        "k columns as one block; SciPy solves them one after the other; torchsparsegradutils' `linear_cg` iterates "
        "them as one block (tolerance on every column). Forward+backward: gradients w.r.t. Q's stored values and B "
        "of `X.sum()` through each library's `sparse_generic_solve` (SciPy has none). Times are medians over "
        "interleaved rounds after a warm-up; `ms / col-iter` is forward time / (iterations × k); `×` columns are the "
        "peer's time divided by sparseprec's in the same run (> 1: sparseprec is faster).",
        "",
        "| s | n | k | dtype | method | iterations | fwd ms | ms / iter | ms / col-iter | fwd+bwd ms | fwd × ours "
        "| fwd+bwd × ours | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['s']} | {r['n']:,} | {r['k']} | {r['dtype']} | {r['method']} | {r['iterations']} | "
            f"{fmt(r['fwd_ms'])} | {fmt(r['per_it_ms'], 3)} | {fmt(r['per_col_it_ms'], 3)} | {fmt(r['bwd_ms'])} | "
            f"{fmt(r['fwd_ratio'], 2)} | {fmt(r['bwd_ratio'], 2)} | {r['runs']} |"
        )
    lines.append(END)
    write_section(BEGIN, END, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--kappa2", type=float, default=0.01)
    parser.add_argument("--dtypes", nargs="+", default=["float64"], choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows: list[dict] = []
    for s in args.sizes:
        for k in args.k:
            for dtype in args.dtypes:
                repeats = args.repeats if s <= 300 else max(3, args.repeats // 2)
                run_case(rows, s, args.kappa2, k, getattr(torch, dtype), repeats)
    if not args.no_write:
        write_table(rows, sys.argv[1:], args.kappa2)


if __name__ == "__main__":
    main()

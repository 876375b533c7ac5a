"""Benchmark of sparse triangular solves: sparseprec vs torchsparsegradutils vs torch native vs SciPy, in one run.

Problems
    grid-s: the lower Cholesky factor of ``Q = I + 5-point Laplacian`` on an ``s × s`` grid (fill-reducing ordering;
            CHOLMOD when installed, else SciPy), s ∈ {300, 1000};
    ar1:    a lower bidiagonal (AR(1)) factor, n = 10⁶.
For p ∈ {1, 16} right-hand sides, float32 and float64, CSR and COO input, it measures the median over repeated runs of
the forward solve and of forward + backward (gradients w.r.t. the factor's values and ``B``), and the peak extra
resident memory of one forward + backward in steady state (a fresh process per method and case, one warm-up call, then
``VmHWM`` reset through ``/proc/self/clear_refs``, one call, and the high-water mark minus the resident size before
it; glibc's mmap threshold is pinned so that freed blocks go back to the OS). The floor of a forward + backward,
CHOLMOD's ``solve_L`` + ``solve_Lt`` on its own factor of the same grid (the very ``L`` the others solve with), is
timed beside them when scikit-sparse is installed (method ``cholmod``; float64, CHOLMOD's only precision here).

Run ``python benchmarks/bench_ops.py`` (all problems; ~30 min on 2 cores) or ``--sizes 300`` for a quick run. The
table is written to ``docs/benchmarks.md`` between markers, replacing the previous ops table.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS, peak_extra_bytes, write_section  # noqa: E402
from problems import ar1_factor, cholesky_factor, grid_precision  # noqa: E402

import sparseprec  # noqa: E402
from sparseprec import sparse_triangular_solve  # noqa: E402

try:
    import torchsparsegradutils as tsgu
except ImportError:  # pragma: no cover - the comparison needs the `test` extra
    tsgu = None

LEAF_NOTE = (
    "Rows `sparseprec` and `torchsparsegradutils` hold the factor as a sparse leaf tensor (`A.requires_grad_()`; "
    "the gradient lands in `A.grad`). For a sparse CSR leaf, torch's gradient accumulation always copies the "
    "incoming sparse gradient (indices and values), a cost both libraries pay. The row `sparseprec, values as "
    "parameter` is the training-loop path: the factor's values are the parameter and the sparse tensor is rebuilt "
    "every call with `sparseprec.sparse_csr_tensor` / `sparseprec.sparse_coo_tensor` (torch's own "
    "`sparse_csr_tensor` would allocate a dense n × n gradient there).\n\n"
)
BEGIN, END = "<!-- bench_ops:begin -->", "<!-- bench_ops:end -->"
CHOLMOD_PAIR = "CHOLMOD solve_L + solve_Lt (same factor, float64)"


def timed(fn, setup=None) -> float:
    if setup is not None:
        setup()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def torch_csr(L, dtype) -> torch.Tensor:
    return torch.sparse_csr_tensor(
        torch.from_numpy(L.indptr.astype(np.int64)),
        torch.from_numpy(L.indices.astype(np.int64)),
        torch.from_numpy(L.data).to(dtype),
        L.shape,
        check_invariants=False,
    )


@dataclass
class Case:
    """One method on one problem: a forward call, a forward+backward call, and the reset run before the latter."""

    fwd: Callable[[], object] | None
    fb: Callable[[], object] | None = None
    reset: Callable[[], None] = field(default=gc.collect)


def make_cases(L, p, dtype, layout, methods, tsgu_coo_max_nnz=float("inf"), factor=None) -> dict[str, Case]:
    """The methods to compare on one problem, sparseprec first. ``factor``: a CHOLMOD factor whose ``L()`` is ``L``
    (the floor of forward + backward: its ``solve_L`` and ``solve_Lt`` on the same factor, float64)."""
    n = L.shape[0]
    A_csr = torch_csr(L, dtype)
    A = A_csr if layout == "CSR" else A_csr.to_sparse_coo().coalesce()
    B = torch.randn(n, p, dtype=dtype, generator=torch.Generator().manual_seed(0))
    # A as a leaf (its .grad is the sparse gradient), as a user of torchsparsegradutils would hold it
    A_leaf = A.detach().requires_grad_()
    B_leaf = B.clone().requires_grad_()

    def reset_leaf():
        A_leaf.grad = B_leaf.grad = None
        gc.collect()

    # the training-loop path: the factor's values are the parameter and the sparse tensor is rebuilt every call
    values = (A.values() if layout == "CSR" else A._values()).detach().clone().requires_grad_()

    def from_values():
        if layout == "CSR":
            return sparseprec.sparse_csr_tensor(A.crow_indices(), A.col_indices(), values, A.shape)
        return sparseprec.sparse_coo_tensor(A._indices(), values, A.shape, is_coalesced=True)

    def reset_values():
        values.grad = B_leaf.grad = None
        gc.collect()

    def ours(a, b):
        return sparse_triangular_solve(a, b, upper=False)

    cases = {
        "sparseprec": Case(lambda: ours(A, B), lambda: ours(A_leaf, B_leaf).sum().backward(), reset_leaf),
        "sparseprec, values as parameter": Case(
            None, lambda: ours(from_values(), B_leaf).sum().backward(), reset_values
        ),
    }
    if tsgu is not None and "tsgu" in methods and (layout == "CSR" or L.nnz <= tsgu_coo_max_nnz):

        def theirs(a, b):
            return tsgu.sparse_triangular_solve(a, b, upper=False)

        cases["torchsparsegradutils"] = Case(
            lambda: theirs(A, B), lambda: theirs(A_leaf, B_leaf).sum().backward(), reset_leaf
        )
    if layout == "CSR":
        cases["torch native (CSR, fwd only)"] = Case(lambda: torch.triangular_solve(B, A_csr, upper=False))
        if "scipy" in methods:
            Ls = L.astype(np.float32 if dtype == torch.float32 else np.float64)
            Bn = B.numpy()
            cases["scipy spsolve_triangular (fwd only)"] = Case(lambda: spla.spsolve_triangular(Ls, Bn, lower=True))
        if factor is not None and "cholmod" in methods:
            B64 = B.double().numpy()

            def cholmod_pair():  # the two solves of a forward + backward, on CHOLMOD's own (supernodal) factor
                factor.solve_L(B64, use_LDLt_decomposition=False)
                factor.solve_Lt(B64, use_LDLt_decomposition=False)

            cases[CHOLMOD_PAIR] = Case(None, cholmod_pair)
    return cases


def cholmod_factor_of(Q, L):
    """A CHOLMOD factor of ``Q`` whose ``L()`` has ``L``'s pattern (the orderings ``cholesky_factor`` tries, in its
    order), or ``None`` without scikit-sparse or when none matches."""
    try:
        from sksparse.cholmod import cholesky
    except ImportError:
        return None
    for ordering in ("metis", "amd"):
        try:
            factor = cholesky(Q.tocsc(), ordering_method=ordering)
        except Exception:  # CHOLMOD built without METIS
            continue
        Lf = factor.L().tocsr()
        if Lf.nnz == L.nnz and np.array_equal(Lf.indptr, L.indptr):
            return factor
    return None


def child_memory(path: str, p: int, dtype: str, layout: str, method: str) -> None:
    """Child-process mode: print the steady-state peak extra memory of one forward+backward of one method."""
    L = sp.load_npz(path).tocsr()
    case = make_cases(L, p, getattr(torch, dtype), layout, ["tsgu"])[method]
    case.reset()
    case.fb()  # warm-up: builds cached pattern data, as in a training loop's first step
    print(peak_extra_bytes(case.fb, case.reset))


def measure_memory(path: str, p: int, dtype: torch.dtype, layout: str, method: str) -> float:
    """Run :func:`child_memory` in a fresh process, so no other method's allocations blur the high-water mark."""
    out = subprocess.run(
        [sys.executable, __file__, "--child-memory", path, str(p), str(dtype).replace("torch.", ""), layout, method],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def median_or_nan(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def run_case(rows, problem, L, path, p, dtype, layout, repeats, methods, tsgu_coo_max_nnz, slow_s=20.0, factor=None):
    cases = make_cases(L, p, dtype, layout, methods, tsgu_coo_max_nnz, factor)
    # Warm up every method once (the first call builds cached pattern data), then time them in interleaved rounds so
    # that machine noise hits all methods alike. A method whose warm-up took over `slow_s` gets at most 3 rounds.
    sparseprec.clear_caches()
    budget = {}
    for name, case in cases.items():
        t = (timed(case.fwd) if case.fwd else 0.0) + (timed(case.fb, case.reset) if case.fb else 0.0)
        budget[name] = repeats if t < slow_s else min(repeats, 3)
    times = {name: ([], []) for name in cases}
    for r in range(repeats):
        for name, case in cases.items():
            if r < budget[name]:
                if case.fwd:
                    times[name][0].append(timed(case.fwd))
                if case.fb:
                    times[name][1].append(timed(case.fb, case.reset))
    ours = None
    for name, case in cases.items():
        t_fwd, t_fb = median_or_nan(times[name][0]), median_or_nan(times[name][1])
        mem = measure_memory(path, p, dtype, layout, name) if case.fb and name != CHOLMOD_PAIR else float("nan")
        if ours is None:
            ours = {"fwd": t_fwd, "fb": t_fb, "mem": mem}
        row = {
            "problem": problem,
            "n": L.shape[0],
            "nnz": L.nnz,
            "p": p,
            "dtype": str(dtype).replace("torch.", ""),
            "layout": layout,
            "method": name,
            "fwd_ms": 1e3 * t_fwd,
            "fb_ms": 1e3 * t_fb,
            "mem_mib": mem / 2**20,
            "fwd_ratio": t_fwd / ours["fwd"],
            "fb_ratio": t_fb / ours["fb"],
            "mem_ratio": mem / ours["mem"] if ours["mem"] else float("nan"),
            "runs": budget[name],
        }
        rows.append(row)
        print(
            f"{problem:9s} p={p:2d} {row['dtype']:7s} {layout} {name:38s} fwd {row['fwd_ms']:9.1f} ms  "
            f"fwd+bwd {row['fb_ms']:9.1f} ms  peak {row['mem_mib']:8.1f} MiB  (x{row['fb_ratio']:.2f} / "
            f"x{row['mem_ratio']:.2f} of ours)",
            flush=True,
        )
    cholmod = [r for r in rows[-len(cases) :] if r["method"] == CHOLMOD_PAIR]
    if cholmod:
        print(
            f"{problem:9s} p={p:2d} sparseprec fwd+bwd ÷ {CHOLMOD_PAIR}: x{1 / cholmod[0]['fb_ratio']:.2f}", flush=True
        )
    cases.clear()
    gc.collect()


def argv_value(argv: list[str], flag: str, default: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv else default


def fmt(x: float, digits: int = 1) -> str:
    return "—" if x != x else f"{x:.{digits}f}"


def write_table(rows, factor_how: str, argv: list[str]) -> None:
    header = (
        "| problem | n | nnz(L) | p | dtype | layout | method | fwd ms | fwd+bwd ms | peak extra MiB "
        "| fwd × ours | fwd+bwd × ours | memory × ours | runs |\n" + "|---" * 14 + "|\n"
    )
    body = "".join(
        f"| {r['problem']} | {r['n']:,} | {r['nnz']:,} | {r['p']} | {r['dtype']} | {r['layout']} | {r['method']} "
        f"| {fmt(r['fwd_ms'])} | {fmt(r['fb_ms'])} | {fmt(r['mem_mib'])} | {fmt(r['fwd_ratio'], 2)} "
        f"| {fmt(r['fb_ratio'], 2)} | {fmt(r['mem_ratio'], 2)} | {r['runs']} |\n"
        for r in rows
    )
    coo = {}
    for r in rows:
        if r["method"] == "sparseprec":
            coo.setdefault((r["problem"], r["p"], r["dtype"]), {})[r["layout"]] = r
    coo_lines = "".join(
        f"| {k[0]} | {k[1]} | {k[2]} | {fmt(v['COO']['fwd_ms'] / v['CSR']['fwd_ms'], 2)} "
        f"| {fmt(v['COO']['fb_ms'] / v['CSR']['fb_ms'], 2)} |\n"
        for k, v in coo.items()
        if {"COO", "CSR"} <= v.keys()
    )
    versions = (
        f"torch {torch.__version__} ({torch.get_num_threads()} threads, MKL {torch.backends.mkl.is_available()}), "
        f"SciPy {scipy.__version__}, NumPy {np.__version__}, torchsparsegradutils "
        f"{importlib.metadata.version('torchsparsegradutils') if tsgu else 'not installed'}, "
        f"sparseprec {sparseprec.__version__}"
    )
    section = (
        f"{BEGIN}\n## Sparse triangular solve (`benchmarks/bench_ops.py`)\n\n"
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; Python "
        f"{platform.python_version()}; {versions}. Factor of the grid problems: {factor_how}. Command: "
        f"`python benchmarks/bench_ops.py {' '.join(argv)}`.\n\n"
        "Times are medians over the runs given (after one warm-up call; methods timed in interleaved rounds); "
        "forward+backward "
        "computes gradients w.r.t. the factor's stored values and B of `X.sum()`; peak extra memory is the resident "
        "high-water mark of one forward+backward above the resident size before it, in steady state (fresh process per "
        "method and case, after one warm-up call). Ratios are the peer's number "
        "divided by sparseprec's in the same run (> 1: sparseprec is faster / smaller).\n\n"
        + LEAF_NOTE
        + header
        + body
        + "\ntorchsparsegradutils with COO input is not run above "
        + f"{argv_value(argv, '--tsgu-coo-max-nnz', '2e7')} stored entries (it converts COO to CSR on every call: "
        "minutes per call there).\n" + "\n### COO input vs CSR input (sparseprec, same run; after the first call)\n\n"
        "| problem | p | dtype | fwd COO/CSR | fwd+bwd COO/CSR |\n|---|---|---|---|---|\n" + coo_lines + f"\n{END}\n"
    )
    write_section(BEGIN, END, section.rstrip("\n"))
    print(f"wrote {DOCS}")


def main() -> None:
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:  # pin glibc's mmap threshold (see module docstring)
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    if len(sys.argv) > 1 and sys.argv[1] == "--child-memory":
        child_memory(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
        return
    parser = argparse.ArgumentParser(description="sparse triangular solve benchmark")
    parser.add_argument("--sizes", type=int, nargs="*", default=[300, 1000], help="grid sides s")
    parser.add_argument("--ar1", type=int, default=1_000_000, help="AR(1) length (0: skip)")
    parser.add_argument("--p", type=int, nargs="*", default=[1, 16])
    parser.add_argument("--dtypes", nargs="*", default=["float64", "float32"])
    parser.add_argument("--layouts", nargs="*", default=["CSR", "COO"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="*", default=["tsgu", "scipy", "cholmod"])
    parser.add_argument(
        "--tsgu-coo-max-nnz",
        type=float,
        default=2e7,
        help="skip torchsparsegradutils with COO input above this nnz (it converts COO to CSR on every call)",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    def problems():
        """Yield (name, factor, CHOLMOD factor or None) one at a time, so that only one large factor is in memory."""
        for s in args.sizes:
            t0 = time.perf_counter()
            L, how = cholesky_factor(grid_precision(s))
            factor_how.append(how)
            took = time.perf_counter() - t0
            print(f"grid-{s}: n={L.shape[0]:,}, nnz(L)={L.nnz:,}, factorised by {how} in {took:.1f} s", flush=True)
            factor = cholmod_factor_of(grid_precision(s), L) if "cholmod" in args.methods else None
            yield f"grid-{s}", L, factor
        if args.ar1:
            yield "ar1", ar1_factor(args.ar1), None

    factor_how: list[str] = []
    rows = []
    options = dict(repeats=args.repeats, methods=args.methods, tsgu_coo_max_nnz=args.tsgu_coo_max_nnz)
    with tempfile.TemporaryDirectory() as tmp:
        for problem, L, factor in problems():
            path = os.path.join(tmp, f"{problem}.npz")
            sp.save_npz(path, L)
            for dtype_name in args.dtypes:
                for p in args.p:
                    for layout in args.layouts:
                        dtype = getattr(torch, dtype_name)
                        run_case(rows, problem, L, path, p, dtype, layout, factor=factor, **options)
            del L, factor
            gc.collect()
    if not args.no_write:
        write_table(rows, ", ".join(sorted(set(factor_how))) or "n/a", sys.argv[1:])


if __name__ == "__main__":
    main()

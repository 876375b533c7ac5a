"""Benchmark of the log-determinant of a sparse SPD precision: sparseprec (CHOLMOD / SciPy backends, SLQ) vs direct
CHOLMOD calls vs dense torch vs GPyTorch/linear_operator's stochastic ``inv_quad_logdet``, in one run.

Problem
    ``Q = I + L`` with ``L`` the 5-point Laplacian of an ``s × s`` grid (``n = s²``), s ∈ {100, 300, 1000}, float64,
    both triangles stored (CSR).
Rows
    CHOLMOD bare            scikit-sparse ``analyze`` + ``cholesky`` + ``logdet`` on the lower triangle (AMD), and
                            the numeric step alone with the analysis reused (no gradient);
    sparseprec <backend>    ``sparse_logdet(Q)`` forward, and forward + backward (gradient w.r.t. Q's stored values):
                            "first call" on a new pattern (symbolic analysis, selected-inverse structure), and
                            "repeated" (same pattern, cached analysis: what a training loop pays);
    sparseprec SLQ          ``slq_logdet(Q, num_probes=64, lanczos_steps=40)`` (stochastic; s ≤ 300);
    linear_operator SLQ     ``inv_quad_logdet`` of a LinearOperator whose ``_matmul`` is a sparse product, 64 probes,
                            40 Lanczos steps (s ≤ 300);
    dense torch             ``torch.logdet`` of the dense matrix (s = 100 only).
Times are medians over interleaved rounds after a warm-up. Run ``python benchmarks/bench_cholesky.py`` (~15 min on 2
cores) or ``--sizes 100 300``; the table is written to ``docs/benchmarks.md`` between markers.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, package_version, write_section  # noqa: E402
from problems import grid_precision  # noqa: E402

import sparseprec  # noqa: E402
from sparseprec.cholesky import available_backends, slq_logdet, sparse_logdet  # noqa: E402

BEGIN, END = "<!-- bench_cholesky:begin -->", "<!-- bench_cholesky:end -->"


def linear_operator_slq(Q: torch.Tensor) -> Callable[[bool], torch.Tensor]:
    import linear_operator
    from linear_operator.operators import LinearOperator

    class SparseOperator(LinearOperator):
        def __init__(self, values, crow, col, n):
            super().__init__(values, crow, col, n=n)
            self.values, self.crow, self.col, self.n = values, crow, col, n

        def _matmul(self, rhs):
            A = sparseprec.sparse_csr_tensor(self.crow, self.col, self.values, (self.n, self.n))
            return sparseprec.sparse_mm(A, rhs)

        def _size(self):
            return torch.Size([self.n, self.n])

        def _transpose_nonbatch(self):
            return self

    def run(backward: bool) -> torch.Tensor:
        values = Q.values().detach().clone().requires_grad_(backward)
        op = SparseOperator(values, Q.crow_indices(), Q.col_indices(), Q.shape[0])
        with (
            linear_operator.settings.max_cholesky_size(0),
            linear_operator.settings.num_trace_samples(64),
            linear_operator.settings.max_lanczos_quadrature_iterations(40),
        ):
            _, value = op.inv_quad_logdet(inv_quad_rhs=None, logdet=True)
        if backward:
            value.backward()
        return value.detach()

    return run


def cases(s: int, backends: list[str]) -> tuple[dict[str, tuple[Callable, Callable | None]], float]:
    """name -> (forward, forward+backward); and the exact log-determinant."""
    Qs = grid_precision(s).tocsr()
    Qs.sort_indices()
    n = Qs.shape[0]
    Q = torch.sparse_csr_tensor(
        torch.from_numpy(Qs.indptr).long(), torch.from_numpy(Qs.indices).long(), torch.from_numpy(Qs.data), (n, n)
    )
    out: dict[str, tuple[Callable, Callable | None]] = {}
    if "cholmod" in backends:
        from sksparse.cholmod import analyze

        low = sp.tril(Qs).tocsc()
        symbolic = analyze(low, ordering_method="amd")
        out["CHOLMOD bare: analyze + numeric"] = (
            lambda: analyze(low, ordering_method="amd").cholesky(low).logdet(),
            None,
        )
        out["CHOLMOD bare: numeric (analysis reused)"] = (lambda: symbolic.cholesky(low).logdet(), None)

    def ours(backend: str, first: bool):
        def fwd():
            if first:
                sparseprec.clear_caches()
            return sparse_logdet(Q, backend=backend)

        def bwd():
            if first:
                sparseprec.clear_caches()
            A = Q.detach().requires_grad_()
            sparse_logdet(A, backend=backend).backward()

        return fwd, bwd

    for backend in backends:
        if backend == "scipy" and s > 300:
            continue
        out[f"sparseprec {backend}: first call (new pattern)"] = ours(backend, True)
        out[f"sparseprec {backend}: repeated (cached analysis)"] = ours(backend, False)
    if s <= 300:

        def slq(backward: bool):
            A = Q.detach().requires_grad_(backward)
            value = slq_logdet(A, num_probes=64, lanczos_steps=40, generator=torch.Generator().manual_seed(0))
            if backward:
                value.backward()
            return value.detach()

        out["sparseprec SLQ (64 probes, 40 steps)"] = (lambda: slq(False), lambda: slq(True))
        lo = linear_operator_slq(Q)
        out["linear_operator SLQ (64 probes, 40 steps)"] = (lambda: lo(False), lambda: lo(True))
    if s <= 100:
        dense = Q.to_dense()

        def dense_bwd():
            D = dense.clone().requires_grad_()
            torch.logdet(D).backward()

        out["dense torch.logdet"] = (lambda: torch.logdet(dense), dense_bwd)
    exact = float(sparse_logdet(Q))
    return out, exact


def timed(fn: Callable) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def run_size(rows: list[dict], s: int, backends: list[str], repeats: int) -> None:
    fns, exact = cases(s, backends)
    times: dict[tuple[str, int], list[float]] = {}
    values: dict[str, float] = {}
    for pair in fns.values():  # warm-up
        for fn in pair:
            if fn is not None:
                fn()
    for _ in range(repeats):
        for name, pair in fns.items():
            for phase, fn in enumerate(pair):
                if fn is not None:
                    t, value = timed(fn)
                    times.setdefault((name, phase), []).append(t)
                    if phase == 0:
                        values[name] = float(value)
    med = {key: statistics.median(v) for key, v in times.items()}
    reference = med.get(("CHOLMOD bare: numeric (analysis reused)", 0))
    for name in fns:
        fwd, bwd = med[(name, 0)], med.get((name, 1))
        rows.append(
            dict(
                s=s, n=s * s, method=name, fwd=fwd, bwd=bwd, runs=repeats,
                error=abs(values[name] - exact) / abs(exact),
                fwd_ratio=None if reference is None else fwd / reference,
                bwd_ratio=None if reference is None or bwd is None else bwd / reference,
            )
        )  # fmt: skip
        print(rows[-1], flush=True)


def write_table(rows: list[dict], argv: list[str]) -> None:
    lines = [
        BEGIN,
        "## Sparse Cholesky: log-determinant (`benchmarks/bench_cholesky.py`)",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} cores, {platform.platform()}; Python "
        f"{platform.python_version()}; torch {torch.__version__}, SciPy {scipy.__version__}, NumPy {np.__version__}, "
        f"scikit-sparse {package_version('scikit-sparse')}, linear_operator {package_version('linear_operator')}, "
        f"sparseprec {sparseprec.__version__}. Command: `python benchmarks/bench_cholesky.py {' '.join(argv)}`.",
        "",
        "Problem: `Q = I + 5-point Laplacian` on an s × s grid, float64, both triangles stored. Forward+backward "
        "computes the gradient of `log det Q` w.r.t. Q's stored values (exact: the selected inverse; SLQ: Hutchinson "
        "with the same probes). `first call` clears the pattern cache before every call (symbolic analysis and "
        "selected-inverse structure included); `repeated` reuses them. Times in seconds, medians over interleaved "
        "rounds after a warm-up; `× bare` divides by CHOLMOD's bare numeric factorisation in the same run; "
        "`rel. error` is |value − exact| / |exact|.",
        "",
        "| s | n | method | fwd s | fwd+bwd s | fwd × bare | fwd+bwd × bare | rel. error | runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['s']} | {r['n']:,} | {r['method']} | {fmt(r['fwd'], 3)} | {fmt(r['bwd'], 3)} | "
            f"{fmt(r['fwd_ratio'])} | {fmt(r['bwd_ratio'])} | {r['error']:.1e} | {r['runs']} |"
        )
    lines.append(END)
    write_section(BEGIN, END, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    backends = list(available_backends())
    rows: list[dict] = []
    for s in args.sizes:
        run_size(rows, s, backends, args.repeats if s <= 300 else 2)
    if not args.no_write:
        write_table(rows, sys.argv[1:])


if __name__ == "__main__":
    main()

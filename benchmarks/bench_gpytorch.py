"""Benchmark of ``PrecisionInverseLinearOperator.inv_quad_logdet`` + backward vs linear_operator's default path.

Σ = Q⁻¹ with Q = κ² I + 5-point Laplacian on an s × s grid (κ² = 0.1), float64, N = s²; one right-hand side.
Per N, measured in one run (methods interleaved, medians after a warm-up):

- ``ours``: ``op.inv_quad_logdet(y, logdet=True)`` and ``backward`` to Q's stored values (exact: one sparse Cholesky,
  one sparse product, the selected inverse for the gradient);
- ``linear_operator default``: ``LinearOperator.inv_quad_logdet`` (the base-class method) on *the same operator* — for
  N > ``max_cholesky_size`` (800) that is preconditioned CG for the solve and stochastic Lanczos quadrature for the
  log-determinant, each step a matmul with Σ (an exact sparse solve here), with linear_operator's default settings;
- ``linear_operator default, dense Σ`` (N ≤ 10⁴): the same default path on ``DenseLinearOperator(Σ)`` — what a user
  without a sparse operator would hand to GPyTorch (Σ formed once outside the timing; gradient w.r.t. Σ's entries);
- ``dense torch`` (N ≤ 10⁴): ``torch.linalg.cholesky`` of the dense Σ, its log-determinant and solve, with autograd.

Reported: time of forward + backward, peak extra resident memory of one call, relative error of the log-determinant
against the exact value. Run ``python benchmarks/bench_gpytorch.py`` (~5 min on 2 cores) or ``--sizes 32 100``;
writes a table to ``docs/benchmarks.md`` between markers.

``--exact-gp``: one training step of an exact GP instead (issue 19) — ``ExactGP`` with a ``ScaleKernel(RBFKernel)``
on an s × s grid of the unit square, forward + backward of ``ExactMarginalLogLikelihood``, float32 (GPyTorch's
default), GPyTorch's default settings, hyper-parameters at the values that generated the data (length-scale 0.15,
output scale 1; noise ``Q = τ (κ² I + Laplacian)``, τ = 4, κ² = 0.2; the independent-noise model's σ² = the mean
marginal noise variance). Rows: ``SparsePrecisionGaussianLikelihood`` (CG + SLQ with the pivoted-Cholesky + sparse
noise preconditioner above ``max_cholesky_size``), the same with ``max_cholesky_size = ∞`` (the dense LU of I + KQ,
the only path before issue 19; s ≤ 64), and GPyTorch's ``GaussianLikelihood``. Then the accuracy at ``--accuracy-side``
(45: n = 2,025), float64: the iterative marginal log-likelihood and its gradient against the exact dense values, over
``--accuracy-seeds`` probe seeds, for both likelihoods. ``--float64-sides 64`` times those sides in float64 too.
``python benchmarks/bench_gpytorch.py --exact-gp --sides 64 100`` (~4 min on 2 cores; ``--float64-sides 64`` adds ~3).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch
from linear_operator.operators import DenseLinearOperator, LinearOperator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, median_times, package_version, peak_extra_bytes, write_section  # noqa: E402

from sparseprec.gpytorch import PrecisionInverseLinearOperator  # noqa: E402
from sparseprec.structures import grid_laplacian  # noqa: E402

BEGIN, END = "<!-- bench_gpytorch:begin -->", "<!-- bench_gpytorch:end -->"
F64 = torch.float64


def precision(s: int) -> torch.Tensor:
    L = grid_laplacian((s, s), dtype=F64).detach().to_sparse_coo()
    n = s * s
    eye = torch.sparse_coo_tensor(torch.arange(n).expand(2, n), torch.full((n,), 0.1, dtype=F64), (n, n))
    return (L + eye).coalesce().to_sparse_csr()


def rows_for(s: int, repeats: int) -> list[dict]:
    n = s * s
    Q = precision(s)
    base = PrecisionInverseLinearOperator.from_precision(Q)
    y = torch.randn(n, 1, dtype=F64, generator=torch.Generator().manual_seed(0))
    values = base.values.detach().clone().requires_grad_(True)
    exact = -float(torch.logdet(Q.to_dense())) if n <= 10_000 else None
    results: dict[str, dict] = {}

    def ours() -> float:
        values.grad = None
        op = PrecisionInverseLinearOperator(values, base.pattern)
        inv_quad, logdet = op.inv_quad_logdet(y, logdet=True)
        (inv_quad + logdet).backward()
        return float(logdet.detach())

    def default() -> float:
        values.grad = None
        op = PrecisionInverseLinearOperator(values, base.pattern)
        inv_quad, logdet = LinearOperator.inv_quad_logdet(op, y, logdet=True)
        (inv_quad + logdet).backward()
        return float(logdet.detach())

    fns = {"ours": ours, "linear_operator default (CG + SLQ)": default}
    if n <= 10_000:
        dense_values = values.detach().clone().requires_grad_(True)

        def dense() -> float:
            dense_values.grad = None
            Sigma = torch.linalg.inv(base.pattern.dense(dense_values))
            C = torch.linalg.cholesky(Sigma)
            logdet = 2 * C.diagonal().log().sum()
            inv_quad = (y * torch.cholesky_solve(y, C)).sum()
            (inv_quad + logdet).backward()
            return float(logdet.detach())

        fns["dense torch (Cholesky)"] = dense
        Sigma_dense = torch.linalg.inv(Q.to_dense()).requires_grad_(True)

        def default_dense() -> float:
            Sigma_dense.grad = None
            inv_quad, logdet = DenseLinearOperator(Sigma_dense).inv_quad_logdet(y, logdet=True)
            (inv_quad + logdet).backward()  # gradient w.r.t. the dense Σ (its only parameterisation)
            return float(logdet.detach())

        fns["linear_operator default, dense Σ (CG + SLQ)"] = default_dense
    reference_is_ours = exact is None  # too large for a dense log-det: the exact method is the reference
    if reference_is_ours:
        exact = ours()
    for name, fn in fns.items():
        estimate = fn()
        memory = peak_extra_bytes(fn)
        error = None if reference_is_ours and name == "ours" else abs(estimate - exact) / abs(exact)
        results[name] = {"N": n, "method": name, "error": error, "memory": memory / 2**20}
        print(
            f"N={n} {name}: log-det rel. error {error}, memory {memory / 2**20:.1f} MiB",
            flush=True,
        )
    once = {"dense torch (Cholesky)"} if n >= 10_000 else set()
    times = median_times(fns, repeats if n < 10**5 else 3, once=once)
    for name, (t, runs) in times.items():
        results[name]["time"], results[name]["runs"] = t, runs
        print(f"N={n} {name}: {t:.3f} s ({runs} runs)", flush=True)
    return list(results.values())


def write_table(rows: list[dict], argv: list[str]) -> None:
    lines = [
        BEGIN,
        "## bench_gpytorch: exact log-det + gradient of Σ = Q⁻¹ vs linear_operator's default",
        "",
        f"`python benchmarks/bench_gpytorch.py {' '.join(argv)}`".replace(" `", "`"),
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"linear_operator {package_version('linear_operator')}). Σ = (0.1 I + grid Laplacian)⁻¹, float64, one "
        "right-hand side; forward (`inv_quad_logdet`) + backward to Q's stored values; median time (runs), peak extra "
        "resident memory of one call, relative error of log det Σ. The default path runs on the same operator (its "
        "matmul is an exact sparse solve) with linear_operator's default CG/SLQ settings. The log-det reference is "
        "dense `torch.logdet(Q)` up to N = 10⁴ and ours (exact sparse Cholesky) above.",
        "",
        "| N | method | time (s) | × ours | peak memory (MiB) | log-det rel. error |",
        "|---|---|---|---|---|---|",
    ]
    by_n: dict[int, list[dict]] = {}
    for row in rows:
        by_n.setdefault(row["N"], []).append(row)
    for n, group in by_n.items():
        ours = next(r for r in group if r["method"] == "ours")
        for row in group:
            ratio = fmt(row["time"] / ours["time"], 1)
            lines.append(
                f"| {n:,} | {row['method']} | {fmt(row['time'], 3)} ({row['runs']}) | {ratio} | {fmt(row['memory'], 1)}"
                f" | {'(reference)' if row['error'] is None else format(row['error'], '.1e')} |"
            )
    lines.append(END)
    write_section(BEGIN, END, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 100, 316], help="grid sides s (N = s²)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--exact-gp", action="store_true", help="one ExactGP training step instead (see the module)")
    parser.add_argument("--sides", type=int, nargs="+", default=[64, 100], help="--exact-gp: grid sides s (n = s²)")
    parser.add_argument("--accuracy-side", type=int, default=45, help="--exact-gp: grid side of the accuracy check")
    parser.add_argument("--accuracy-seeds", type=int, default=5)
    parser.add_argument(
        "--float64-sides", type=int, nargs="*", default=[], help="--exact-gp: sides also timed in float64"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.exact_gp:
        from bench_gpytorch_exact_gp import run  # noqa: PLC0415 (gpytorch models only for this mode)

        run(args.sides, args.repeats, args.accuracy_side, args.accuracy_seeds, sys.argv[1:], args.float64_sides)
        return
    rows = []
    for s in args.sizes:
        rows += rows_for(s, args.repeats)
    write_table(rows, sys.argv[1:])


if __name__ == "__main__":
    main()

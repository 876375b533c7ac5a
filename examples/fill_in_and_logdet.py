"""Fill-in and exact log-determinants
==================================

Two ideas behind sparseprec, measured: orderings decide the fill-in of a sparse Cholesky factor, and an exact
sparse log-determinant has no stochastic error, where SLQ needs more time than it to get below 0.1 % on a 2-D grid.

1. Fill-in: the GMRF precision ``Q = 0.1 I + L`` of an s × s grid (``L`` the 5-point Laplacian) is factorised with
   each ordering the installed backend offers (CHOLMOD: natural, AMD, METIS, nested dissection; SciPy: natural,
   reverse Cuthill–McKee, minimum degree). Printed: nonzeros of ``L`` against the ``nnz`` of ``Q``'s lower triangle
   and the factorisation time; drawn: the sparsity of ``Q`` and of three factors on a small grid.
2. Log-determinant: on the 100 × 100 grid, ``log det Q(κ²)`` with ``Q(κ²) = κ² I + L``, κ² = 0.1, and its derivative
   ``d/dκ² log det Q = tr(Q⁻¹)`` — exactly (:func:`sparseprec.cholesky.sparse_logdet`: Cholesky and selected
   inverse) and by stochastic Lanczos quadrature (:func:`sparseprec.cholesky.slq_logdet`, 40 Lanczos steps) with
   4 … 256 probes, 10 seeds each. Printed and drawn: relative errors (median and largest over the seeds; the median
   also in nats, the unit it adds to a log-likelihood) and time.

Run ``python examples/fill_in_and_logdet.py`` (~1 min on 2 cores) or ``--quick``. Saved: ``fill_in_and_logdet.png``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sparseprec import sparse_csr_tensor
from sparseprec.cholesky import available_backends, cholesky, slq_logdet, sparse_logdet
from sparseprec.structures import grid_laplacian

F64 = torch.float64


def shifted_laplacian(s: int, shift: torch.Tensor | float) -> torch.Tensor:
    """``shift I + L`` on the s × s grid as a CSR tensor whose values are differentiable in ``shift``."""
    L = grid_laplacian((s, s), dtype=F64)
    crow, col = L.crow_indices(), L.col_indices()
    rows = torch.repeat_interleave(torch.arange(s * s), crow.diff())
    return sparse_csr_tensor(crow, col, L.values() + shift * (rows == col).to(F64), L.shape)


def orderings() -> tuple[str, list[str]]:
    """The backend ``cholesky`` uses here and the orderings it offers, fill-reducing ones last."""
    backend = available_backends()[0]
    return backend, ["natural", "amd", "metis", "nesdis"] if backend == "cholmod" else ["natural", "rcm", "mmd"]


def fill_in(sizes: list[int], repeats: int) -> None:
    backend, names = orderings()
    print(f"1. Fill-in of the Cholesky factor of 0.1 I + L on an s × s grid ({backend} backend; median of {repeats})")
    print(f"{'s':>5} {'nnz(tril Q)':>12}  " + "  ".join(f"{name + ': nnz(L), s':>25}" for name in names))
    for s in sizes:
        Q = shifted_laplacian(s, 0.1).detach()
        lower = (s * s + Q.values().numel()) // 2
        cells = []
        for name in names:
            factor = cholesky(Q, ordering=name)
            nonzeros = int((factor.L.values() != 0).sum())  # CHOLMOD's supernodes also store some zeros
            seconds = statistics.median(
                _time(lambda name=name, Q=Q: cholesky(Q, ordering=name)) for _ in range(repeats)
            )
            cells.append(f"{nonzeros:>12,} ({nonzeros / lower:4.1f}×) {seconds:7.4f}")
        print(f"{s:>5} {lower:>12,}  " + "  ".join(f"{cell:>25}" for cell in cells))


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def log_determinants(s: int, probes: list[int], seeds: int) -> dict:
    kappa2 = torch.tensor(0.1, dtype=F64, requires_grad=True)

    def exact_value_and_derivative():
        value = sparse_logdet(shifted_laplacian(s, kappa2))
        (derivative,) = torch.autograd.grad(value, kappa2)
        return value.detach(), derivative

    exact, exact_grad = exact_value_and_derivative()  # the first call also runs the symbolic analysis
    exact_seconds = statistics.median(_time(exact_value_and_derivative) for _ in range(5))
    print(f"\n2. log det(κ² I + L) on a {s} × {s} grid at κ² = 0.1, and its derivative tr(Q⁻¹)")
    print(f"   exact (sparse Cholesky + selected inverse): {float(exact):.6f}, {float(exact_grad):.6f}; "
          f"{exact_seconds:.3f} s for both (median of 5)")  # fmt: skip
    print(
        f"{'probes':>9} {'value: median, max rel. error':>32} {'(median abs.)':>14} {'derivative: median, max':>26} "
        f"{'s / estimate':>14}"
    )
    results = {"probes": probes, "value": [], "grad": [], "seconds": [], "exact_seconds": exact_seconds}
    for p in probes:
        value_errors, grad_errors, times = [], [], []
        for seed in range(seeds):
            start = time.perf_counter()
            estimate = slq_logdet(shifted_laplacian(s, kappa2), num_probes=p, lanczos_steps=40,
                                  generator=torch.Generator().manual_seed(seed))  # fmt: skip
            (grad,) = torch.autograd.grad(estimate, kappa2)
            estimate = estimate.detach()
            times.append(time.perf_counter() - start)
            value_errors.append(abs(float(estimate / exact) - 1))
            grad_errors.append(abs(float(grad / exact_grad) - 1))
        results["value"].append(value_errors)
        results["grad"].append(grad_errors)
        results["seconds"].append(statistics.median(times))
        print(
            f"{p:>9} {statistics.median(value_errors):>20.2e}, {max(value_errors):.2e} "
            f"{statistics.median(value_errors) * abs(float(exact)):>10.2f} nats "
            f"{statistics.median(grad_errors):>15.2e}, {max(grad_errors):.2e} {statistics.median(times):>14.3f}"
        )
    return results


def plot(spy_size: int, results: dict, output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backend, names = orderings()
    shown = [names[0], names[1], names[-1]]
    fig = plt.figure(figsize=(13, 6.2), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1.15, 1])
    axes = left.subplots(2, 2)
    Q = shifted_laplacian(spy_size, 0.1).detach()
    panels = [("Q (lower triangle)", torch.tril(Q.to_dense()))]
    for name in shown:
        L = cholesky(Q, ordering=name).L.to_dense()
        panels.append((f"L, {name} ordering", L))
    for ax, (title, matrix) in zip(axes.flat, panels, strict=True):
        ax.spy(matrix.numpy(), markersize=0.3, precision=0.0)
        ax.set_title(f"{title}: {int((matrix != 0).sum()):,} nonzeros", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    left.suptitle(f"fill-in on a {spy_size} × {spy_size} grid ({backend})", fontsize=11)
    ax = right.subplots()
    probes = results["probes"]
    for key, label, colour in (("value", "log det Q", "tab:blue"), ("grad", "d/dκ² log det Q = tr(Q⁻¹)", "tab:red")):
        errors = results[key]
        medians = [statistics.median(e) for e in errors]
        ax.loglog(probes, medians, "o-", color=colour, label=f"SLQ, {label}: median over seeds")
        ax.loglog(probes, [max(e) for e in errors], "v:", color=colour, alpha=0.6, label=f"SLQ, {label}: largest")
    value_medians = [statistics.median(e) for e in results["value"]]
    for p, seconds, error in zip(probes, results["seconds"], value_medians, strict=True):
        ax.annotate(
            f"{seconds:.2f} s", (p, error), textcoords="offset points", xytext=(0, -14), fontsize=8, ha="center"
        )
    ax.set_ylim(1e-4, 1e-1)
    ax.set_xlabel("SLQ probes (40 Lanczos steps); labels: seconds per estimate")
    ax.set_ylabel("relative error")
    ax.set_title(f"SLQ error; exact: rounding only, {results['exact_seconds']:.2f} s", fontsize=10)
    ax.legend(fontsize=8)
    fig.savefig(output, dpi=100)
    print(f"\nFigure written to {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small grids, few seeds (for tests)")
    parser.add_argument("--output", default="fill_in_and_logdet.png")
    args = parser.parse_args()
    fill_in([20, 50] if args.quick else [30, 100, 300], 1 if args.quick else 5)
    results = log_determinants(30 if args.quick else 100, [4, 16] if args.quick else [4, 16, 64, 256],
                               2 if args.quick else 10)  # fmt: skip
    plot(30, results, args.output)


if __name__ == "__main__":
    main()

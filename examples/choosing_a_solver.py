"""Choosing a solver
=================

Choosing a solver: sparse Cholesky vs CG / MINRES / BiCGSTAB, measured on the matrices a GMRF user meets.

Three experiments, all float64 on the CPU, printed as tables and drawn in ``choosing_a_solver.png``:

1. Time to solve ``Q X = B`` (16 right-hand sides, relative residual 1e-8) for the GMRF precision
   ``Q = κ² I + L`` of a 2-D (s × s) and a 3-D (s × s × s) grid (``L`` the nearest-neighbour Laplacian, κ² = 0.01:
   correlation length ~10 nodes), as s grows: sparse Cholesky on a new pattern (symbolic analysis + numeric
   factorisation + solve), on new values of a known pattern (factorise + solve: what a training loop pays, the
   analysis being cached per pattern), with the factor reused (solve only: what a sampler or a loop over right-hand
   sides pays), CG, CG with a Jacobi preconditioner, and MINRES.
2. CG's iterations on a grid whose edge conductances spread over ``10^c`` (log-uniform), c = 0 … 6, without a
   preconditioner, with Jacobi and with SSOR (ω = 1.5): what a preconditioner buys as the diagonal gets uneven.
3. Which solver accepts which matrix: symmetric positive definite, symmetric indefinite (a shifted Laplacian
   ``L − σ I``, Helmholtz-like) and non-symmetric (upwind convection–diffusion) — the status or error each returns.

Run ``python examples/choosing_a_solver.py`` (grids up to 256 × 256 and 32 × 32 × 32; ~1 min on 2
cores) or ``--quick``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.sparse as sp
import torch

from sparseprec import ConvergenceError, clear_caches
from sparseprec.cholesky import cholesky
from sparseprec.solvers import CG, MINRES, SSOR, BiCGSTAB, Jacobi
from sparseprec.structures import grid_adjacency

F64 = torch.float64
RTOL = 1e-8


def to_torch(A: sp.spmatrix) -> torch.Tensor:
    A = sp.csr_matrix(A)
    A.sort_indices()
    return torch.sparse_csr_tensor(
        torch.from_numpy(A.indptr).long(), torch.from_numpy(A.indices).long(), torch.from_numpy(A.data), A.shape
    )


def grid_edges(shape: tuple[int, ...]) -> np.ndarray:
    """The (m, 2) edges i < j of the nearest-neighbour grid of this shape."""
    W = grid_adjacency(shape).to_sparse_coo().coalesce()
    i, j = W.indices().numpy()
    keep = i < j
    return np.stack([i[keep], j[keep]], 1)


def laplacian(shape: tuple[int, ...], shift: float, weights: np.ndarray | float = 1.0) -> sp.csr_matrix:
    """``shift I + Σ_e w_e (e_i − e_j)(e_i − e_j)ᵀ`` over the edges of the grid (SciPy CSR)."""
    edges = grid_edges(shape)
    n = int(np.prod(shape))
    W = sp.coo_matrix((np.broadcast_to(weights, len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    W = (W + W.T).tocsr()
    return sp.csr_matrix(sp.diags(np.asarray(W.sum(1)).ravel() + shift) - W)


def first_call(Q: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``cholesky(Q).solve(B)`` as on a pattern sparseprec has not seen: the pattern cache is emptied first, so the
    symbolic analysis (fill-reducing ordering) runs again; otherwise it is cached per pattern."""
    clear_caches()
    return cholesky(Q).solve(B)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def relative_residual(Q: torch.Tensor, X: torch.Tensor, B: torch.Tensor) -> float:
    return float(torch.linalg.norm(B - Q @ X) / torch.linalg.norm(B))


def timings(shapes: list[tuple[int, ...]], repeats: int) -> dict[str, list[float]]:
    """Experiment 1: median seconds per method and grid shape."""
    methods = {
        "Cholesky: analyse + factorise + solve": first_call,
        "Cholesky: factorise + solve": lambda Q, B: cholesky(Q).solve(B),
        "Cholesky: solve, factor reused": None,  # filled per grid below
        "CG": CG(rtol=RTOL),
        "CG + Jacobi": CG(rtol=RTOL, preconditioner=Jacobi),
        "MINRES": MINRES(rtol=RTOL),
    }
    results: dict[str, list[float]] = {name: [] for name in methods}
    print(f"1. Q = 0.01 I + L on a grid, 16 right-hand sides, rtol {RTOL:g}: median seconds of {repeats} runs")
    print(f"{'grid':>14} {'n':>7}  " + "  ".join(f"{name:>37}" for name in methods))
    for shape in shapes:
        n = int(np.prod(shape))
        Q = to_torch(laplacian(shape, shift=0.01))
        B = torch.randn(n, 16, dtype=F64, generator=torch.Generator().manual_seed(n))
        factor = cholesky(Q)
        methods["Cholesky: solve, factor reused"] = lambda Q, B, factor=factor: factor.solve(B)
        row = []
        for name, method in methods.items():
            X = method(Q, B)
            residual = relative_residual(Q, X, B)
            if residual > 10 * RTOL:
                raise RuntimeError(f"{name} reached relative residual {residual:.2e} on the grid {shape}")
            seconds = median_time(lambda method=method, Q=Q, B=B: method(Q, B), repeats)
            results[name].append(seconds)
            row.append(f"{seconds:>37.4f}")
        print(f"{' × '.join(map(str, shape)):>14} {n:>7}  " + "  ".join(row))
    return results


def preconditioning(s: int, contrasts: list[int]) -> dict[str, list[int]]:
    """Experiment 2: CG iterations to rtol 1e-8 against the spread of the conductances."""
    rng = np.random.default_rng(0)
    m = len(grid_edges((s, s)))
    B = torch.randn(s * s, dtype=F64, generator=torch.Generator().manual_seed(1))
    results: dict[str, list[int]] = {"none": [], "Jacobi": [], "SSOR (ω = 1.5)": []}
    print(f"\n2. CG iterations to rtol {RTOL:g} on a {s} × {s} grid with conductances spread over 10^c")
    print(f"{'c':>3}  " + "  ".join(f"{name:>15}" for name in results))
    u = rng.uniform(0.0, 1.0, m)
    for c in contrasts:
        A = to_torch(laplacian((s, s), shift=0.01, weights=10.0 ** (c * u)))
        row = []
        for name, preconditioner in (("none", None), ("Jacobi", Jacobi(A)), ("SSOR (ω = 1.5)", SSOR(A, omega=1.5))):
            solution = CG(rtol=RTOL, preconditioner=preconditioner).solve(A, B)
            results[name].append(int(solution.iterations))
            row.append(f"{int(solution.iterations):>15}")
        print(f"{c:>3}  " + "  ".join(row))
    return results


def which_solver(s: int) -> None:
    """Experiment 3: the status (or error) of each solver on three kinds of matrix."""
    spd = to_torch(laplacian((s, s), shift=0.01))
    # −0.5 lies between two eigenvalues of L: L − 0.5 I is symmetric, indefinite and nonsingular
    indefinite = to_torch(laplacian((s, s), shift=-0.5))
    # upwind convection–diffusion: 0.01 I + L plus a first difference along x (velocity 1): non-symmetric
    upwind = sp.kron(sp.eye(s), sp.diags([1.0, -1.0], [0, -1], shape=(s, s)))
    convection = to_torch(laplacian((s, s), shift=0.01) + upwind)
    B = torch.randn(s * s, dtype=F64, generator=torch.Generator().manual_seed(2))
    print(f"\n3. Which solver accepts which matrix ({s} × {s} grid, rtol {RTOL:g})")
    print(f"{'matrix':<36} {'CG':<39} {'MINRES':<39} {'BiCGSTAB':<39}")
    for label, A in (("SPD: 0.01 I + L", spd), ("symmetric indefinite: L − 0.5 I", indefinite),
                     ("non-symmetric: convection–diffusion", convection)):  # fmt: skip
        cells = []
        for solver in (CG(rtol=RTOL), MINRES(rtol=RTOL), BiCGSTAB(rtol=RTOL)):
            try:
                solution = solver.solve(A, B)
                cells.append(f"converged, {int(solution.iterations)} it.")
            except ConvergenceError as error:
                cells.append(f"ConvergenceError {error.solution.status.name}")
            except ValueError as error:
                if "needs a symmetric A" not in str(error):
                    raise
                cells.append("ValueError: A not symmetric")
        print(f"{label:<36} " + " ".join(f"{cell:<39}" for cell in cells))


def plot(series: dict[str, tuple[list[int], dict[str, list[float]]]], contrasts, iterations, output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5.6), layout="constrained")
    for (label, (n, times)), style in zip(series.items(), ("-", "--"), strict=True):
        for (name, seconds), marker, colour in zip(
            times.items(), "osv^Dp", plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False
        ):
            left.loglog(n, seconds, style, marker=marker, color=colour, label=f"{name} ({label})")
    left.set_xlabel("n (grid nodes)")
    left.set_ylabel("seconds (median)")
    left.set_title("Q = 0.01 I + L, 16 right-hand sides, rtol 1e-8")
    left.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    left.grid(True, which="both", alpha=0.3)
    for (name, its), marker in zip(iterations.items(), "osv", strict=True):
        right.semilogy(contrasts, its, marker=marker, label=name)
    right.set_xlabel("conductance spread: log10(max / min)")
    right.set_ylabel("CG iterations to rtol 1e-8")
    right.set_title("preconditioners on a heterogeneous grid")
    right.legend(fontsize=8)
    right.grid(True, which="both", alpha=0.3)
    fig.savefig(output, dpi=110)
    print(f"\nFigure written to {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small grids, one repeat (for tests)")
    parser.add_argument("--output", default="choosing_a_solver.png")
    args = parser.parse_args()
    square = [(16, 16), (32, 32)] if args.quick else [(32, 32), (64, 64), (128, 128), (256, 256)]
    cube = [(6, 6, 6), (10, 10, 10)] if args.quick else [(10, 10, 10), (16, 16, 16), (24, 24, 24), (32, 32, 32)]
    repeats = 1 if args.quick else 5
    contrasts = [0, 2, 4, 6] if args.quick else [0, 1, 2, 3, 4, 5, 6]
    torch.manual_seed(0)
    series = {}
    for label, shapes in (("2-D", square), ("3-D", cube)):
        series[label] = ([int(np.prod(shape)) for shape in shapes], timings(shapes, repeats))
    iterations = preconditioning(24 if args.quick else 64, contrasts)
    which_solver(12 if args.quick else 32)
    plot(series, contrasts, iterations, args.output)


if __name__ == "__main__":
    main()

"""``bench_gpytorch.py --exact-gp``: one ExactGP training step with sparse-precision noise vs GPyTorch's
``GaussianLikelihood``, and the iterative path's accuracy (issue 19). See ``bench_gpytorch.py`` for what is measured."""

from __future__ import annotations

import os
import platform
import statistics

import gpytorch
import torch
from common import fmt, package_version, peak_extra_bytes, round_times, write_section

from sparseprec.gpytorch import SparsePrecisionGaussianLikelihood
from sparseprec.structures import grid_laplacian

BEGIN, END = "<!-- bench_gpytorch_exact_gp:begin -->", "<!-- bench_gpytorch_exact_gp:end -->"
TAU, KAPPA2, LENGTHSCALE, OUTPUTSCALE = 4.0, 0.2, 0.15, 1.0


class _GP(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood):
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def problem(s: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Grid inputs, data (a smooth field plus GMRF noise), the structure G, the mean marginal noise variance."""
    t = torch.linspace(0, 1, s, dtype=torch.float64)
    x = torch.cartesian_prod(t, t)
    G = grid_laplacian((s, s), dtype=torch.float64).detach()
    truth = SparsePrecisionGaussianLikelihood(G, tau=TAU, kappa2=KAPPA2).double()
    field = torch.sin(4 * x[:, 0]) * torch.cos(3 * x[:, 1]) + 0.5 * x[:, 0]
    torch.manual_seed(0)
    with torch.no_grad():
        noise_op = truth.noise_covar(shape=torch.Size([s * s]))
        y = field + noise_op.zero_mean_mvn_samples(1)[0]
        variance = float(noise_op.diagonal().mean())
    return x.to(dtype), y.to(dtype), G.to(dtype), variance


def model(kind: str, x, y, G, variance: float):
    if kind == "gaussian":
        likelihood = gpytorch.likelihoods.GaussianLikelihood()
        likelihood.noise = variance
    else:
        likelihood = SparsePrecisionGaussianLikelihood(G, tau=TAU, kappa2=KAPPA2)
    gp = _GP(x, y, likelihood)
    gp.covar_module.base_kernel.lengthscale = LENGTHSCALE
    gp.covar_module.outputscale = OUTPUTSCALE
    gp, likelihood = gp.to(x.dtype), likelihood.to(x.dtype)
    gp.train()
    return gp, gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, gp)


def step_fn(gp, mll, x, y, dense: bool = False):
    def step() -> float:
        gp.zero_grad()
        size = 10**9 if dense else gpytorch.settings.max_cholesky_size.value()
        with gpytorch.settings.max_cholesky_size(size):
            loss = -mll(gp(x), y)
            loss.backward()
        return float(loss.detach())

    return step


def timing_rows(s: int, repeats: int, dtype: torch.dtype = torch.float32) -> list[dict]:
    x, y, G, variance = problem(s, dtype)
    n = s * s
    fns = {}
    for name, kind, dense in (
        ("SparsePrecisionGaussianLikelihood (CG + SLQ, sparse preconditioner)", "sparse", False),
        ("GaussianLikelihood (GPyTorch defaults)", "gaussian", False),
        ("SparsePrecisionGaussianLikelihood, dense LU path (before)", "sparse", True),
    ):
        if dense and s > 64:
            continue
        gp, mll = model(kind, x, y, G, variance)
        fns[name] = step_fn(gp, mll, x, y, dense)
    precision = str(dtype).removeprefix("torch.")
    rows = {
        name: {"n": n, "dtype": precision, "method": name, "memory": peak_extra_bytes(fn) / 2**20}
        for name, fn in fns.items()
    }
    for name, seconds in round_times(fns, repeats).items():
        row = rows[name]
        row.update(time=statistics.median(seconds), min=min(seconds), max=max(seconds), runs=len(seconds))
        spread = f"min {row['min']:.3f}, max {row['max']:.3f}, {row['runs']} runs"
        print(f"n={n} {precision} {name}: {row['time']:.3f} s ({spread}), peak {row['memory']:.0f} MiB", flush=True)
    return list(rows.values())


def _loss_and_grads(gp, mll, x, y) -> tuple[float, torch.Tensor]:
    gp.zero_grad()
    loss = mll(gp(x), y)
    loss.backward()
    grads = torch.cat([p.grad.reshape(-1) for p in gp.parameters() if p.grad is not None])
    return float(loss.detach()), grads


def accuracy_rows(s: int, seeds: int) -> list[dict]:
    """Iterative (GPyTorch defaults) vs exact dense marginal log-likelihood per point and its gradient, float64."""
    x, y, G, variance = problem(s, torch.float64)
    rows = []
    for name, kind in (("SparsePrecisionGaussianLikelihood", "sparse"), ("GaussianLikelihood", "gaussian")):
        gp, mll = model(kind, x, y, G, variance)
        with gpytorch.settings.max_cholesky_size(10**9):
            exact_value, exact_grads = _loss_and_grads(gp, mll, x, y)
        value_errors, grad_errors = [], []
        for seed in range(seeds):
            torch.manual_seed(seed)
            value, grads = _loss_and_grads(gp, mll, x, y)
            value_errors.append(abs(value - exact_value))
            grad_errors.append(float((grads - exact_grads).norm() / exact_grads.norm()))
        rows.append({"n": s * s, "method": name, "mll": exact_value, "value_error": statistics.median(value_errors),
                     "grad_error": statistics.median(grad_errors), "seeds": seeds})  # fmt: skip
        row = rows[-1]
        print(f"n={s * s} {name}: exact mll/n {exact_value:.5f}; iterative |error| median {row['value_error']:.2e}, "
              f"gradient rel. error median {row['grad_error']:.2e} ({seeds} probe seeds)", flush=True)  # fmt: skip
    return rows


def run(
    sides: list[int], repeats: int, accuracy_side: int, seeds: int, argv: list[str], float64_sides: list[int] = ()
) -> None:
    timing = [row for s in sides for row in timing_rows(s, repeats)]
    timing += [row for s in float64_sides for row in timing_rows(s, repeats, torch.float64)]
    accuracy = accuracy_rows(accuracy_side, seeds)
    lines = [
        BEGIN,
        "## bench_gpytorch --exact-gp: one ExactGP training step with sparse-precision noise",
        "",
        f"`python benchmarks/bench_gpytorch.py {' '.join(argv)}`".replace(" `", "`"),
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"gpytorch {package_version('gpytorch')}, linear_operator {package_version('linear_operator')}, "
        f"{torch.get_num_threads()} threads). `ExactGP` with `ScaleKernel(RBFKernel)` on an s × s grid of the unit "
        "square, float32 (float64 where the table says so), GPyTorch's default settings; forward + backward of "
        "`ExactMarginalLogLikelihood` at the data-generating hyper-parameters "
        f"(length-scale {LENGTHSCALE}, output scale {OUTPUTSCALE}; noise "
        f"Q = τ(κ²I + Laplacian), τ = {TAU}, κ² = {KAPPA2}; `GaussianLikelihood`'s σ² = the mean marginal noise "
        "variance). Median time over interleaved rounds after one warm-up call each (min–max, runs), peak extra "
        "resident memory of one step, and the ratio of medians to `GaussianLikelihood` in the same run.",
        "",
        "| n | dtype | method | time (s) | × GaussianLikelihood | peak memory (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for n, precision in dict.fromkeys((row["n"], row["dtype"]) for row in timing):
        group = [row for row in timing if (row["n"], row["dtype"]) == (n, precision)]
        base = next(row for row in group if row["method"].startswith("GaussianLikelihood"))
        for row in group:
            ratio = fmt(row["time"] / base["time"], 2)
            spread = f"{fmt(row['min'], 3)}–{fmt(row['max'], 3)}, {row['runs']}"
            lines.append(f"| {n:,} | {precision} | {row['method']} | {fmt(row['time'], 3)} ({spread}) | {ratio} | "
                         f"{fmt(row['memory'], 0)} |")  # fmt: skip
    lines += [
        "",
        f"Accuracy at n = {accuracy[0]['n']:,} (float64, GPyTorch's default CG/SLQ settings; {seeds} probe seeds, "
        "medians): the iterative marginal log-likelihood per point against the exact dense value, and the relative "
        "error (2-norm) of its gradient w.r.t. every parameter. `GaussianLikelihood`'s row is the same measurement for "
        "GPyTorch's own iterative path: the error its defaults accept.",
        "",
        "| likelihood | exact log-likelihood / n | abs. error / n | gradient rel. error |",
        "|---|---|---|---|",
    ]
    for row in accuracy:
        lines.append(f"| {row['method']} | {row['mll']:.4f} | {row['value_error']:.1e} | {row['grad_error']:.1e} |")
    lines.append(END)
    write_section(BEGIN, END, "\n".join(lines))

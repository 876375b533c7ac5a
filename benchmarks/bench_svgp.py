"""Benchmark: one SVGP training step with m inducing points on a grid, sparse vs dense Cholesky q(u).

Model: GPyTorch ``ApproximateGP`` with ``VariationalStrategy`` (whitened, ``learn_inducing_locations=False``), RBF
kernel with a scale, Gaussian likelihood, m = s² inducing points on an s × s grid over [0, 1]², a minibatch of b points
(default 1,024) of a smooth 2-D function. One step = forward and backward of ``VariationalELBO``. Per m, measured in one
run (methods interleaved, medians after a warm-up):

- ``sparse``: sparseprec's ``SparseCholeskyVariationalDistribution(parameterization="scale")`` (``S = L Lᵀ``) with
  ``L`` on the lower half of the 4-neighbour grid stencil (``--stencil 8``: 8-neighbour), about 3m stored values;
- ``dense``: GPyTorch's ``CholeskyVariationalDistribution`` (dense lower-triangular ``L``, m (m + 1) / 2 values);
- ``cholesky(K_uu)``: the step GPyTorch's whitened strategy forces whatever q(u) is — ``torch.linalg.cholesky`` of the
  dense m × m ``K_uu`` in float64 (GPyTorch's Cholesky dtype), forward alone and forward + backward.

Reported: median seconds; peak memory of a step: in a fresh subprocess per (method, m), the resident high-water mark
(``/proc`` VmHWM, reset after a warm-up step) minus the resident size before the model was built — the model's
parameters and gradients plus the step's temporaries; it counts torch's allocations, which tracemalloc does not see
(glibc's ``MALLOC_MMAP_THRESHOLD_`` is fixed in the subprocess so freed blocks go back to the system).

Run ``python benchmarks/bench_svgp.py`` (``--sides 32 64 100``, ``--repeats 3``; minutes on 2 cores, dominated by the
dense runs at m = 10⁴) or ``--sides 16 32`` for a quick check. Prints a Markdown table; nothing is written.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import gpytorch
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, median_times, package_version, peak_rss_bytes, reset_peak_rss, rss_bytes  # noqa: E402

from sparseprec.gpytorch import SparseCholeskyVariationalDistribution  # noqa: E402


def grid_pattern(side: int, stencil: int) -> torch.Tensor:
    """Strictly-lower pairs ``(2, k)`` of the 4- or 8-neighbour stencil on a ``side × side`` grid (row-major)."""
    i = torch.arange(side * side)
    r, c = i // side, i % side
    offsets = [(0, -1), (-1, 0)] + ([(-1, -1), (-1, 1)] if stencil == 8 else [])
    pairs = []
    for dr, dc in offsets:
        ok = (r + dr >= 0) & (c + dc >= 0) & (c + dc < side)
        pairs.append(torch.stack([i[ok], (i + dr * side + dc)[ok]]))
    return torch.cat(pairs, 1)


class SVGP(gpytorch.models.ApproximateGP):
    def __init__(self, inducing: torch.Tensor, q):
        super().__init__(gpytorch.variational.VariationalStrategy(self, inducing, q, learn_inducing_locations=False))
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def grid(side: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.linspace(0, 1, side, dtype=dtype)
    return torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)


def training_step(q, side: int, x: torch.Tensor, y: torch.Tensor):
    """A closure: one forward + backward of the ELBO of a fresh model holding ``q``."""
    model = SVGP(grid(side, x.dtype), q).to(x.dtype)
    likelihood = gpytorch.likelihoods.GaussianLikelihood().to(x.dtype)
    elbo = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=100 * y.numel())
    model.train()
    likelihood.train()

    def step():
        for p in (*model.parameters(), *likelihood.parameters()):
            p.grad = None
        loss = -elbo(model(x), y)
        loss.backward()
        return loss

    return step


def forced_cholesky(side: int, dtype: torch.dtype):
    """The whitened strategy's own O(m³) step: the dense Cholesky of K_uu (float64, as GPyTorch casts it)."""
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel()).to(dtype)
    z = grid(side, dtype)

    def forward():
        with torch.no_grad():
            K = kernel(z).add_jitter(1e-4).to_dense().double()
            return torch.linalg.cholesky(K)

    def forward_backward():
        K = kernel(z).add_jitter(1e-4).to_dense().double()
        torch.linalg.cholesky(K).diagonal().log().sum().backward()

    return forward, forward_backward


def make_q(name: str, side: int, stencil: int):
    m = side * side
    if name == "sparse":
        pattern = grid_pattern(side, stencil)
        return SparseCholeskyVariationalDistribution(m, pattern=pattern, parameterization="scale")
    return gpytorch.variational.CholeskyVariationalDistribution(m)


def data(batch: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.rand(batch, 2, dtype=dtype)
    return x, torch.sin(6 * x[:, 0]) * torch.cos(4 * x[:, 1]) + 0.1 * torch.randn(batch, dtype=dtype)


def peak_in_subprocess(name: str, side: int, args: argparse.Namespace) -> float:
    """Peak resident MB of one step of ``name`` (see the module), measured in a fresh interpreter."""
    command = [sys.executable, __file__, "--peak-of", name, "--sides", str(side), "--batch", str(args.batch),
               "--stencil", str(args.stencil), "--dtype", args.dtype]  # fmt: skip
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return math.nan
    return float(result.stdout.strip().splitlines()[-1])


def report_peak(name: str, side: int, args: argparse.Namespace) -> None:
    x, y = data(args.batch, getattr(torch, args.dtype))
    gc.collect()
    before = rss_bytes()
    step = training_step(make_q(name, side, args.stencil), side, x, y)
    step()
    gc.collect()
    if not reset_peak_rss():  # no /proc high-water mark to reset: no figure
        print(math.nan)
        return
    step()
    print((peak_rss_bytes() - before) / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[32, 64, 100], help="grid sides s (m = s²)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1024, help="minibatch size b")
    parser.add_argument("--stencil", type=int, choices=(4, 8), default=4)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--no-dense", action="store_true", help="skip GPyTorch's dense q(u)")
    parser.add_argument("--peak-of", choices=("sparse", "dense"), help=argparse.SUPPRESS)  # the subprocess's mode
    args = parser.parse_args()
    if args.peak_of:
        report_peak(args.peak_of, args.sides[0], args)
        return
    dtype = getattr(torch, args.dtype)
    x, y = data(args.batch, dtype)
    print(
        f"SVGP training step (VariationalStrategy, whitened), RBF, b = {args.batch}, {args.dtype}, "
        f"{args.stencil}-neighbour pattern; torch {torch.__version__}, gpytorch {package_version('gpytorch')}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; median of {args.repeats}"
    )
    print()
    print(
        "| m | nnz(L) sparse | sparse step (s) | dense step (s) | sparse peak (MB) | dense peak (MB) "
        "| cholesky(K_uu) fwd (s) | fwd+bwd (s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for side in args.sides:
        m = side * side
        sparse_q = make_q("sparse", side, args.stencil)
        fns = {"sparse": training_step(sparse_q, side, x, y)}
        if not args.no_dense:
            fns["dense"] = training_step(make_q("dense", side, args.stencil), side, x, y)
        fns["chol"], fns["chol_bwd"] = forced_cholesky(side, dtype)
        times = median_times(fns, args.repeats)
        del fns
        gc.collect()
        peaks = {
            name: peak_in_subprocess(name, side, args) for name in ("sparse", "dense")[: 1 if args.no_dense else 2]
        }
        dense_time = times["dense"][0] if "dense" in times else math.nan
        print(
            f"| {m:,} | {sparse_q.factor_values.numel():,} | {fmt(times['sparse'][0])} | {fmt(dense_time)} "
            f"| {fmt(peaks['sparse'], 0)} | {fmt(peaks.get('dense', math.nan), 0)} | {fmt(times['chol'][0])} "
            f"| {fmt(times['chol_bwd'][0])} |"
        )
    print()
    print(
        "Remaining O(m³) / O(m²) steps, all GPyTorch's VariationalStrategy's (the same for both q(u)): the dense K_uu "
        "(m² kernel entries, O(m²) memory), its Cholesky (O(m³), its own column above) and the Cholesky's backward, "
        "the triangular solve K_uu^{-1/2} K_uf (O(m² b)) and its backward. The sparse q(u) adds O(nnz(L) · b)."
    )


if __name__ == "__main__":
    main()

"""Benchmark of GMRF log-densities and posteriors: sparseprec vs bare CHOLMOD, NumPyro's CAR and dense torch.

Three parts, each measured in one run with methods interleaved (medians over repeats after a warm-up):

1. ``matern``: ``GMRF(0, matern_spde((s, s), kappa, tau)).log_prob(x)`` and its gradient w.r.t. ``(kappa, tau)``
   (precision built from the hyper-parameters every call, as in training) on s × s grids, s ∈ {100, 300, 1000};
   against CHOLMOD's bare numeric factorisation of the same precision (AMD, analysis reused) and, at s = 100, dense
   torch (``MultivariateNormal(precision_matrix=Q.to_dense())``, one timed run).
2. ``car``: proper CAR on the 100 × 100 grid graph (n = 10⁴): log_prob + gradient w.r.t. ``(rho, tau)`` of
   sparseprec's ``GMRF(0, car(W, rho, tau))`` vs NumPyro's ``CAR`` (dense adjacency and ``is_sparse=True``), each
   *including its set-up* (building the distribution from the parameters inside the differentiated function), NumPyro
   with ``jax.jit`` (first call = compilation, reported separately) and without.
3. ``posterior``: ``GMRF.condition`` on the Matérn prior with every 10th node observed (noise precision 4): the
   posterior mean by sparse Cholesky vs by CG (rtol 1e-8), and their relative difference.

Run ``python benchmarks/bench_gmrf.py`` (~15 min on 2 cores) or ``--sizes 100 300``; writes a table to
``docs/benchmarks.md`` between markers. NumPyro rows need ``pip install numpyro jax`` (skipped otherwise).
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import scipy
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, median_times, package_version, write_section  # noqa: E402

import sparseprec  # noqa: E402
from sparseprec.distributions import GMRF  # noqa: E402
from sparseprec.solvers import CG  # noqa: E402
from sparseprec.structures import car, grid_adjacency, matern_spde  # noqa: E402

BEGIN, END = "<!-- bench_gmrf:begin -->", "<!-- bench_gmrf:end -->"
F64 = torch.float64


def scipy_of(Q: torch.Tensor) -> sp.csr_matrix:
    Q = Q.detach()
    return sp.csr_matrix((Q.values().numpy(), Q.col_indices().numpy(), Q.crow_indices().numpy()), shape=Q.shape)


def matern_rows(s: int, repeats: int) -> list[dict]:
    n = s * s
    kappa0, tau0 = 0.3, 1.0
    Q0 = matern_spde((s, s), kappa0, tau0).detach()
    x = GMRF(torch.zeros(n, dtype=F64), Q0).sample()
    kappa = torch.tensor(kappa0, dtype=F64, requires_grad=True)
    tau = torch.tensor(tau0, dtype=F64, requires_grad=True)

    def ours() -> None:
        kappa.grad = tau.grad = None
        GMRF(torch.zeros(n, dtype=F64), matern_spde((s, s), kappa, tau)).log_prob(x).backward()

    fns: dict[str, Callable[[], object]] = {"sparseprec GMRF: log_prob + grad (kappa, tau)": ours}
    try:
        from sksparse.cholmod import analyze
    except ImportError:
        analyze = None
    if analyze is not None:
        low = sp.tril(scipy_of(Q0)).tocsc()
        symbolic = analyze(low, ordering_method="amd")
        fns["CHOLMOD bare: numeric factorisation (analysis reused)"] = lambda: symbolic.cholesky(low).logdet()
    once = set()
    if n <= 10_000:
        dense_name = "dense torch MultivariateNormal(precision_matrix): log_prob + grad"

        def dense() -> None:
            k = kappa.detach().clone().requires_grad_()
            t = tau.detach().clone().requires_grad_()
            Qd = matern_spde((s, s), k, t).to_dense()
            torch.distributions.MultivariateNormal(torch.zeros(n, dtype=F64), precision_matrix=Qd).log_prob(
                x
            ).backward()

        fns[dense_name] = dense
        once.add(dense_name)
    med = median_times(fns, repeats, once)
    bare = med.get("CHOLMOD bare: numeric factorisation (analysis reused)", (None,))[0]
    return [
        dict(part="matern", size=f"s = {s} (n = {n:,}, nnz(Q) = {Q0.values().numel():,})", method=name,
             seconds=t, runs=runs, ratio=None if bare is None else t / bare, note="× CHOLMOD numeric")
        for name, (t, runs) in med.items()
    ]  # fmt: skip


def car_rows(repeats: int) -> list[dict]:
    s = 100
    n = s * s
    W = grid_adjacency((s, s))
    rho0, tau0 = 0.9, 2.0
    x = GMRF(torch.zeros(n, dtype=F64), car(W, rho0, tau0).detach()).sample()
    rho = torch.tensor(rho0, dtype=F64, requires_grad=True)
    tau = torch.tensor(tau0, dtype=F64, requires_grad=True)

    def ours() -> None:
        rho.grad = tau.grad = None
        GMRF(torch.zeros(n, dtype=F64), car(W, rho, tau)).log_prob(x).backward()

    fns: dict[str, Callable[[], object]] = {"sparseprec GMRF(car(W, rho, tau)): log_prob + grad": ours}
    once: set[str] = set()
    try:
        import jax
        import jax.numpy as jnp
        from numpyro.distributions import CAR
    except ImportError:
        jax = None
    if jax is not None:
        jax.config.update("jax_enable_x64", True)
        W_sp = sp.csr_matrix(scipy_of(W))
        W_dense = W_sp.toarray()
        xj = jnp.asarray(x.numpy())

        def make(adjacency, is_sparse):
            def f(params):
                return CAR(0.0, params[0], params[1], adjacency, is_sparse=is_sparse).log_prob(xj)

            return jax.value_and_grad(f)

        params = jnp.asarray([rho0, tau0])
        for label, adjacency, is_sparse in (("dense", W_dense, False), ("is_sparse=True", W_sp, True)):
            plain = make(adjacency, is_sparse)
            name = f"NumPyro CAR ({label}): log_prob + grad, no jit"
            fns[name] = lambda g=plain: jax.block_until_ready(g(params))
            once.add(name)
            # a separate jitted function for the first call, so that no warm-up has compiled it
            first = f"NumPyro CAR ({label}): jit, first call (set-up: eigenvalues + compilation)"
            fns[first] = lambda a=adjacency, sparse=is_sparse: jax.block_until_ready(jax.jit(make(a, sparse))(params))
            once.add(first)
            jitted = jax.jit(make(adjacency, is_sparse))
            fns[f"NumPyro CAR ({label}): jit, repeated"] = lambda g=jitted: jax.block_until_ready(g(params))
    med = median_times(fns, repeats, once)
    ours_t = med["sparseprec GMRF(car(W, rho, tau)): log_prob + grad"][0]
    return [
        dict(part="car", size=f"grid graph 100 × 100 (n = {n:,})", method=name, seconds=t, runs=runs,
             ratio=t / ours_t, note="× sparseprec")
        for name, (t, runs) in med.items()
    ]  # fmt: skip


def posterior_rows(s: int, repeats: int) -> list[dict]:
    n = s * s
    prior = GMRF(torch.zeros(n, dtype=F64), matern_spde((s, s), 0.3, 1.0).detach())
    observed = torch.arange(0, n, 10)
    m = observed.numel()
    A = torch.sparse_csr_tensor(torch.arange(m + 1), observed, torch.ones(m, dtype=F64), (m, n))
    y = prior.sample()[observed] + 0.5 * torch.randn(m, dtype=F64)
    results = {}

    def run(solver):
        def f():
            results[str(solver)] = prior.condition(A, y, 4.0, solver=solver).loc

        return f

    fns = {"posterior mean: sparse Cholesky": run("cholesky"), "posterior mean: CG (rtol 1e-8)": run(CG(rtol=1e-8))}
    med = median_times(fns, repeats)
    a, b = results["cholesky"], results[str(CG(rtol=1e-8))]
    difference = float((a - b).norm() / a.norm())
    chol = med["posterior mean: sparse Cholesky"][0]
    return [
        dict(part="posterior", size=f"s = {s} (n = {n:,}, m = {m:,})", method=name, seconds=t, runs=runs,
             ratio=t / chol, note=f"× Cholesky; rel. difference {difference:.1e}")
        for name, (t, runs) in med.items()
    ]  # fmt: skip


def write_table(rows: list[dict], argv: list[str]) -> None:
    lines = [
        BEGIN,
        "## GMRFs (`benchmarks/bench_gmrf.py`)",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, {platform.platform()}; Python "
        f"{platform.python_version()}; torch {torch.__version__}, SciPy {scipy.__version__}, scikit-sparse "
        f"{package_version('scikit-sparse')}, NumPyro {package_version('numpyro')}, jax {package_version('jax')}, "
        f"sparseprec {sparseprec.__version__}. Command: `python benchmarks/bench_gmrf.py {' '.join(argv)}`.",
        "",
        "Times in seconds, medians over interleaved rounds after a warm-up (rows with 1 run: a single timed call "
        "without warm-up). `matern`: float64 SPDE-Matérn precision (α = 2, 13-point stencil) built from (κ, τ) on "
        "every call; the ratio divides by CHOLMOD's bare numeric factorisation of that precision in the same run. "
        "`car`: proper CAR on the 100 × 100 grid graph, set-up included in every call; ratio = method ÷ sparseprec. "
        "`posterior`: `GMRF.condition` with every 10th node observed.",
        "",
        "| part | problem | method | seconds | ratio | | runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['part']} | {r['size']} | {r['method']} | {fmt(r['seconds'], 4)} | {fmt(r['ratio'])} | {r['note']} "
            f"| {r['runs']} |"
        )
    lines.append(END)
    write_section(BEGIN, END, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows: list[dict] = []
    for s in args.sizes:
        rows += matern_rows(s, args.repeats if s <= 300 else 3)
        for row in rows[-3:]:
            print(row, flush=True)
    rows += car_rows(args.repeats)
    print(*rows[-7:], sep="\n", flush=True)
    for s in [x for x in args.sizes if x <= 300]:
        rows += posterior_rows(s, args.repeats)
        print(*rows[-2:], sep="\n", flush=True)
    if not args.no_write:
        write_table(rows, sys.argv[1:])


if __name__ == "__main__":
    main()

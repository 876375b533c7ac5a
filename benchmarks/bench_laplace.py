"""Benchmark of the Laplace approximation (issue 18's targets): sparseprec vs a bare CHOLMOD Newton loop, SVI, INLA.

Parts, each measured in one run with the methods interleaved (medians over rounds after a warm-up, with the min–max
over the rounds), under each thread setting of ``--threads`` (``1``: ``torch.set_num_threads(1)`` and, through
threadpoolctl, one BLAS/OpenMP thread for CHOLMOD; ``default``: the process's defaults). ``Newton()`` itself runs
torch with one intra-op thread by default (its ``threads=1``), so for our rows the setting changes torch's threads
only outside the fit (the gradient's backward) and CHOLMOD's BLAS threads; with ``default``, one more row times
``Newton(threads=None)`` (torch's default threads inside the fit too).

1. ``lattice``: a Poisson field on an s × s lattice (s ∈ ``--sizes``, default 100, 300, 500: n = 10⁴, 9·10⁴,
   2.5·10⁵), float64. Prior ``x ~ GMRF(0, Q)``, ``Q = τ² (κ² I + G)`` (``matern_spde(..., alpha=1)``, ``G`` the
   5-point graph Laplacian), κ = 0.3, τ = 1; ``x_true`` drawn from it with the library's sampler, ``y_i ~
   Poisson(exp(x_true,i + 1))`` (fixed seeds), hyper-parameters fixed.

   a. ``mode``: ``LatentGaussianModel(GMRF(0, Q), Poisson(), offset=1).laplace(y)`` from ``x0 = None`` against the
      *floor*: a bare Newton loop written here on scikit-sparse (``cholmod.analyze`` once, ``cholesky_inplace`` on
      the fixed pattern of ``Q + diag(w)`` each iteration) with the same start, the same stopping rule (half the
      squared Newton decrement ≤ ``Newton()``'s float64 tolerance · max(1, |ψ|), then the full step) and the same
      Armijo halving. Ratio = ours ÷ floor. A sanity check prints the largest difference of the two modes (must be
      < 1e-8).
   b. ``mode + sd``: ours with the marginal variances (``.variance``: selected inverse) against the floor's Newton
      loop plus one more factorisation at the mode (scikit-sparse has no selected inverse; the selected inverse
      costs about one factorisation's flops, so this is the honest library-free floor).
   c. ``log p̃ + grad``: the Laplace marginal likelihood and its gradient w.r.t. (log τ, log κ) (precision rebuilt
      from θ every call, as in training), against its value alone under ``torch.no_grad()``; both warm-started at
      the mode (``x0`` = the mode at θ). Ratio = with gradient ÷ value alone (target ≤ 2).
   d. ``memory``: peak resident memory added by one call of (b) in a fresh process (after a warm-up call), ours and
      the floor, against nnz(L) × 8 bytes (L: the factor of ``Q + diag(w)``, AMD ordering).
   e. ``SVI`` (smallest size only, unless ``--svi-all``; first thread setting only): Pyro with
      ``sparseprec.pyro.AutoSparseMultivariateNormal`` on the same model (``x ~ GMRF``, ``y ~ Poisson(exp(x + 1))``),
      Trace_ELBO (1 particle), Adam with lr 0.02 and 0.05, started at the prior mean: seconds of SVI steps (the
      guide's set-up in the first; after one warm-up step of a throwaway guide) until the guide's mean is within the
      Laplace mode's accuracy, max_i |mean_i − mode_i| / sd_i < 0.1 (checked every 10 steps, the check not timed),
      or until ``--svi-steps`` (3000) run out.
      One run. Ratio = SVI ÷ ours (b).

2. ``lip cancer``: ``sparseprec.examples.lip_cancer.fit_laplace`` (BYM2, (σ, ρ) integrated over INLA's grid) on
   both graphs of ``load_scotland_lip_cancer(islands=False/True)``: the whole fit after import (data loading
   included), median of ``--lip-repeats`` (5).

Prints one dict per row (the form ``compare_revisions.py`` reads) and a markdown table; ``--write-docs`` puts the
table into docs/benchmarks.md between its markers. ``--quick``: s = 30, 60, 2 rounds, 50 SVI steps, one lip cancer
fit per graph under the first thread setting only, memory at s = 30 only (under a minute). Full run: ``python
benchmarks/bench_laplace.py --write-docs`` (~40 min on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp
import torch
from scipy.special import gammaln

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, package_version, peak_extra_bytes, round_times, write_section  # noqa: E402

import sparseprec  # noqa: E402
from sparseprec.cholesky import cholesky  # noqa: E402
from sparseprec.distributions import GMRF  # noqa: E402
from sparseprec.laplace import LatentGaussianModel, Newton, Poisson  # noqa: E402
from sparseprec.structures import matern_spde  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # BLAS threads then stay as they are
    threadpool_limits = None

BEGIN, END = "<!-- bench_laplace:begin -->", "<!-- bench_laplace:end -->"
F64 = torch.float64
KAPPA, TAU, OFFSET = 0.3, 1.0, 1.0
TOLERANCE, ARMIJO, MAX_ITERATIONS, MAX_HALVINGS = Newton().tolerance_for(torch.float64), 1e-4, 100, 40
SVI_ACCURACY, SVI_CHECK_EVERY = 0.1, 10


# ---- timing and threads ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def thread_setting(setting: str) -> Iterator[str]:
    """Run the block with ``setting`` threads (``"default"``: as the process has them); yields the label."""
    if setting == "default":
        yield f"default ({torch.get_num_threads()})"
        return
    count = int(setting)
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    limits = contextlib.nullcontext() if threadpool_limits is None else threadpool_limits(count)
    try:
        with limits:
            yield str(count)
    finally:
        torch.set_num_threads(previous)


# ---- the lattice problem -----------------------------------------------------------------------------------------
def lattice_problem(s: int, seed: int = 0) -> dict:
    """Prior precision, simulated counts and the model at the fixed hyper-parameters."""
    n = s * s
    Q = matern_spde((s, s), KAPPA, TAU, alpha=1).detach()
    torch.manual_seed(seed)
    x_true = GMRF(torch.zeros(n, dtype=F64), Q).sample()
    y = Poisson().sample(x_true + OFFSET, generator=torch.Generator().manual_seed(seed))
    model = LatentGaussianModel(GMRF(torch.zeros(n, dtype=F64), Q), Poisson(), offset=OFFSET)
    return {"s": s, "n": n, "Q": Q, "y": y, "model": model}


def build(s: int, theta: torch.Tensor) -> LatentGaussianModel:
    """The model at ``theta = (log τ, log κ)``, precision built from θ (differentiable)."""
    Q = matern_spde((s, s), theta[1].exp(), theta[0].exp(), alpha=1)
    return LatentGaussianModel(GMRF(torch.zeros(s * s, dtype=F64), Q), Poisson(), offset=OFFSET)


class CholmodNewton:
    """The floor: damped Newton for ``ψ(x) = Σ log Poisson(y | exp(x + o)) − ½ xᵀQx`` on bare scikit-sparse.

    Same start (0, the prior mean), stopping rule and line search as ``sparseprec.laplace.Newton``; ``H = Q +
    diag(exp(x + o))`` refactorised in place on the pattern analysed once."""

    def __init__(self, Q: torch.Tensor, y: torch.Tensor):
        from sksparse.cholmod import analyze

        self.Q = sp.csr_matrix((Q.values().numpy(), Q.col_indices().numpy(), Q.crow_indices().numpy()), shape=Q.shape)
        lower = sp.tril(self.Q).tocsc()
        lower.sort_indices()
        self.lower_values = lower.data.copy()
        # the diagonal is the first stored entry of each column of a lower-triangular CSC matrix with sorted rows
        self.diagonal = lower.indptr[:-1]
        if not np.array_equal(lower.indices[self.diagonal], np.arange(Q.shape[0])):
            raise ValueError("Q must store every diagonal entry")
        self.H = lower
        self.factor = analyze(self.H, mode="auto", ordering_method="amd")
        self.y = y.numpy().astype(np.float64)
        self.log_factorials = float(gammaln(self.y + 1).sum())
        self.iterations = 0

    def objective(self, x: np.ndarray) -> float:
        eta = x + OFFSET
        return float(self.y @ eta - np.exp(eta).sum() - self.log_factorials - 0.5 * x @ (self.Q @ x))

    def refactor(self, w: np.ndarray) -> None:
        self.H.data[:] = self.lower_values
        self.H.data[self.diagonal] += w
        self.factor.cholesky_inplace(self.H)

    def mode(self) -> np.ndarray:
        x = np.zeros(self.Q.shape[0])
        psi = self.objective(x)
        for iteration in range(1, MAX_ITERATIONS + 1):
            rate = np.exp(x + OFFSET)
            g = self.y - rate - self.Q @ x
            self.refactor(rate)
            step = self.factor(g)
            decrement = 0.5 * float(g @ step)
            if decrement <= TOLERANCE * max(1.0, abs(psi)):
                x = x + step
                self.iterations = iteration
                return x
            alpha = 1.0
            for _ in range(MAX_HALVINGS):
                candidate = x + alpha * step
                value = self.objective(candidate)
                if math.isfinite(value) and value >= psi + ARMIJO * alpha * 2.0 * decrement:
                    break
                alpha *= 0.5
            else:
                raise RuntimeError(f"floor: line search failed at iteration {iteration}")
            x, psi = candidate, value
        raise RuntimeError(f"floor: Newton did not converge in {MAX_ITERATIONS} iterations")

    def mode_and_factor(self) -> np.ndarray:
        """The mode and the factorisation of ``H`` there (what the marginal variances would be computed from)."""
        x = self.mode()
        self.refactor(np.exp(x + OFFSET))
        return x


def nnz_factor(Q: torch.Tensor) -> int:
    """nnz(L) of the library's CHOLMOD factor (AMD ordering) of ``Q``: the same as of ``Q + diag(w)``, whose pattern
    is ``Q``'s (every diagonal entry stored)."""
    return int(cholesky(Q).L.values().numel())


def lattice_fns(problem: dict, mode: torch.Tensor, unpinned: bool) -> dict[str, Callable[[], object]]:
    s, y, model = problem["s"], problem["y"], problem["model"]
    floor = CholmodNewton(problem["Q"], y)
    theta0 = torch.tensor([math.log(TAU), math.log(KAPPA)], dtype=F64)

    def value() -> torch.Tensor:
        with torch.no_grad():
            return build(s, theta0).laplace(y, x0=mode).log_marginal_likelihood()

    def value_and_grad() -> tuple[torch.Tensor, ...]:
        theta = theta0.clone().requires_grad_(True)
        v = build(s, theta).laplace(y, x0=mode).log_marginal_likelihood()
        return torch.autograd.grad(v, theta)

    fns = {
        "ours mode": lambda: model.laplace(y),
        "floor mode": floor.mode,
        "ours mode + sd": lambda: model.laplace(y).variance,
        "floor mode + factor": floor.mode_and_factor,
        "ours value": value,
        "ours value + grad": value_and_grad,
    }
    if unpinned:
        fns["ours mode + sd, Newton(threads=None)"] = lambda: model.laplace(y, newton=Newton(threads=None)).variance
    return fns


def spread(t: list[float]) -> tuple[float, float, float]:
    return statistics.median(t), min(t), max(t)


def lattice_rows(problem: dict, repeats: int, label: str, unpinned: bool, nnz_l: int) -> list[dict]:
    s, n = problem["s"], problem["n"]
    fit = problem["model"].laplace(problem["y"])
    floor = CholmodNewton(problem["Q"], problem["y"])
    floor_mode = floor.mode()
    difference = float(np.abs(fit.result.x.numpy() - floor_mode).max())
    verdict = "OK" if difference < 1e-8 else "FAILED"
    print(
        f"sanity (s = {s}, threads {label}): max |x_ours − x_floor| = {difference:.2e} (< 1e-8: {verdict}); Newton "
        f"iterations ours {fit.iterations}, floor {floor.iterations}",
        flush=True,
    )
    times = round_times(lattice_fns(problem, fit.result.x, unpinned), repeats)
    base = dict(part="lattice", problem=f"Poisson field, s = {s}", n=n, nnz_L=nnz_l, threads=label)

    def row(measure: str, ours: str, reference: str | None, **extra) -> dict:
        o, o_lo, o_hi = spread(times[ours])
        r = dict(base, measure=measure, ours_seconds=o, ours_lo=o_lo, ours_hi=o_hi, runs=len(times[ours]))
        if reference is not None:
            f, f_lo, f_hi = spread(times[reference])
            r.update(floor_seconds=f, floor_lo=f_lo, floor_hi=f_hi, ratio=o / f)
        return dict(r, **extra)

    rows = [
        row("mode (Newton from x0 = None); ref: bare CHOLMOD Newton", "ours mode", "floor mode",
            mode_difference=difference, iterations_ours=fit.iterations, iterations_floor=floor.iterations),
        row("mode + marginal sd; ref: bare CHOLMOD Newton + 1 factorisation", "ours mode + sd", "floor mode + factor"),
        row("log p̃ + grad (log τ, log κ), warm start; ref: value alone (no_grad)", "ours value + grad", "ours value"),
    ]  # fmt: skip
    if unpinned:
        rows.append(row("mode + marginal sd, Newton(threads=None); ref: bare CHOLMOD Newton + 1 factorisation",
                        "ours mode + sd, Newton(threads=None)", "floor mode + factor"))  # fmt: skip
    return rows


# ---- memory, in a fresh process ----------------------------------------------------------------------------------
def memory_child(s: int, which: str) -> None:
    """Child-process mode: print the peak extra bytes of one call of (b), ours or the floor, after a warm-up call."""
    problem = lattice_problem(s)
    with thread_setting("1"):
        if which == "ours":
            model, y = problem["model"], problem["y"]

            def fn() -> object:
                return model.laplace(y).variance
        else:
            fn = CholmodNewton(problem["Q"], problem["y"]).mode_and_factor
        fn()
        print(peak_extra_bytes(fn))


def measure_memory(s: int, which: str) -> float:
    """Peak extra bytes in a fresh process whose large blocks come straight from mmap (freed memory leaves it)."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    command = [sys.executable, __file__, "--memory-child", str(s), which]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def memory_row(problem: dict, nnz_l: int) -> dict:
    s = problem["s"]
    ours, floor = measure_memory(s, "ours"), measure_memory(s, "floor")
    factor_mib = nnz_l * 8 / 2**20
    return dict(
        part="lattice",
        problem=f"Poisson field, s = {s}",
        n=problem["n"],
        nnz_L=nnz_l,
        threads="1",
        measure="peak extra MiB of mode + sd; ref: nnz(L) × 8 B",
        ours_mib=ours / 2**20,
        floor_mib=factor_mib,
        ratio=ours / 2**20 / factor_mib,
        bare_cholmod_mib=floor / 2**20,
        runs=1,
    )


# ---- SVI ---------------------------------------------------------------------------------------------------------
def svi_row(problem: dict, lr: float, steps: int, ours_seconds: float, label: str, nnz_l: int) -> dict:
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.infer.autoguide.initialization import init_to_mean

    import sparseprec.pyro as spyro

    n, y = problem["n"], problem["y"]
    fit = problem["model"].laplace(y)
    mode, sd = fit.result.x, fit.stddev
    prior = spyro.GMRF(torch.zeros(n, dtype=F64), problem["Q"])

    def model() -> None:
        x = pyro.sample("x", prior)
        pyro.sample("y", dist.Poisson((x + OFFSET).exp()).to_event(1), obs=y)

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = spyro.AutoSparseMultivariateNormal(model, init_loc_fn=init_to_mean)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), Trace_ELBO())
    elapsed, accuracy, best, taken = 0.0, math.inf, math.inf, 0
    for step in range(1, steps + 1):
        start = time.perf_counter()
        svi.step()
        elapsed += time.perf_counter() - start
        taken = step
        if step % SVI_CHECK_EVERY == 0 or step == steps:
            with torch.no_grad():
                accuracy = float(((guide.loc - mode).abs() / sd).max())
            best = min(best, accuracy)
            if accuracy < SVI_ACCURACY:
                break
    reached = accuracy < SVI_ACCURACY
    return dict(part="lattice", problem=f"Poisson field, s = {problem['s']}", n=n, nnz_L=nnz_l, threads=label,
                measure=f"SVI (sparse guide, Adam lr {lr}) until max |mean − mode| / sd < {SVI_ACCURACY}; "
                        "ours: mode + sd", ours_seconds=ours_seconds, floor_seconds=elapsed,
                ratio=elapsed / ours_seconds, svi_steps=taken, svi_reached=int(reached), svi_accuracy=accuracy,
                svi_best_accuracy=best, runs=1)  # fmt: skip


# ---- lip cancer --------------------------------------------------------------------------------------------------
def lip_rows(repeats: int, label: str) -> list[dict]:
    from sparseprec.datasets import load_scotland_lip_cancer
    from sparseprec.examples.lip_cancer import fit_laplace

    def fit(islands: bool) -> Callable[[], object]:
        return lambda: fit_laplace(load_scotland_lip_cancer(islands=islands))

    fns = {False: fit(False), True: fit(True)}
    times = round_times(fns, repeats, once=frozenset(fns) if repeats == 1 else frozenset())
    rows = []
    for islands, t in times.items():
        data = load_scotland_lip_cancer(islands=islands)
        n = 2 * data.num_districts + 2
        median, lo, hi = spread(t)
        graph = "islands unlinked (3 singletons)" if islands else "islands linked (1 component)"
        rows.append(dict(part="lip cancer", problem=f"BYM2 INLA fit, {graph}", n=n, nnz_L=None, threads=label,
                         measure="fit_laplace(data): whole fit", ours_seconds=median, ours_lo=lo, ours_hi=hi,
                         runs=len(t)))  # fmt: skip
    return rows


# ---- output ------------------------------------------------------------------------------------------------------
def cells(r: dict) -> list[str]:
    memory = "ours_mib" in r
    unit = 1 if memory else 3
    ours = r["ours_mib"] if memory else r.get("ours_seconds")
    floor = r["floor_mib"] if memory else r.get("floor_seconds")
    ranges = []
    if "ours_lo" in r:
        ranges.append(f"{fmt(r['ours_lo'], 3)}–{fmt(r['ours_hi'], 3)}")
    if "floor_lo" in r:
        ranges.append(f"{fmt(r['floor_lo'], 3)}–{fmt(r['floor_hi'], 3)}")
    notes = []
    if "mode_difference" in r:
        notes.append(f"max \\|Δmode\\| {r['mode_difference']:.1e}; iterations {r['iterations_ours']} / "
                     f"{r['iterations_floor']}")  # fmt: skip
    if "bare_cholmod_mib" in r:
        notes.append(f"bare CHOLMOD Newton + factorisation: {fmt(r['bare_cholmod_mib'], 1)} MiB")
    if "svi_steps" in r:
        notes.append(f"{'reached' if r['svi_reached'] else 'not reached'} after {r['svi_steps']} steps (last "
                     f"{r['svi_accuracy']:.2f}, best {r['svi_best_accuracy']:.2f})")  # fmt: skip
    return [
        r["part"], r["problem"], f"{r['n']:,}", "—" if r.get("nnz_L") is None else f"{r['nnz_L']:,}",
        r["measure"].replace("|", "\\|"), fmt(ours, unit), fmt(floor, unit), fmt(r.get("ratio")),
        "; ".join(ranges) or "—", str(r["runs"]), r["threads"], "; ".join(notes),
    ]  # fmt: skip


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| part | problem | n | nnz(L) | measure | ours | floor / ref | ratio | min–max (ours; ref) | runs | threads "
        "| note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return lines


def header(argv: list[str]) -> list[str]:
    return [
        "## Laplace approximation (`benchmarks/bench_laplace.py`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; Python "
        f"{platform.python_version()}; torch {torch.__version__}, SciPy {scipy.__version__}, scikit-sparse "
        f"{package_version('scikit-sparse')}, Pyro {package_version('pyro-ppl')}, threadpoolctl "
        f"{package_version('threadpoolctl')}, sparseprec {sparseprec.__version__}. Command: "
        f"`python benchmarks/bench_laplace.py {' '.join(argv)}`.",
        "",
        "Times in seconds (memory rows: MiB); medians over interleaved rounds after a warm-up, min–max over the "
        "rounds. `lattice`: Poisson counts on an s × s lattice, prior `GMRF(0, τ²(κ²I + G))` (κ = 0.3, τ = 1, 5-point "
        "Laplacian `G`), offset 1, float64. `floor`: a bare Newton loop on scikit-sparse (analysis once, in-place "
        "refactorisation; same start, stopping rule and line search); there is no selected inverse in scikit-sparse, "
        "so `mode + marginal sd` is compared with the floor's Newton plus one more factorisation (about the selected "
        "inverse's flops). Ratio = ours ÷ ref, except SVI rows (SVI seconds ÷ ours, one run) and memory rows (peak "
        "extra resident MiB of one mode + sd call in a fresh process ÷ nnz(L) × 8 B). Threads `1`: torch and "
        "BLAS/OpenMP (threadpoolctl) at one thread; `default`: the process's defaults. `Newton()` runs torch with one "
        "thread inside the fit by default; the `Newton(threads=None)` row lifts that. `lip cancer`: "
        "`sparseprec.examples.lip_cancer.fit_laplace` (BYM2, INLA grid over (σ, ρ)), data loading included.",
        "",
    ]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        memory_child(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="lattice sides s (default 100 300 500)")
    parser.add_argument("--threads", nargs="+", default=["1", "default"], help="thread settings: integers, 'default'")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 5; 3 for s > 300)")
    parser.add_argument("--lip-repeats", type=int, default=5)
    parser.add_argument("--svi-steps", type=int, default=3000)
    parser.add_argument("--svi-all", action="store_true", help="SVI at every size, not only the smallest")
    parser.add_argument("--no-svi", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-lip", action="store_true")
    parser.add_argument("--quick", action="store_true", help="s = 30 60, 2 rounds, 50 SVI steps, 1 lip fit each")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="accepted for compare_revisions.py (the default)")
    args = parser.parse_args()
    for setting in args.threads:
        if setting != "default" and not (setting.isdigit() and int(setting) >= 1):
            parser.error(f"--threads takes integers >= 1 or 'default', got {setting!r}")
    sizes = args.sizes or ([30, 60] if args.quick else [100, 300, 500])
    svi_steps = 50 if args.quick else args.svi_steps
    lip_repeats = 1 if args.quick else args.lip_repeats
    rows: list[dict] = []
    problems = {s: lattice_problem(s) for s in sizes}
    nnz = {s: nnz_factor(problem["Q"]) for s, problem in problems.items()}
    for index, setting in enumerate(args.threads):
        with thread_setting(setting) as label:
            for s, problem in problems.items():
                repeats = args.repeats or (2 if args.quick else 3 if s > 300 else 5)
                batch = lattice_rows(problem, repeats, label, setting != "1", nnz[s])
                rows += batch
                print(*batch, sep="\n", flush=True)
                if index == 0 and not args.no_svi and (args.svi_all or s == min(sizes)):
                    ours = batch[1]["ours_seconds"]  # mode + marginal sd
                    svi_row(problem, 0.02, 1, ours, label, nnz[s])  # warm-up: the caches a first set-up fills
                    for lr in (0.02, 0.05):
                        rows.append(svi_row(problem, lr, svi_steps, ours, label, nnz[s]))
                        print(rows[-1], flush=True)
            if not args.no_lip and (index == 0 or not args.quick):
                rows += lip_rows(lip_repeats, label)
                print(*rows[-2:], sep="\n", flush=True)
    if not args.no_memory:
        for s in sizes[:1] if args.quick else sizes:
            rows.append(memory_row(problems[s], nnz[s]))
            print(rows[-1], flush=True)
    lines = table(rows)
    print("\n".join(lines))
    if args.write_docs:
        write_section(BEGIN, END, "\n".join([BEGIN, *header(sys.argv[1:]), *lines, END]))


if __name__ == "__main__":
    main()

"""Benchmark of SVI with sparseprec's sparse-precision autoguide vs Pyro's dense structured guides.

Model: a latent grid GMRF ``x ~ GMRF(0, I + Laplacian)`` on an s × s grid (N = s² latent sites) observed with
Gaussian noise, ``y ~ Normal(x, 1)``; the prior object is built once (its factorisation is shared by all steps and
all guides, so the numbers are the guides' costs). One SVI step = ``Trace_ELBO`` (1 particle) + ``Adam``. Guides:

- ``AutoSparseMultivariateNormal`` (pattern derived from the GMRF: the grid's lower triangle, 2 entries per row);
- ``AutoMultivariateNormal`` (dense N × N ``scale_tril``);
- ``AutoGaussian`` dense backend (its parameters are an N × N ``prec_sqrt`` per factor);
- ``AutoNormal`` (mean field, O(N): the floor a structured guide is measured against; the sparse guide's work is
  O(nnz), so its step should stay a small constant times this one as N grows).

Per guide and N: median wall time of a step (after 2 warm-up steps; methods interleaved) and the peak resident
memory added by building the guide and running two steps (``/proc`` high-water mark, in a fresh process per guide
and N, after the model has run once). float32 throughout (Pyro's
default, and the only dtype ``AutoGaussian(backend="dense")`` runs in: it allocates its dense precision without a
dtype, so float64 latents fail — recorded in the table). Dense guides are skipped where their N² parameters alone
exceed half the machine's memory.

Run ``python benchmarks/bench_pyro.py`` (~5 min on 2 cores) or ``--sizes 32 100``; writes a table to
``docs/benchmarks.md`` between markers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoGaussian, AutoMultivariateNormal, AutoNormal

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, median_times, package_version, peak_extra_bytes, write_section  # noqa: E402

import sparseprec.pyro as sp  # noqa: E402
from sparseprec.structures import grid_laplacian  # noqa: E402

BEGIN, END = "<!-- bench_pyro:begin -->", "<!-- bench_pyro:end -->"
GUIDES = {
    "sparse (ours)": sp.AutoSparseMultivariateNormal,
    "AutoMultivariateNormal": AutoMultivariateNormal,
    "AutoGaussian dense": AutoGaussian,
    "AutoNormal (mean field)": AutoNormal,
}
#: guides whose parameters grow with N (not N²): run at every size
LINEAR_GUIDES = ("sparse (ours)", "AutoNormal (mean field)")


def problem(s: int, dtype: torch.dtype):
    n = s * s
    L = grid_laplacian((s, s), dtype=torch.float64).detach()
    Q = _plus_identity(L).to(dtype)
    prior = sp.GMRF(torch.zeros(n, dtype=dtype), Q)
    y = prior.sample() + torch.randn(n, dtype=dtype)

    def model():
        x = pyro.sample("x", prior)
        pyro.sample("y", dist.Normal(x, 1.0).to_event(1), obs=y)

    return model


def _plus_identity(L: torch.Tensor) -> torch.Tensor:
    n = L.shape[-1]
    coo = L.to_sparse_coo()
    eye = torch.sparse_coo_tensor(torch.arange(n).expand(2, n), torch.ones(n, dtype=L.dtype), (n, n))
    return (coo + eye).coalesce().to_sparse_csr()


def make_svi(model, guide_class):
    pyro.clear_param_store()
    guide = guide_class(model)
    # lr 1e-4: the cost of a step does not depend on it, and Adam at 1e-2 moves all N² entries of a dense scale_tril
    # at once (AutoMultivariateNormal reaches NaN within a few steps at N = 10⁴ in float32)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-4}), Trace_ELBO())
    return svi


def _memory_child(s: int, name: str, queue) -> None:
    small = problem(4, torch.float32)  # pay the one-time costs (lazy imports, thread pools) of this guide's code path
    warm = make_svi(small, GUIDES[name])
    warm.step()
    warm.step()
    del warm
    model = problem(s, torch.float32)
    pyro.poutine.trace(model).get_trace()  # everything the model itself allocates

    def build_and_step() -> None:
        svi = make_svi(model, GUIDES[name])
        svi.step()
        svi.step()

    queue.put(peak_extra_bytes(build_and_step))


def guide_memory(s: int, name: str) -> float:
    """Peak extra resident memory of building the guide and two steps, measured in a fresh process (an allocator
    that already holds freed memory from earlier runs would hide allocations)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_memory_child, args=(s, name, queue))
    process.start()
    value = queue.get()
    process.join()
    return value


def dense_fits(n: int, itemsize: int) -> bool:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 4 * n * n * itemsize < memory / 2  # parameter, gradient and two Adam moments


def float64_check() -> str:
    """Does AutoGaussian's dense backend run with float64 latents? (the message of its failure, if not)"""
    model = problem(4, torch.float64)
    try:
        make_svi(model, AutoGaussian).step()
    except Exception as error:  # noqa: BLE001 - the failure is the result being recorded
        return f"fails: {type(error).__name__}: {str(error).splitlines()[0][:90]}"
    return "runs"


def rows_for(s: int, repeats: int) -> list[dict]:
    n = s * s
    model = problem(s, torch.float32)
    rows = []
    steps = {}
    for name, guide_class in GUIDES.items():
        if name not in LINEAR_GUIDES and not dense_fits(n, 4):
            rows.append({"N": n, "guide": name, "time": None, "memory": None, "note": "N² parameters do not fit"})
            continue

        memory = guide_memory(s, name)
        svi = make_svi(model, guide_class)
        svi.step()
        steps[name] = svi.step
        rows.append({"N": n, "guide": name, "time": None, "memory": memory / 2**20, "note": ""})
        print(f"N={n} {name}: set-up + 2 steps peak extra memory {memory / 2**20:.1f} MiB", flush=True)
    times = median_times(steps, repeats if n < 10**4 else max(2, repeats // 2))
    for row in rows:
        if row["guide"] in times:
            row["time"], row["runs"] = times[row["guide"]]
            print(f"N={n} {row['guide']}: step {row['time'] * 1e3:.1f} ms", flush=True)
    if {"sparse (ours)", "AutoNormal (mean field)"} <= times.keys():
        ratio = times["sparse (ours)"][0] / times["AutoNormal (mean field)"][0]
        print(f"N={n} sparse (ours) step ÷ AutoNormal step: {ratio:.2f}", flush=True)
    return rows


def write_table(rows: list[dict], float64: str, argv: list[str]) -> None:
    lines = [
        BEGIN,
        "## bench_pyro: SVI step, sparse-precision guide vs Pyro's dense guides",
        "",
        f"`python benchmarks/bench_pyro.py {' '.join(argv)}`".replace(" `", "`"),
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"pyro {package_version('pyro-ppl')}). Grid GMRF prior I + Laplacian on s × s, Gaussian observations of every "
        "site, Trace_ELBO (1 particle) + Adam (lr 1e-4), float32. Median step time after 2 warm-up steps (guides "
        "interleaved); peak extra resident memory of building the guide + two steps (fresh process per guide and N). "
        "Ratios: other guide ÷ ours, same run (below 1: the other guide is faster / smaller).",
        "",
        "| N | guide | step (ms) | × ours | peak memory (MiB) | × ours |",
        "|---|---|---|---|---|---|",
    ]
    by_n: dict[int, dict] = {}
    for row in rows:
        by_n.setdefault(row["N"], {})[row["guide"]] = row
    for n, group in by_n.items():
        ours = group["sparse (ours)"]
        for name, row in group.items():
            if row["time"] is None:
                lines.append(f"| {n:,} | {name} | — | — | — | — ({row['note']}) |")
                continue
            t_ratio = row["time"] / ours["time"]
            # below 1 MiB the high-water mark is at its resolution: the ratio is then a lower bound
            m_ratio = fmt(row["memory"] / max(ours["memory"], 1.0), 1)
            if name == "sparse (ours)":
                m_ratio = "1.0"
            elif ours["memory"] < 1.0:
                m_ratio = f"≥ {m_ratio}"
            lines.append(
                f"| {n:,} | {name} | {fmt(row['time'] * 1e3, 1)} | {fmt(t_ratio, 1)} | {fmt(row['memory'], 1)} | "
                f"{m_ratio} |"
            )
    lines += [
        "",
        f'`AutoGaussian(backend="dense")` with float64 latents: {float64}.',
        "",
        "Below 1 MiB the high-water mark is at its resolution, so the memory ratios marked ≥ are lower bounds computed "
        "against 1 MiB.",
        END,
    ]
    write_section(BEGIN, END, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 100, 316], help="grid sides s (N = s²)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print the numbers only (docs/benchmarks.md untouched)")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for s in args.sizes:
        rows += rows_for(s, args.repeats)
    float64 = float64_check()
    print("AutoGaussian dense, float64:", float64)
    if not args.no_write:
        write_table(rows, float64, sys.argv[1:])


if __name__ == "__main__":
    main()

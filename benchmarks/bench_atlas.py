"""Benchmark of atlas-scale fitting with Dask (issue 21): throughput and Dask's overhead per task.

Problem: ``--outcomes`` (default 24) simulated outcomes on the Scottish lip cancer graph (56 districts, AFF covariate,
counts ``~ Poisson(E_i exp(0.4 z_i))``, fixed seed), each fitted with ``BYM2Poisson(..., method=EmpiricalBayes())``
(``fit_hyperparameters``: about 11 Laplace approximations per outcome).

1. Throughput (fits per second, wall time of one whole map; medians over ``--repeats`` rounds after a warm-up map that
   pays each process's first-task costs, min–max over the rounds):

   * ``loop, 1 thread``: ``fit_many(spec, outcomes)`` in this process, every pool at 1 thread;
   * ``loop, 2 threads``: the same with torch, BLAS and OpenMP at 2 threads (``threads=2`` and ``Newton(threads=2)``);
   * ``dask 1 worker × 2 threads``: ``LocalCluster(n_workers=1, threads_per_worker=2)``, pools at 1 thread;
   * ``dask 2 workers × 1 thread``: ``LocalCluster(n_workers=2, threads_per_worker=1)``, pools at 1 thread.

   Dask rows use ``chunk_size`` = ``--chunk-size`` (default 3: 8 tasks for 24 outcomes).
2. First task vs later tasks in a fresh worker (one 1-thread worker, one outcome per task, the same outcome each
   time): the fit's seconds measured inside the worker for the first task (imports done, but the BYM2 pieces, the
   pattern cache and its symbolic analyses are empty, Numba's compiled sweep not yet loaded) and the median of the
   next ``--repeats`` × 3 tasks.
3. Dask's overhead per task: the same one-outcome chunk submitted ``--repeats`` × 5 times to that worker, round trip
   (``client.submit(...).result()``) minus the seconds the fit took inside the worker; as a fraction of one fit.

Run ``python benchmarks/bench_atlas.py`` (``--no-write`` to print only; ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, package_version, write_section  # noqa: E402

import sparseprec  # noqa: E402
from sparseprec.datasets import load_scotland_lip_cancer  # noqa: E402
from sparseprec.distributed import BYM2Poisson, Graph, Outcome, fit_many  # noqa: E402
from sparseprec.distributed.fitting import fit_chunk  # noqa: E402
from sparseprec.laplace import Newton  # noqa: E402

BEGIN, END = "<!-- bench_atlas:begin -->", "<!-- bench_atlas:end -->"
F64 = torch.float64


def outcomes(count: int) -> tuple[BYM2Poisson, list[Outcome]]:
    data = load_scotland_lip_cancer()
    g = torch.Generator().manual_seed(0)
    covariate = data.aff_percent.to(F64)[:, None] / 10
    out = []
    for k in range(count):
        risk = (0.4 * torch.randn(data.num_districts, generator=g, dtype=F64)).exp()
        out.append(Outcome(torch.poisson(data.expected * risk, generator=g), data.expected, covariate, f"o{k}"))
    return BYM2Poisson(Graph.from_adjacency(data.adjacency), num_covariates=1), out


def spread(times: list[float], count: int) -> tuple[float, float, float]:
    """Fits per second: median, min, max over rounds of ``count`` fits."""
    rates = sorted(count / t for t in times)
    return statistics.median(rates), rates[0], rates[-1]


def throughput(spec, data, repeats: int, chunk_size: int) -> dict[str, tuple[float, float, float]]:
    from distributed import Client, LocalCluster

    rows = {}
    two = BYM2Poisson(spec.graph, num_covariates=1, newton=Newton(threads=2))
    for label, s, threads in (("loop, 1 thread", spec, 1), ("loop, 2 threads", two, 2)):
        fit_many(s, data[:2], threads=threads)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fit_many(s, data, threads=threads)
            times.append(time.perf_counter() - start)
        rows[label] = spread(times, len(data))
    for label, workers, per_worker in (("dask 1 worker × 2 threads", 1, 2), ("dask 2 workers × 1 thread", 2, 1)):
        with (
            LocalCluster(n_workers=workers, threads_per_worker=per_worker, dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):
            fit_many(spec, data[: 2 * workers * per_worker], client=client, chunk_size=1)  # warm-up: every process
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fit_many(spec, data, client=client, chunk_size=chunk_size)
                times.append(time.perf_counter() - start)
            rows[label] = spread(times, len(data))
    return rows


def first_task_and_overhead(spec, data, repeats: int) -> dict[str, object]:
    from distributed import Client, LocalCluster

    from sparseprec.distributed import ThreadLimits

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(ThreadLimits(1))
        shared = client.scatter(spec, broadcast=True)
        chunk = [(0, data[0])]
        inside = []
        for _ in range(1 + 3 * repeats):
            (fit,) = client.submit(fit_chunk, shared, chunk, pure=False).result()
            inside.append(fit.seconds)
        overheads, fits = [], []
        for _ in range(5 * repeats):
            start = time.perf_counter()
            (fit,) = client.submit(fit_chunk, shared, chunk, pure=False).result()
            overheads.append(time.perf_counter() - start - fit.seconds)
            fits.append(fit.seconds)
    return {"first": inside[0], "later": inside[1:], "overheads": overheads, "fits": fits}


def table(rows, first, argv, outcomes_count: int, chunk_size: int) -> list[str]:
    fit = statistics.median(first["fits"])
    overhead = sorted(first["overheads"])
    later = sorted(first["later"])
    lines = [
        "## Atlas-scale fitting with Dask (`benchmarks/bench_atlas.py`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; Python "
        f"{platform.python_version()}; torch {torch.__version__}, dask {package_version('dask')}, distributed "
        f"{package_version('distributed')}, scikit-sparse {package_version('scikit-sparse')}, sparseprec "
        f"{sparseprec.__version__}. Command: `python benchmarks/bench_atlas.py {' '.join(argv)}`. The machine is "
        "shared: the spread of the loop rows shows how loaded it was.",
        "",
        f"{outcomes_count} simulated outcomes on the lip cancer graph (56 districts, one covariate), each a BYM2 "
        "Poisson fit with hyper-parameters by empirical Bayes (`fit_hyperparameters`, about 11 Laplace approximations "
        f"per outcome). Dask rows: `chunk_size={chunk_size}`, every pool (torch, BLAS, OpenMP) at 1 thread per task "
        "thread (the `ThreadLimits` plugin); loop rows: `fit_many(..., client=None)` in one process. Fits per second "
        "of a whole map after a warm-up map: median (min–max) over the rounds.",
        "",
        "| configuration | fits / s | min–max |",
        "|---|---|---|",
    ]
    for label, (median, low, high) in rows.items():
        lines.append(f"| {label} | {fmt(median)} | {fmt(low)}–{fmt(high)} |")
    lines += [
        "",
        "In a fresh 1-thread worker, one outcome per task (seconds inside the worker, min–max):",
        "",
        "| | seconds |",
        "|---|---|",
        f"| first task (BYM2 pieces, symbolic analyses, Numba cache load) | {fmt(first['first'], 3)} |",
        f"| later tasks, median ({len(later)}) | {fmt(statistics.median(later), 3)} ({fmt(later[0], 3)}–"
        f"{fmt(later[-1], 3)}) |",
        f"| Dask overhead per task: round trip − time inside, median ({len(overhead)}) | "
        f"{fmt(statistics.median(overhead), 4)} ({fmt(overhead[0], 4)}–{fmt(overhead[-1], 4)}) |",
        f"| overhead ÷ one lip cancer fit ({fmt(fit, 3)} s), one outcome per task | "
        f"{statistics.median(overhead) / fit:.1%} |",
        f"| the same per outcome with `chunk_size={chunk_size}` | "
        f"{statistics.median(overhead) / fit / chunk_size:.1%} |",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outcomes", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="8 outcomes, 1 round")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    count, repeats = (8, 1) if args.quick else (args.outcomes, args.repeats)
    spec, data = outcomes(count)
    rows = throughput(spec, data, repeats, args.chunk_size)
    first = first_task_and_overhead(spec, data, repeats)
    lines = table(rows, first, sys.argv[1:], count, args.chunk_size)
    print("\n".join(lines))
    if not args.no_write and not args.quick:
        write_section(BEGIN, END, "\n".join([BEGIN, *lines, END]))


if __name__ == "__main__":
    main()

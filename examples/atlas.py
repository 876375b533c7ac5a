"""Atlas: many BYM2 fits on a Dask cluster
=======================================

An atlas of many outcomes on one graph: BYM2 Laplace fits on a Dask LocalCluster, gathered into one table.

Simulates ``--outcomes`` data sets (default 2,000; ``--quick``: 50) on the 56 districts of the Scottish lip cancer
graph, each with its own expected counts, covariate effect and BYM2 area effects (σ, ρ drawn per outcome), fits the
BYM2 Poisson model to every one with the Laplace method (hyper-parameters by empirical Bayes, or ``--method inla``)
on a ``LocalCluster`` of ``--workers`` single-threaded worker processes, and gathers the posterior summaries into one
table. Writes ``atlas.png``: maps of the exceedance probabilities P(RR > 1) of four outcomes. See
docs/distributed.md. Usage::

    python examples/atlas.py --quick
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sparseprec.datasets import load_scotland_lip_cancer
from sparseprec.distributed import INLA, BYM2Poisson, EmpiricalBayes, Graph, Outcome, fit_many
from sparseprec.distributions import ICAR
from sparseprec.structures import bym2_scaling_per_node

F64 = torch.float64


def simulate(data, count: int, seed: int = 0) -> tuple[list[Outcome], torch.Tensor]:
    """``count`` outcomes on the lip cancer graph and their true log relative risks ``(count, 56)``."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # ICAR.sample draws from torch's global generator
    n = data.num_districts
    scaling = bym2_scaling_per_node(data.adjacency).to(F64)
    icar = ICAR(data.adjacency)
    covariate = data.aff_percent.to(F64)[:, None] / 10
    outcomes, truth = [], []
    for k in range(count):
        sigma = 0.2 + 0.6 * float(torch.rand((), generator=g))
        rho = 0.2 + 0.75 * float(torch.rand((), generator=g))
        intercept = 0.3 * float(torch.randn((), generator=g, dtype=F64))
        slope = 0.3 + 0.1 * float(torch.randn((), generator=g, dtype=F64))
        theta = torch.randn(n, generator=g, dtype=F64)
        phi = icar.sample()
        log_risk = (
            intercept + slope * covariate[:, 0] + sigma * ((1 - rho) ** 0.5 * theta + (rho / scaling).sqrt() * phi)
        )
        expected = data.expected * (0.5 + 2.5 * float(torch.rand((), generator=g)))  # rarer and commoner outcomes
        counts = torch.poisson(expected * log_risk.exp(), generator=g)
        outcomes.append(Outcome(counts, expected, covariate, f"outcome {k}"))
        truth.append(log_risk)
    return outcomes, torch.stack(truth)


def save_figure(path: str, data, results, picks: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    polygons = data.district_polygons()
    figure, axes = plt.subplots(2, 2, figsize=(9, 9.5), layout="constrained")
    for ax, k in zip(axes.flat, picks, strict=True):
        fit = results[k]
        rings, values = [], []
        for district, parts in enumerate(polygons):
            rings += [ring / 1000.0 for ring in parts]  # km
            values += [float(fit.exceedance[district])] * len(parts)
        collection = PolyCollection(rings, array=np.asarray(values), cmap="RdBu_r", edgecolors="0.3", linewidths=0.3)
        collection.set_clim(0, 1)
        ax.add_collection(collection)
        ax.autoscale_view()
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{fit.name}: σ = {fit.sigma:.2f}, ρ = {fit.rho:.2f}")
    figure.colorbar(collection, ax=axes, label="P(relative risk > 1 | y)", shrink=0.6)
    figure.suptitle("Exceedance probabilities, BYM2 Laplace fits on a Dask LocalCluster")
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 outcomes")
    parser.add_argument("--outcomes", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one thread each")
    parser.add_argument("--chunk-size", type=int, default=None, help="outcomes per task (default: automatic)")
    parser.add_argument("--method", choices=("eb", "inla"), default="eb")
    parser.add_argument("--output", default="atlas.png")
    args = parser.parse_args()
    count = 50 if args.quick else args.outcomes

    from distributed import Client, LocalCluster

    data = load_scotland_lip_cancer()
    outcomes, truth = simulate(data, count)
    method = INLA() if args.method == "inla" else EmpiricalBayes()
    spec = BYM2Poisson(Graph.from_adjacency(data.adjacency), num_covariates=1, method=method)
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        start = time.perf_counter()
        results = fit_many(spec, outcomes, client=client, chunk_size=args.chunk_size)
        seconds = time.perf_counter() - start
    table = results.to_tensors()
    ok = [fit.index for fit in results if fit.ok]
    print(f"atlas: {len(ok)} of {count} outcomes fitted ({len(results.failures)} failed) on {args.workers} workers "
          f"in {seconds:.1f} s: {count / seconds:.2f} fits per second")  # fmt: skip
    for fit in results.failures[:5]:
        print(f"  failed: {fit.name}: {fit.reason[:120]}")
    sigma = torch.tensor([results[k].sigma for k in ok])
    rho = torch.tensor([results[k].rho for k in ok])
    print(f"σ̂ median {float(sigma.median()):.2f} (range {float(sigma.min()):.2f}–{float(sigma.max()):.2f}), "
          f"ρ̂ median {float(rho.median()):.2f}")  # fmt: skip

    # correctness: the posterior mean relative risks are closer to the truth than the raw ratios y / E
    posterior = table["rr_mean"][ok].log()
    raw = torch.stack([(outcomes[k].counts.to(F64) + 0.5) / outcomes[k].expected for k in ok]).log()
    error_posterior = float((posterior - truth[ok]).abs().mean())
    error_raw = float((raw - truth[ok]).abs().mean())
    print(f"mean |log RR error|: posterior mean {error_posterior:.3f}, raw SMR {error_raw:.3f}")
    assert error_posterior < error_raw, "the BYM2 fits should shrink the raw ratios towards the truth"
    flagged = table["exceedance"][ok] > 0.9
    wrong = float((flagged & (truth[ok] <= 0)).sum()) / max(int(flagged.sum()), 1)
    print(f"areas flagged P(RR > 1) > 0.9: {int(flagged.sum())}, of which true RR <= 1: {wrong:.1%}")

    picks = ok[:4] if len(ok) >= 4 else (ok * 4)[:4]
    save_figure(args.output, data, results, picks)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

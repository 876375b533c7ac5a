r"""BYM2 disease mapping of the North Carolina SIDS data
====================================================

BYM2 disease mapping of the North Carolina SIDS data (100 counties, 1974–78): INLA, a NUTS check, a map.

The data come from libpysal's built-in example ``sids2`` (:func:`sparseprec.datasets.load_nc_sids`, no download):
sudden infant deaths ``y_i``, expected deaths ``E_i`` = births × the state-wide rate, and ``z_i`` the standardised
share of non-white births. The model (Riebler et al. 2016), with ``s`` the BYM2 scaling factor of the queen
contiguity graph and the priors of the lip cancer demo (``sparseprec.examples.lip_cancer``)::

    y_i ~ Poisson(E_i r_i),  log r_i = β₀ + β₁ z_i + σ (√(1 − ρ) θ_i + √(ρ/s) φ_i)
    β₀ ~ N(0, 5²), β₁ ~ N(0, 1), θ ~ N(0, I), φ ~ ICAR (sum to zero), σ ~ N⁺(0, 1), ρ ~ Beta(½, ½)

Fit: :func:`sparseprec.laplace.inla` (the latent field by Laplace approximations, (log σ, logit ρ) integrated over
R-INLA's grid; a few seconds). Checks: the posterior means of β₀ and β₁ must lie within 0.2 posterior s.d. of an
independent NUTS fit reported in issue 20 (the script exits with status 1 otherwise); ``--nuts`` also runs NUTS here
(Pyro's NUTS on a dense potential written out below, independent of the library's sparse code: φ in an orthonormal
basis of the sum-to-zero subspace) and prints its means, s.d., r̂ and effective sample sizes beside INLA's. Writes
``nc_sids.png``: the map of the posterior mean relative risks, drawn from the GeoDataFrame (and, with ``--nuts``, the
INLA relative risks against NUTS'). See docs/spatial.md. Usage::

    python examples/nc_sids.py            # INLA and the map
    python examples/nc_sids.py --nuts     # + NUTS, 4 chains × 500 draws after 300 warm-up steps (~13 min)
    python examples/nc_sids.py --quick    # for tests (with --nuts: 1 chain × 50 draws after 50 warm-up steps)
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch

from sparseprec import sparse_csr_tensor
from sparseprec.datasets import NCSIDSData, load_nc_sids
from sparseprec.distributions import GMRF, ICAR
from sparseprec.laplace import INLAResult, LatentGaussianModel, Poisson, inla
from sparseprec.structures import bym2_scaling_per_node

F64 = torch.float64
# issue 20: an independent dense NUTS fit of this model (its prior set-up not stated beyond the data and covariate)
REFERENCE = {"intercept": (-0.066, 0.054), "effect": (0.409, 0.068), "sigma": (0.275, 0.076)}
TOLERANCE = 0.2  # posterior s.d. of the reference, for the fixed effects
LABELS = {
    "intercept": "intercept β0",
    "effect": "effect β1 per s.d.",
    "sigma": "total s.d. σ",
    "rho": "spatial share ρ",
}


def bym2_laplace(data: NCSIDSData):
    """``(build, log_prior)`` of the model for :mod:`sparseprec.laplace`: latent ``x = (β₀, β₁, θ, φ)``,
    hyper-parameters ``t = (log σ, logit ρ)``, entering through the values of ``A`` (row ``i``:
    ``1, z_i, σ√(1 − ρ), σ√(ρ/s)``). The graph is connected (one scaling factor, no county without neighbours)."""
    n = data.num_counties
    scaling = bym2_scaling_per_node(data.adjacency).to(F64)
    z = data.covariate
    prior = [
        GMRF(torch.zeros(2, dtype=F64), torch.diag(torch.tensor([1 / 25, 1.0], dtype=F64)).to_sparse_csr()),  # β
        GMRF(torch.zeros(n, dtype=F64), torch.eye(n, dtype=F64).to_sparse_csr()),  # θ
        ICAR(data.adjacency),  # φ, with its sum-to-zero constraint
    ]
    likelihood = Poisson(exposure=data.expected)
    crow = torch.arange(0, 4 * n + 1, 4)
    col = torch.stack([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long), 2 + torch.arange(n),
                       2 + n + torch.arange(n)], dim=1).reshape(-1)  # fmt: skip

    def build(t: torch.Tensor) -> LatentGaussianModel:
        sigma, rho = t[0].exp(), torch.sigmoid(t[1])
        values = torch.stack([torch.ones_like(z), z, (sigma * (1 - rho).sqrt()).expand(n),
                              sigma * (rho / scaling).sqrt()], dim=1)  # fmt: skip
        A = sparse_csr_tensor(crow, col, values.reshape(-1), (n, 2 * n + 2))
        return LatentGaussianModel(prior, likelihood, obs_matrix=A)

    half_normal = torch.distributions.HalfNormal(torch.tensor(1.0, dtype=F64))
    beta = torch.distributions.Beta(torch.tensor(0.5, dtype=F64), torch.tensor(0.5, dtype=F64))

    def log_prior(t: torch.Tensor) -> torch.Tensor:  # the priors of σ and ρ, with the transforms' log-Jacobians
        sigma, rho = t[0].exp(), torch.sigmoid(t[1])
        jacobian = t[0] + torch.nn.functional.logsigmoid(t[1]) + torch.nn.functional.logsigmoid(-t[1])
        return half_normal.log_prob(sigma) + beta.log_prob(rho) + jacobian

    return build, log_prior


def inla_summary(result: INLAResult, seed: int = 0) -> tuple[dict[str, tuple[float, float]], torch.Tensor]:
    """Posterior ``(mean, s.d.)`` of β₀, β₁, σ and ρ from the INLA result, and the posterior mean relative risks.

    σ = exp(t₀): the grid mixture of normals in t₀ gives lognormal moments in closed form; ρ by 20,000 draws from
    the mixture (seeded). ``E[r_i] = Σ_k w_k exp(m_ki + v_ki / 2)`` for the relative risks."""
    mean, sd = result.latent_mean[:2], result.latent_sd[:2]
    log_sigma, cell = result.points[:, 0], result.cell_sd[0]
    sigma_mean = float(result.weights @ (log_sigma + cell**2 / 2).exp())
    sigma_sd = math.sqrt(max(float(result.weights @ (2 * log_sigma + 2 * cell**2).exp()) - sigma_mean**2, 0.0))
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(result.weights, 20_000, replacement=True, generator=g)
    rho = torch.sigmoid(result.points[k, 1] + result.cell_sd[1] * torch.randn(20_000, generator=g, dtype=F64))
    summary = {"intercept": (float(mean[0]), float(sd[0])), "effect": (float(mean[1]), float(sd[1])),
               "sigma": (sigma_mean, sigma_sd), "rho": (float(rho.mean()), float(rho.std()))}  # fmt: skip
    risk = result.weights @ (result.predictor_means + result.predictor_variances / 2).exp()
    return summary, risk


def dense_potential(data: NCSIDSData):
    """The negative log posterior of the model as a function of one unconstrained vector
    ``q = (β₀, β₁, log σ, logit ρ, θ (n), u (n − 1))`` with ``φ = B u``, ``B`` an orthonormal basis of the sum-to-zero
    subspace, written with dense torch only (an independent check of the sparse code); returns it, ``B``, the dense
    BYM2 scaling factor and ``q₀``."""
    n = data.num_counties
    W = data.adjacency.to_dense()
    Q = torch.diag(W.sum(1)) - W  # the ICAR precision D − W
    B = torch.linalg.qr(torch.cat([torch.ones(n, 1, dtype=F64), torch.eye(n, dtype=F64)[:, : n - 1]], 1))[0][:, 1:]
    M = B.T @ Q @ B  # φ = B u: the ICAR density exp(−½ φᵀ Q φ) on {Σ φ = 0} is exp(−½ uᵀ M u), Lebesgue in u
    scaling = math.exp(float(torch.diagonal(B @ torch.linalg.solve(M, B.T)).log().mean()))  # geometric mean variance
    y, E, z = data.observed.to(F64), data.expected, data.covariate
    log_factorial = torch.lgamma(y + 1).sum()

    def potential(params: dict[str, torch.Tensor]) -> torch.Tensor:
        q = params["q"]
        b0, b1, log_sigma, logit_rho = q[0], q[1], q[2], q[3]
        theta, u = q[4 : 4 + n], q[4 + n :]
        sigma, rho = log_sigma.exp(), torch.sigmoid(logit_rho)
        eta = b0 + b1 * z + sigma * ((1 - rho).sqrt() * theta + (rho / scaling).sqrt() * (B @ u))
        log_likelihood = (y * (E.log() + eta) - E * eta.exp()).sum() - log_factorial
        log_prior = (
            -0.5 * (b0 / 5) ** 2 - 0.5 * b1**2  # β₀ ~ N(0, 5²), β₁ ~ N(0, 1)
            - 0.5 * sigma**2 + log_sigma  # σ ~ N⁺(0, 1), with the Jacobian of σ = exp(log σ)
            + 0.5 * torch.nn.functional.logsigmoid(logit_rho) + 0.5 * torch.nn.functional.logsigmoid(-logit_rho)
            # ρ ~ Beta(½, ½): ρ^(−½) (1 − ρ)^(−½) times the Jacobian ρ (1 − ρ)
            - 0.5 * theta.square().sum() - 0.5 * u @ (M @ u)
        )  # fmt: skip
        return -(log_likelihood + log_prior)

    q0 = torch.zeros(4 + 2 * n - 1, dtype=F64)
    q0[2] = math.log(0.5)
    return potential, B, scaling, q0


def run_nuts(data: NCSIDSData, chains: int, samples: int, warmup: int, seed: int) -> dict[str, torch.Tensor]:
    """Pyro's NUTS on :func:`dense_potential`, chain after chain (one thread); draws ``(chains, samples, ...)`` of
    β₀, β₁, σ, ρ and the relative risks."""
    import pyro
    from pyro.infer import MCMC, NUTS

    n = data.num_counties
    potential, B, scaling, q0 = dense_potential(data)
    draws = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 203-dimensional dense model: one thread is fastest
    try:
        for chain in range(chains):
            pyro.set_rng_seed(seed + chain)
            mcmc = MCMC(NUTS(potential_fn=potential), num_samples=samples, warmup_steps=warmup,
                        initial_params={"q": q0 + 0.1 * torch.randn_like(q0)}, disable_progbar=True)  # fmt: skip
            mcmc.run()
            draws.append(mcmc.get_samples()["q"])
    finally:
        torch.set_num_threads(threads)
    q = torch.stack(draws)  # (chains, samples, 203)
    sigma, rho = q[..., 2].exp(), torch.sigmoid(q[..., 3])
    phi = q[..., 4 + n :] @ B.T
    theta = q[..., 4 : 4 + n]
    eta = (
        q[..., :1]
        + q[..., 1:2] * data.covariate
        + sigma[..., None] * ((1 - rho[..., None]).sqrt() * theta + (rho[..., None] / scaling).sqrt() * phi)
    )
    return {"intercept": q[..., 0], "effect": q[..., 1], "sigma": sigma, "rho": rho, "relative_risk": eta.exp()}


def nuts_summary(draws: dict[str, torch.Tensor]) -> dict[str, tuple[float, float, float, float]]:
    """``(mean, s.d., split r̂, effective sample size)`` of each scalar (r̂ and ESS by Pyro's estimators)."""
    from pyro.ops.stats import effective_sample_size, split_gelman_rubin

    out = {}
    for name in LABELS:
        x = draws[name]
        rhat = float(split_gelman_rubin(x, chain_dim=0, sample_dim=1)) if x.shape[1] >= 4 else float("nan")
        ess = float(effective_sample_size(x, chain_dim=0, sample_dim=1))
        out[name] = (float(x.mean()), float(x.std()), rhat, ess)
    return out


def save_figure(path: str, data: NCSIDSData, risk: np.ndarray, nuts_risk: np.ndarray | None) -> None:
    """The map of the posterior mean relative risks, drawn from the GeoDataFrame (from ``data.polygons`` with
    matplotlib alone if GeoPandas is missing); with NUTS, the INLA relative risks against NUTS' beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    columns = 1 if nuts_risk is None else 2
    ratios = [3.2, 1.0][:columns]
    figure, axes = plt.subplots(1, columns, figsize=(5.2 * columns + 4.8 * (columns == 1), 4.2),
                                gridspec_kw={"width_ratios": ratios}, squeeze=False)  # fmt: skip
    ax = axes[0, 0]
    bound = float(max(risk.max(), 1 / risk.min()))
    norm = LogNorm(1 / bound, bound)
    try:
        gdf = data.to_geodataframe()
    except ImportError:  # the polygons themselves, without GeoPandas
        from matplotlib.collections import PolyCollection

        rings = [ring for rings in data.polygons for ring in rings]
        values = [risk[i] for i, rings in enumerate(data.polygons) for _ in rings]
        mappable = PolyCollection(rings, array=np.asarray(values), cmap="RdBu_r", norm=norm, edgecolors="0.3",
                                  linewidths=0.3)  # fmt: skip
        ax.add_collection(mappable)
        ax.autoscale_view()
    else:
        gdf["relative_risk"] = risk
        gdf.plot(column="relative_risk", cmap="RdBu_r", norm=norm, edgecolor="0.3", linewidth=0.3, ax=ax)
        mappable = ax.collections[0]
    ax.set_aspect(1 / math.cos(math.radians(35.5)))  # longitude and latitude degrees at North Carolina's latitude
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title("SIDS 1974–78: posterior mean relative risk (BYM2, INLA)")
    colorbar = figure.colorbar(mappable, ax=ax, label="relative risk (log scale)", shrink=0.7)
    ticks = [t for t in (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0) if 1 / bound <= t <= bound]
    colorbar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    colorbar.ax.minorticks_off()
    if nuts_risk is not None:
        ax2 = axes[0, 1]
        ax2.scatter(nuts_risk, risk, s=10)
        low, high = float(min(risk.min(), nuts_risk.min())), float(max(risk.max(), nuts_risk.max()))
        ax2.plot([low, high], [low, high], color="0.5", lw=0.8)
        ax2.set_xlabel("NUTS posterior mean")
        ax2.set_ylabel("INLA posterior mean")
        ax2.set_title("relative risks, 100 counties")
        ax2.set_aspect("equal")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="with --nuts: 1 chain, 50 warm-up steps, 50 draws")
    parser.add_argument("--nuts", action="store_true", help="also run NUTS (a dense, independent model) and compare")
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains, run one after another (default 4)")
    parser.add_argument("--samples", type=int, default=500, help="NUTS draws per chain (default 500)")
    parser.add_argument("--warmup", type=int, default=300, help="NUTS warm-up steps per chain (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="nc_sids.png")
    args = parser.parse_args()
    chains, samples, warmup = (1, 50, 50) if args.quick else (args.chains, args.samples, args.warmup)
    if min(chains, samples) < 1 or warmup < 0:
        parser.error("--chains and --samples must be >= 1 and --warmup >= 0")

    data = load_nc_sids()
    print(f"NC SIDS 1974–78: {data.num_counties} counties, {int(data.observed.sum())} deaths in "
          f"{int(data.births.sum())} births, {data.pairs.shape[0]} queen-contiguity pairs")  # fmt: skip
    build, log_prior = bym2_laplace(data)
    start = time.perf_counter()
    result = inla(build, torch.tensor([math.log(0.5), 0.0], dtype=F64), data.observed.to(F64), log_prior=log_prior)
    seconds = time.perf_counter() - start
    mode = result.theta_mode
    print(f"INLA: {seconds:.1f} s, {result.weights.numel()} grid points, {result.evaluations} Laplace "
          f"approximations; mode of p(σ, ρ | y) at σ = {float(mode[0].exp()):.3f}, "
          f"ρ = {float(torch.sigmoid(mode[1])):.3f}")  # fmt: skip
    summary, risk = inla_summary(result, seed=args.seed)

    nuts = None
    if args.nuts:
        start = time.perf_counter()
        draws = run_nuts(data, chains, samples, warmup, args.seed)
        nuts_seconds = time.perf_counter() - start
        nuts = nuts_summary(draws)
        print(f"NUTS: {chains} chain(s) × ({warmup} warm-up + {samples} draws) in {nuts_seconds:.0f} s")

    header = f"{'':20}{'INLA: mean (s.d.)':>20}"
    header += f"{'NUTS: mean (s.d.)   r̂     ESS':>34}" if nuts else ""
    print("\n" + header + f"{'issue 20 NUTS':>18}")
    for name, label in LABELS.items():
        mean, sd = summary[name]
        line = f"{label:20}{mean:>11.3f} ({sd:.3f})"
        if nuts:
            m, s, rhat, ess = nuts[name]
            line += f"{m:>14.3f} ({s:.3f}) {rhat:6.3f} {ess:6.0f}"
        reference = REFERENCE.get(name)
        line += f"{reference[0]:>11.3f} ({reference[1]:.3f})" if reference else f"{'—':>12}"
        print(line)
    if nuts:
        nuts_risk = draws["relative_risk"].reshape(-1, data.num_counties)
        gap = (risk - nuts_risk.mean(0)).abs() / nuts_risk.std(0)
        print(f"\nINLA vs this NUTS run, all {data.num_counties} relative risks: largest |mean difference| "
              f"{float(gap.max()):.2f} NUTS posterior s.d. (median {float(gap.median()):.2f})")  # fmt: skip

    shifts = {name: abs(summary[name][0] - REFERENCE[name][0]) / REFERENCE[name][1] for name in REFERENCE}
    text = ", ".join(f"{name} {shift:.2f}" for name, shift in shifts.items())
    if max(shifts["intercept"], shifts["effect"]) > TOLERANCE:
        print(f"\nINLA vs issue 20's NUTS: a fixed effect is more than {TOLERANCE} posterior s.d. away ({text})")
        sys.exit(1)
    print(f"\nINLA vs issue 20's NUTS: fixed effects within {TOLERANCE} posterior s.d. (|difference| / s.d.: {text})")

    nuts_mean = None if nuts is None else draws["relative_risk"].reshape(-1, data.num_counties).mean(0).numpy()
    save_figure(args.output, data, risk.numpy(), nuts_mean)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

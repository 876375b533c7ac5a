r"""BYM2 disease mapping of the Scottish lip cancer data in Pyro, fitted with a sparse-precision guide.

Run ``python -m sparseprec.examples.lip_cancer`` (``--help`` for the options; ``--nuts`` also runs NUTS on the same
model and compares). The model (Riebler et al. 2016, "An intuitive Bayesian spatial model for disease mapping that
accounts for scaling", SMMR 25:1145–1165; the parameterisation of the Stan case study by Morris et al. 2019):

.. math::

    y_i &\sim \mathrm{Poisson}(E_i\, r_i), \qquad \log r_i = \beta_0 + \beta_1 \tfrac{\mathrm{AFF}_i}{10} + b_i, \\
    b_i &= \sigma \bigl(\sqrt{1-\rho}\,\theta_i + \sqrt{\rho / s}\,\phi_i\bigr), \qquad
    \theta \sim N(0, I), \quad \phi \sim \mathrm{ICAR}(W) \text{ (sum to zero per connected component)},

with :math:`s` the BYM2 scaling factor of the graph (geometric mean of the ICAR's constrained marginal variances,
:func:`sparseprec.structures.bym2_scaling_per_node`), so :math:`\sigma` is the total standard deviation of the district
effects and :math:`\rho` the share of it that is spatially structured. Priors: :math:`\beta_0 \sim N(0, 5^2)`,
:math:`\beta_1 \sim N(0, 1)`, :math:`\sigma \sim N^+(0, 1)`, :math:`\rho \sim \mathrm{Beta}(\tfrac12, \tfrac12)`.
With ``--islands`` the graph has three districts without neighbours: their spatial effect is 0 (the ICAR pins
them) and their effect is the unstructured one with weight 1 instead of :math:`\sqrt{1-\rho}` (Freni-Sterrantino,
Ventrucci & Rue 2018 scale each connected component separately; a singleton is an i.i.d. effect).

:math:`r_i` is the relative risk of district ``i`` (1 = as expected from its age structure). The guide is
:class:`sparseprec.pyro.AutoSparseMultivariateNormal`: a Gaussian over all 115 unconstrained latent coordinates whose
precision factor has the ICAR's pattern (pinned to the 55 free coordinates of the sum-to-zero subspace) plus dense
rows for the four scalar parameters.
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide.initialization import init_to_median, init_to_value
from tqdm.auto import tqdm

if TYPE_CHECKING:
    import pandas as pd

try:
    import arviz as az
except ImportError as _error:
    raise ImportError(
        "the lip cancer demo prints its posterior summary with ArviZ, which is not installed: "
        "pip install 'sparseprec[examples]' (or pip install arviz)"
    ) from _error

from ..arviz import area_coords, from_draws, from_mcmc
from ..datasets import LipCancerData, load_scotland_lip_cancer
from ..distributions import GMRF
from ..distributions import ICAR as CoreICAR
from ..laplace import INLAResult, LatentGaussianModel, Poisson, inla
from ..ops import sparse_csr_tensor
from ..pyro import ICAR, AutoSparseMultivariateNormal
from ..structures import bym2_scaling_per_node

__all__ = [
    "bym2_model",
    "bym2_laplace",
    "fit_laplace",
    "laplace_samples",
    "fit_svi",
    "svi_samples",
    "run_nuts",
    "to_inference_data",
    "summarise",
    "format_summary",
    "save_figure",
    "build_parser",
    "main",
    "cli",
]

F64 = torch.float64
SCALARS = ("intercept", "aff_effect", "sigma", "rho")
#: the sites with one entry per district (ArviZ dimension "district", labelled by the district names)
DISTRICT_SITES = ("theta", "phi", "relative_risk", "cases")
#: the reported sites, named alike by every route (NUTS, SVI, Laplace)
SITES = (*SCALARS, "theta", "phi", "relative_risk")


def bym2_model(data: LipCancerData) -> Callable[[], None]:
    """The BYM2 Poisson model of the module docstring as a Pyro model (no arguments), with a deterministic site
    ``relative_risk``. The graph's pieces (ICAR prior and its factorisation, scaling factors) are built once here, not
    at every model call."""
    n = data.num_districts
    scaling = bym2_scaling_per_node(data.adjacency).to(F64)
    isolated = data.adjacency.crow_indices().diff() == 0  # no neighbours (the adjacency is CSR)
    covariate = data.aff_percent / 10.0
    spatial = ICAR(data.adjacency)
    one = torch.ones((), dtype=F64)
    cases = data.observed.to(F64)

    def model() -> None:
        beta0 = pyro.sample("intercept", dist.Normal(0.0 * one, 5.0))
        beta1 = pyro.sample("aff_effect", dist.Normal(0.0 * one, 1.0))
        sigma = pyro.sample("sigma", dist.HalfNormal(one))
        rho = pyro.sample("rho", dist.Beta(0.5 * one, 0.5))
        theta = pyro.sample("theta", dist.Normal(torch.zeros(n, dtype=F64), 1.0).to_event(1))
        phi = pyro.sample("phi", spatial)
        beta0, beta1, sigma, rho = (v.unsqueeze(-1) for v in (beta0, beta1, sigma, rho))  # batches of draws
        unstructured = torch.where(isolated, one, (1 - rho).sqrt())
        b = sigma * (unstructured * theta + (rho / scaling).sqrt() * phi)
        log_risk = beta0 + beta1 * covariate + b
        pyro.deterministic("relative_risk", log_risk.exp(), event_dim=1)
        pyro.sample("cases", dist.Poisson(data.expected * log_risk.exp()).to_event(1), obs=cases)

    return model


def bym2_laplace(
    data: LipCancerData,
) -> tuple[Callable[[torch.Tensor], LatentGaussianModel], Callable[[torch.Tensor], torch.Tensor]]:
    r"""The same BYM2 model as a latent Gaussian model for :mod:`sparseprec.laplace`: ``(build, log_prior)``.

    Latent field :math:`x = (\beta_0, \beta_1, \theta_{1..n}, \phi_{1..n})` with the priors of the module docstring
    (:math:`\beta_0 \sim N(0, 5^2)`, :math:`\beta_1 \sim N(0, 1)`, :math:`\theta \sim N(0, I)`, :math:`\phi`
    ICAR with its sum-to-zero constraints), hyper-parameters :math:`t = (\log\sigma, \operatorname{logit}\rho)`;
    :math:`\eta = A(t)\, x + \log E` with row ``i`` of ``A`` holding :math:`1, \mathrm{AFF}_i/10,
    \sigma\sqrt{1-\rho}` (1 for a district without neighbours) and :math:`\sigma\sqrt{\rho/s_i}`. ``log_prior(t)``
    is the half-normal and Beta(½, ½) priors of σ and ρ with the log-Jacobians of the two transforms.
    """
    n = data.num_districts
    scaling = bym2_scaling_per_node(data.adjacency).to(F64)
    isolated = data.adjacency.crow_indices().diff() == 0
    covariate = data.aff_percent.to(F64) / 10.0
    fixed = GMRF(torch.zeros(2, dtype=F64), torch.diag(torch.tensor([1 / 25.0, 1.0], dtype=F64)).to_sparse_csr())
    unstructured = GMRF(torch.zeros(n, dtype=F64), torch.eye(n, dtype=F64).to_sparse_csr())
    spatial = CoreICAR(data.adjacency)
    districts = torch.arange(n)
    crow = torch.arange(0, 4 * n + 1, 4)
    col = torch.stack([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long), 2 + districts,
                       2 + n + districts], dim=1).reshape(-1)  # fmt: skip
    likelihood = Poisson(exposure=data.expected.to(F64))
    one = torch.ones(n, dtype=F64)

    def build(t: torch.Tensor) -> LatentGaussianModel:
        sigma, rho = t[0].exp(), torch.sigmoid(t[1])
        weight_iid = torch.where(isolated, one, (1 - rho).sqrt() * one)
        values = torch.stack([one, covariate, sigma * weight_iid, sigma * (rho / scaling).sqrt()], dim=1)
        A = sparse_csr_tensor(crow, col, values.reshape(-1), (n, 2 * n + 2))
        return LatentGaussianModel([fixed, unstructured, spatial], likelihood, obs_matrix=A)

    half_normal, beta = dist.HalfNormal(torch.ones((), dtype=F64)), dist.Beta(0.5 * one[0], 0.5 * one[0])

    def log_prior(t: torch.Tensor) -> torch.Tensor:
        sigma, rho = t[0].exp(), torch.sigmoid(t[1])
        jacobian = t[0] + torch.nn.functional.logsigmoid(t[1]) + torch.nn.functional.logsigmoid(-t[1])
        return half_normal.log_prob(sigma) + beta.log_prob(rho) + jacobian

    return build, log_prior


def fit_laplace(data: LipCancerData) -> INLAResult:
    """The INLA-style fit of :func:`bym2_laplace`: (σ, ρ) integrated over R-INLA's default grid
    (:func:`sparseprec.laplace.inla`)."""
    build, log_prior = bym2_laplace(data)
    return inla(build, torch.tensor([math.log(0.5), 0.0], dtype=F64), data.observed.to(F64), log_prior=log_prior)


def laplace_samples(result: INLAResult, num_samples: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Draws of each reported quantity's *marginal* posterior from the INLA mixture (a grid point by its weight, then
    the Gaussian approximation's marginal there; σ and ρ from the point's cell), in the form of :func:`svi_samples`:
    the sites of :data:`SITES` (``theta`` and ``phi`` from the latent field ``x = (β0, β1, θ, φ)``).
    Each quantity is drawn independently: the draws serve marginal summaries (means, intervals), not joint ones."""
    _check_count(num_samples, "num_samples")
    g = torch.Generator().manual_seed(seed)

    def marginal(means: torch.Tensor, sds: torch.Tensor) -> torch.Tensor:
        k = torch.multinomial(result.weights, num_samples * means.shape[1], replacement=True, generator=g)
        k = k.reshape(num_samples, means.shape[1])
        columns = torch.arange(means.shape[1])
        noise = torch.randn(num_samples, means.shape[1], generator=g, dtype=means.dtype)
        return means[k, columns] + sds[k, columns] * noise

    theta = marginal(result.points, result.cell_sd.expand_as(result.points))
    latent = marginal(result.latent_means[:, :2], result.latent_variances[:, :2].sqrt())
    eta = marginal(result.predictor_means, result.predictor_variances.sqrt())
    # θ and φ drawn last: a seed gives the other quantities the draws it gave before θ and φ were reported
    effects = marginal(result.latent_means[:, 2:], result.latent_variances[:, 2:].sqrt())
    n = eta.shape[1]
    return {"intercept": latent[:, 0], "aff_effect": latent[:, 1], "sigma": theta[:, 0].exp(),
            "rho": torch.sigmoid(theta[:, 1]), "theta": effects[:, :n], "phi": effects[:, n:],
            "relative_risk": eta.exp()}  # fmt: skip


def _init_values(data: LipCancerData) -> dict[str, torch.Tensor]:
    n = data.num_districts
    smr = float(data.observed.sum()) / float(data.expected.sum())
    return {
        "intercept": torch.tensor(math.log(smr), dtype=F64),
        "aff_effect": torch.tensor(0.0, dtype=F64),
        "sigma": torch.tensor(0.5, dtype=F64),
        "rho": torch.tensor(0.5, dtype=F64),
        "theta": torch.zeros(n, dtype=F64),
        "phi": torch.zeros(n, dtype=F64),
    }


def fit_svi(
    model: Callable[[], None],
    data: LipCancerData,
    steps: int = 3000,
    lr: float = 0.02,
    particles: int = 4,
    progress: bool = True,
) -> tuple[AutoSparseMultivariateNormal, list[float]]:
    """Fit the sparse-precision guide by SVI (Trace_ELBO, ClippedAdam with learning-rate decay); returns it and the
    ELBO (``−loss``) per step.

    Raises
    ------
    ValueError
        If ``steps`` or ``particles`` is not a positive integer, or ``lr`` not a positive finite number.
    FloatingPointError
        If the fit diverges: the ELBO or a guide parameter becomes non-finite (too large a learning rate, typically).
        No posterior is returned from a diverged fit.
    """
    _check_count(steps, "steps")
    _check_count(particles, "particles")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    pyro.clear_param_store()
    init = init_to_value(values=_init_values(data), fallback=init_to_median())
    guide = AutoSparseMultivariateNormal(model, init_loc_fn=init, init_scale=0.1)
    decay = 0.05 ** (1.0 / max(steps, 1))  # the learning rate falls to 5 % of lr over the run
    optimiser = pyro.optim.ClippedAdam({"lr": lr, "lrd": decay, "clip_norm": 10.0})
    svi = SVI(
        model, guide, optimiser, Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    )
    elbo = []
    bar = tqdm(range(steps), desc="SVI", disable=not progress, file=sys.stderr)
    for step in bar:
        try:
            loss = svi.step()
        except ValueError as error:  # a distribution refusing a non-finite parameter: the fit diverged
            if _non_finite_parameter() is None:
                raise
            raise FloatingPointError(_divergence(step, steps, lr, "a guide parameter")) from error
        if not math.isfinite(loss):
            raise FloatingPointError(_divergence(step, steps, lr, f"the ELBO (= {-loss})"))
        elbo.append(-loss)
        if step % 50 == 0 or step == steps - 1:
            bar.set_postfix(elbo=f"{np.mean(elbo[-50:]):.1f}")
    name = _non_finite_parameter()  # the last update is not seen by any ELBO evaluation
    if name is not None:
        raise FloatingPointError(_divergence(steps - 1, steps, lr, f"the guide parameter {name!r}"))
    return guide, elbo


def _non_finite_parameter() -> str | None:
    """The name of the first Pyro parameter holding a non-finite value, or None."""
    for name, value in pyro.get_param_store().named_parameters():
        if not bool(torch.isfinite(value).all()):
            return name
    return None


def _divergence(step: int, steps: int, lr: float, what: str) -> str:
    return (
        f"SVI diverged: {what} became non-finite at step {step + 1} of {steps} (lr={lr:g}); no posterior is "
        "reported from a diverged fit. Try a smaller learning rate (--lr)."
    )


def _check_count(value: object, name: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def svi_samples(
    model: Callable[[], None], guide: AutoSparseMultivariateNormal, num_samples: int
) -> dict[str, torch.Tensor]:
    """Posterior draws of the sites of :data:`SITES` (the scalar parameters, θ, φ and the relative risks) from the
    fitted guide."""
    _check_count(num_samples, "num_samples")
    predictive = Predictive(model, guide=guide, num_samples=num_samples, return_sites=SITES, parallel=True)
    with torch.no_grad():
        return {k: v.reshape(num_samples, -1).squeeze(-1) for k, v in predictive().items()}


def run_nuts(
    model: Callable[[], None],
    data: LipCancerData,
    num_samples: int = 500,
    warmup: int = 500,
    chains: int = 2,
    progress: bool = True,
) -> az.InferenceData:
    """NUTS on the same model (same priors, same ICAR support through its bijection): ``chains`` chains of
    ``warmup`` + ``num_samples`` steps, run one after the other, as one :class:`arviz.InferenceData`
    (:func:`sparseprec.arviz.from_mcmc`, the district names as coordinates, the ``diverging`` sample statistic) with
    the pointwise log-likelihood of :func:`to_inference_data`."""
    _check_count(num_samples, "num_samples")
    _check_count(warmup, "warmup", minimum=0)
    _check_count(chains, "chains")
    init = init_to_value(values=_init_values(data), fallback=init_to_median())
    runs = []
    for _ in range(chains):
        mcmc = MCMC(NUTS(model, init_strategy=init), num_samples=num_samples, warmup_steps=warmup,
                    disable_progbar=not progress)  # fmt: skip
        mcmc.run()
        runs.append(mcmc)
    coords, dims = area_coords(data.district_names(), DISTRICT_SITES)
    idata = from_mcmc(runs, coords=coords, dims=dims, log_likelihood=False, parallel=True)
    risk = torch.from_numpy(idata.posterior["relative_risk"].values)
    idata.add_groups(log_likelihood={"cases": _log_likelihood(risk, data).numpy()}, coords=coords, dims=dims)
    return idata


def _log_likelihood(risk: torch.Tensor, data: LipCancerData) -> torch.Tensor:
    """``log p(y_i | r_i) = log Poisson(y_i; E_i r_i)`` per draw and district (the same shape as ``risk``)."""
    return dist.Poisson(data.expected.to(risk.dtype) * risk).log_prob(data.observed.to(risk.dtype))


def to_inference_data(draws: dict[str, torch.Tensor], data: LipCancerData) -> az.InferenceData:
    """The draws of :func:`svi_samples` or :func:`laplace_samples` as an :class:`arviz.InferenceData`
    (:func:`sparseprec.arviz.from_draws`; one chain of independent draws), named as :func:`run_nuts`'s: the sites of
    :data:`SITES`, dimension ``district`` labelled by the district names, the pointwise log-likelihood of the
    observed ``cases`` and the observed counts.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.datasets import load_scotland_lip_cancer
    >>> from sparseprec.examples.lip_cancer import to_inference_data
    >>> data = load_scotland_lip_cancer()
    >>> draws = {"sigma": torch.full((10,), 0.5, dtype=torch.float64),
    ...          "relative_risk": torch.ones(10, 56, dtype=torch.float64)}
    >>> idata = to_inference_data(draws, data)
    >>> str(idata.posterior["relative_risk"].coords["district"].values[0]), idata.log_likelihood["cases"].shape
    ('Skye-Lochalsh', (1, 10, 56))
    """
    coords, dims = area_coords(data.district_names(), DISTRICT_SITES)
    return from_draws(draws, coords=coords, dims=dims,
                      log_likelihood={"cases": _log_likelihood(draws["relative_risk"], data)},
                      observed_data={"cases": data.observed})  # fmt: skip


#: row labels of the summary table
LABELS = {"intercept": "intercept β0", "aff_effect": "AFF effect β1 (per 10 %)", "sigma": "total s.d. σ",
          "rho": "spatial share ρ"}  # fmt: skip


def summarise(
    idata: az.InferenceData, data: LipCancerData, districts: list[int], diagnostics: bool = False
) -> pd.DataFrame:
    """``arviz.summary`` of the scalars and the relative risks of the given districts: mean, sd and 95 % HDI, and with
    ``diagnostics`` (for MCMC draws, in two chains or more) ArviZ's MCSE, bulk and tail ESS and R-hat too. Rows are
    labelled as in the printed table (``"intercept β0"``, ..., ``"RR <district name>"``)."""
    names = data.district_names()
    chosen = [names[i] for i in districts]
    table = az.summary(idata, var_names=[*SCALARS, "relative_risk"], coords={"district": chosen}, hdi_prob=0.95,
                       kind="all" if diagnostics else "stats", round_to="none")  # fmt: skip
    table.index = [LABELS[name] for name in SCALARS] + [f"RR {name}" for name in chosen]
    return table


def format_summary(method: str, table: pd.DataFrame) -> str:
    """One method's summary table: a title, then the rows of :func:`summarise` (three decimals, ESS as integers)."""
    what = "mean, sd, 95 % HDI" + (", MCSE, ESS (bulk, tail), R-hat" if "r_hat" in table.columns else "")
    width = max(len(label) for label in table.index)
    lines = [f"{method} ({what}; ArviZ):", f"{'':{width}}" + "".join(f"{c:>11}" for c in table.columns)]
    for label, row in table.iterrows():
        cells = "".join(f"{v:>11.0f}" if c.startswith("ess") else f"{v:>11.3f}" for c, v in row.items())
        lines.append(f"{label:<{width}}{cells}")
    return "\n".join(lines)


def save_figure(
    path: Path, data: LipCancerData, risk: np.ndarray, elbo: list[float] | None, method: str = "SVI"
) -> None:
    """Map of the posterior mean relative risks (and the ELBO trace of an SVI fit), as one PNG.

    The map is drawn from the districts' GeoDataFrame (``data.to_geodataframe()``) when GeoPandas is installed, and
    from the polygons (``data.district_polygons()``, read with pyshp) otherwise: the same picture either way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm

    if elbo is None:
        figure, ax_map = plt.subplots(1, 1, figsize=(6.6, 6.5))
    else:
        figure, (ax_map, ax_elbo) = plt.subplots(1, 2, figsize=(12, 6.5), gridspec_kw={"width_ratios": [1.1, 1]})
    bound = float(max(risk.max(), 1 / risk.min()))
    colours = ScalarMappable(norm=LogNorm(1 / bound, bound), cmap="RdBu_r")
    frame = _district_frame(data)
    if frame is None:
        _draw_polygons(ax_map, data, risk, colours)
    else:
        frame = frame.set_geometry(frame.geometry.scale(1e-3, 1e-3, origin=(0, 0)))  # km
        frame.assign(relative_risk=risk).plot(column="relative_risk", ax=ax_map, cmap=colours.cmap,
                                              norm=colours.norm, edgecolor="0.3", linewidth=0.3)  # fmt: skip
    ax_map.autoscale_view()
    ax_map.set_aspect("equal")
    size = matplotlib.rcParams["axes.labelsize"]  # GeoPandas labels its axes in "small": the default again
    ax_map.set_xlabel("km east", fontsize=size)
    ax_map.set_ylabel("km north", fontsize=size)
    ax_map.set_title(f"Lip cancer 1975–80: posterior mean relative risk (BYM2, {method})")
    colorbar = figure.colorbar(colours, ax=ax_map, label="relative risk (log scale)", shrink=0.8)
    ticks = [t for t in (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0) if 1 / bound <= t <= bound]
    colorbar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    colorbar.ax.minorticks_off()
    if elbo is None:
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return
    steps = np.arange(1, len(elbo) + 1)
    ax_elbo.plot(steps, elbo, color="0.7", lw=0.6, label="ELBO per step")
    window = max(1, len(elbo) // 50)
    if len(elbo) >= window:
        smooth = np.convolve(elbo, np.ones(window) / window, mode="valid")
        ax_elbo.plot(steps[window - 1 :], smooth, color="C0", lw=1.5, label=f"moving mean ({window} steps)")
    low = np.percentile(elbo, 5) if len(elbo) > 20 else min(elbo)
    ax_elbo.set_ylim(low, max(elbo) + 0.05 * (max(elbo) - low + 1))
    ax_elbo.set_xlabel("SVI step")
    ax_elbo.set_ylabel("ELBO")
    ax_elbo.set_title("ELBO trace (sparse-precision guide)")
    ax_elbo.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _district_frame(data: LipCancerData) -> object | None:
    """The districts' GeoDataFrame in district order, or None where GeoPandas (or the data's
    ``to_geodataframe``) is missing."""
    to_geodataframe = getattr(data, "to_geodataframe", None)
    if to_geodataframe is None:
        return None
    try:
        frame = to_geodataframe()
    except ImportError:  # GeoPandas is optional: the polygons draw the same map
        return None
    if list(frame["name"]) != data.district_names():
        raise RuntimeError("the districts' GeoDataFrame is not in district order: package data damaged")
    return frame


def _draw_polygons(ax: object, data: LipCancerData, risk: np.ndarray, colours: object) -> None:
    """The map without GeoPandas: every ring of every district's polygon, filled by its relative risk."""
    from matplotlib.collections import PolyCollection

    rings, values = [], []
    for district, parts in enumerate(data.district_polygons()):
        rings += [ring / 1000.0 for ring in parts]  # km
        values += [risk[district]] * len(parts)
    ax.add_collection(PolyCollection(rings, array=np.asarray(values), cmap=colours.cmap, norm=colours.norm,
                                     edgecolors="0.3", linewidths=0.3))  # fmt: skip


def _int_in(minimum: int, below: int | None = None, below_text: str | None = None) -> Callable[[str], int]:
    """An argparse type: an integer ``>= minimum`` (and ``< below`` when given, written ``below_text`` in messages)."""
    expected = f"an integer >= {minimum}" if below is None else f"an integer in [{minimum}, {below_text or below})"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum or (below is not None and value >= below):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    parse.__name__ = expected.removeprefix("an ")  # argparse's fallback message names the type
    return parse


def _positive_finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _writable(path: Path) -> bool:
    """Whether this process may write ``path`` (a file) or create files in it (a directory)."""
    return os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0))


def _png_path(text: str) -> Path:
    """A ``.png`` path that can be written: its directory exists and is writable, and it is not a directory."""
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"expected a path ending in .png, got {text!r}")
    directory = path.parent
    if not directory.is_dir():
        raise argparse.ArgumentTypeError(f"the directory of {text!r} ({str(directory)!r}) does not exist")
    if not _writable(directory):
        raise argparse.ArgumentTypeError(f"the directory of {text!r} ({str(directory)!r}) is not writable")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"expected a file path, got the directory {text!r}")
    if path.exists() and not _writable(path):
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not writable")
    return path


def build_parser() -> argparse.ArgumentParser:
    """The command line of the demo. Every option is checked when parsed (counts positive, the learning rate positive
    and finite, the output a writable ``.png`` path), so a bad value stops the command at once with status 2, before
    the data are loaded or anything is fitted.

    Examples
    --------
    >>> from sparseprec.examples.lip_cancer import build_parser
    >>> args = build_parser().parse_args(["--lr", "0.01", "--steps", "500", "--no-plot"])
    >>> args.lr, args.steps, args.particles
    (0.01, 500, 4)
    """
    parser = argparse.ArgumentParser(
        prog="python -m sparseprec.examples.lip_cancer", description=__doc__.split("\n")[0]
    )
    positive = _int_in(1)
    parser.add_argument("--method", choices=("laplace", "svi", "nuts"), default="laplace",
                        help="laplace: INLA-style (σ, ρ integrated over a grid, the latent field by Laplace "
                             "approximations; default); svi: the sparse-precision guide; nuts: NUTS")  # fmt: skip
    parser.add_argument("--steps", type=positive, default=3000, help="SVI steps (default 3000)")
    parser.add_argument("--lr", type=_positive_finite_float, default=0.02,
                        help="initial learning rate of ClippedAdam, positive (default 0.02)")  # fmt: skip
    parser.add_argument("--particles", type=positive, default=4, help="ELBO particles per step (default 4)")
    parser.add_argument("--samples", type=positive, default=2000, help="posterior draws for the summary (default 2000)")
    parser.add_argument("--nuts", action="store_true", help="also run NUTS on the same model and compare")
    parser.add_argument("--nuts-samples", type=_int_in(2), default=500,
                        help="NUTS draws per chain, at least 2 (default 500)")  # fmt: skip
    parser.add_argument("--nuts-warmup", type=_int_in(0), default=500,
                        help="NUTS warm-up steps per chain (default 500)")  # fmt: skip
    parser.add_argument("--nuts-chains", type=_int_in(2), default=2,
                        help="NUTS chains, run one after the other; at least 2, for R-hat (default 2)")  # fmt: skip
    parser.add_argument(
        "--islands", action="store_true", help="use the graph whose three island districts have no neighbours"
    )
    parser.add_argument("--output", type=_png_path, default=Path("lip_cancer.png"),
                        help="PNG to write, in an existing writable directory (default ./lip_cancer.png)")  # fmt: skip
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    # NumPy's seed range (pyro.set_rng_seed seeds NumPy too)
    parser.add_argument(
        "--seed", type=_int_in(0, 2**32, "2**32"), default=0, help="random seed, in [0, 2**32) (default 0)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Run the demo with the command-line arguments ``argv`` (default ``sys.argv[1:]``); returns the ArviZ summary
    table of each method (:func:`summarise`), keyed by method.

    Bad arguments exit with status 2 and a message before any work (see :func:`build_parser`); a fit that diverges
    exits with status 1 and a message instead of reporting a posterior.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.no_plot:  # the default path is not parsed by argparse: check it as well, before the fit
        try:
            _png_path(str(args.output))
        except argparse.ArgumentTypeError as error:
            parser.error(f"argument --output: {error}")

    pyro.set_rng_seed(args.seed)
    data = load_scotland_lip_cancer(islands=args.islands)
    print(f"Scottish lip cancer: {data.num_districts} districts, {int(data.observed.sum())} cases, "
          f"{data.pairs.shape[0]} neighbour pairs{' (islands unlinked)' if args.islands else ''}")  # fmt: skip
    model = bym2_model(data)
    posteriors: dict[str, az.InferenceData] = {}
    elbo = None
    if args.method == "laplace":
        start = time.perf_counter()
        result = fit_laplace(data)
        seconds = time.perf_counter() - start
        sigma, rho = result.theta_mode.exp()[0], torch.sigmoid(result.theta_mode[1])
        print(f"Laplace (INLA-style): fit in {seconds:.2f} s; mode of p(σ, ρ | y) at σ = {float(sigma):.3f}, "
              f"ρ = {float(rho):.3f}; {result.weights.numel()} grid points, {result.evaluations} Laplace "
              f"approximations of the {result.latent_means.shape[1]}-dimensional latent field")  # fmt: skip
        posteriors["Laplace"] = to_inference_data(laplace_samples(result, args.samples, seed=args.seed), data)
    elif args.method == "svi":
        start = time.perf_counter()
        try:
            guide, elbo = fit_svi(model, data, steps=args.steps, lr=args.lr, particles=args.particles,
                                  progress=not args.quiet)  # fmt: skip
        except FloatingPointError as error:
            parser.exit(1, f"{parser.prog}: error: {error}\n")
        svi_seconds = time.perf_counter() - start
        print(f"SVI: {args.steps} steps in {svi_seconds:.1f} s; final ELBO (mean of last 100 steps) "
              f"{np.mean(elbo[-100:]):.2f}; guide: {guide.latent_dim} latent coordinates, "
              f"{guide.factor_values.numel()} stored off-diagonal precision-factor entries")  # fmt: skip
        posteriors["SVI"] = to_inference_data(svi_samples(model, guide, args.samples), data)
    if args.method == "nuts" or args.nuts:
        start = time.perf_counter()
        posteriors["NUTS"] = run_nuts(model, data, args.nuts_samples, args.nuts_warmup, args.nuts_chains,
                                      progress=not args.quiet)  # fmt: skip
        divergent = int(posteriors["NUTS"].sample_stats["diverging"].sum())
        print(f"NUTS: {args.nuts_chains} chains of {args.nuts_warmup} warm-up + {args.nuts_samples} draws in "
              f"{time.perf_counter() - start:.1f} s; {divergent} divergent transitions")  # fmt: skip
    method = next(iter(posteriors))
    risk = posteriors[method].posterior["relative_risk"].mean(("chain", "draw")).values
    order = np.argsort(-risk, kind="stable").tolist()
    districts = order[:3] + order[len(order) // 2 : len(order) // 2 + 1] + order[-2:]
    summaries = {
        name: summarise(idata, data, districts, diagnostics=name == "NUTS") for name, idata in posteriors.items()
    }
    print("\nPosterior summary (relative risk RR: 1 = as expected; highest, median and lowest districts)")
    print("\n\n".join(format_summary(name, table) for name, table in summaries.items()))
    if method != "NUTS" and "NUTS" in posteriors:
        nuts = posteriors["NUTS"].posterior["relative_risk"]
        gap = np.abs(risk - nuts.mean(("chain", "draw")).values)
        spread = nuts.std(("chain", "draw"), ddof=1).values
        print(f"\n{method} vs NUTS, all {data.num_districts} relative risks: largest |mean difference| "
              f"{float(gap.max()):.3f} ({float((gap / spread).max()):.2f} NUTS posterior s.d.)")  # fmt: skip
    if not args.no_plot:
        try:
            save_figure(args.output, data, risk, elbo, method=method)
        except ImportError as error:
            print(f"\nNo PNG written: {error}. Install matplotlib (pip install -e '.[examples]') for the figure.")
        except OSError as error:  # checked before the fit; the file system may still change during it
            parser.exit(1, f"{parser.prog}: error: could not write {args.output}: {error}\n")
        else:
            what = "relative-risk map and ELBO trace" if elbo is not None else "relative-risk map"
            print(f"\nWrote {args.output} ({what})")
    return summaries


def cli(argv: list[str] | None = None) -> None:
    """Console entry point ``sparseprec-lip-cancer`` (same options as ``python -m sparseprec.examples.lip_cancer``)."""
    main(argv)


if __name__ == "__main__":
    main()

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide.initialization import init_to_median, init_to_value
from tqdm.auto import tqdm

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
    "summarise",
    "format_table",
    "save_figure",
    "build_parser",
    "main",
    "cli",
]

F64 = torch.float64
SCALARS = ("intercept", "aff_effect", "sigma", "rho")


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
    the Gaussian approximation's marginal there; σ and ρ from the point's cell), in the form of :func:`svi_samples`.
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
    return {"intercept": latent[:, 0], "aff_effect": latent[:, 1], "sigma": theta[:, 0].exp(),
            "rho": torch.sigmoid(theta[:, 1]), "relative_risk": eta.exp()}  # fmt: skip


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
    """Posterior draws of the scalar parameters and the relative risks from the fitted guide."""
    _check_count(num_samples, "num_samples")
    predictive = Predictive(
        model, guide=guide, num_samples=num_samples, return_sites=(*SCALARS, "relative_risk"), parallel=True
    )
    with torch.no_grad():
        return {k: v.reshape(num_samples, -1).squeeze(-1) for k, v in predictive().items()}


def run_nuts(
    model: Callable[[], None], data: LipCancerData, num_samples: int = 1000, warmup: int = 500, progress: bool = True
) -> dict[str, torch.Tensor]:
    """NUTS on the same model (same priors, same ICAR support through its bijection); draws as :func:`svi_samples`."""
    _check_count(num_samples, "num_samples")
    _check_count(warmup, "warmup", minimum=0)
    init = init_to_value(values=_init_values(data), fallback=init_to_median())
    mcmc = MCMC(NUTS(model, init_strategy=init), num_samples=num_samples, warmup_steps=warmup,
                disable_progbar=not progress)  # fmt: skip
    mcmc.run()
    predictive = Predictive(
        model, posterior_samples=mcmc.get_samples(), return_sites=(*SCALARS, "relative_risk"), parallel=True
    )
    with torch.no_grad():
        return {k: v.reshape(num_samples, -1).squeeze(-1) for k, v in predictive().items()}


@dataclass
class Summary:
    """Posterior mean and 95 % interval of every reported quantity, in table order."""

    rows: list[tuple[str, float, float, float]]

    def get(self, name: str) -> tuple[float, float, float]:
        for label, mean, low, high in self.rows:
            if label == name:
                return mean, low, high
        raise KeyError(name)


def summarise(samples: dict[str, torch.Tensor], data: LipCancerData, districts: list[int]) -> Summary:
    """Mean and 2.5 %/97.5 % quantiles of the scalars and the relative risks of the given districts."""
    names = data.district_names()

    def row(label: str, x: torch.Tensor) -> tuple[str, float, float, float]:
        q = torch.quantile(x, torch.tensor([0.025, 0.975], dtype=x.dtype))
        return label, float(x.mean()), float(q[0]), float(q[1])

    labels = {"intercept": "intercept β0", "aff_effect": "AFF effect β1 (per 10 %)", "sigma": "total s.d. σ",
              "rho": "spatial share ρ"}  # fmt: skip
    rows = [row(labels[name], samples[name]) for name in SCALARS]
    rows += [row(f"RR {names[i]}", samples["relative_risk"][:, i]) for i in districts]
    return Summary(rows)


def format_table(summaries: dict[str, Summary]) -> str:
    """The summaries side by side: one ``mean [2.5 %, 97.5 %]`` column per method."""
    methods = list(summaries)
    first = summaries[methods[0]]
    width = max(len(label) for label, *_ in first.rows)
    lines = [f"{'':{width}}  " + "  ".join(f"{m + ': mean [95% interval]':>28}" for m in methods)]
    for label, *_ in first.rows:
        cells = []
        for m in methods:
            mean, low, high = summaries[m].get(label)
            cells.append(f"{mean:>9.3f} [{low:7.3f}, {high:7.3f}]")
        lines.append(f"{label:<{width}}  " + "  ".join(f"{c:>28}" for c in cells))
    return "\n".join(lines)


def save_figure(
    path: Path, data: LipCancerData, risk: np.ndarray, elbo: list[float] | None, method: str = "SVI"
) -> None:
    """Map of the posterior mean relative risks (and the ELBO trace of an SVI fit), as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import LogNorm

    polygons = data.district_polygons()
    rings, values = [], []
    for district, parts in enumerate(polygons):
        rings += [ring / 1000.0 for ring in parts]  # km
        values += [risk[district]] * len(parts)
    if elbo is None:
        figure, ax_map = plt.subplots(1, 1, figsize=(6.6, 6.5))
    else:
        figure, (ax_map, ax_elbo) = plt.subplots(1, 2, figsize=(12, 6.5), gridspec_kw={"width_ratios": [1.1, 1]})
    bound = float(max(risk.max(), 1 / risk.min()))
    collection = PolyCollection(rings, array=np.asarray(values), cmap="RdBu_r", norm=LogNorm(1 / bound, bound),
                                edgecolors="0.3", linewidths=0.3)  # fmt: skip
    ax_map.add_collection(collection)
    ax_map.autoscale_view()
    ax_map.set_aspect("equal")
    ax_map.set_xlabel("km east")
    ax_map.set_ylabel("km north")
    ax_map.set_title(f"Lip cancer 1975–80: posterior mean relative risk (BYM2, {method})")
    colorbar = figure.colorbar(collection, ax=ax_map, label="relative risk (log scale)", shrink=0.8)
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
    parser.add_argument("--nuts-samples", type=_int_in(2), default=1000,
                        help="NUTS draws, at least 2 (default 1000)")  # fmt: skip
    parser.add_argument("--nuts-warmup", type=_int_in(0), default=500, help="NUTS warm-up steps (default 500)")
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


def main(argv: list[str] | None = None) -> dict[str, Summary]:
    """Run the demo with the command-line arguments ``argv`` (default ``sys.argv[1:]``); returns the summaries.

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
    draws: dict[str, dict[str, torch.Tensor]] = {}
    elbo = None
    if args.method == "laplace":
        start = time.perf_counter()
        result = fit_laplace(data)
        seconds = time.perf_counter() - start
        sigma, rho = result.theta_mode.exp()[0], torch.sigmoid(result.theta_mode[1])
        print(f"Laplace (INLA-style): fit in {seconds:.2f} s; mode of p(σ, ρ | y) at σ = {float(sigma):.3f}, "
              f"ρ = {float(rho):.3f}; {result.weights.numel()} grid points, {result.evaluations} Laplace "
              f"approximations of the {result.latent_means.shape[1]}-dimensional latent field")  # fmt: skip
        draws["Laplace"] = laplace_samples(result, args.samples, seed=args.seed)
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
        draws["SVI"] = svi_samples(model, guide, args.samples)
    if args.method == "nuts" or args.nuts:
        start = time.perf_counter()
        draws["NUTS"] = run_nuts(model, data, args.nuts_samples, args.nuts_warmup, progress=not args.quiet)
        print(f"NUTS: {args.nuts_warmup} warm-up + {args.nuts_samples} draws in {time.perf_counter() - start:.1f} s")
    method = next(iter(draws))
    risk = draws[method]["relative_risk"].mean(0)
    order = torch.argsort(risk, descending=True).tolist()
    districts = order[:3] + order[len(order) // 2 : len(order) // 2 + 1] + order[-2:]
    summaries = {name: summarise(samples, data, districts) for name, samples in draws.items()}
    print("\nPosterior summary (relative risk RR: 1 = as expected; highest, median and lowest districts)")
    print(format_table(summaries))
    if method != "NUTS" and "NUTS" in draws:
        nuts = draws["NUTS"]
        gap = (draws[method]["relative_risk"].mean(0) - nuts["relative_risk"].mean(0)).abs()
        spread = nuts["relative_risk"].std(0)
        print(f"\n{method} vs NUTS, all {data.num_districts} relative risks: largest |mean difference| "
              f"{float(gap.max()):.3f} ({float((gap / spread).max()):.2f} NUTS posterior s.d.)")  # fmt: skip
    if not args.no_plot:
        try:
            save_figure(args.output, data, risk.numpy(), elbo, method=method)
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

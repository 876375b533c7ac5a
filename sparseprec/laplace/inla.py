r"""INLA-style integration over a few hyper-parameters (Rue, Martino & Chopin 2009, "Approximate Bayesian inference for
latent Gaussian models by using integrated nested Laplace approximations", JRSS-B 71:319–392, §3.1).

1. The mode :math:`\theta^*` of :math:`\log\tilde p(\theta \mid y) = \log\tilde p(y \mid \theta) + \log p(\theta)`
   (:func:`fit_hyperparameters`), and the negative Hessian :math:`\mathcal{H}` there by central differences of the
   exact gradient.
2. Standardised coordinates :math:`\theta(z) = \theta^* + V \Lambda^{1/2} z` with :math:`\mathcal{H}^{-1} = V \Lambda
   V^\top`. Grid exploration as R-INLA's ``int.strategy = "grid"``: along each axis of :math:`z`, steps of
   ``dz`` in both directions until :math:`\log\tilde p(\theta(z) \mid y)` has dropped by more than ``diff_logdens``
   from the mode; then the points of the product grid of those ranges are visited from the mode outwards, each
   evaluated when a neighbour one step nearer the mode was kept, and kept when its drop is below ``diff_logdens``
   (the corners outside the region are never computed).
3. Weights :math:`w_k \propto \tilde p(\theta_k \mid y)` (the cells have equal volume in :math:`z`, so the Jacobian
   cancels).
4. Latent marginals: the mixture :math:`\sum_k w_k\, N(m_k, \sigma^2_k)` of the Gaussian approximations' marginals,
   centred at the mode plus its first-order skewness correction (:attr:`LaplaceApproximation.mean_correction`;
   ``strategy="mean-corrected"``, the default) or at the mode (``strategy="gaussian"``, R-INLA's strategy of that
   name); the same for the linear predictor :math:`\eta`. Hyper-parameter marginals:
   each kept point stands for its cell, over which :math:`\theta_j` is a sum of uniforms, summarised as a Gaussian
   of the same variance :math:`\tfrac{dz^2}{12}\sum_l M_{jl}^2` (:math:`M = V\Lambda^{1/2}`): a smooth mixture whose
   mean and variance are those of the piecewise-constant density on the grid.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .hyper import LaplaceObjective, check_theta, fit_hyperparameters
from .model import LatentGaussianModel
from .newton import Newton

__all__ = ["INLAResult", "inla", "mixture_quantiles"]


def mixture_quantiles(
    weights: torch.Tensor, means: torch.Tensor, sds: torch.Tensor, q: float | torch.Tensor
) -> torch.Tensor:
    r"""Quantiles of Gaussian mixtures :math:`\sum_k w_k N(m_{kj}, s_{kj}^2)`, one per column ``j``, by bisection.

    ``weights`` ``(K,)`` summing to 1, ``means`` and ``sds`` ``(K, p)``; ``q`` a float or a 1-D tensor of
    probabilities in (0, 1). Returns ``(p,)`` for a float ``q``, else ``(len(q), p)``.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.laplace import mixture_quantiles
    >>> w = torch.tensor([0.5, 0.5], dtype=torch.float64)
    >>> mixture_quantiles(w, torch.zeros(2, 1, dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64), 0.975)
    tensor([1.9600], dtype=torch.float64)
    """
    qs = torch.as_tensor(q, dtype=means.dtype, device=means.device)
    scalar = qs.dim() == 0
    qs = qs.reshape(-1)
    if bool(((qs <= 0) | (qs >= 1)).any()):
        raise ValueError(f"q must lie in (0, 1), got {qs.tolist()}")
    normal = torch.distributions.Normal(means.new_zeros(()), means.new_ones(()))
    low = (means - 10 * sds).min(0).values.expand(qs.numel(), -1).clone()
    high = (means + 10 * sds).max(0).values.expand(qs.numel(), -1).clone()
    target = qs[:, None]
    for _ in range(80):
        mid = 0.5 * (low + high)
        cdf = (weights[None, :, None] * normal.cdf((mid[:, None, :] - means[None]) / sds[None])).sum(1)
        below = cdf < target
        low = torch.where(below, mid, low)
        high = torch.where(below, high, mid)
    out = 0.5 * (low + high)
    return out[0] if scalar else out


@dataclass
class INLAResult:
    r"""Result of :func:`inla`.

    Attributes
    ----------
    theta_mode : torch.Tensor
        :math:`\theta^*` ``(d,)``.
    theta_covariance : torch.Tensor
        :math:`\mathcal{H}^{-1}` ``(d, d)`` (Gaussian approximation of the hyper-posterior at the mode).
    points : torch.Tensor
        ``(K, d)``: the kept design points :math:`\theta_k`; ``z`` their standardised coordinates.
    log_density : torch.Tensor
        ``(K,)``: :math:`\log\tilde p(\theta_k \mid y)` up to a constant.
    weights : torch.Tensor
        ``(K,)``, summing to 1.
    latent_means, latent_variances : torch.Tensor
        ``(K, n)``: the Gaussian approximation's mean and marginal variances at each point.
    predictor_means, predictor_variances : torch.Tensor
        ``(K, m)``: the same for :math:`\eta = A x + o`.
    cell_sd : torch.Tensor
        ``(d,)``: standard deviation of :math:`\theta_j` within one grid cell.
    evaluations : int
        Laplace approximations computed in all (mode search, Hessian, grid).
    """

    theta_mode: torch.Tensor
    theta_covariance: torch.Tensor
    points: torch.Tensor
    z: torch.Tensor
    log_density: torch.Tensor
    weights: torch.Tensor
    latent_means: torch.Tensor
    latent_variances: torch.Tensor
    predictor_means: torch.Tensor
    predictor_variances: torch.Tensor
    cell_sd: torch.Tensor
    evaluations: int

    # ---- latent field -------------------------------------------------------------------------------------------
    @property
    def latent_mean(self) -> torch.Tensor:
        """Posterior means of ``x`` ``(n,)`` (the mixture's)."""
        return self.weights @ self.latent_means

    @property
    def latent_sd(self) -> torch.Tensor:
        """Posterior standard deviations of ``x`` ``(n,)`` (the mixture's: within- plus between-point variance)."""
        second = self.weights @ (self.latent_variances + self.latent_means.square())
        return (second - self.latent_mean.square()).clamp_min(0).sqrt()

    def latent_quantiles(self, q: float | torch.Tensor) -> torch.Tensor:
        """Quantiles of each ``x_i``'s mixture marginal (see :func:`mixture_quantiles` for shapes)."""
        return mixture_quantiles(self.weights, self.latent_means, self.latent_variances.sqrt(), q)

    # ---- linear predictor ---------------------------------------------------------------------------------------
    @property
    def predictor_mean(self) -> torch.Tensor:
        r"""Posterior means of :math:`\eta` ``(m,)``."""
        return self.weights @ self.predictor_means

    @property
    def predictor_sd(self) -> torch.Tensor:
        r"""Posterior standard deviations of :math:`\eta` ``(m,)``."""
        second = self.weights @ (self.predictor_variances + self.predictor_means.square())
        return (second - self.predictor_mean.square()).clamp_min(0).sqrt()

    def predictor_quantiles(self, q: float | torch.Tensor) -> torch.Tensor:
        r"""Quantiles of each :math:`\eta_i` (for a log link, ``exp`` of them are the quantiles of the mean)."""
        return mixture_quantiles(self.weights, self.predictor_means, self.predictor_variances.sqrt(), q)

    # ---- hyper-parameters ---------------------------------------------------------------------------------------
    @property
    def theta_mean(self) -> torch.Tensor:
        """Posterior means of ``theta`` ``(d,)``."""
        return self.weights @ self.points

    @property
    def theta_sd(self) -> torch.Tensor:
        """Posterior standard deviations of ``theta`` ``(d,)`` (between points plus within cells)."""
        centred = self.points - self.theta_mean
        return (self.weights @ centred.square() + self.cell_sd.square()).sqrt()

    def theta_quantiles(self, q: float | torch.Tensor) -> torch.Tensor:
        """Quantiles of each ``theta_j`` (a monotone transform of ``theta_j`` maps them to the transformed scale)."""
        sds = self.cell_sd.expand_as(self.points)
        return mixture_quantiles(self.weights, self.points, sds, q)


def _negative_hessian(objective: LaplaceObjective, theta: torch.Tensor, step: float) -> torch.Tensor:
    d = theta.numel()
    columns = []
    for j in range(d):
        e = torch.zeros_like(theta)
        e[j] = step
        _, g_plus = objective(theta + e)
        _, g_minus = objective(theta - e)
        columns.append(-(g_plus - g_minus) / (2 * step))
    H = torch.stack(columns, dim=1)
    return 0.5 * (H + H.T)


def inla(
    build: Callable[[torch.Tensor], LatentGaussianModel],
    theta0: torch.Tensor,
    y: torch.Tensor,
    *,
    log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    newton: Newton | None = None,
    dz: float = 0.75,
    diff_logdens: float = 6.0,
    hessian_step: float = 1e-3,
    max_points: int = 2000,
    strategy: str = "mean-corrected",
) -> INLAResult:
    r"""INLA-style posterior of a latent Gaussian model with a few hyper-parameters (see the module docstring).

    Parameters
    ----------
    build : callable
        ``build(theta) -> LatentGaussianModel`` for an unconstrained 1-D ``theta``.
    theta0 : torch.Tensor
        Start of the mode search, ``(d,)``.
    y : torch.Tensor
        Observations.
    log_prior : callable, optional
        ``log_prior(theta) -> 0-d tensor`` on the unconstrained scale (with the log-Jacobians of the transforms); an
        improper flat prior when omitted.
    newton : Newton, optional
        Inner iteration settings.
    dz, diff_logdens : float
        Grid step in standardised units and the log-density drop that ends the grid (R-INLA's defaults 0.75, 6).
    hessian_step : float
        Central-difference step for the Hessian at the mode (on ``theta``'s scale; default ``1e-3``).
    max_points : int
        Refuse a grid larger than this (``d`` too large for a grid).
    strategy : {"mean-corrected", "gaussian"}
        The latent marginal at each grid point: the Gaussian approximation centred at the mode (``"gaussian"``,
        R-INLA's strategy of that name) or at the mode plus the first-order skewness correction of the mean
        (:attr:`LaplaceApproximation.mean_correction`; default), both with the Gaussian approximation's variances.

    Returns
    -------
    INLAResult

    Raises
    ------
    sparseprec.ConvergenceError
        The mode search did not converge.
    ValueError
        The negative Hessian at the mode is not positive definite (the mode search stopped at a saddle, or a
        hyper-parameter is not identified: give it a prior), or the grid would exceed ``max_points``.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions import GMRF
    >>> from sparseprec.laplace import LatentGaussianModel, Poisson, inla
    >>> from sparseprec.structures import ar1
    >>> y = torch.tensor([1.0, 0.0, 3.0, 2.0, 4.0, 1.0, 2.0, 5.0], dtype=torch.float64)
    >>> def build(theta):
    ...     prior = GMRF(torch.full((8,), 0.5, dtype=torch.float64), ar1(8, 0.5, tau=theta[0].exp()))
    ...     return LatentGaussianModel(prior, Poisson())
    >>> def log_prior(theta):  # log τ ~ N(0, 1)
    ...     return torch.distributions.Normal(0.0, 1.0).log_prob(theta[0])
    >>> result = inla(build, torch.zeros(1, dtype=torch.float64), y, log_prior=log_prior)
    >>> result.latent_mean.shape, bool(abs(result.weights.sum() - 1) < 1e-12)
    (torch.Size([8]), True)
    """
    theta0 = check_theta(theta0)
    if strategy not in ("mean-corrected", "gaussian"):
        raise ValueError(f"strategy must be 'mean-corrected' or 'gaussian', got {strategy!r}")
    for name, value in (("dz", dz), ("diff_logdens", diff_logdens), ("hessian_step", hessian_step)):
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    fit = fit_hyperparameters(build, theta0, y, log_prior=log_prior, newton=newton)
    objective = LaplaceObjective(build, y, log_prior=log_prior, newton=newton)
    objective.warm_start.x = fit.approximation.result.x
    theta_star = fit.theta
    H = _negative_hessian(objective, theta_star, hessian_step)
    eigenvalues, V = torch.linalg.eigh(H)
    if not bool((eigenvalues > 0).all()):
        raise ValueError(
            f"the negative Hessian of log p(theta | y) at the mode {theta_star.tolist()} is not positive definite "
            f"(eigenvalues {eigenvalues.tolist()}): a hyper-parameter is not identified by the data; give it a "
            "proper log_prior"
        )
    M = V * eigenvalues.rsqrt()  # theta(z) = theta* + M z
    d = theta_star.numel()
    mode_fit = fit.approximation
    cache: dict[tuple[int, ...], tuple[float, torch.Tensor, tuple[torch.Tensor, ...] | None]] = {}
    best: list[float] = []
    modes: dict[tuple[int, ...], torch.Tensor] = {(0,) * d: mode_fit.result.x}

    def evaluate(index: tuple[int, ...]) -> float:
        """``log p̃(θ(z) | y)`` at the grid point ``index``; the point's marginals are kept only when it is within
        ``diff_logdens`` of the mode (the summaries, not the factor: memory O(n) per point)."""
        if index not in cache:
            theta = theta_star + M @ (torch.tensor(index, dtype=theta_star.dtype) * dz)
            # start Newton from the mode of the nearest point evaluated so far (one grid step away, usually),
            # extrapolated linearly when the point beyond it on the same line was evaluated too
            nearest = min(modes, key=lambda other: sum((a - b) ** 2 for a, b in zip(other, index, strict=True)))
            beyond = tuple(2 * b - a for a, b in zip(index, nearest, strict=True))
            start = modes[nearest]
            if beyond in modes and sum(abs(a - b) for a, b in zip(index, nearest, strict=True)) == 1:
                start = 2 * modes[nearest] - modes[beyond]
            objective.warm_start.x = start
            with torch.no_grad(), (newton or Newton()).thread_limit():
                approximation = objective.approximation(theta)
                value = float(objective.value(theta, approximation))
                summaries = None
                if not best or best[0] - value <= diff_logdens:
                    x = approximation.result.x
                    if strategy == "mean-corrected":
                        x = x + approximation.mean_correction
                    summaries = (
                        x,
                        approximation.variance,
                        approximation.model.linear_predictor(x).detach(),
                        approximation.predictor_variance,
                    )
            cache[index] = (value, theta, summaries)
            modes[index] = approximation.result.x
        return cache[index][0]

    top = evaluate((0,) * d)
    best.append(top)
    ranges = []
    for j in range(d):
        low = high = 0
        for direction in (1, -1):
            k = 0
            while True:
                k += 1
                index = tuple(direction * k if i == j else 0 for i in range(d))
                if top - evaluate(index) > diff_logdens or k > 50:
                    break
            if direction == 1:
                high = k - 1
            else:
                low = -(k - 1)
        ranges.append(range(low, high + 1))
    size = math.prod(len(r) for r in ranges)
    if size > max_points:
        raise ValueError(
            f"the grid over {d} hyper-parameters would have {size} points, more than max_points={max_points}; "
            "raise dz or max_points"
        )
    kept = []
    inside: set[tuple[int, ...]] = set()
    # from the mode outwards: a point is evaluated when one of its neighbours a step nearer the mode is inside the
    # region (the log-density falls along every ray from the mode well before a point can rise back above it)
    for index in sorted(itertools.product(*ranges), key=lambda i: (sum(abs(a) for a in i), i)):
        inner = [
            tuple(a - (1 if a > 0 else -1) if i == j else a for i, a in enumerate(index))
            for j, b in enumerate(index)
            if b != 0
        ]
        if inner and not any(i in inside for i in inner):
            continue
        if top - evaluate(index) <= diff_logdens:
            kept.append(index)
            inside.add(index)
    values = torch.tensor([cache[i][0] for i in kept], dtype=theta_star.dtype)
    weights = torch.softmax(values, dim=0)
    latent_means, latent_variances, predictor_means, predictor_variances = (
        torch.stack(parts) for parts in zip(*(cache[i][2] for i in kept), strict=True)
    )
    return INLAResult(
        theta_mode=theta_star,
        theta_covariance=torch.linalg.inv(H),
        points=torch.stack([cache[i][1] for i in kept]).detach(),
        z=torch.tensor(kept, dtype=theta_star.dtype) * dz,
        log_density=values,
        weights=weights,
        latent_means=latent_means,
        latent_variances=latent_variances,
        predictor_means=predictor_means,
        predictor_variances=predictor_variances,
        cell_sd=dz * M.square().sum(1).sqrt() / math.sqrt(12.0),
        evaluations=fit.evaluations + objective.evaluations,
    )

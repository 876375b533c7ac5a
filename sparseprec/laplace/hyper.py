r"""Hyper-parameters by optimisation: type-II maximum likelihood or MAP of :math:`\log\tilde p(y \mid \theta)`.

The user writes ``build(theta) -> LatentGaussianModel`` for an unconstrained 1-D ``theta`` (e.g.
:math:`(\log\sigma, \operatorname{logit}\rho)`); :func:`fit_hyperparameters` maximises :math:`\log\tilde p(y \mid
\theta) + \log p(\theta)` with SciPy's L-BFGS-B on the exact gradient
(:meth:`LaplaceApproximation.log_marginal_likelihood`), each inner Newton iteration warm-started from the previous mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch

from ..errors import ConvergenceError, NotPositiveDefiniteError
from .approximation import LaplaceApproximation
from .model import LatentGaussianModel
from .newton import Newton

__all__ = ["HyperparameterFit", "LaplaceObjective", "WarmStart", "fit_hyperparameters", "posterior_draws"]


def check_theta(theta: object, name: str = "theta0") -> torch.Tensor:
    """A dense, finite, floating 1-D tensor (a copy, detached)."""
    if not isinstance(theta, torch.Tensor):
        raise TypeError(f"{name} must be a 1-D floating torch.Tensor of hyper-parameters, got {type(theta).__name__}")
    if theta.dim() != 1 or theta.numel() == 0 or not theta.is_floating_point():
        raise ValueError(
            f"{name} must be a non-empty 1-D floating tensor, got shape {tuple(theta.shape)} {theta.dtype}"
        )
    if not bool(torch.isfinite(theta).all()):
        raise ValueError(f"{name} must be finite, got {theta.tolist()}")
    return theta.detach().clone()


class WarmStart:
    """Holds the last mode found, to start the next Newton iteration from it (hyper-parameters that change little
    between calls — an optimiser's or a sampler's steps — leave the mode nearby: a few iterations instead of many).

    Pass one instance to every call that should share it (e.g. to :class:`sparseprec.pyro.LaplaceMarginal` built anew
    in each model call). ``x`` is ``None`` until a fit stores its mode.

    Examples
    --------
    >>> from sparseprec.laplace import WarmStart
    >>> WarmStart().x is None
    True
    """

    def __init__(self):
        self.x: torch.Tensor | None = None

    def fit(self, model: LatentGaussianModel, y: torch.Tensor, newton: Newton | None = None) -> LaplaceApproximation:
        """``model.laplace(y)`` started from the stored mode (retried from the prior mean if that start fails, or if
        the stored mode has another size), storing the new mode."""
        x0 = self.x if self.x is not None and self.x.shape == (model.n,) else None
        try:
            fit = model.laplace(y, x0=x0, newton=newton)
        except (ConvergenceError, NotPositiveDefiniteError, ValueError):
            if x0 is None:
                raise
            fit = model.laplace(y, newton=newton)
        self.x = fit.result.x
        return fit


class LaplaceObjective:
    r""":math:`\theta \mapsto \log\tilde p(y \mid \theta) + \log p(\theta)` and its gradient, with warm starts.

    Parameters
    ----------
    build : callable
        ``build(theta) -> LatentGaussianModel`` for a 1-D tensor ``theta`` (which requires grad when called here).
    y : torch.Tensor
        Observations.
    log_prior : callable, optional
        ``log_prior(theta) -> 0-d tensor`` (on the unconstrained scale: include the log-Jacobian of any transform);
        default none (type-II maximum likelihood).
    newton : Newton, optional

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions import GMRF
    >>> from sparseprec.laplace import LaplaceObjective, LatentGaussianModel, Poisson
    >>> from sparseprec.structures import ar1
    >>> y = torch.tensor([1.0, 0.0, 3.0, 2.0, 4.0, 1.0], dtype=torch.float64)
    >>> def build(theta):
    ...     return LatentGaussianModel(GMRF(torch.zeros(6, dtype=torch.float64), ar1(6, 0.5, tau=theta[0].exp())),
    ...                                Poisson())
    >>> objective = LaplaceObjective(build, y)
    >>> value, gradient = objective(torch.zeros(1, dtype=torch.float64))
    >>> gradient.shape
    torch.Size([1])
    """

    def __init__(
        self,
        build: Callable[[torch.Tensor], LatentGaussianModel],
        y: torch.Tensor,
        *,
        log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
        newton: Newton | None = None,
    ):
        if not callable(build):
            raise TypeError(f"build must be a callable theta -> LatentGaussianModel, got {type(build).__name__}")
        if log_prior is not None and not callable(log_prior):
            raise TypeError(f"log_prior must be a callable theta -> 0-d tensor or None, got {type(log_prior).__name__}")
        self.build, self.y, self.log_prior, self.newton = build, y, log_prior, newton
        self.warm_start = WarmStart()
        self.evaluations = 0
        self.last_fit: LaplaceApproximation | None = None

    def approximation(self, theta: torch.Tensor) -> LaplaceApproximation:
        """The Laplace approximation at ``theta`` (Newton warm-started from the last mode; on a failure from there,
        retried from the prior mean)."""
        model = self.build(theta)
        if not isinstance(model, LatentGaussianModel):
            raise TypeError(f"build(theta) must return a LatentGaussianModel, got {type(model).__name__}")
        self.evaluations += 1
        return self.warm_start.fit(model, self.y, self.newton)

    def value(self, theta: torch.Tensor, fit: LaplaceApproximation) -> torch.Tensor:
        value = fit.log_marginal_likelihood()
        if self.log_prior is not None:
            value = value + self.log_prior(theta)
        return value

    def __call__(self, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        """``(value, gradient)`` at ``theta`` (a float and a detached tensor like ``theta``)."""
        theta = theta.detach().clone().requires_grad_(True)
        with torch.enable_grad(), (self.newton or Newton()).thread_limit():
            fit = self.approximation(theta)
            value = self.value(theta, fit)
            (gradient,) = torch.autograd.grad(value, theta, allow_unused=True)
        if gradient is None:
            gradient = torch.zeros_like(theta)
        self.last_fit = fit
        return float(value.detach()), gradient.detach()


@dataclass
class HyperparameterFit:
    """Result of :func:`fit_hyperparameters`.

    Attributes
    ----------
    theta : torch.Tensor
        The maximiser (detached).
    value : float
        :math:`\\log\\tilde p(y \\mid \\theta) + \\log p(\\theta)` there.
    gradient : torch.Tensor
        Its gradient there.
    approximation : LaplaceApproximation
        The Laplace approximation at ``theta`` (mode, Gaussian approximation, marginal variances).
    converged : bool
    message : str
        The optimiser's report.
    evaluations : int
        Laplace approximations computed (each one Newton run).
    """

    theta: torch.Tensor
    value: float
    gradient: torch.Tensor
    approximation: LaplaceApproximation
    converged: bool
    message: str
    evaluations: int


def fit_hyperparameters(
    build: Callable[[torch.Tensor], LatentGaussianModel],
    theta0: torch.Tensor,
    y: torch.Tensor,
    *,
    log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    newton: Newton | None = None,
    max_iterations: int = 200,
    gtol: float = 1e-6,
    throw: bool = True,
) -> HyperparameterFit:
    r"""Maximise :math:`\log\tilde p(y \mid \theta) + \log p(\theta)` over an unconstrained ``theta`` (L-BFGS-B on
    the exact gradient). Without ``log_prior`` this is type-II maximum likelihood (empirical Bayes), with it MAP.

    Parameters
    ----------
    build, log_prior, newton
        As for :class:`LaplaceObjective`.
    theta0 : torch.Tensor
        Start, 1-D floating.
    y : torch.Tensor
        Observations.
    max_iterations : int
        L-BFGS iterations (default 200).
    gtol : float
        Stop when every component of the projected gradient is below ``gtol`` (default ``1e-6``).
    throw : bool
        Raise :class:`sparseprec.ConvergenceError` when the optimiser stops without converging (default); else return
        with ``converged=False``.

    Returns
    -------
    HyperparameterFit

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions import GMRF
    >>> from sparseprec.laplace import LatentGaussianModel, Poisson, fit_hyperparameters
    >>> from sparseprec.structures import ar1
    >>> y = torch.tensor([1.0, 0.0, 3.0, 2.0, 4.0, 1.0, 2.0, 5.0], dtype=torch.float64)
    >>> def build(theta):
    ...     precision = ar1(8, 0.5, tau=theta[0].exp())
    ...     return LatentGaussianModel(GMRF(torch.zeros(8, dtype=torch.float64), precision), Poisson())
    >>> fit = fit_hyperparameters(build, torch.zeros(1, dtype=torch.float64), y)
    >>> fit.converged, bool(fit.gradient.abs().max() < 1e-5)
    (True, True)
    """
    theta0 = check_theta(theta0)
    objective = LaplaceObjective(build, y, log_prior=log_prior, newton=newton)
    like = theta0

    def negative(z: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = objective(torch.from_numpy(z).to(like))
        if not np.isfinite(value):
            return np.inf, np.zeros_like(z)
        return -value, -gradient.cpu().double().numpy()

    result = scipy.optimize.minimize(
        negative,
        theta0.cpu().double().numpy(),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iterations, "gtol": gtol},
    )
    theta = torch.from_numpy(result.x).to(like)
    value, gradient = objective(theta)
    fit = objective.last_fit
    converged = bool(result.success)
    message = str(result.message)
    if not converged and throw:
        raise ConvergenceError(
            f"fit_hyperparameters did not converge: {message} (after {result.nit} iterations, gradient "
            f"{gradient.tolist()} at theta {theta.tolist()}). Try another theta0, a log_prior that keeps theta "
            "bounded, or more max_iterations; throw=False returns the last point",
            solution=result,
        )
    return HyperparameterFit(theta, value, gradient, fit, converged, message, objective.evaluations)


def posterior_draws(
    build: Callable[[torch.Tensor], LatentGaussianModel],
    theta_draws: torch.Tensor,
    y: torch.Tensor,
    *,
    newton: Newton | None = None,
) -> torch.Tensor:
    r"""One draw of the latent field from the Gaussian approximation :math:`\tilde p(x \mid y, \theta_s)` per
    hyper-parameter draw :math:`\theta_s` (e.g. from NUTS over :math:`\theta` with
    :class:`sparseprec.pyro.LaplaceMarginal`): together, draws from :math:`\int \tilde p(x \mid y, \theta)\, p(\theta
    \mid y)\, d\theta`.

    ``theta_draws`` is ``(S, d)``; returns ``(S, n)`` (no gradient). Each fit is warm-started from the previous mode.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions import GMRF
    >>> from sparseprec.laplace import LatentGaussianModel, Poisson, posterior_draws
    >>> from sparseprec.structures import ar1
    >>> y = torch.tensor([1.0, 0.0, 3.0, 2.0], dtype=torch.float64)
    >>> def build(theta):
    ...     return LatentGaussianModel(GMRF(torch.zeros(4, dtype=torch.float64), ar1(4, 0.5, tau=theta[0].exp())),
    ...                                Poisson())
    >>> posterior_draws(build, torch.zeros(3, 1, dtype=torch.float64), y).shape
    torch.Size([3, 4])
    """
    if not isinstance(theta_draws, torch.Tensor) or theta_draws.dim() != 2:
        raise ValueError(
            "theta_draws must be a 2-D tensor (number of draws, number of hyper-parameters), got "
            f"{tuple(theta_draws.shape) if isinstance(theta_draws, torch.Tensor) else type(theta_draws).__name__}"
        )
    warm = WarmStart()
    draws = []
    with torch.no_grad():
        for theta in theta_draws:
            fit = warm.fit(build(theta), y, newton)
            draws.append(fit.posterior.sample())
    return torch.stack(draws)

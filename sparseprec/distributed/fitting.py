r"""One outcome's fit, and one task's chunk of them, with failures contained.

:func:`fit_outcome` builds the outcome's BYM2 model on the process's cached pieces (:mod:`.bym2`), runs the
specification's method (:func:`sparseprec.laplace.fit_hyperparameters` or :func:`sparseprec.laplace.inla`) and
reduces the result to an :class:`~sparseprec.distributed.OutcomeFit` (summaries of :mod:`.results`). Each fit is
independent of every other (no warm start across outcomes), so a result does not depend on which chunk, process or
machine computed it: the distributed results equal the serial loop's exactly.

A numerical failure — the inner Newton iteration or the hyper-parameter search not converging
(:class:`~sparseprec.ConvergenceError`), a Hessian that is not positive definite
(:class:`~sparseprec.NotPositiveDefiniteError`, or INLA's ``ValueError`` for the hyper-parameters' Hessian), a
floating-point error, a summary that is not finite — returns a result marked ``"failed"`` with the reason; the other
outcomes of the chunk are fitted as usual. Programming errors (``TypeError``, ``AttributeError``, ...) are not
caught: they fail the task, which Dask reports (and retries if asked).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch

from ..laplace import fit_hyperparameters, inla
from .bym2 import log_prior, pieces_for
from .results import OK, OutcomeFit
from .specs import INLA, BYM2Poisson, Outcome

__all__ = ["fit_outcome", "fit_chunk", "CONTAINED_ERRORS"]

#: The exceptions a fit is marked failed for (ConvergenceError and NotPositiveDefiniteError are RuntimeErrors)
CONTAINED_ERRORS = (RuntimeError, ValueError, ArithmeticError)
_MAX_REASON = 2000


def _relative_risk(weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor, threshold: float):
    """Mean, s.d. and ``P(r > threshold)`` of ``r = exp(η)``, ``η ~ Σ_k w_k N(m_k, v_k)`` per column."""
    w = weights[:, None]
    mean = (w * (means + 0.5 * variances).exp()).sum(0)
    second = (w * (2 * means + 2 * variances).exp()).sum(0)
    sd = (second - mean.square()).clamp_min(0).sqrt()
    exceedance = (w * torch.special.ndtr((means - math.log(threshold)) / variances.sqrt())).sum(0)
    return mean, sd, exceedance


def _summaries(spec: BYM2Poisson, outcome: Outcome, counter: list[int]) -> dict[str, object]:
    pieces = pieces_for(spec)
    theta0 = torch.tensor(
        [math.log(spec.initial_sigma), math.log(spec.initial_rho / (1 - spec.initial_rho))], dtype=torch.float64
    )

    def build(t: torch.Tensor):
        return pieces.model(spec, t, outcome, counter)

    def prior(t: torch.Tensor) -> torch.Tensor:
        return log_prior(spec, t)

    fixed = slice(0, 1 + spec.num_covariates)
    method = spec.method
    if isinstance(method, INLA):
        result = inla(build, theta0, outcome.counts, log_prior=prior, newton=spec.newton, dz=method.dz,
                      diff_logdens=method.diff_logdens, strategy=method.strategy)  # fmt: skip
        d = result.theta_mode.numel()
        cell = d * math.log(method.dz) + 0.5 * float(torch.logdet(result.theta_covariance))
        rr = _relative_risk(result.weights, result.predictor_means, result.predictor_variances, spec.threshold)
        return {
            "theta_mode": result.theta_mode, "theta_mean": result.theta_mean, "theta_sd": result.theta_sd,
            "coefficients": result.latent_mean[fixed], "coefficients_sd": result.latent_sd[fixed],
            "rr_mean": rr[0], "rr_sd": rr[1], "exceedance": rr[2],
            "log_marginal_likelihood": float(torch.logsumexp(result.log_density, 0)) + cell,
        }  # fmt: skip
    fit = fit_hyperparameters(build, theta0, outcome.counts, log_prior=prior, newton=spec.newton,
                              max_iterations=method.max_iterations, gtol=method.gtol)  # fmt: skip
    approximation = fit.approximation
    with torch.no_grad(), spec.newton.thread_limit():
        mode = approximation.result.x
        eta = approximation.model.linear_predictor(mode).detach()
        rr = _relative_risk(eta.new_ones(1), eta[None], approximation.predictor_variance[None], spec.threshold)
        return {
            "theta_mode": fit.theta, "theta_mean": None, "theta_sd": None,
            "coefficients": mode[fixed].clone(), "coefficients_sd": approximation.stddev[fixed].clone(),
            "rr_mean": rr[0], "rr_sd": rr[1], "exceedance": rr[2],
            "log_marginal_likelihood": float(approximation.log_marginal_likelihood()),
        }  # fmt: skip


def _non_finite(summaries: dict[str, object]) -> str | None:
    for name, value in summaries.items():
        if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
            i = int(torch.nonzero(~torch.isfinite(value))[0, 0])
            return f"non-finite posterior summary: {name}[{i}] = {float(value[i])}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"non-finite posterior summary: {name} = {value}"
    return None


def fit_outcome(spec: BYM2Poisson, outcome: Outcome, index: int = 0) -> OutcomeFit:
    r"""Fit ``spec``'s model to one outcome; a numerical failure gives a result marked failed (module docstring).

    ``outcome`` is validated first (:meth:`BYM2Poisson.check_outcome`: a bad outcome is the caller's error and
    raises). ``index`` is recorded in the result.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributed import BYM2Poisson, Graph, Outcome, fit_outcome
    >>> spec = BYM2Poisson(Graph(6, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]))
    >>> outcome = Outcome(torch.tensor([3, 5, 4, 9, 12, 10]), torch.full((6,), 5.0))
    >>> fit = fit_outcome(spec, outcome)
    >>> fit.status, fit.rr_mean.shape, bool(((fit.exceedance > 0) & (fit.exceedance < 1)).all())
    ('ok', torch.Size([6]), True)
    """
    start = time.perf_counter()
    outcome = spec.check_outcome(outcome, f"outcomes[{index}]")
    counter: list[int] = []
    try:
        summaries = _summaries(spec, outcome, counter)
    except CONTAINED_ERRORS as error:
        reason = f"{type(error).__name__}: {error}"[:_MAX_REASON]
        return OutcomeFit.failed(index, outcome.name, reason, time.perf_counter() - start)
    bad = _non_finite(summaries)
    if bad is not None:
        return OutcomeFit.failed(index, outcome.name, bad, time.perf_counter() - start)
    detached = {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in summaries.items()}
    return OutcomeFit(index=index, name=outcome.name, status=OK, **detached, laplace_evaluations=len(counter),
                      newton_iterations=sum(counter), seconds=time.perf_counter() - start)  # fmt: skip


def fit_chunk(spec: BYM2Poisson, chunk: Sequence[tuple[int, Outcome]]) -> list[OutcomeFit]:
    """:func:`fit_outcome` for each ``(index, outcome)`` of ``chunk``, in order: the body of one Dask task.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributed import BYM2Poisson, Graph, Outcome
    >>> from sparseprec.distributed.fitting import fit_chunk
    >>> spec = BYM2Poisson(Graph(4, [(0, 1), (1, 2), (2, 3)]))
    >>> data = Outcome(torch.tensor([3, 5, 4, 9]), torch.full((4,), 5.0))
    >>> [fit.index for fit in fit_chunk(spec, [(7, data), (8, data)])]
    [7, 8]
    """
    return [fit_outcome(spec, outcome, index) for index, outcome in chunk]

r"""The inner optimisation: the mode :math:`x^* = \arg\max_x \log p(x \mid y, \theta)` by damped Newton.

Objective (up to constants) and its derivatives, with :math:`\eta = A x + o` and :math:`f_i = \log p(y_i \mid
\eta_i)`:

.. math::

    \psi(x) = \sum_i f_i(\eta_i) - \tfrac12 (x - \mu)^\top Q (x - \mu), \qquad
    g = A^\top f'(\eta) - Q (x - \mu), \qquad -\nabla^2 \psi = H = Q + A^\top W A,\ W = \mathrm{diag}(-f''(\eta)).

Each iteration factorises :math:`H` with the library's sparse Cholesky (the symbolic analysis of its pattern, the
union of :math:`Q`'s and :math:`A^\top A`'s, is done once and reused by every iteration and every later call with other
values) and steps along :math:`d = \Sigma_C\, g`, where :math:`\Sigma_C = H^{-1} - V S^{-1} V^\top` with :math:`V =
H^{-1} C^\top`, :math:`S = C V` is the inverse Hessian restricted to the constraints :math:`C x = e` (conditioning by
kriging; without constraints :math:`\Sigma_C = H^{-1}`): the Newton step of the equality-constrained problem, which
keeps an iterate that satisfies the constraints on them. The step length halves until the Armijo condition
:math:`\psi(x + \alpha d) \ge \psi(x) + 10^{-4} \alpha\, g^\top d` holds.

Convergence: the Newton decrement :math:`\lambda^2 = g^\top \Sigma_C g` (twice the predicted gain of the step)
satisfies :math:`\lambda^2 / 2 \le \mathrm{tol} \cdot \max(1, |\psi|)`; the step is then taken in full, so the
returned mode is one quadratically convergent step beyond the test.

Likelihoods that are not log-concave (Student-t, a generic callable) can make :math:`-f''` negative and :math:`H`
indefinite far from the mode. A step whose observed :math:`H` is not positive definite then uses the likelihood's
expected information (Fisher scoring) or :math:`\max(-f'', 0)` as :math:`W` instead (always an ascent direction; with
the line search a convergent method) and the result says so (``hessian="expected information"``,
``information_steps``); steps where the observed :math:`H` is positive definite use it, so the iteration ends with
Newton's quadratic convergence. The Gaussian approximation at the mode uses the observed :math:`-f''` and must be
positive definite there.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from ..cholesky import CholeskyFactor, SparseCholesky
from ..distributions._precision import batched_csr
from ..distributions.conditioning import posterior_precision
from ..errors import ConvergenceError, NotPositiveDefiniteError
from ..ops._values import stored_values
from ..pattern import pattern_of

__all__ = ["Newton", "ModeResult", "Kriging", "find_mode", "hessian", "restricted_solve", "kriging_terms"]


@dataclass(frozen=True)
class Newton:
    r"""Settings of the inner Newton iteration.

    Parameters
    ----------
    max_iterations : int
        At most this many Newton steps (default 100).
    tolerance : float, optional
        Stop when half the squared Newton decrement is at most :math:`\mathrm{tolerance} \cdot \max(1,
        \lvert\psi\rvert)`; default ``1e-9`` in float64 and ``1e-6`` in float32. The step that passes the test is still
        taken in full: Newton's quadratic convergence leaves the mode's error at about the square of the tested one (on
        lip cancer, 1e-9 instead of 1e-12 changed the INLA posterior means by < 1e-10 and saved one of four iterations
        per grid point).
    cholesky : SparseCholesky
        How :math:`H = Q + A^\top W A` is factorised (default ``SparseCholesky()``: CHOLMOD where installed).
    max_halvings : int
        Line-search step halvings before giving up (default 40).
    threads : int, optional
        torch's intra-op threads while the Laplace approximation computes (Newton, marginal variances, the marginal
        likelihood; restored afterwards), default 1: its operations are many small, memory-bound products and solves,
        which extra threads slow down (measured on a shared 2-core machine: a 10×7 sparse product took 4.4 ms with 2
        threads under load against 16 µs with one). ``None`` leaves torch's setting alone.

    Examples
    --------
    >>> from sparseprec.laplace import Newton
    >>> Newton(max_iterations=20)  # doctest: +NORMALIZE_WHITESPACE
    Newton(max_iterations=20, tolerance=None, cholesky=SparseCholesky(backend='auto', ordering=None), max_halvings=40,
           threads=1)
    """

    max_iterations: int = 100
    tolerance: float | None = None
    cholesky: SparseCholesky = field(default_factory=SparseCholesky)
    max_halvings: int = 40
    threads: int | None = 1

    def __post_init__(self):
        for name in ("max_iterations", "max_halvings"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ValueError(f"threads must be an integer >= 1 or None, got {self.threads!r}")
        if self.tolerance is not None and not (isinstance(self.tolerance, (int, float)) and self.tolerance > 0):
            raise ValueError(f"tolerance must be a positive float or None, got {self.tolerance!r}")
        if not isinstance(self.cholesky, SparseCholesky):
            raise TypeError(
                f"cholesky must be a sparseprec.cholesky.SparseCholesky, got {type(self.cholesky).__name__}"
            )

    @contextlib.contextmanager
    def thread_limit(self) -> Iterator[None]:
        """Run the block with ``threads`` torch intra-op threads (restored after)."""
        previous = torch.get_num_threads()
        if self.threads is None or self.threads == previous:
            yield
            return
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def tolerance_for(self, dtype: torch.dtype) -> float:
        if self.tolerance is not None:
            return float(self.tolerance)
        return 1e-9 if dtype == torch.float64 else 1e-6


@dataclass
class ModeResult:
    r"""What ``find_mode`` returns (all detached).

    Attributes
    ----------
    x : torch.Tensor
        The mode ``(n,)``.
    converged : bool
    iterations : int
        Newton steps taken.
    decrement : float
        Half the squared Newton decrement of the last step (the predicted gain it had).
    gradient_norm : float
        :math:`\lVert \Sigma_C^{1/2} g \rVert`-free check: the Euclidean norm of the gradient at ``x`` projected onto
        the constraints.
    objective : float
        :math:`\psi(x)` (without the constant terms).
    hessian : str
        ``"observed"`` (:math:`W = -f''` in every step) or ``"expected information"`` (some step used the likelihood's
        expected information, or a clamped :math:`-f''`, because :math:`Q + A^\top W A` with the observed :math:`W` of a
        likelihood that is not log-concave was not positive definite there).
    information_steps : int
        How many steps used the expected information.
    """

    x: torch.Tensor
    converged: bool
    iterations: int
    decrement: float
    gradient_norm: float
    objective: float
    hessian: str
    information_steps: int = 0


def _diagonal_positions(Q: torch.Tensor) -> torch.Tensor:
    pattern = pattern_of(Q, "precision")

    def locate() -> torch.Tensor:
        positions = torch.nonzero(pattern.on_diagonal()).squeeze(1)
        if positions.numel() != Q.shape[-1]:
            missing = sorted(set(range(Q.shape[-1])) - set(pattern.row[positions].tolist()))[:5]
            raise ValueError(
                f"the prior precision must store every diagonal entry (the Laplace Hessian adds W there), but rows "
                f"{missing} have none; add explicit zeros if needed"
            )
        return positions

    return pattern.derived("laplace_diagonal_positions", locate)


def hessian(model, Q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    r""":math:`H = Q + A^\top \mathrm{diag}(w) A` as a sparse CSR matrix, differentiable w.r.t. ``Q``'s and ``A``'s
    stored values and ``w`` (with ``A = I``: ``w`` added to ``Q``'s diagonal, on ``Q``'s own pattern)."""
    if model.obs_matrix is not None:
        return posterior_precision(Q, model.obs_matrix, w)
    pattern = pattern_of(Q, "precision")
    values = stored_values(Q, pattern).index_add(0, _diagonal_positions(Q), w)
    return batched_csr(pattern.crow, pattern.col, values, Q.shape[-1])


class Kriging(NamedTuple):
    r"""The constraint terms of one factor of :math:`H`: :math:`C` ``(k, n)``, :math:`V = H^{-1} C^\top` ``(n, k)``,
    :math:`S = C V` ``(k, k)`` (symmetrised) and :math:`W = V S^{-1}` ``(n, k)``, so that :math:`\Sigma_C B = H^{-1}B -
    W C H^{-1} B`."""

    C: torch.Tensor
    V: torch.Tensor
    S: torch.Tensor
    W: torch.Tensor


def restricted_solve(factor: CholeskyFactor, B: torch.Tensor, kriging: Kriging | None) -> torch.Tensor:
    r""":math:`\Sigma_C B = H^{-1} B - V S^{-1} C H^{-1} B` (``H^{-1} B`` without constraints); differentiable w.r.t.
    ``B``."""
    X = factor.solve(B)
    if kriging is None:
        return X
    return X - kriging.W @ (kriging.C @ X)


def kriging_terms(factor: CholeskyFactor, C: torch.Tensor) -> Kriging:
    """The :class:`Kriging` terms of ``factor`` for the constraint matrix ``C`` (``k`` solves, one ``k × k``
    inverse)."""
    V = factor.solve(C.T.contiguous())
    S = C @ V
    S = 0.5 * (S + S.T)
    return Kriging(C, V, S, V @ torch.linalg.inv(S))


def _factorise(settings: Newton, H: torch.Tensor, iteration: int, strict: bool) -> CholeskyFactor | None:
    """``H``'s factor; a non-positive-definite ``H`` raises (``strict``) or gives ``None``."""
    try:
        return settings.cholesky.factor(H)
    except NotPositiveDefiniteError as error:
        if not strict:
            return None
        raise NotPositiveDefiniteError(
            f"the Newton Hessian Q + AᵀWA is not positive definite at iteration {iteration}: {error}. The posterior "
            "is not identified in some direction (an intrinsic prior's null space that neither the data nor a "
            "constraint fixes, e.g. an intercept confounded with an unconstrained ICAR); add the constraint or a "
            "proper prior",
            column=getattr(error, "column", None),
        ) from error


def _project(
    x: torch.Tensor, C: torch.Tensor, e: torch.Tensor, pseudo_inverse: torch.Tensor | None = None
) -> torch.Tensor:
    """The point of ``{C x = e}`` nearest to ``x`` (Euclidean); ``pseudo_inverse`` is ``Cᵀ(CCᵀ)⁻¹`` if known."""
    if pseudo_inverse is None:
        pseudo_inverse = C.T @ torch.linalg.inv(C @ C.T)
    return x - pseudo_inverse @ (C @ x - e)


def find_mode(model, y: torch.Tensor, x0: torch.Tensor | None, settings: Newton) -> ModeResult:
    """Run the damped Newton iteration of the module docstring on ``model`` at observations ``y`` (checked)."""
    likelihood = model.likelihood
    with torch.no_grad(), settings.thread_limit():
        Q = model.precision().detach()
        mu = model.loc().detach()
        constraints = model.constraints()
        products = _Products(model, Q)
        predictor, transpose, precision_times = products.predictor, products.transpose, products.precision

        def objective(x: torch.Tensor) -> float:
            r = x - mu
            return float(likelihood.log_prob(y, predictor(x)).sum() - 0.5 * torch.dot(r, precision_times(r)))

        x = mu.clone() if x0 is None else x0.detach().to(dtype=mu.dtype, device=mu.device).clone()
        if x.shape != mu.shape:
            raise ValueError(f"x0 must have shape ({model.n},) (the latent size), got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x0 must be finite")
        C = e = None
        if constraints is not None:
            C, e = constraints[0], constraints[1].detach()
            pseudo_inverse = C.T @ torch.linalg.inv(C @ C.T)
            x = _project(x, C, e, pseudo_inverse)
        tol = settings.tolerance_for(mu.dtype)
        psi = objective(x)
        if not math.isfinite(psi):
            raise ValueError(
                f"log p(x | y) is not finite at the starting point (value {psi}): check y against the likelihood and "
                "the offset, or pass a finite x0 in the likelihood's support"
            )
        information_steps = 0
        decrement = math.inf
        converged = False
        iterations = 0
        for iterations in range(1, settings.max_iterations + 1):
            eta = predictor(x)
            d1, d2, _ = likelihood.derivatives(y, eta)
            g = transpose(d1) - precision_times(x - mu)
            factor = None
            if likelihood.log_concave or bool((d2 <= 0).all()):
                factor = _factorise(settings, hessian(model, Q, -d2), iterations, strict=True)
            else:  # the observed Hessian where it is positive definite; else the expected information, and say so
                factor = _factorise(settings, hessian(model, Q, -d2), iterations, strict=False)
                if factor is None:
                    information_steps += 1
                    factor = _factorise(settings, hessian(model, Q, likelihood.information(y, eta)), iterations, True)
            kriging = None if C is None else kriging_terms(factor, C)
            step = restricted_solve(factor, g, kriging)
            decrement = 0.5 * float(torch.dot(g, step))
            if decrement <= tol * max(1.0, abs(psi)):
                x = x + step
                psi = objective(x)
                converged = True
                break
            alpha = 1.0
            for _ in range(settings.max_halvings):
                candidate = x + alpha * step
                value = objective(candidate)
                if math.isfinite(value) and value >= psi + 1e-4 * alpha * 2.0 * decrement:
                    break
                alpha *= 0.5
            else:
                raise ConvergenceError(
                    f"Newton's line search found no ascent along the step at iteration {iterations} (after "
                    f"{settings.max_halvings} halvings; decrement {decrement:.3g}, log p(x | y) = {psi:.6g}). The "
                    "objective may be non-finite near the iterate (overflowing exp in the likelihood): try a better "
                    "x0, rescale the covariates, or use float64"
                )
            x, psi = candidate, value
        g = transpose(likelihood.derivatives(y, predictor(x))[0]) - precision_times(x - mu)
        if C is not None:
            g = _project(g, C, torch.zeros_like(e), pseudo_inverse)
        result = ModeResult(
            x=x,
            converged=converged,
            iterations=iterations,
            decrement=decrement,
            gradient_norm=float(torch.linalg.vector_norm(g)),
            objective=psi,
            hessian="observed" if information_steps == 0 else "expected information",
            information_steps=information_steps,
        )
    if not converged:
        raise ConvergenceError(
            f"the Laplace approximation's Newton iteration did not converge in {settings.max_iterations} iterations "
            f"(half squared decrement {decrement:.3g} > tolerance {tol:g} · max(1, |ψ|), gradient norm "
            f"{result.gradient_norm:.3g}). Try Newton(max_iterations=...) larger, a start x0 nearer the mode (e.g. "
            "the mode at nearby hyper-parameters), or check that the posterior has a mode (a proper prior on fixed "
            "effects, data in the likelihood's support)",
            solution=result,
        )
    return result


class _Products:
    """The Newton loop's products without autograd: ``A x + o``, ``Aᵀ v`` and ``Q x`` with plain CSR kernels built
    once per call from the patterns (no per-product operand checks or autograd wrappers: the loop does a dozen
    products per iteration on one fixed matrix each)."""

    def __init__(self, model, Q: torch.Tensor):
        q_pattern = pattern_of(Q, "precision")
        self._Q = q_pattern.kernel_matrix(q_pattern.kernel_values(Q))
        self._offset = None if model.offset is None else model.offset.detach()
        self._A = self._At = None
        if model.obs_matrix is not None:
            A = model.obs_matrix.detach()
            a_pattern = pattern_of(A, "obs_matrix")
            values = a_pattern.kernel_values(A)
            self._A, self._At = a_pattern.kernel_matrix(values), a_pattern.transposed_kernel_matrix(values)

    @staticmethod
    def _times(M: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        return x if M is None else (M @ x.unsqueeze(-1)).squeeze(-1)

    def predictor(self, x: torch.Tensor) -> torch.Tensor:
        eta = self._times(self._A, x)
        return eta if self._offset is None else eta + self._offset

    def transpose(self, v: torch.Tensor) -> torch.Tensor:
        return self._times(self._At, v)

    def precision(self, x: torch.Tensor) -> torch.Tensor:
        return self._times(self._Q, x)

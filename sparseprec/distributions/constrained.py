r"""``ConstrainedGMRF``: a GMRF with a sparse positive definite precision conditioned on hard linear constraints.

The unconstrained field is :math:`z \sim N(\mu, \Sigma)`, :math:`\Sigma = H^{-1}` with :math:`H` sparse symmetric
positive definite; the distribution is :math:`z` given :math:`C z = e` (``C`` dense ``(k, n)`` of full row rank, ``k``
small): "conditioning by kriging" (Rue & Held 2005, §2.3.3). With :math:`V = \Sigma C^\top` (``k`` sparse Cholesky
solves) and :math:`S = C V = C \Sigma C^\top` (``k x k``):

.. math::

    m = \mu - V S^{-1} (C\mu - e), \qquad
    \Sigma_c = \Sigma - V S^{-1} V^\top, \qquad
    x = z - V S^{-1} (C z - e) \;\text{ for } z \sim N(\mu, \Sigma).

The density w.r.t. the :math:`(n-k)`-dimensional Lebesgue measure on :math:`\{x : C x = e\}` is the density of
:math:`z` at :math:`x` divided by the density of :math:`C z` at :math:`e`, times the volume factor of the map
:math:`x \mapsto (N^\top x, C x)` (``N`` an orthonormal basis of :math:`\mathrm{null}(C)`):

.. math::

    \log p(x) = \log N(x; \mu, H^{-1}) + \tfrac k2 \log 2\pi + \tfrac12 \log\det S
    + \tfrac12 (C\mu - e)^\top S^{-1} (C\mu - e) - \tfrac12 \log\det(C C^\top),

the convention of :class:`~sparseprec.distributions.IntrinsicGMRF`. This is the Gaussian approximation of a latent
field whose prior has intrinsic parts (ICAR, RW1, RW2 with sum-to-zero constraints) once the Hessian
:math:`H = Q + A^\top W A` of a Laplace approximation has made the precision proper.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import torch
from torch.distributions import Independent, constraints, register_kl

from .._validation import broadcast_shapes
from ..cholesky import SparseCholesky, sparse_cholesky_solve
from ..pattern import pattern_of
from . import sparse_mvn
from ._checks import check_like, check_vector
from ._precision import LOG_2PI, SparsePrecisionGaussian, check_precision
from .conditioning import gaussian_log_likelihood
from .gmrf import GMRF
from .intrinsic import IntrinsicGMRF
from .subspace import AffineSubspace, constraint_gap

__all__ = ["ConstrainedGMRF"]


def _check_constraint_matrix(C: object, Q: torch.Tensor) -> torch.Tensor:
    """``constraint_matrix``: dense real ``(k, n)``, finite, of full row rank ``k >= 1``; returned in ``Q``'s dtype and
    on its device."""
    n = Q.shape[-1]
    if not isinstance(C, torch.Tensor):
        raise TypeError(f"constraint_matrix must be a dense (k, {n}) torch.Tensor, got {type(C).__name__}")
    if C.layout != torch.strided or C.dim() != 2 or C.shape[1] != n:
        raise ValueError(
            f"constraint_matrix must be a dense (k, {n}) tensor, got a {C.layout} tensor of shape {tuple(C.shape)}"
        )
    if C.dtype == torch.bool or C.is_complex():
        raise TypeError(f"constraint_matrix must hold real numbers, got dtype {C.dtype}")
    C = C.to(dtype=Q.dtype, device=Q.device)
    if not bool(torch.isfinite(C.detach()).all()):
        raise ValueError("constraint_matrix must be finite, got a NaN or infinite entry")
    if C.shape[0] == 0 or int(torch.linalg.matrix_rank(C.detach())) < C.shape[0]:
        raise ValueError(f"constraint_matrix must have full row rank k >= 1, got shape {tuple(C.shape)} of lower rank")
    return C


class ConstrainedGMRF(GMRF):
    r"""A GMRF :math:`N(\mu, H^{-1})` (sparse SPD ``H``) conditioned on the hard linear constraints :math:`C x = e`.

    With :math:`\Sigma = H^{-1}`, :math:`V = \Sigma C^\top` (``(n, k)``: ``k`` solves with the sparse Cholesky factor
    of ``H``) and :math:`S = C V` (``(k, k)``), conditioning by kriging (Rue & Held 2005, §2.3.3) gives

    .. math::

        \mathrm{mean} = \mu - V S^{-1} (C\mu - e), \qquad
        \mathrm{Cov} = \Sigma - V S^{-1} V^\top, \qquad
        \mathrm{variance} = \mathrm{diag}(\Sigma) - \textstyle\sum_j \big(V S^{-1}\big)_{:j} \odot V_{:j},

    with :math:`\mathrm{diag}(\Sigma)` by selected inversion of the factor (no ``n x n`` dense matrix). A draw is
    :math:`x = z - V S^{-1}(C z - e)`, :math:`z \sim N(\mu, \Sigma)` drawn with the factor. The log-density w.r.t. the
    :math:`(n-k)`-dimensional Lebesgue measure on :math:`\{x : C x = e\}` (as for :class:`IntrinsicGMRF`) is

    .. math::

        \log p(x) = -\tfrac12 (x-\mu)^\top H (x-\mu) + \tfrac12 \log\det H - \tfrac{n-k}2 \log 2\pi
        + \tfrac12 \log\det S + \tfrac12 d^\top S^{-1} d - \tfrac12 \log\det(C C^\top), \quad d = C\mu - e,

    exact and differentiable w.r.t. ``loc``, ``constraint_value``, ``constraint_matrix`` and ``H``'s stored values
    (:math:`V` by :func:`sparseprec.cholesky.sparse_cholesky_solve` with the distribution's own factor, so
    :math:`\log\det S` carries the gradient w.r.t. ``H`` under the library's symmetric convention).

    Parameters
    ----------
    loc : torch.Tensor
        :math:`\mu`, the mean of the unconstrained field, ``(..., n)``; its batch dimensions broadcast with
        ``constraint_value``'s.
    precision : torch.Tensor
        :math:`H`: sparse COO/CSR ``(n, n)``, symmetric positive definite, both triangles and the diagonal stored,
        ``loc``'s dtype and device. Shared by the batch (a batched precision is refused).
    constraint_matrix : torch.Tensor
        :math:`C`: dense ``(k, n)``, ``1 <= k <= n``, finite, of full row rank (converted to ``precision``'s dtype and
        device).
    constraint_value : torch.Tensor, optional
        :math:`e`: ``(..., k)``, finite, ``loc``'s dtype and device; default :math:`C\mu` (then the mean is ``loc``:
        the constraint holds for the deviations ``x − loc``).
    cholesky : sparseprec.cholesky.SparseCholesky, optional
        How ``H`` is factorised (default ``SparseCholesky()``); the one factor serves ``log_prob``, ``mean``,
        ``variance`` and sampling.
    validate_args : bool, optional
        As in torch: also factorise at once (a precision that is not positive definite raises ``ValueError``) and
        check that a ``value`` given to ``log_prob`` satisfies the constraint (to ``1e-6`` relative).

    Attributes
    ----------
    constraint_matrix : torch.Tensor
        :math:`C`, ``(k, n)``.
    constraint_value : torch.Tensor
        :math:`e`, ``batch_shape + (k,)``.
    precision_matrix : torch.Tensor
        :math:`H`, the precision of the *unconstrained* field (the constrained covariance is singular).

    Raises
    ------
    TypeError
        ``precision`` not sparse; ``constraint_matrix`` or ``constraint_value`` not a tensor (a list is refused) or not
        real; ``constraint_value`` or ``loc`` of another dtype than ``precision``.
    ValueError
        A batched ``precision``; ``constraint_matrix`` not ``(k, n)``, not finite or not of full row rank;
        ``constraint_value`` 0-D, not ``(..., k)`` or not finite; batch shapes that do not broadcast; with validation,
        a precision that is not positive definite and (in ``log_prob``) a value off the constraint.

    Notes
    -----
    ``rsample`` is reparameterised w.r.t. ``loc`` and ``constraint_value`` (:math:`\partial x/\partial\mu =
    I - V S^{-1} C`, :math:`\partial x/\partial e = V S^{-1}`) and, as :class:`GMRF`, refuses a precision that
    requires grad. ``variance`` and ``covariance_matrix`` carry no gradient w.r.t. ``H``. ``precision_matrix`` is
    ``H``; ``condition`` returns the ``ConstrainedGMRF`` of the posterior (the unconstrained posterior, constrained).

    Examples
    --------
    A sum-to-zero AR(1) field:

    >>> import torch
    >>> from sparseprec.distributions import ConstrainedGMRF
    >>> from sparseprec.structures import ar1
    >>> loc = torch.linspace(0.0, 1.0, 6, dtype=torch.float64)
    >>> C = torch.ones(1, 6, dtype=torch.float64)
    >>> d = ConstrainedGMRF(loc, ar1(6, 0.5), C, torch.zeros(1, dtype=torch.float64))
    >>> x = d.sample((3,))
    >>> bool(x.sum(-1).abs().max() < 1e-10), bool(d.mean.sum().abs() < 1e-10), d.log_prob(x).shape
    (True, True, torch.Size([3]))
    >>> d.support.check(x)
    tensor([True, True, True])
    """

    def __init__(
        self,
        loc: torch.Tensor,
        precision: torch.Tensor,
        constraint_matrix: torch.Tensor,
        constraint_value: torch.Tensor | None = None,
        *,
        cholesky: SparseCholesky | None = None,
        validate_args: bool | None = None,
    ):
        Q = check_precision(precision, "precision")
        if Q.dim() != 2:
            raise ValueError(
                "ConstrainedGMRF takes one (n, n) precision shared by the batch, got a batched precision of shape "
                f"{tuple(Q.shape)} (build one ConstrainedGMRF per element)"
            )
        loc = check_vector(loc, "loc")
        check_like(loc, "loc", Q, "precision", Q.shape[-1])
        C = _check_constraint_matrix(constraint_matrix, Q)
        k = C.shape[0]
        if constraint_value is None:
            e = loc @ C.T
        else:
            e = IntrinsicGMRF._check_constraint_value(constraint_value, loc)
            if e.shape[-1] != k:
                raise ValueError(
                    f"constraint_value must have shape (..., {k}) to match constraint_matrix of shape "
                    f"{tuple(C.shape)}, got {tuple(e.shape)}"
                )
        try:
            batch_shape = broadcast_shapes(loc.shape[:-1], e.shape[:-1])
        except RuntimeError as error:
            raise ValueError(
                f"the batch shapes of loc {tuple(loc.shape[:-1])} and of constraint_value {tuple(e.shape[:-1])} do "
                "not broadcast together"
            ) from error
        loc = loc.expand(batch_shape + loc.shape[-1:])
        e = e.expand(batch_shape + (k,))
        # set before GMRF.__init__: torch's argument validation reads every entry of arg_constraints
        self.constraint_matrix, self.constraint_value = C, e
        self._kriging_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(loc, Q, cholesky=cholesky, validate_args=validate_args)  # loc's dtype/shape checked here
        self._pinned = self._pinned_nodes()

    @property
    def arg_constraints(self) -> dict[str, constraints.Constraint]:
        return {**super().arg_constraints, "constraint_value": constraints.real_vector}

    def _pinned_nodes(self) -> torch.Tensor:
        """``k`` nodes ``S`` with ``C[:, S]`` well conditioned (for the support's bijection), by a pivoted QR of ``C``
        with each column weighted by its node's number of stored entries in ``H`` (as :class:`IntrinsicGMRF`)."""
        C = self.constraint_matrix.detach().cpu().double().numpy()
        degree = np.diff(pattern_of(self.precision, "precision").crow.long().cpu().numpy()).astype(np.float64)
        _, _, pivots = scipy.linalg.qr(C * degree[None, :], pivoting=True, mode="economic")
        return torch.from_numpy(np.sort(pivots[: C.shape[0]])).to(self.precision.device)

    # ---- kriging: V = H⁻¹ Cᵀ and the Cholesky factor of S = C V ---------------------------------------------------
    def _kriging(self, differentiable: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(V, L_S)``: :math:`V = H^{-1} C^\top` ``(n, k)`` and the lower Cholesky factor of :math:`S = C V`.

        Differentiable (recomputed on each call, with the distribution's factor) when grad is enabled and ``H`` or
        ``C`` requires grad and ``differentiable``; otherwise computed once without a graph and kept."""
        needs_graph = self.precision.requires_grad or self.constraint_matrix.requires_grad
        if differentiable and needs_graph and torch.is_grad_enabled():
            return self._solve_kriging()
        if self._kriging_cache is None:
            with torch.no_grad():
                self._kriging_cache = self._solve_kriging()
        return self._kriging_cache

    def _solve_kriging(self) -> tuple[torch.Tensor, torch.Tensor]:
        C = self.constraint_matrix
        (factor,) = self._cholesky()
        V = sparse_cholesky_solve(self._precision_operand, C.T.contiguous(), factor=factor)  # H's one read
        S = C @ V
        return V, torch.linalg.cholesky(0.5 * (S + S.T))

    def _correction(self, gap: torch.Tensor, differentiable: bool = True) -> torch.Tensor:
        r""":math:`V S^{-1} g` for gaps ``g`` ``(..., k)``, shape ``(..., n)``."""
        V, L = self._kriging(differentiable)
        return torch.cholesky_solve(gap.unsqueeze(-1), L).squeeze(-1) @ V.T

    def _constrained_terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(log det S, dᵀ S⁻¹ d)`` with :math:`d = C\mu - e`; shapes ``()`` and ``batch_shape``."""
        _, L = self._kriging()
        d = self.loc @ self.constraint_matrix.T - self.constraint_value
        whitened = torch.linalg.solve_triangular(L, d.unsqueeze(-1), upper=False).squeeze(-1)
        return 2 * L.diagonal().log().sum(), whitened.square().sum(-1)

    def log_generalized_determinant(self) -> torch.Tensor:
        r""":math:`\log|\Sigma_c^+|^* = \log\det H + \log\det S - \log\det(C C^\top)`, exact and differentiable.

        Minus the log-determinant of the constrained covariance restricted to :math:`\mathrm{null}(C)`, i.e. of
        :math:`N^\top \Sigma_c N` for an orthonormal basis ``N`` (the precision there is :math:`N^\top H N`; the
        pseudo-inverse of :math:`\Sigma_c` is :math:`P H P`, :math:`P` the orthogonal projection onto
        :math:`\mathrm{null}(C)`), as :meth:`IntrinsicGMRF.log_generalized_determinant` for an intrinsic model.
        Shape ``()``.

        Examples
        --------
        >>> import torch
        >>> from sparseprec.distributions import ConstrainedGMRF
        >>> H = (2 * torch.eye(3, dtype=torch.float64)).to_sparse_csr()
        >>> d = ConstrainedGMRF(torch.zeros(3, dtype=torch.float64), H, torch.ones(1, 3, dtype=torch.float64))
        >>> bool(torch.isclose(d.log_generalized_determinant(), torch.tensor(4.0, dtype=torch.float64).log()))  # 2 · 2
        True
        """
        log_det_S, _ = self._constrained_terms()
        C = self.constraint_matrix
        return self._factored_logdet() + log_det_S - torch.logdet(C @ C.T)

    def _log_det_precision(self) -> torch.Tensor:
        return self.log_generalized_determinant()

    @property
    def _dimension(self) -> int:
        return self.event_shape[0] - self.constraint_matrix.shape[0]

    @property
    def rank(self) -> int:
        """``n − k``: the dimension of the constrained subspace."""
        return self._dimension

    # ---- torch.distributions API --------------------------------------------------------------------------------
    @property
    def support(self) -> AffineSubspace:
        """The affine subspace ``{x : C x = e}``; ``biject_to(support)`` maps ``R^{n−k}`` onto it."""
        return AffineSubspace(self.constraint_matrix, self.constraint_value, self._pinned)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_det_S, mahalanobis = self._constrained_terms()
        C = self.constraint_matrix
        log_det = self._factored_logdet() + log_det_S - torch.logdet(C @ C.T)  # log_generalized_determinant, S once
        return -0.5 * (self._quadratic(value) + self._dimension * LOG_2PI) + 0.5 * (log_det + mahalanobis)

    def _validate_sample(self, value: torch.Tensor) -> None:
        if not isinstance(value, torch.Tensor) or value.shape[-1:] != self.event_shape:
            super()._validate_sample(value)  # torch's message for a wrong type or shape
        C, e = self.constraint_matrix.detach(), self.constraint_value.detach()
        gap, norm = constraint_gap(C, e, value.detach())
        largest = float(value.detach().abs().max()) if value.numel() else 0.0
        if bool((gap > 1e-6 * (1.0 + largest * float(norm))).any()):
            raise ValueError(
                "value does not satisfy the constraint C x = e of the ConstrainedGMRF: |C x − e| reaches "
                f"{float(gap.max()):.3g}"
            )
        super()._validate_sample(value)

    @property
    def mean(self) -> torch.Tensor:
        r""":math:`\mu - V S^{-1}(C\mu - e)`, ``batch_shape + (n,)``; differentiable w.r.t. every parameter."""
        return self.loc - self._correction(self.loc @ self.constraint_matrix.T - self.constraint_value)

    @property
    def variance(self) -> torch.Tensor:
        r""":math:`\mathrm{diag}(\Sigma) - \sum_j (V S^{-1})_{:j} \odot V_{:j}` (exact; no gradient w.r.t. ``H``)."""
        self._warn_detached("variance")
        with torch.no_grad():
            V, L = self._kriging(differentiable=False)
            correction = (torch.cholesky_solve(V.T, L).T * V).sum(-1)
            variance = self._factor_diag_inverse() - correction
        return variance.expand(self.batch_shape + self.event_shape)

    @property
    def covariance_matrix(self) -> torch.Tensor:
        r"""Dense :math:`\Sigma - V S^{-1} V^\top` (singular), ``batch_shape + (n, n)`` (warns above
        ``DENSE_WARNING_SIZE``; no gradient)."""
        n = self.event_shape[0]
        if n > sparse_mvn.DENSE_WARNING_SIZE:
            warnings.warn(
                f"covariance_matrix of a ConstrainedGMRF with n = {n} builds a dense {n} x {n} matrix", stacklevel=2
            )
        with torch.no_grad():
            V, L = self._kriging(differentiable=False)
            (factor,) = self._cholesky()
            eye = torch.eye(n, dtype=self.loc.dtype, device=self.loc.device)
            covariance = factor.solve(eye) - V @ torch.cholesky_solve(V.T, L)
        return covariance.expand(self.batch_shape + (n, n))

    def rsample(self, sample_shape: torch.Size | Sequence[int] = ()) -> torch.Tensor:
        self._refuse_pathwise_precision()
        shape = self._extended_shape(torch.Size(sample_shape))
        z = self.loc + self._draw(shape[:-1])
        return z - self._correction(z @ self.constraint_matrix.T - self.constraint_value)

    def _expand_state(self, new: SparsePrecisionGaussian, batch_shape: torch.Size) -> None:
        super()._expand_state(new, batch_shape)
        new.constraint_value = self.constraint_value.expand(batch_shape + self.constraint_value.shape[-1:])

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, constraint_matrix: {tuple(self.constraint_matrix.shape)})"

    # ---- conjugate observations --------------------------------------------------------------------------------
    def condition(
        self,
        obs_matrix: torch.Tensor,
        y: torch.Tensor,
        noise_precision: float | torch.Tensor,
        solver: object = None,
    ) -> ConstrainedGMRF:
        r"""The posterior of :math:`x` given :math:`y = A x + e`, :math:`e \sim N(0, \mathrm{diag}(w)^{-1})`: the
        unconstrained posterior (:meth:`GMRF.condition`, same arguments and errors) conditioned on :math:`C x = e`.

        The prior restricted to the constraint times the likelihood is the unconstrained posterior restricted to it,
        so the result is ``ConstrainedGMRF(post.loc, post.precision, C, e)`` with the unconstrained posterior's
        factor reused.

        Examples
        --------
        >>> import torch
        >>> from sparseprec.distributions import ConstrainedGMRF
        >>> from sparseprec.structures import ar1
        >>> sum_to_zero = torch.ones(1, 4, dtype=torch.float64)
        >>> prior = ConstrainedGMRF(torch.zeros(4, dtype=torch.float64), ar1(4, 0.9), sum_to_zero)
        >>> A = torch.eye(4, dtype=torch.float64)[:2].to_sparse_csr()
        >>> post = prior.condition(A, torch.tensor([1.0, 1.0], dtype=torch.float64), noise_precision=100.0)
        >>> type(post).__name__, bool(post.mean.sum().abs() < 1e-10)
        ('ConstrainedGMRF', True)
        """
        posterior = super().condition(obs_matrix, y, noise_precision, solver=solver)
        constrained = ConstrainedGMRF(
            posterior.loc,
            posterior.precision,
            self.constraint_matrix,
            self.constraint_value,
            cholesky=posterior.cholesky_settings,
            validate_args=False,
        )
        constrained._factor = posterior._factor
        constrained._validate_args = self._validate_args
        return constrained

    def log_marginal_likelihood(
        self,
        obs_matrix: torch.Tensor,
        y: torch.Tensor,
        noise_precision: float | torch.Tensor,
        solver: object = None,
    ) -> torch.Tensor:
        r""":math:`\log p(y)` for :math:`y = A x + e` under this constrained prior (exact up to the solver).

        :math:`\log p(y) = \log p(y \mid x^*) + \log p(x^*) - \log p(x^* \mid y)` at the constrained posterior mean
        :math:`x^*` (the identity holds at every point of the constraint). Arguments as in :meth:`GMRF.condition`.

        Examples
        --------
        >>> import torch
        >>> from sparseprec.distributions import ConstrainedGMRF
        >>> eye = torch.eye(2, dtype=torch.float64).to_sparse_csr()
        >>> prior = ConstrainedGMRF(torch.zeros(2, dtype=torch.float64), eye, torch.ones(1, 2, dtype=torch.float64))
        >>> # x = (t, −t), t ~ N(0, ½); y = x + noise ~ N(0, Σ_c + I), det(Σ_c + I) = 2: log p(0) = −log 2π − ½ log 2
        >>> round(prior.log_marginal_likelihood(eye, torch.zeros(2, dtype=torch.float64), 1.0).item(), 4)
        -2.1845
        """
        posterior = self.condition(obs_matrix, y, noise_precision, solver=solver)
        x = posterior.mean
        return gaussian_log_likelihood(obs_matrix, y, noise_precision, x) + self.log_prob(x) - posterior.log_prob(x)


@register_kl(Independent, ConstrainedGMRF)
def _kl_independent_constrained(p: Independent, q: ConstrainedGMRF) -> torch.Tensor:
    r""":math:`+\infty`: a distribution with a density on :math:`\mathbb{R}^n` is not absolutely continuous w.r.t. one
    concentrated on the subspace :math:`\{x : C x = e\}` (the :class:`GMRF` formula does not apply)."""
    batch = broadcast_shapes(p.batch_shape, q.batch_shape)
    return q.loc.new_full(batch, math.inf)

"""``GMRF``: a Gaussian Markov random field given by its sparse precision matrix (or a batch of them)."""

from __future__ import annotations

import math
import warnings

import torch
from torch.distributions import constraints

from .._validation import broadcast_shapes, check_sparse_matrix
from ..cholesky import ExactLogDet, SLQLogDet, SparseCholesky, sparse_cholesky_solve
from ..ops import sparse_mm
from ..solvers import sparse_generic_solve
from ..structures import car
from . import sparse_mvn
from ._checks import check_vector
from ._precision import LOG_2PI, EachMatrix, SparsePrecisionGaussian, check_settings, to_blocks
from .conditioning import gaussian_log_likelihood, noise_weights, posterior_precision
from .constraints import sparse_symmetric_positive_diagonal

__all__ = ["GMRF", "CAR"]

_each_symmetric = EachMatrix(sparse_symmetric_positive_diagonal)


class GMRF(SparsePrecisionGaussian):
    r"""Gaussian Markov random field :math:`x \sim N(\mu, Q^{-1})` with a sparse symmetric positive definite ``Q``.

    .. math::

        \log p(x) = -\tfrac12 (x-\mu)^\top Q (x-\mu) + \tfrac12 \log\det Q - \tfrac n2 \log 2\pi .

    The quadratic form is one sparse product (:func:`sparseprec.sparse_mm`, every sample and batch element as one
    block); :math:`\log\det Q` comes from a sparse Cholesky factorisation (:func:`sparseprec.cholesky.sparse_logdet`,
    exact value and exact gradient :math:`(Q^{-1})_{ij}` at the stored entries by selected inversion) or, with
    ``logdet=SLQLogDet(...)``, from stochastic Lanczos quadrature (:func:`sparseprec.cholesky.slq_logdet`, for very
    large or GPU problems; unbiased up to the Lanczos error, see its docstring). Gradients reach ``loc``, ``value``
    and ``Q``'s stored values, so a precision built by :mod:`sparseprec.structures` from tensors
    (``car(W, rho, tau)``, ``matern_spde(shape, kappa, tau)``) is learnable.

    The factorisation :math:`Q_{pp} = L L^\top` (fill-reducing ``p``) is computed once per distribution object and
    shared by ``log_prob``, ``rsample``, ``entropy`` and ``variance``; the symbolic analysis is cached per sparsity
    pattern, so a training loop that rebuilds ``GMRF`` with new values of a fixed pattern only refactorises
    numerically.

    A batch of precisions ``(*pbatch, n, n)`` on one shared pattern (as the builders return for batched
    hyper-parameters, e.g. ``ar1(n, rho)`` with ``rho`` of shape ``(4,)``) gives one GMRF per element: the batch shape
    is the broadcast of ``loc.shape[:-1]`` and ``pbatch``, as for torch's ``MultivariateNormal``; each element is
    factorised once (numerically only, the pattern's analysis is shared), its log-determinant is exact with its
    gradient w.r.t. that element's values, and the quadratic forms of all elements are one batched sparse product.

    Parameters
    ----------
    loc : torch.Tensor
        Mean, shape ``(..., n)``; its batch dimensions broadcast with the precision's.
    precision : torch.Tensor
        Sparse COO or CSR ``(n, n)`` shared by the batch, or a batch ``(*pbatch, n, n)`` (CSR, or COO ``(b, n, n)``)
        whose elements store one pattern; both triangles stored, symmetric, every diagonal entry stored; same dtype
        and device as ``loc`` (CUDA tensors are factorised on the CPU).
    cholesky : sparseprec.cholesky.SparseCholesky, optional
        How the precision is factorised (backend, ordering); default ``SparseCholesky()``.
    logdet : sparseprec.cholesky.ExactLogDet or SLQLogDet, optional
        The log-determinant estimator: exact by the distribution's factor (default) or stochastic
        (``SLQLogDet(num_probes=..., lanczos_steps=...)``, unbatched precisions only; ``rsample`` and ``variance``
        still factorise).
    validate_args : bool, optional
        As in torch: check the constraints (symmetric, finite, positive stored diagonal) and factorise at once, so that
        a precision that is not positive definite raises ``ValueError`` here; without validation it raises
        :class:`sparseprec.NotPositiveDefiniteError` when first factorised.

    Raises
    ------
    TypeError
        ``precision`` not sparse COO/CSR, ``loc`` and ``precision`` of different dtypes.
    ValueError
        A non-square ``precision``, an empty one (``(0, 0)``: use :class:`SparseMultivariateNormal` for an empty
        event), a batched one whose elements store different patterns, ``loc`` of the wrong size or a batch shape
        that does not broadcast with the precision's, an unknown ``logdet`` or ``"slq"`` with a batched precision; with
        validation, a precision that is not positive definite.

    Notes
    -----
    ``rsample`` is :math:`\mu + P^\top L^{-\top} \varepsilon`: reparameterised w.r.t. ``loc`` only. A pathwise
    gradient w.r.t. ``Q`` would need the derivative of the Cholesky factor, which is dense in general; ``rsample``
    therefore refuses a ``Q`` that requires grad (use :class:`SparseMultivariateNormal` with ``precision_tril`` to learn
    a precision through samples). ``variance`` is :math:`\mathrm{diag}(Q^{-1})` by selected inversion, without a
    gradient w.r.t. ``Q``.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions import GMRF
    >>> from sparseprec.structures import ar1
    >>> rho = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    >>> d = GMRF(torch.zeros(100, dtype=torch.float64), ar1(100, rho))
    >>> x = d.sample((3,))
    >>> d.log_prob(x).sum().backward()
    >>> rho.grad is not None
    True

    A batch of four precisions on one pattern:

    >>> from sparseprec import sparse_csr_tensor
    >>> Q = ar1(5, 0.5)
    >>> values = Q.values() * torch.arange(1.0, 5.0, dtype=torch.float64)[:, None]  # (4, nnz): Q, 2Q, 3Q, 4Q
    >>> crow, col = Q.crow_indices().expand(4, 6), Q.col_indices().expand(4, Q.values().numel())
    >>> d = GMRF(torch.zeros(5, dtype=torch.float64), sparse_csr_tensor(crow, col, values, (4, 5, 5)))
    >>> d.batch_shape, d.log_prob(torch.zeros(5, dtype=torch.float64)).shape
    (torch.Size([4]), torch.Size([4]))
    """

    def __init__(
        self,
        loc: torch.Tensor,
        precision: torch.Tensor,
        *,
        cholesky: SparseCholesky | None = None,
        logdet: ExactLogDet | SLQLogDet | None = None,
        validate_args: bool | None = None,
    ):
        batch_shape = self._set_precision(loc, precision)
        n = self.precision.shape[-1]
        if n == 0:
            # the sparse Cholesky layer has nothing to factorise; SparseMultivariateNormal covers the empty event
            raise ValueError("precision must be at least 1 x 1 (a GMRF of n >= 1 variables), got shape (0, 0)")
        self.cholesky_settings, self.logdet_estimator = check_settings(cholesky, logdet)
        if isinstance(self.logdet_estimator, SLQLogDet) and self._pbatch:
            raise ValueError(
                "logdet=SLQLogDet(...) takes one (n, n) precision; got a batched precision of shape "
                f"{tuple(self.precision.shape)} (use the exact log-det, or one GMRF per element)"
            )
        super().__init__(batch_shape, torch.Size((n,)), validate_args=validate_args)
        if self._validate_args:
            self._factor_check()

    @property
    def arg_constraints(self) -> dict[str, constraints.Constraint]:
        precision = sparse_symmetric_positive_diagonal if self.precision.dim() == 2 else _each_symmetric
        return {"loc": constraints.real_vector, "precision": precision}

    # ---- the precision's log-determinant and draws -----------------------------------------------------------------
    def _log_det_precision(self) -> torch.Tensor:
        r""":math:`\log\det Q` of every precision element, shape ``pbatch``."""
        if isinstance(self.logdet_estimator, SLQLogDet):
            return self.logdet_estimator(self._precision_operand)
        return self._factored_logdet()

    def _draw(self, shape: torch.Size) -> torch.Tensor:
        return self._factor_draw(shape, self.event_shape[0])

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        r""":math:`\mathrm{diag}(Q^{-1})` by selected inversion, ``batch_shape + (n,)`` (exact; no gradient to Q)."""
        self._warn_detached("variance")
        return self._factor_diag_inverse().expand(self.batch_shape + self.event_shape)

    @property
    def covariance_matrix(self) -> torch.Tensor:
        r"""Dense :math:`Q^{-1}`, ``batch_shape + (n, n)`` (warns above ``DENSE_WARNING_SIZE``; no gradient)."""
        n = self.event_shape[0]
        if n > sparse_mvn.DENSE_WARNING_SIZE:
            warnings.warn(f"covariance_matrix of a GMRF with n = {n} builds a dense {n} x {n} matrix", stacklevel=2)
        eye = torch.eye(n, dtype=self.loc.dtype, device=self.loc.device)
        inverses = torch.stack([factor.solve(eye) for factor in self._cholesky()]).reshape(self._pbatch + (n, n))
        return inverses.expand(self.batch_shape + (n, n))

    # ---- conjugate observations -------------------------------------------------------------------------------------
    def condition(
        self,
        obs_matrix: torch.Tensor,
        y: torch.Tensor,
        noise_precision: float | torch.Tensor,
        solver: object = None,
    ) -> GMRF:
        r"""The posterior GMRF of :math:`x` given :math:`y = A x + e`, :math:`e \sim N(0, \mathrm{diag}(w)^{-1})`.

        Precision :math:`Q + A^\top \mathrm{diag}(w) A` (sparse, on the union of the patterns), mean
        :math:`\mu + Q_{post}^{-1} A^\top \mathrm{diag}(w)(y - A\mu)`. Differentiable w.r.t. ``loc``, ``y``,
        ``noise_precision`` and the stored values of ``Q`` and ``obs_matrix``: the solve is
        :func:`sparseprec.cholesky.sparse_cholesky_solve` (``solver=None``: with this GMRF's
        :class:`~sparseprec.cholesky.SparseCholesky` settings, or another ``SparseCholesky``; its factor is kept for
        the posterior's ``log_prob``/``sample``) or :func:`sparseprec.sparse_generic_solve` with implicit gradients
        (a :class:`sparseprec.solvers.CG`/``MINRES`` object, or any ``solve(A, B)`` callable) for problems too large
        to factorise. Either way the gradient w.r.t. the symmetric :math:`Q_{post}` follows the one symmetric
        convention (:ref:`symmetric-gradients`), so the two routes give the same gradients.

        Parameters
        ----------
        obs_matrix : torch.Tensor
            Sparse COO/CSR ``(m, n)``.
        y : torch.Tensor
            Observations ``(..., m)``; batch dims broadcast with ``loc``'s.
        noise_precision : float or torch.Tensor
            Positive scalar or ``(m,)`` diagonal of :math:`R`.
        solver : SparseCholesky, solver object or callable, optional
            ``None`` (this GMRF's factorisation settings), a ``SparseCholesky``, or a solver as accepted by
            :func:`sparseprec.sparse_generic_solve` (``CG(rtol=1e-8)``, ``MINRES()``, ``solve(A, B)``).

        Raises
        ------
        TypeError
            ``obs_matrix`` not sparse, ``y`` not a tensor or not of ``loc``'s dtype/device, ``solver`` not a solver
            (a string included), ``noise_precision`` not a number or a tensor.
        ValueError
            Shapes that do not match, ``noise_precision`` not positive and finite,
            ``obs_matrix`` with a non-finite stored value (always checked), ``y`` with a non-finite value (checked
            when ``validate_args`` is on, the default in torch: a value check, as torch's ``log_prob`` does).

        Examples
        --------
        >>> import torch
        >>> from sparseprec.distributions import GMRF
        >>> from sparseprec.structures import ar1
        >>> prior = GMRF(torch.zeros(4, dtype=torch.float64), ar1(4, rho=0.9))
        >>> A = torch.eye(4, dtype=torch.float64)[:2].to_sparse_csr()  # observe x0 and x1
        >>> post = prior.condition(A, torch.tensor([1.0, 1.0], dtype=torch.float64), noise_precision=100.0)
        >>> post.loc.shape, post.precision_matrix.shape
        (torch.Size([4]), torch.Size([4, 4]))
        """
        A = check_sparse_matrix(obs_matrix, "obs_matrix")
        if A.dim() != 2:
            raise ValueError(f"obs_matrix must have shape (m, n), got {tuple(A.shape)}")
        if isinstance(solver, str):
            raise TypeError(
                f"solver must be a solver object, got the string {solver!r}: pass None or "
                "sparseprec.cholesky.SparseCholesky(...) for a sparse Cholesky solve, sparseprec.solvers.CG(...) for CG"
            )
        if solver is not None and not callable(solver):
            raise TypeError(
                "solver must be None, a SparseCholesky, a CG/MINRES object or a solve(A, B) callable, got "
                f"{type(solver).__name__} {solver!r}"
            )
        cholesky = solver if isinstance(solver, SparseCholesky) else self.cholesky_settings
        # the exact log-det follows the posterior's factorisation; an estimator such as SLQ carries over
        logdet = None if isinstance(self.logdet_estimator, ExactLogDet) else self.logdet_estimator
        w = noise_weights(noise_precision, A.shape[0], self.loc)
        Q_post = posterior_precision(self._precision_operand, A, w)
        y = check_vector(y, "y")
        if y.dtype != self.loc.dtype or y.device != self.loc.device:
            raise TypeError(
                f"y must have loc's dtype {self.loc.dtype} and device {self.loc.device}, got {y.dtype}, {y.device}"
            )
        if y.shape[-1] != A.shape[0]:
            raise ValueError(f"y must have shape (..., {A.shape[0]}) to match obs_matrix, got {tuple(y.shape)}")
        if self._validate_args and not bool(torch.isfinite(y.detach()).all()):
            raise ValueError("y must be finite (checked with validate_args), got a NaN or infinite observation")
        n, m = self.event_shape[0], A.shape[0]
        batch = broadcast_shapes(self.batch_shape, y.shape[:-1])
        loc = self.loc.expand(batch + self.event_shape)
        posterior = GMRF(loc, Q_post, cholesky=cholesky, logdet=logdet, validate_args=False)
        posterior._validate_args = self._validate_args
        if m == 0:
            # no observations: Q_post = Q + 0 (same values; Q's factors serve when made with the same settings)
            if cholesky == self.cholesky_settings:
                posterior._factor = self._factor
            return posterior
        columns = math.prod(batch)  # explicit: -1 is ambiguous when a dimension has size 0
        loc_columns = loc.reshape(columns, n).transpose(0, 1)
        residual = y.expand(batch + (m,)).reshape(columns, m).transpose(0, 1) - sparse_mm(A, loc_columns)
        rhs = sparse_mm(A, w.unsqueeze(-1) * residual, transpose=True).transpose(0, 1).reshape(batch + (n,))
        blocks, restore = to_blocks(rhs, self._pbatch)  # (B, n, S): the right-hand sides of each element
        matrices = posterior._factored_matrices()
        if solver is None or isinstance(solver, SparseCholesky):
            deltas = [
                sparse_cholesky_solve(M, b, factor=f)
                for M, b, f in zip(matrices, blocks, posterior._cholesky(), strict=True)
            ]
        else:  # Q_post is symmetric: its gradient follows the symmetric convention, as the Cholesky path's does
            deltas = [
                sparse_generic_solve(M, b, solve=solver, symmetric="full")
                for M, b in zip(matrices, blocks, strict=True)
            ]
        posterior.loc = loc + restore(torch.stack(deltas))
        return posterior

    def log_marginal_likelihood(
        self,
        obs_matrix: torch.Tensor,
        y: torch.Tensor,
        noise_precision: float | torch.Tensor,
        solver: object = None,
    ) -> torch.Tensor:
        r""":math:`\log p(y)` for :math:`y = A x + e` under this GMRF prior (exact up to the solver; differentiable).

        :math:`\log p(y) = \log p(y \mid x^*) + \log p(x^*) - \log p(x^* \mid y)` at the posterior mean
        :math:`x^*` (the identity holds for every :math:`x`; see :mod:`sparseprec.distributions.conditioning`): two
        sparse log-determinants (:math:`Q`, :math:`Q_{post}`), one solve. Shape: the broadcast of ``loc``'s and
        ``y``'s batch shapes. Arguments as in :meth:`condition`.

        Examples
        --------
        >>> import torch
        >>> from sparseprec.distributions import GMRF
        >>> prior = GMRF(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64).to_sparse_csr())
        >>> A = torch.eye(2, dtype=torch.float64).to_sparse_csr()
        >>> # y ~ N(0, 2 I): log p(0) = −log(2π) − log 2
        >>> prior.log_marginal_likelihood(A, torch.zeros(2, dtype=torch.float64), 1.0)
        tensor(-2.5310, dtype=torch.float64)
        """
        posterior = self.condition(obs_matrix, y, noise_precision, solver=solver)
        x = posterior.loc
        n = self.event_shape[0]
        log_likelihood = gaussian_log_likelihood(obs_matrix, y, noise_precision, x)
        # log p(x* | y) at the posterior's own mean: its quadratic form is zero
        log_posterior = 0.5 * posterior._log_det_precision() - 0.5 * n * LOG_2PI
        return log_likelihood + self.log_prob(x) - log_posterior


class CAR(GMRF):
    r"""The proper CAR model :math:`x \sim N(\mu, Q^{-1})`, :math:`Q = \tau (D - \rho W)`
    (:func:`sparseprec.structures.car`), differentiable in ``rho`` and ``tau``.

    Tensors ``rho`` and ``tau`` with batch dimensions give a batch of CAR models on the one adjacency: the batch shape
    is the broadcast of ``rho``'s, ``tau``'s and ``loc``'s batch shapes (one factorisation per element of the
    precision's batch; see :class:`GMRF`). ``adjacency`` is any graph :func:`sparseprec.structures.as_adjacency`
    takes (a symmetric 0/1 matrix, an edge list, a libpysal ``W`` or ``Graph``, a networkx graph).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions import CAR
    >>> from sparseprec.structures import adjacency_from_pairs
    >>> rho = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    >>> d = CAR(adjacency_from_pairs([(0, 1), (1, 2)]), rho, tau=2.0)
    >>> d.log_prob(torch.zeros(3, dtype=torch.float64)).backward()
    >>> rho.grad is not None
    True
    """

    def __init__(
        self,
        adjacency: object,
        rho: float | torch.Tensor,
        tau: float | torch.Tensor = 1.0,
        *,
        loc: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float64,
        validate_args: bool | None = None,
    ):
        precision = car(adjacency, rho, tau, dtype=dtype)
        if loc is None:
            loc = torch.zeros(precision.shape[-1], dtype=precision.dtype, device=precision.device)
        super().__init__(loc, precision, validate_args=validate_args)

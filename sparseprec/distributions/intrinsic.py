r"""Intrinsic GMRFs: rank-deficient precisions (ICAR, RW1, RW2) with linear constraints spanning the null space.

For a symmetric positive semi-definite ``Q`` whose null space is spanned by the rows of ``C`` (``k x n``), the model
is the Gaussian on the affine subspace :math:`\{x : C x = e\}` with density (Rue & Held 2005, §3.2)

.. math::

    \log p(x) = -\tfrac{n-k}{2} \log 2\pi + \tfrac12 \log|Q|^* - \tfrac12 (x-\mu)^\top Q (x-\mu),

:math:`|Q|^*` the generalised determinant (product of the non-zero eigenvalues). It is computed exactly from a sparse
Cholesky factorisation of the *pinned* precision :math:`Q_{\bar S \bar S}` (``Q`` without the rows and columns of
``k`` nodes ``S`` with :math:`C_{:,S}` invertible; positive definite):

.. math::

    \log|Q|^* = \log\det Q_{\bar S\bar S} + \log\det(C C^\top) - 2 \log|\det C_{:,S}| .

Sampling is exact ("conditioning by kriging" with the pinned model): draw :math:`x_{\bar S} \sim N(0,
Q_{\bar S\bar S}^{-1})`, :math:`x_S = 0`, and move along the null space onto the constraint:
:math:`x \leftarrow x - C^\top (C C^\top)^{-1} (C x - (e - C\mu))`. The same projection gives the constrained marginal
variances from the pinned model's selected inverse and ``k`` solves.

Relation to Stan and PyMC: their ICAR log-density ``-0.5 * dot_self(phi[node1] - phi[node2])`` with a soft
sum-to-zero constraint is :math:`-\tfrac12 x^\top (D - W) x`, i.e. this log-density for ``tau = 1`` without the
constant :math:`\tfrac12\log|Q|^* - \tfrac{n-k}{2}\log 2\pi`; here the constant is kept (and its ``tau`` dependence,
:math:`\tfrac{n-k}{2}\log\tau`, which those forms must add by hand when ``tau`` is learned).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import torch
from torch.distributions import Distribution, constraints
from torch.distributions.utils import _standard_normal

from .._validation import check_same_dtype_device, check_sparse_matrix
from ..cholesky import CholeskyFactor, cholesky, diag_inverse, sparse_logdet
from ..errors import NotPositiveDefiniteError
from ..ops import sparse_csr_tensor, sparse_mm
from ..ops._values import stored_values
from ..pattern import crow_from_rows, pattern_of
from ..structures import icar
from ._checks import check_like, check_vector
from ._copy import SparseDeepCopy
from ._precision import quadratic_form, sample_with_factor
from .subspace import AffineSubspace

__all__ = ["IntrinsicGMRF", "ICAR", "component_constraints"]

_LOG_2PI = math.log(2 * math.pi)


def component_constraints(precision: torch.Tensor) -> torch.Tensor:
    """Sum-to-zero constraint rows, one per connected component of ``precision``'s sparsity graph, ``(k, n)``."""
    pattern = pattern_of(precision)
    n = precision.shape[-1]
    row, col = pattern.row.long().cpu().numpy(), pattern.col.long().cpu().numpy()
    graph = sp.coo_matrix((np.ones(row.size), (row, col)), shape=(n, n))
    k, labels = csgraph.connected_components(graph, directed=False)
    C = torch.zeros(k, n, dtype=precision.dtype)
    C[torch.from_numpy(labels.astype(np.int64)), torch.arange(n)] = 1.0
    return C.to(precision.device)


class IntrinsicGMRF(SparseDeepCopy, Distribution):
    r"""Intrinsic GMRF: rank-deficient sparse precision with linear constraints spanning its null space.

    See the module docstring for the density, the generalised determinant and the sampler.

    Parameters
    ----------
    loc : torch.Tensor
        ``(..., n)``, any batch shape.
    precision : torch.Tensor
        Sparse COO/CSR ``(n, n)`` symmetric positive semi-definite (both triangles stored).
    constraint_matrix : torch.Tensor, optional
        Dense ``(k, n)`` with rank ``k`` whose rows span the null space of ``precision`` (checked: ``Q Cᵀ ≈ 0``).
        Default: a sum-to-zero row per connected component of the precision's graph (right for ICAR, RW1, graph
        Laplacians; RW2 needs ``[1; t]``).
    constraint_value : torch.Tensor, optional
        ``e`` in ``C x = e``, ``(..., k)``, finite, ``loc``'s dtype and device; default ``C loc`` (the constraint holds
        for the deviations ``x − loc``). Checked always (not only with ``validate_args``), as ``constraint_matrix``.
    backend, ordering : str, optional
        For the sparse Cholesky factorisation of the pinned precision.
    validate_args : bool, optional
        Also checks that a ``value`` given to ``log_prob`` satisfies the constraint (to ``1e-6`` relative).

    Raises
    ------
    TypeError
        ``constraint_matrix`` or ``constraint_value`` not a tensor (a list is refused), or of a non-real /
        non-floating dtype; ``constraint_value`` of another dtype than ``loc``.
    ValueError
        ``constraint_matrix`` not ``(k, n)``, not finite, not of full row rank, or not spanning the null space of
        ``precision``; ``constraint_value`` 0-D, not ``(..., k)``, or not finite.

    Notes
    -----
    Gradients w.r.t. ``precision``'s stored values are exact along changes that keep its null space (changing
    ``tau`` or edge weights of an ICAR, the only changes the model allows); ``rsample`` is reparameterised w.r.t.
    ``loc`` only and refuses a precision that requires grad (as :class:`GMRF`).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions import IntrinsicGMRF
    >>> from sparseprec.structures import rw2
    >>> t = torch.arange(6, dtype=torch.float64)
    >>> d = IntrinsicGMRF(torch.zeros(6, dtype=torch.float64), rw2(6), constraint_matrix=torch.stack([t ** 0, t]))
    >>> x = d.sample((2,))
    >>> torch.allclose(x.sum(-1), torch.zeros(2, dtype=torch.float64), atol=1e-10), d.log_prob(x).shape
    (True, torch.Size([2]))
    """

    has_rsample = True
    arg_constraints = {"loc": constraints.real_vector}

    def __init__(
        self,
        loc: torch.Tensor,
        precision: torch.Tensor,
        *,
        constraint_matrix: torch.Tensor | None = None,
        constraint_value: torch.Tensor | None = None,
        backend: str = "auto",
        ordering: str | None = None,
        validate_args: bool | None = None,
    ):
        precision = check_sparse_matrix(precision, "precision", square=True)
        if precision.dim() != 2:
            raise ValueError(f"precision must be one (n, n) matrix, got shape {tuple(precision.shape)}")
        pattern_of(precision, "precision")  # its index data checked (once per pattern) before the constraints read it
        loc = check_vector(loc, "loc")
        n = precision.shape[-1]
        check_like(loc, "loc", precision, "precision", n)
        C = component_constraints(precision) if constraint_matrix is None else constraint_matrix
        C = self._check_constraints(C, precision)
        if constraint_value is None:
            e = C @ loc.unsqueeze(-1)
        else:
            e = self._check_constraint_value(constraint_value, loc).unsqueeze(-1)
        if e.shape[-2] != C.shape[0]:
            raise ValueError(f"constraint_value must have shape (..., {C.shape[0]}), got {tuple(e.shape[:-1])}")
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], e.shape[:-2])
        self.loc, self.precision = loc.expand(batch_shape + (n,)), precision
        self._n = n
        self.constraint_matrix, self.constraint_value = C, e.squeeze(-1)
        self._backend, self._ordering = backend, ordering
        self._setup_pinning()
        self._factor: CholeskyFactor | None = None
        self._check_null_space()
        super().__init__(batch_shape, torch.Size((n,)), validate_args=validate_args)

    def _check_null_space(self) -> None:
        """Factorise the pinned precision now: it is singular exactly when ``C`` misses part of the null space."""
        message = (
            "the rows of constraint_matrix must span the whole null space of precision (k = "
            f"{self.constraint_matrix.shape[0]} constraints), but the precision pinned at k nodes is singular"
        )
        try:
            factor = self._cholesky()
        except NotPositiveDefiniteError as error:
            raise ValueError(message) from error
        diagonal = factor.diagonal().abs()
        scale = float(self._reduced.detach().values().abs().max())
        if float(diagonal.min()) ** 2 < 100 * self._n * torch.finfo(torch.float64).eps * scale:
            raise ValueError(message + " (a pivot of its Cholesky factor vanishes)")

    @staticmethod
    def _check_constraint_value(e: object, loc: torch.Tensor) -> torch.Tensor:
        """``constraint_value``: a dense float ``(..., k)`` tensor like ``loc``, finite (always checked: a NaN would
        make every sample NaN)."""
        e = check_vector(e, "constraint_value")
        check_same_dtype_device(e, loc, "constraint_value", "loc")
        if not bool(torch.isfinite(e.detach()).all()):
            raise ValueError(f"constraint_value must be finite, got {e.detach()}")
        return e

    @staticmethod
    def _check_constraints(C: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        if not isinstance(C, torch.Tensor):
            raise TypeError(
                f"constraint_matrix must be a dense (k, {Q.shape[-1]}) torch.Tensor, got {type(C).__name__}"
            )
        if C.layout != torch.strided or C.dim() != 2 or C.shape[1] != Q.shape[-1]:
            raise ValueError(
                f"constraint_matrix must be a dense (k, {Q.shape[-1]}) tensor, got a {C.layout} tensor of shape "
                f"{tuple(C.shape)}"
            )
        if C.dtype == torch.bool or C.is_complex():
            raise TypeError(f"constraint_matrix must hold real numbers, got dtype {C.dtype}")
        C = C.to(dtype=Q.dtype, device=Q.device)
        if not bool(torch.isfinite(C.detach()).all()):
            raise ValueError("constraint_matrix must be finite, got a NaN or infinite entry")
        if C.shape[0] == 0 or torch.linalg.matrix_rank(C.detach()) < C.shape[0]:
            raise ValueError(f"constraint_matrix must have full row rank k >= 1, got shape {tuple(C.shape)}")
        QC = sparse_mm(Q.detach(), C.detach().T.contiguous())
        scale = float(pattern_of(Q).kernel_values(Q.detach()).abs().max()) * float(C.detach().abs().max())
        if float(QC.abs().max()) > 1e-8 * max(scale, 1.0) * Q.shape[-1]:
            raise ValueError(
                "the rows of constraint_matrix must span the null space of precision (Q Cᵀ = 0), but |Q Cᵀ| reaches "
                f"{float(QC.abs().max()):.3g}; e.g. RW2 needs the rows 1 and t"
            )
        return C

    def _setup_pinning(self) -> None:
        """Choose the pinned nodes ``S`` and build the pinned precision ``Q_{S̄S̄}``.

        ``S`` comes from a pivoted QR of ``C`` with each column weighted by its node's number of neighbours in ``Q``'s
        graph: ``C[:, S]`` is well conditioned and, for sum-to-zero constraints, ``S`` is the best-connected node of
        each component. That choice matters for guides over the free coordinates (``AffineSubspaceTransform``): the
        pinned node's value is a combination of all the others (minus their mean, for sum-to-zero), which a sparse
        guide represents least well; a well-connected node is the one its neighbours determine best. (BYM2 on the
        Scottish lip cancer data: pinning the most-connected district instead of district 0 moved district 0's
        relative risk under the sparse guide from 3.40 to 4.6; NUTS: 4.5–4.9 over two seeds.)
        """
        C = self.constraint_matrix.detach().cpu().numpy()
        k, n = C.shape
        degree = np.diff(pattern_of(self.precision).crow.long().cpu().numpy()).astype(np.float64)  # neighbours + 1
        _, _, pivots = scipy.linalg.qr(C * degree[None, :], pivoting=True, mode="economic")
        pinned = np.sort(pivots[:k])
        keep = np.setdiff1d(np.arange(n), pinned)
        device = self.precision.device
        self._pinned = torch.from_numpy(pinned).to(device)
        self._keep = torch.from_numpy(keep).to(device)
        pattern = pattern_of(self.precision)

        def reduced_pattern() -> tuple[torch.Tensor, ...]:
            new_index = np.full(n, -1)
            new_index[keep] = np.arange(keep.size)
            row, col = pattern.row.long().cpu().numpy(), pattern.col.long().cpu().numpy()
            positions = np.flatnonzero((new_index[row] >= 0) & (new_index[col] >= 0))
            r, c = new_index[row[positions]], new_index[col[positions]]
            return (
                torch.from_numpy(positions).to(device),
                crow_from_rows(torch.from_numpy(r), keep.size).to(device),
                torch.from_numpy(c.astype(np.int64)).to(device),
            )

        positions, crow, col = pattern.derived(("pinned_pattern", tuple(pinned.tolist())), reduced_pattern)
        values = stored_values(self.precision, pattern).index_select(0, positions)
        self._reduced = sparse_csr_tensor(crow, col, values, (keep.size, keep.size))
        Cs = self.constraint_matrix[:, self._pinned]
        C = self.constraint_matrix
        self._log_det_offset = torch.logdet(C @ C.T) - 2 * torch.linalg.slogdet(Cs).logabsdet

    def _cholesky(self) -> CholeskyFactor:
        if self._factor is None:
            self._factor = cholesky(self._reduced.detach(), backend=self._backend, ordering=self._ordering)
        return self._factor

    @property
    def support(self) -> AffineSubspace:
        """The affine subspace ``{x : C x = e}``; ``biject_to(support)`` maps ``R^{n−k}`` onto it (Pyro, NUTS)."""
        return AffineSubspace(self.constraint_matrix, self.constraint_value, self._pinned)

    @property
    def rank(self) -> int:
        """``n − k``: the dimension of the constrained subspace."""
        return self.event_shape[0] - self.constraint_matrix.shape[0]

    def log_generalized_determinant(self) -> torch.Tensor:
        r""":math:`\log|Q|^*`, exact, differentiable in the precision's values (along null-space-preserving changes)."""
        return sparse_logdet(self._reduced, factor=self._cholesky()) + self._log_det_offset

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(IntrinsicGMRF, _instance)
        batch_shape = torch.Size(batch_shape)
        names = (
            "precision",
            "constraint_matrix",
            "_backend",
            "_ordering",
            "_pinned",
            "_keep",
            "_reduced",
            "_n",
        )
        for name in names:
            setattr(new, name, getattr(self, name))
        new._log_det_offset, new._factor = self._log_det_offset, self._factor
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.constraint_value = self.constraint_value.expand(batch_shape + self.constraint_value.shape[-1:])
        super(IntrinsicGMRF, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # ---- helpers ----------------------------------------------------------------------------------------------------
    def _project(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``x − Cᵀ (C Cᵀ)⁻¹ (C x − target)``: move along the null space onto ``C x = target``."""
        C = self.constraint_matrix
        gap = x @ C.T - target
        return x - torch.linalg.solve(C @ C.T, gap.unsqueeze(-1)).squeeze(-1) @ C

    def _validate_sample(self, value: torch.Tensor) -> None:
        if not isinstance(value, torch.Tensor) or value.shape[-1:] != self.event_shape:
            super()._validate_sample(value)  # torch's message for a wrong type or shape
        gap = (value @ self.constraint_matrix.T - self.constraint_value).detach().abs()
        largest = float(value.detach().abs().max()) if value.numel() else 0.0  # no values (a zero-size batch)
        scale = 1.0 + largest * float(self.constraint_matrix.abs().sum(-1).max())
        if bool((gap > 1e-6 * scale).any()):
            raise ValueError(
                f"value does not satisfy the constraint C x = e of the IntrinsicGMRF: |C x − e| reaches "
                f"{float(gap.max()):.3g}"
            )
        super()._validate_sample(value)

    # ---- torch.distributions API ------------------------------------------------------------------------------------
    @property
    def mean(self) -> torch.Tensor:
        return self._project(self.loc, self.constraint_value)

    @property
    def mode(self) -> torch.Tensor:
        return self.mean

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        quadratic = quadratic_form(self.precision, value - self.loc, self.batch_shape + self.event_shape)
        return -0.5 * (quadratic + self.rank * _LOG_2PI) + 0.5 * self.log_generalized_determinant()

    def entropy(self) -> torch.Tensor:
        half = 0.5 * self.rank * (1.0 + _LOG_2PI) - 0.5 * self.log_generalized_determinant()
        return half.expand(self.batch_shape)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        if torch.is_grad_enabled() and self.precision.requires_grad:
            raise NotImplementedError(
                "IntrinsicGMRF.rsample is reparameterised w.r.t. loc only and precision requires grad; use sample() "
                "or detach the precision"
            )
        factor = self._cholesky()
        shape = self._extended_shape(sample_shape)
        eps = _standard_normal(shape[:-1] + (self._keep.numel(),), dtype=self.loc.dtype, device=self.loc.device)
        x = eps.new_zeros(shape)
        x[..., self._keep] = sample_with_factor(factor, eps)  # the pinned model: x_S = 0
        target = self.constraint_value - self.loc @ self.constraint_matrix.T
        return self.loc + self._project(x, target)

    @property
    def variance(self) -> torch.Tensor:
        r"""Constrained marginal variances :math:`\mathrm{diag}(P \Sigma_0 P^\top)` (exact; no gradient to ``Q``)."""
        if torch.is_grad_enabled() and self.precision.requires_grad:
            warnings.warn("IntrinsicGMRF.variance carries no gradient w.r.t. the precision", stacklevel=2)
        factor = self._cholesky()
        n = self.event_shape[0]
        C = self.constraint_matrix.detach()
        s0 = C.new_zeros(n)
        s0[self._keep] = diag_inverse(factor)
        B = C.new_zeros(n, C.shape[0])  # Σ₀ Cᵀ
        B[self._keep] = factor.solve(C[:, self._keep].T.contiguous())
        M = torch.linalg.inv(C @ C.T)
        K = M @ (C @ B) @ M
        variance = s0 - 2 * ((B @ M) * C.T).sum(-1) + ((C.T @ K) * C.T).sum(-1)
        return variance.expand(self.batch_shape + self.event_shape)

    @property
    def stddev(self) -> torch.Tensor:
        return self.variance.sqrt()

    @property
    def precision_matrix(self) -> torch.Tensor:
        return self.precision

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_factor"] = None
        # derived from precision and constraint_matrix (and not a leaf when the precision requires grad): rebuilt
        for name in ("_reduced", "_log_det_offset"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "_reduced" not in state:
            self._setup_pinning()


class ICAR(IntrinsicGMRF):
    r"""The intrinsic CAR (Besag) model :math:`Q = \tau (D - W)` with a sum-to-zero constraint per connected component.

    A convenience for ``IntrinsicGMRF(loc, sparseprec.structures.icar(adjacency, tau))``; differentiable in ``tau``
    (through the log-density's :math:`\tfrac{n-k}{2}\log\tau`). Isolated nodes are components of their own and are
    pinned to ``loc`` (model them with an unstructured effect, as BYM2 does).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions import ICAR
    >>> from sparseprec.structures import adjacency_from_pairs
    >>> d = ICAR(adjacency_from_pairs([(0, 1), (1, 2), (2, 0), (2, 3)]), tau=2.0)
    >>> d.rank, d.sample().sum().abs() < 1e-10
    (3, tensor(True))
    """

    def __init__(
        self,
        adjacency: object,
        tau: float | torch.Tensor = 1.0,
        *,
        loc: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float64,
        validate_args: bool | None = None,
    ):
        precision = icar(adjacency, tau, dtype=dtype)
        if loc is None:
            loc = torch.zeros(precision.shape[-1], dtype=precision.dtype, device=precision.device)
        super().__init__(loc, precision, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return super().expand(batch_shape, _instance=self._get_checked_instance(ICAR, _instance))

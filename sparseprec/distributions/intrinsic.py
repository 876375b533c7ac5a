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

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import torch
from torch.distributions import constraints

from .._validation import broadcast_shapes, check_same_dtype_device
from ..cholesky import SparseCholesky
from ..errors import NotPositiveDefiniteError
from ..ops import sparse_mm
from ..pattern import SparsePattern, crow_from_rows, pattern_of
from ..structures import icar
from ._checks import check_vector
from ._precision import (
    SharedPattern,
    SparsePrecisionGaussian,
    batched_csr,
    check_precision,
    check_settings,
    shared_pattern,
)
from .subspace import AffineSubspace, constraint_gap, log_volume, project

__all__ = ["IntrinsicGMRF", "ICAR", "component_constraints"]


def component_constraints(precision: torch.Tensor) -> torch.Tensor:
    """Sum-to-zero constraint rows, one per connected component of ``precision``'s sparsity graph, ``(k, n)`` (for a
    batch on one pattern, of the shared pattern)."""
    pattern = _element_pattern(check_precision(precision, "precision"))
    n = precision.shape[-1]
    row, col = pattern.row.long().cpu().numpy(), pattern.col.long().cpu().numpy()
    graph = sp.coo_matrix((np.ones(row.size), (row, col)), shape=(n, n))
    k, labels = csgraph.connected_components(graph, directed=False)
    C = torch.zeros(k, n, dtype=precision.dtype)
    C[torch.from_numpy(labels.astype(np.int64)), torch.arange(n)] = 1.0
    return C.to(precision.device)


def _element_pattern(precision: torch.Tensor) -> SparsePattern:
    """The pattern of one element of a (possibly batched) precision."""
    return pattern_of(precision, "precision") if precision.dim() == 2 else shared_pattern(precision).element_pattern()


class IntrinsicGMRF(SparsePrecisionGaussian):
    r"""Intrinsic GMRF: rank-deficient sparse precision with linear constraints spanning its null space.

    See the module docstring for the density, the generalised determinant and the sampler.

    Parameters
    ----------
    loc : torch.Tensor
        ``(..., n)``; its batch dimensions broadcast with the precision's and ``constraint_value``'s.
    precision : torch.Tensor
        Sparse COO/CSR ``(n, n)`` symmetric positive semi-definite (both triangles stored), or a batch
        ``(*pbatch, n, n)`` of them on one shared pattern and with one null space (e.g. ``rw1(n, tau=tau)`` with
        ``tau`` of shape ``(4,)``): the constraint is shared by the batch, each element is factorised once.
    constraint_matrix : torch.Tensor, optional
        Dense ``(k, n)`` with rank ``k`` whose rows span the null space of ``precision`` (checked: :math:`Q C^\top
        \approx 0`). Default: a sum-to-zero row per connected component of the precision's graph (right for ICAR, RW1,
        graph Laplacians; RW2 needs ``[1; t]``).
    constraint_value : torch.Tensor, optional
        ``e`` in ``C x = e``, ``(..., k)``, finite, ``loc``'s dtype and device; default ``C loc`` (the constraint holds
        for the deviations ``x − loc``). Checked always (not only with ``validate_args``), as ``constraint_matrix``.
    cholesky : sparseprec.cholesky.SparseCholesky, optional
        How the pinned precision is factorised (default ``SparseCholesky()``).
    validate_args : bool, optional
        Also checks that a ``value`` given to ``log_prob`` satisfies the constraint (to ``1e-6`` relative).

    Raises
    ------
    TypeError
        ``constraint_matrix`` or ``constraint_value`` not a tensor (a list is refused), or of a non-real /
        non-floating dtype; ``constraint_value`` of another dtype than ``loc``.
    ValueError
        ``constraint_matrix`` not ``(k, n)``, not finite, not of full row rank, or not spanning the null space of
        ``precision`` (of every element of a batch); ``constraint_value`` 0-D, not ``(..., k)``, or not finite; a
        batched ``precision`` whose elements store different patterns; batch shapes that do not broadcast.

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

    arg_constraints = {"loc": constraints.real_vector}

    def __init__(
        self,
        loc: torch.Tensor,
        precision: torch.Tensor,
        *,
        constraint_matrix: torch.Tensor | None = None,
        constraint_value: torch.Tensor | None = None,
        cholesky: SparseCholesky | None = None,
        validate_args: bool | None = None,
    ):
        batch_shape = self._set_precision(loc, precision)
        n = self.precision.shape[-1]
        C = component_constraints(self.precision) if constraint_matrix is None else constraint_matrix
        C = self._check_constraints(C, self.precision)
        if constraint_value is None:
            e = C @ self.loc.unsqueeze(-1)
        else:
            e = self._check_constraint_value(constraint_value, self.loc).unsqueeze(-1)
        if e.shape[-2] != C.shape[0]:
            raise ValueError(f"constraint_value must have shape (..., {C.shape[0]}), got {tuple(e.shape[:-1])}")
        try:
            batch_shape = broadcast_shapes(batch_shape, e.shape[:-2])
        except RuntimeError as error:
            raise ValueError(
                f"the batch shapes of loc and precision {tuple(batch_shape)} and of constraint_value "
                f"{tuple(e.shape[:-2])} do not broadcast together"
            ) from error
        self.loc = self.loc.expand(batch_shape + (n,))
        self._n = n
        self.constraint_matrix, self.constraint_value = C, e.squeeze(-1)
        self.cholesky_settings, _ = check_settings(cholesky, None)
        self._setup_pinning()
        self._check_null_space()
        super().__init__(batch_shape, torch.Size((n,)), validate_args=validate_args)

    def _check_null_space(self) -> None:
        """Factorise the pinned precision now: it is singular exactly when ``C`` misses part of the null space."""
        message = (
            "the rows of constraint_matrix must span the whole null space of precision (k = "
            f"{self.constraint_matrix.shape[0]} constraints), but the precision pinned at k nodes is singular"
        )
        try:
            factors = self._cholesky()
        except NotPositiveDefiniteError as error:
            raise ValueError(message) from error
        smallest = min(float(factor.diagonal().abs().min()) for factor in factors)
        scale = float(self._factored_values().detach().abs().max())
        if smallest**2 < 100 * self._n * torch.finfo(torch.float64).eps * scale:
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
        with torch.no_grad():
            shared = shared_pattern(Q)
            Q_flat = Q if Q.dim() <= 3 else shared.flat(Q.values().reshape(shared.size, shared.nnz))
            columns = C.T.contiguous() if Q_flat.dim() == 2 else C.T.expand(Q_flat.shape[0], -1, -1).contiguous()
            QC = sparse_mm(Q_flat.detach(), columns)
            scale = float(pattern_of(Q_flat).kernel_values(Q_flat.detach()).abs().max()) * float(C.abs().max())
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
        pattern = _element_pattern(self.precision)
        degree = np.diff(pattern.crow.long().cpu().numpy()).astype(np.float64)  # neighbours + 1
        _, _, pivots = scipy.linalg.qr(C * degree[None, :], pivoting=True, mode="economic")
        pinned = np.sort(pivots[:k])
        keep = np.setdiff1d(np.arange(n), pinned)
        device = self.precision.device
        self._pinned = torch.from_numpy(pinned).to(device)
        self._keep = torch.from_numpy(keep).to(device)

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
        self._positions = positions
        self._pinned_shared = SharedPattern(crow, col, int(keep.size), self._pbatch)

    # ---- the pinned precision: what is factorised ----------------------------------------------------------------
    @property
    def _factored_pattern(self) -> SharedPattern:
        return self._pinned_shared

    def _factored_values(self) -> torch.Tensor:
        return self._precision_values().index_select(1, self._positions)

    @property
    def _reduced(self) -> torch.Tensor:
        r"""The pinned precision :math:`Q_{\bar S \bar S}`, CSR ``(*pbatch, n − k, n − k)``, differentiable."""
        shared = self._pinned_shared
        values = self._factored_values().reshape(self._pbatch + (shared.nnz,))
        return batched_csr(shared.crow, shared.col, values, shared.n)

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
        return self._factored_logdet() - 2 * log_volume(self.constraint_matrix, self._pinned)

    def _log_det_precision(self) -> torch.Tensor:
        return self.log_generalized_determinant()

    @property
    def _dimension(self) -> int:
        return self.rank

    def _expand_state(self, new: SparsePrecisionGaussian, batch_shape: torch.Size) -> None:
        super()._expand_state(new, batch_shape)
        new.constraint_value = self.constraint_value.expand(batch_shape + self.constraint_value.shape[-1:])

    # ---- helpers ----------------------------------------------------------------------------------------------------
    def _validate_sample(self, value: torch.Tensor) -> None:
        if not isinstance(value, torch.Tensor) or value.shape[-1:] != self.event_shape:
            super()._validate_sample(value)  # torch's message for a wrong type or shape
        gap, norm = constraint_gap(self.constraint_matrix.detach(), self.constraint_value.detach(), value.detach())
        largest = float(value.detach().abs().max()) if value.numel() else 0.0  # no values (a zero-size batch)
        scale = 1.0 + largest * float(norm)
        if bool((gap > 1e-6 * scale).any()):
            raise ValueError(
                f"value does not satisfy the constraint C x = e of the IntrinsicGMRF: |C x − e| reaches "
                f"{float(gap.max()):.3g}"
            )
        super()._validate_sample(value)

    # ---- torch.distributions API ------------------------------------------------------------------------------------
    @property
    def mean(self) -> torch.Tensor:
        return project(self.constraint_matrix, self.loc, self.constraint_value)

    def _draw(self, shape: torch.Size) -> torch.Tensor:
        # the pinned model (x_S = 0, x_S̄ ~ N(0, Q_S̄S̄⁻¹)) moved onto C x = e − C μ
        x = self.loc.new_zeros(shape + self.event_shape)
        x[..., self._keep] = self._factor_draw(shape, self._keep.numel())
        target = self.constraint_value - self.loc @ self.constraint_matrix.T
        return project(self.constraint_matrix, x, target)

    @property
    def variance(self) -> torch.Tensor:
        r"""Constrained marginal variances :math:`\mathrm{diag}(P \Sigma_0 P^\top)` (exact; no gradient to ``Q``)."""
        self._warn_detached("variance")
        n, keep = self.event_shape[0], self._keep
        C = self.constraint_matrix.detach()
        M = torch.linalg.inv(C @ C.T)
        pinned_variances = self._factor_diag_inverse().reshape(-1, keep.numel())
        variances = []
        for factor, s in zip(self._cholesky(), pinned_variances, strict=True):
            s0 = C.new_zeros(n)
            s0[keep] = s
            B = C.new_zeros(n, C.shape[0])  # Σ₀ Cᵀ
            B[keep] = factor.solve(C[:, keep].T.contiguous())
            K = M @ (C @ B) @ M
            variances.append(s0 - 2 * ((B @ M) * C.T).sum(-1) + ((C.T @ K) * C.T).sum(-1))
        variance = torch.stack(variances).reshape(self._pbatch + (n,))
        return variance.expand(self.batch_shape + self.event_shape)


class ICAR(IntrinsicGMRF):
    r"""The intrinsic CAR (Besag) model :math:`Q = \tau (D - W)` with a sum-to-zero constraint per connected component.

    A convenience for ``IntrinsicGMRF(loc, sparseprec.structures.icar(adjacency, tau))``; differentiable in ``tau``
    (through the log-density's :math:`\tfrac{n-k}{2}\log\tau`). Isolated nodes are components of their own and are
    pinned to ``loc`` (model them with an unstructured effect, as BYM2 does). ``adjacency`` is any graph
    :func:`sparseprec.structures.as_adjacency` takes: a symmetric 0/1 matrix, an edge list, a libpysal ``W`` (e.g.
    ``ICAR(Queen.from_dataframe(gdf, use_index=False), tau)``) or ``Graph``, a networkx graph.

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

r"""What the precision-parameterised distributions (``GMRF``, ``IntrinsicGMRF``) share: a batch of sparse precisions on
one shared pattern, the per-element Cholesky factors, and the base class :class:`SparsePrecisionGaussian`.

A precision is one sparse ``(n, n)`` matrix or a batch ``(*pbatch, n, n)`` whose elements share one sparsity pattern
(CSR with equal row pointers and column indices in every element, e.g. expanded index tensors as the builders of
:mod:`sparseprec.structures` return for batched hyper-parameters; or a 3-D COO tensor whose elements store the same
positions). The batch's stored values form a ``(B, nnz)`` array, ``B = prod(pbatch)``: element ``b``'s precision is
the ``(n, n)`` CSR matrix of the shared pattern with values ``values[b]``, taken differentiably from the batch, so a
gradient w.r.t. any element's log-determinant reaches the batched values.

Shapes follow torch's ``MultivariateNormal``: the distribution's batch shape is the broadcast of ``loc.shape[:-1]``
and ``pbatch``; a precision element serves every batch index that broadcasts onto it (``loc`` ``(3, 1, n)`` with a
``(4, n, n)`` precision: batch ``(3, 4)``, element ``j`` serves ``[:, j]``). Per-element work (factorisations,
log-determinants, solves) runs once per element of ``pbatch``, not once per batch index.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch.distributions import Distribution, constraints
from torch.distributions.utils import _standard_normal

from .._validation import broadcast_shapes, check_sparse_matrix, check_tensor, describe
from ..cholesky import CholeskyFactor, ExactLogDet, SLQLogDet, SparseCholesky, diag_inverse, sparse_logdet
from ..errors import NotPositiveDefiniteError
from ..ops import sparse_csr_tensor, sparse_mm
from ..ops._values import read_once, source_values, stored_values
from ..pattern import SparsePattern, crow_from_rows, pattern_of, rows_from_crow
from ._checks import check_like, check_vector
from ._copy import SparseDeepCopy

__all__ = [
    "check_settings",
    "SharedPattern",
    "SparsePrecisionGaussian",
    "check_precision",
    "shared_pattern",
    "precision_values",
    "batched_csr",
    "to_blocks",
    "quadratic_form",
    "sample_with_factor",
    "EachMatrix",
    "LOG_2PI",
]

LOG_2PI = math.log(2 * math.pi)
_UNBATCHED = torch.Size(())


# ---- a batch of precisions on one pattern ------------------------------------------------------------------------
def check_settings(cholesky: object, logdet: object) -> tuple[SparseCholesky, ExactLogDet | SLQLogDet]:
    """The distribution's factorisation and log-det estimator, from the ``cholesky=`` and ``logdet=`` arguments.

    ``None`` means the default (``SparseCholesky()``; the exact log-det with that factorisation). An ``ExactLogDet``
    given without ``cholesky`` brings its own settings; given with a different one it is refused (the log-det reuses
    the distribution's factors). ``TypeError`` for anything that is not a settings object (the former strings
    ``"cholesky"``/``"slq"``/``"auto"`` included, with the replacement named)."""
    if isinstance(logdet, str):
        raise TypeError(
            f"logdet must be a log-det estimator, got the string {logdet!r}: pass sparseprec.cholesky.ExactLogDet() "
            "(exact, the default) or sparseprec.cholesky.SLQLogDet(num_probes=..., lanczos_steps=...) (stochastic)"
        )
    if logdet is not None and not isinstance(logdet, (ExactLogDet, SLQLogDet)):
        raise TypeError(f"logdet must be ExactLogDet, SLQLogDet or None, got {type(logdet).__name__} {logdet!r}")
    if isinstance(cholesky, str):
        raise TypeError(
            f"cholesky must be a sparseprec.cholesky.SparseCholesky, got the string {cholesky!r}: pass "
            f"SparseCholesky(backend={cholesky!r})"
        )
    if cholesky is not None and not isinstance(cholesky, SparseCholesky):
        raise TypeError(f"cholesky must be a SparseCholesky or None, got {type(cholesky).__name__} {cholesky!r}")
    if isinstance(logdet, ExactLogDet):
        if cholesky is not None and cholesky != logdet.cholesky:
            raise ValueError(
                f"logdet=ExactLogDet(cholesky={logdet.cholesky}) and cholesky={cholesky} differ: the exact log-det "
                "reuses the distribution's factors; give one of them"
            )
        cholesky = logdet.cholesky
    cholesky = SparseCholesky() if cholesky is None else cholesky
    logdet = ExactLogDet(cholesky) if logdet is None else logdet
    return cholesky, logdet


class SharedPattern(NamedTuple):
    """Index data of a batch of ``(n, n)`` sparse matrices with one sparsity pattern.

    ``crow`` ``(n + 1,)`` and ``col`` ``(nnz,)`` are the CSR index data of one element (row-major, sorted columns),
    ``batch_shape`` the precision's batch shape.
    """

    crow: torch.Tensor
    col: torch.Tensor
    n: int
    batch_shape: torch.Size

    @property
    def size(self) -> int:
        """``B``: the number of matrices in the batch (1 for an unbatched precision)."""
        return math.prod(self.batch_shape)

    @property
    def nnz(self) -> int:
        return self.col.numel()

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The element with stored values ``values`` ``(nnz,)``: an ``(n, n)`` CSR matrix, differentiable w.r.t.
        them (and a cache hit for the pattern: ``crow`` and ``col`` are the same tensors every time)."""
        return sparse_csr_tensor(self.crow, self.col, values, (self.n, self.n))

    def flat(self, values: torch.Tensor) -> torch.Tensor:
        """The whole batch as one ``(B, n, n)`` CSR tensor on expanded index data (for :func:`sparse_mm`)."""
        B, n = values.shape[0], self.n
        return sparse_csr_tensor(self.crow.expand(B, n + 1), self.col.expand(B, self.nnz), values, (B, n, n))

    def element_pattern(self) -> SparsePattern:
        """The :class:`~sparseprec.pattern.SparsePattern` of one element (cached with its index data)."""
        values = torch.zeros(self.nnz, dtype=torch.float64, device=self.col.device)
        return pattern_of(torch.sparse_csr_tensor(self.crow, self.col, values, (self.n, self.n)))


def check_precision(Q: object, name: str) -> torch.Tensor:
    """A sparse square floating-point ``(n, n)``/``(b, n, n)`` COO or CSR tensor, or ``(*batch, n, n)`` CSR."""
    check_tensor(Q, name)
    if Q.layout == torch.sparse_csr and Q.dim() > 3:
        if Q.dense_dim() != 0:
            raise ValueError(f"{name} must store one scalar per entry (dense_dim 0), got a hybrid {describe(Q)}")
        if Q.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{name} must have dtype torch.float32 or torch.float64, got {Q.dtype}")
        if Q.shape[-1] != Q.shape[-2]:
            raise ValueError(f"{name} must be square, got shape {tuple(Q.shape)}")
        return Q
    if Q.layout == torch.sparse_coo and Q.dim() > 3:
        raise ValueError(
            f"a sparse COO {name} must have shape (n, n) or (b, n, n), got shape {tuple(Q.shape)}; give more batch "
            "dimensions as a CSR tensor"
        )
    return check_sparse_matrix(Q, name, square=True)


def shared_pattern(Q: torch.Tensor, name: str = "precision") -> SharedPattern:
    """The pattern shared by every element of a (possibly batched) sparse precision ``Q`` (checked by
    :func:`check_precision`); ``ValueError`` naming the shapes when two elements store different positions.

    The index data is checked once per pattern (:func:`sparseprec.pattern.pattern_of`) and the per-element pattern
    is cached with it.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions._precision import shared_pattern
    >>> Q = torch.stack([torch.eye(3), 2 * torch.eye(3)]).to_sparse_csr()
    >>> s = shared_pattern(Q)
    >>> s.batch_shape, s.n, s.nnz
    (torch.Size([2]), 3, 3)
    """
    n = Q.shape[-1]
    if Q.dim() == 2:
        pattern = pattern_of(Q, name)
        return SharedPattern(pattern.crow, pattern.col, n, torch.Size(()))
    if Q.dim() > 3:  # only CSR gets here: one (B, n, n) index template of the batch
        B = math.prod(Q.shape[:-2])
        crow, col = Q.crow_indices().reshape(B, n + 1), Q.col_indices().reshape(B, -1)
        with torch.no_grad():
            values = Q.values().reshape(B, -1)
        flat = torch.sparse_csr_tensor(crow, col, values, (B, n, n), check_invariants=False)
        one = shared_pattern(flat, name)
        return one._replace(batch_shape=torch.Size(Q.shape[:-2]))
    if Q.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one matrix, got a batch of shape {tuple(Q.shape)}")
    pattern = pattern_of(Q, name)
    crow, col = pattern.derived(("shared_element_pattern",), lambda: _element_pattern(pattern, tuple(Q.shape), name))
    return SharedPattern(crow, col, n, torch.Size(Q.shape[:1]))


def _element_pattern(pattern: SparsePattern, shape: tuple[int, ...], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(crow, col)`` of element 0 of a ``(B, n, n)`` kernel pattern, after checking every element has it."""
    B, n = shape[0], shape[-1]
    crow = pattern.crow.long()
    counts = crow[n::n] - crow[:-1:n]  # stored entries per element
    differs = torch.nonzero(counts != counts[0]).reshape(-1)
    if differs.numel():
        b = int(differs[0])
        raise ValueError(
            f"a batched {name} must store one pattern shared by the batch, but in {name} of shape {shape} element {b} "
            f"stores {int(counts[b])} entries and element 0 stores {int(counts[0])}"
        )
    per = int(counts[0])
    offset = (torch.arange(B, device=crow.device) * n)[:, None]
    rows = pattern.row.long().reshape(B, per) - offset
    cols = pattern.col.long().reshape(B, per) - offset
    same = (rows == rows[:1]).all(1) & (cols == cols[:1]).all(1)
    if not bool(same.all()):
        b = int(torch.nonzero(~same)[0, 0])
        raise ValueError(
            f"a batched {name} must store one pattern shared by the batch, but in {name} of shape {shape} element {b} "
            "stores other positions than element 0 (give each element the same pattern, explicit zeros included)"
        )
    return crow_from_rows(rows[0], n).to(pattern.col.dtype), cols[0].to(pattern.col.dtype)


def precision_values(Q: torch.Tensor, shared: SharedPattern) -> torch.Tensor:
    """Stored values of every element, ``(B, nnz)`` in the shared (row-major) order, differentiable w.r.t. ``Q``."""
    if Q.dim() > 3:
        source = source_values(Q)  # built by sparseprec.sparse_csr_tensor: its values, no sparse gradient
        return (Q.values() if source is None else source).reshape(shared.size, shared.nnz)
    return stored_values(Q, pattern_of(Q)).reshape(shared.size, shared.nnz)


def batched_csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """The CSR tensor ``(*batch, n, n)`` with values ``(*batch, nnz)`` on one pattern (expanded index data),
    differentiable w.r.t. the values."""
    batch = values.shape[:-1]
    return sparse_csr_tensor(crow.expand(batch + (n + 1,)), col.expand(batch + (col.numel(),)), values, batch + (n, n))


class EachMatrix(constraints.Constraint):
    """A matrix constraint checked on every element of a batched precision (on one shared pattern).

    ``check`` returns one flag per element, shape ``value.shape[:-2]``, as torch's matrix constraints do.
    """

    event_dim = 2

    def __init__(self, base: constraints.Constraint):
        self.base = base
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:
        if value.dim() == 2:
            return self.base.check(value)
        shared = shared_pattern(value)
        with torch.no_grad():
            values = precision_values(value, shared)
        flags = [self.base.check(shared.matrix(v)) for v in values]
        return torch.stack(flags).reshape(shared.batch_shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base!r})"


# ---- batch indices onto precision elements -------------------------------------------------------------------------
def to_blocks(x: torch.Tensor, pbatch: torch.Size) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``x`` ``(*lead, *T, m)`` (``pbatch`` broadcastable to ``T``) as blocks ``(B, m, S)``: block ``b`` holds, as
    columns, every vector of ``x`` that precision element ``b`` serves. Returns the blocks and ``restore``, which maps
    ``(B, m', S)`` back to ``(*lead, *T, m')`` and ``(B, S)`` to ``(*lead, *T)``."""
    k, m = len(pbatch), x.shape[-1]
    T, lead = x.shape[x.dim() - 1 - k : -1], x.shape[: x.dim() - 1 - k]
    x = x.reshape((math.prod(lead),) + tuple(T) + (m,))
    keep = [1 + j for j in range(k) if pbatch[j] != 1]  # dims that index precision elements
    move = [0] + [1 + j for j in range(k) if pbatch[j] == 1]  # dims that broadcast: columns of a block
    sizes = x.shape
    S = math.prod(sizes[d] for d in move)
    blocks = x.permute(keep + [k + 1] + move).reshape(math.prod(pbatch), m, S)

    def restore(y: torch.Tensor) -> torch.Tensor:
        event = tuple(y.shape[1:-1])
        e = len(event)
        y = y.reshape([sizes[d] for d in keep] + list(event) + [sizes[d] for d in move])
        position = {d: i for i, d in enumerate(keep)} | {d: len(keep) + e + i for i, d in enumerate(move)}
        order = [position[d] for d in range(k + 1)] + [len(keep) + i for i in range(e)]
        return y.permute(order).reshape(tuple(lead) + tuple(T) + event)

    return blocks, restore


def quadratic_form(
    Q: torch.Tensor, r: torch.Tensor, shape: torch.Size, pbatch: torch.Size = _UNBATCHED
) -> torch.Tensor:
    r""":math:`r^\top Q_b r` along the last dimension of ``r`` broadcast to ``shape`` (``(..., n)``), ``Q_b`` the
    precision element serving each vector: one (batched) sparse product for all of them; result ``shape[:-1]``,
    differentiable w.r.t. ``r`` and ``Q``'s stored values. ``Q`` is ``(n, n)`` or ``(B, n, n)`` (the flattened
    ``pbatch``)."""
    r = r.expand(broadcast_shapes(r.shape, shape))
    blocks, restore = to_blocks(r, pbatch)
    if Q.dim() == 2:
        products = sparse_mm(Q, blocks[0]).unsqueeze(0)
    else:
        products = sparse_mm(Q, blocks.contiguous())
    return restore((blocks * products).sum(1))


def sample_with_factor(factor: CholeskyFactor, columns: torch.Tensor) -> torch.Tensor:
    r""":math:`P^\top L^{-\top} \varepsilon` for standard normal columns ``(m, S)`` and a factor :math:`Q_{pp} = L
    L^\top`: each column a draw from :math:`N(0, Q^{-1})` (no gradient)."""
    permuted = factor.solve_Lt(columns.contiguous())  # L⁻ᵀ ε, permuted order
    x = torch.empty_like(permuted)
    x[factor.perm] = permuted
    return x


# ---- the base class --------------------------------------------------------------------------------------------
class SparsePrecisionGaussian(SparseDeepCopy, Distribution):
    r"""Base of the Gaussians given by a sparse (possibly batched) precision: ``GMRF`` and ``IntrinsicGMRF``.

    .. math::

        \log p(x) = -\tfrac12 (x-\mu)^\top Q (x-\mu) + \tfrac12 \log|Q| - \tfrac r2 \log 2\pi ,

    with :math:`r` the dimension of the support and :math:`\log|Q|` the (generalised) log-determinant, both given by
    the subclass (:meth:`_log_det_precision`, :attr:`_dimension`). The subclass names the matrices it factorises
    (:meth:`_factored_values` on :attr:`_factored_pattern`: the precision itself for a GMRF, the pinned precision for
    an intrinsic one); this class factorises each element once, shares the factors with ``expand``, drops them when
    pickled, and writes the quadratic form, ``log_prob``, ``entropy``, the sampler's triangular solves, the batching,
    ``expand``, ``repr`` and the guards once.
    """

    support = constraints.real_vector
    has_rsample = True

    # ---- set-up (called by the subclasses' __init__) --------------------------------------------------------------
    def _set_precision(self, loc: object, precision: object) -> torch.Size:
        """Check and store ``loc`` (expanded to the batch) and ``precision``; return the batch shape."""
        precision = check_precision(precision, "precision")
        shared = shared_pattern(precision)  # index data checked (once per pattern) before the constraints read it
        loc = check_vector(loc, "loc")
        n = precision.shape[-1]
        check_like(loc, "loc", precision, "precision", n)
        try:
            batch_shape = broadcast_shapes(loc.shape[:-1], shared.batch_shape)
        except RuntimeError as error:  # torch's message names no argument
            raise ValueError(
                f"the batch shapes of loc {tuple(loc.shape)} and precision {tuple(precision.shape)} do not broadcast "
                "together"
            ) from error
        self.loc, self.precision, self._shared = loc.expand(batch_shape + (n,)), precision, shared
        self._factor: tuple[CholeskyFactor, ...] | None = None
        return batch_shape

    @property
    def _pbatch(self) -> torch.Size:
        return self._shared.batch_shape

    @property
    def _precision_operand(self) -> torch.Tensor:
        """The precision as the ops take it: ``precision`` itself, or — when it requires grad and was not built by
        sparseprec's constructors (a user's leaf tensor) — one read of its values kept for this distribution
        (:func:`sparseprec.ops._values.read_once`), so that the log-determinant, the quadratic form and conditioning
        sum their gradients densely and the precision's sparse gradient is formed once, not summed by torch."""
        Q = self.precision
        if not (Q.requires_grad and torch.is_grad_enabled()) or source_values(Q) is not None:
            return Q
        operand = self.__dict__.get("_operand")
        if operand is None:
            if Q.dim() > 3:  # one torch values() read; torch sums two gradients of such a tensor wrongly
                operand = sparse_csr_tensor(Q.crow_indices(), Q.col_indices(), Q.values(), Q.shape)
            else:
                operand = read_once(Q, pattern_of(Q, "precision"))
            self._operand = operand
        return operand

    def _precision_values(self) -> torch.Tensor:
        """``(B, nnz)`` stored values of the precision's elements, differentiable."""
        return precision_values(self._precision_operand, self._shared)

    def _precision_diagonal(self) -> torch.Tensor:
        """``diag(Q)`` of every element, ``pbatch + (n,)``, from the stored entries (differentiable; zero where no
        diagonal entry is stored)."""
        shared = self._shared
        rows = rows_from_crow(shared.crow, shared.nnz)
        on = torch.nonzero(rows == shared.col.long()).reshape(-1)
        values = self._precision_values().index_select(1, on)
        diagonal = values.new_zeros(shared.size, shared.n).index_add(1, rows[on], values)
        return diagonal.reshape(self._pbatch + (shared.n,))

    def _flat_precision(self) -> torch.Tensor:
        """The precision as an operand of :func:`sparse_mm`: ``(n, n)`` or ``(B, n, n)``."""
        if self.precision.dim() <= 3:
            return self._precision_operand
        return self._shared.flat(self._precision_values())

    # ---- what a subclass provides ---------------------------------------------------------------------------------
    cholesky_settings: SparseCholesky
    """How the precision elements are factorised (a :class:`sparseprec.cholesky.SparseCholesky`)."""

    @property
    def _factored_pattern(self) -> SharedPattern:
        return self._shared

    def _factored_values(self) -> torch.Tensor:
        return self._precision_values()

    @property
    def _dimension(self) -> int:
        return self.event_shape[0]

    def _log_det_precision(self) -> torch.Tensor:
        raise NotImplementedError

    # ---- factors --------------------------------------------------------------------------------------------------
    def _factored_matrices(self) -> list[torch.Tensor]:
        """The ``(m, m)`` matrices factorised, one per precision element, differentiable w.r.t. the precision."""
        shared, values = self._factored_pattern, self._factored_values()
        if shared is self._shared and self.precision.dim() == 2:
            return [self._precision_operand]  # the matrix itself (its own layout and gradient)
        return [shared.matrix(v) for v in values.unbind(0)]

    def _cholesky(self) -> tuple[CholeskyFactor, ...]:
        """One sparse Cholesky factor per precision element (computed once; the symbolic analysis is cached per
        pattern, so every element after the first refactorises numerically only)."""
        if self._factor is None:
            with torch.no_grad():
                matrices = self._factored_matrices()
            self._factor = tuple(self.cholesky_settings.factor(M) for M in matrices)
        return self._factor

    def _factor_check(self) -> None:
        """Factorise now (validation): a precision that is not positive definite raises ``ValueError``."""
        try:
            self._cholesky()
        except NotPositiveDefiniteError as error:
            raise ValueError(f"Expected parameter precision to be positive definite: {error}") from error

    def _factored_logdet(self) -> torch.Tensor:
        r""":math:`\log\det` of every factorised matrix, shape ``pbatch``, exact, with gradient w.r.t. its values."""
        factors = self._cholesky()
        terms = [sparse_logdet(M, factor=f) for M, f in zip(self._factored_matrices(), factors, strict=True)]
        return torch.stack(terms).reshape(self._pbatch)

    def _factor_draw(self, shape: torch.Size, m: int) -> torch.Tensor:
        r"""Draws of :math:`N(0, M_b^{-1})` of shape ``shape + (m,)`` (``shape`` ends with the batch shape), ``M_b``
        the factorised matrix serving each draw."""
        factors = self._cholesky()
        eps = _standard_normal(shape + (m,), dtype=self.loc.dtype, device=self.loc.device)
        blocks, restore = to_blocks(eps, self._pbatch)
        return restore(torch.stack([sample_with_factor(f, b) for f, b in zip(factors, blocks, strict=True)]))

    def _factor_diag_inverse(self) -> torch.Tensor:
        """``diag`` of every factorised matrix's inverse, ``pbatch + (m,)`` (selected inversion; no gradient)."""
        diagonals = [diag_inverse(f) for f in self._cholesky()]
        return torch.stack(diagonals).reshape(self._pbatch + diagonals[0].shape)

    # ---- shared pieces of the API ---------------------------------------------------------------------------------
    def _quadratic(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`(x-\mu)^\top Q (x-\mu)`, shape of ``value``'s batch broadcast with the distribution's."""
        return quadratic_form(
            self._flat_precision(), value - self.loc, self.batch_shape + self.event_shape, self._pbatch
        )

    def _refuse_pathwise_precision(self) -> None:
        if torch.is_grad_enabled() and self.precision.requires_grad:
            raise NotImplementedError(
                f"{type(self).__name__}.rsample is reparameterised w.r.t. loc only and precision requires grad: the "
                "pathwise gradient w.r.t. Q needs the dense derivative of its Cholesky factor. Use sample() (no "
                "gradient), detach the precision, or SparseMultivariateNormal(loc, precision_tril=L) to learn a "
                "precision through samples"
            )

    def _warn_detached(self, what: str) -> None:
        if torch.is_grad_enabled() and self.precision.requires_grad:
            warnings.warn(
                f"{type(self).__name__}.{what} carries no gradient w.r.t. the precision (it would need the dense "
                "inverse); the result is detached",
                stacklevel=3,
            )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return -0.5 * (self._quadratic(value) + self._dimension * LOG_2PI) + 0.5 * self._log_det_precision()

    def entropy(self) -> torch.Tensor:
        half = 0.5 * self._dimension * (1.0 + LOG_2PI) - 0.5 * self._log_det_precision()
        return half.expand(self.batch_shape)

    def _draw(self, shape: torch.Size) -> torch.Tensor:
        """A zero-mean draw (``shape`` = sample shape + batch + event) without the mean."""
        raise NotImplementedError

    def rsample(self, sample_shape: torch.Size | Sequence[int] = ()) -> torch.Tensor:
        self._refuse_pathwise_precision()
        shape = self._extended_shape(torch.Size(sample_shape))
        return self.loc + self._draw(shape[:-1])

    @property
    def mode(self) -> torch.Tensor:
        return self.mean

    @property
    def stddev(self) -> torch.Tensor:
        return self.variance.sqrt()

    @property
    def precision_matrix(self) -> torch.Tensor:
        """``Q`` itself as given: sparse ``(n, n)`` shared by the batch, or ``(*pbatch, n, n)`` (not expanded)."""
        return self.precision

    def _expand_state(self, new: SparsePrecisionGaussian, batch_shape: torch.Size) -> None:
        """Expand the batch-shaped tensors of ``new`` (a copy of this one's state) to ``batch_shape``."""
        new.loc = self.loc.expand(batch_shape + self.event_shape)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        try:
            fits = broadcast_shapes(batch_shape, self.batch_shape) == batch_shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"cannot expand a {type(self).__name__} of batch shape {tuple(self.batch_shape)} to batch shape "
                f"{tuple(batch_shape)}"
            )
        new.__dict__.update(self.__dict__)  # the precision, its pattern and factors are shared, not copied
        self._expand_state(new, batch_shape)
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def __repr__(self) -> str:
        nnz = self._shared.nnz
        each = f" with {nnz} stored entries" + (" each" if self._pbatch else "")
        return f"{type(self).__name__}(loc: {tuple(self.loc.shape)}, precision: {tuple(self.precision.shape)}{each})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_factor"] = None  # the backend's numeric factors are not picklable; recomputed on demand
        state.pop("_operand", None)  # autograd history (not copyable); read again on demand
        return state

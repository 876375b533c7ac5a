"""Shared storage of the sparse-precision LinearOperators: stored values (batched) on one fixed symmetric pattern.

The values are the operator's only tensor argument (``(*batch, nnz)``, differentiable); the pattern is a
:class:`SymmetricPattern`, a plain Python object (non-tensor state), so linear_operator's batching machinery
(``expand``, ``unsqueeze``, batch indexing, ``to``/``double``, pickling) handles the values and carries the pattern
along unchanged.

Both triangles are stored and the operators are symmetric matrices, so every gradient w.r.t. the values — of a
product, a solve, an inverse quadratic form, a log-determinant, ``to_dense`` — follows the library's one convention for
a symmetric matrix with both triangles stored (``symmetric="full"`` of the solve rule :mod:`sparseprec.ops._solve_rule`;
stated in docs/concepts.md, "Gradients w.r.t. a symmetric sparse matrix"). Two operators built on the same ``Q`` that
compute the same quantity (``SparsePrecisionLinearOperator(Q).solve(b)`` and ``PrecisionInverseLinearOperator(Q) @ b``)
return the same gradient, entry by entry.
"""

from __future__ import annotations

import functools
import numbers
import warnings

import torch
from linear_operator.operators import LinearOperator, RootLinearOperator

from .._validation import broadcast_shapes, check_sparse_indices, check_sparse_matrix
from ..cholesky import CholeskyFactor, cholesky, sparse_logdet
from ..cholesky._structure import check_symmetric_input, lower_structure, lower_values
from ..cholesky.solve import FactorSolver
from ..ops import sparse_csr_tensor
from ..ops._products import kernel_mm
from ..ops._solve_rule import linear_solve
from ..pattern import pattern_of, rows_from_crow
from ._roots import CholeskyRoot

__all__ = ["SymmetricPattern"]


class SymmetricPattern:
    """The CSR pattern ``(crow, col)`` of a symmetric ``n × n`` sparse matrix (both triangles, diagonal stored).

    Checked in O(nnz log nnz): integer 1-D index tensors, ``n`` a non-negative int, valid CSR indices (row pointers
    from 0 to nnz, non-decreasing; columns in ``[0, n)``, strictly increasing within a row), a symmetric pattern
    (``(j, i)`` stored for every stored ``(i, j)``) and the whole diagonal stored.

    Raises
    ------
    TypeError
        ``crow``/``col`` not integer tensors, or ``n`` not an int.
    ValueError
        ``n`` negative, bad CSR indices, a stored entry whose mirror is missing, or a missing diagonal entry; the
        message names the argument or the entry.
    """

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, n: int):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"n must be an int (the matrix size), got {type(n).__name__} {n!r}")
        if n < 0:
            raise ValueError(f"n must be a non-negative int (the matrix size), got {n}")
        n = int(n)
        for name, index in (("crow", crow), ("col", col)):
            if not isinstance(index, torch.Tensor):
                raise TypeError(f"{name} must be an integer torch.Tensor, got {type(index).__name__}")
            if index.dtype not in (torch.int32, torch.int64):
                raise TypeError(f"{name} must be an int32 or int64 tensor (CSR indices), got dtype {index.dtype}")
            if index.dim() != 1:
                raise ValueError(f"{name} must be 1-D (one pattern, CSR), got shape {tuple(index.shape)}")
        crow, col = crow.long().cpu(), col.long().cpu()
        if crow.numel() != n + 1:
            raise ValueError(f"crow must have n + 1 = {n + 1} row pointers, got {crow.numel()}")
        values = torch.zeros(col.numel(), dtype=torch.float64)  # torch's own check would give a raw message
        csr = torch.sparse_csr_tensor(crow, col, values, (n, n), check_invariants=False)
        check_sparse_indices(csr, "the pattern (crow, col)")
        self.crow, self.col, self.n = crow, col, n
        self.rows = rows_from_crow(self.crow, self.col.numel())  # the row of each stored entry
        diagonal = (self.rows == self.col).nonzero().squeeze(-1)
        if diagonal.numel() != self.n:
            raise ValueError(f"the pattern of a precision must store its whole diagonal, found {diagonal.numel()} of "
                             f"{self.n} diagonal entries")  # fmt: skip
        self.diagonal_positions = diagonal
        self._check_symmetric()

    def _check_symmetric(self) -> None:
        """Every stored ``(i, j)`` has its mirror ``(j, i)`` stored (keys ``i n + j`` are sorted: valid CSR)."""
        keys = self.rows * self.n + self.col
        mirrors = self.col * self.n + self.rows
        found = torch.searchsorted(keys, mirrors).clamp_max(max(keys.numel() - 1, 0))
        missing = keys[found] != mirrors if keys.numel() else torch.zeros(0, dtype=torch.bool)
        if bool(missing.any()):
            k = int(missing.nonzero()[0])
            i, j = int(self.rows[k]), int(self.col[k])
            raise ValueError(f"the pattern of a symmetric matrix must store (j, i) with every (i, j), but entry {k} "
                             f"at ({i}, {j}) is stored and ({j}, {i}) is not")  # fmt: skip

    @property
    def nnz(self) -> int:
        return self.col.numel()

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The CSR tensor of one ``(nnz,)`` values vector (differentiable in it)."""
        device = values.device
        return sparse_csr_tensor(self.crow.to(device), self.col.to(device), values, (self.n, self.n))

    def dense(self, values: torch.Tensor) -> torch.Tensor:
        """``(*batch, n, n)`` dense matrices (differentiable in the values)."""
        flat = self.rows.to(values.device) * self.n + self.col.to(values.device)
        out = values.new_zeros(values.shape[:-1] + (self.n * self.n,))
        out = out.index_add(-1, flat, values)
        return out.reshape(values.shape[:-1] + (self.n, self.n))

    def __getstate__(self) -> dict:
        return {"crow": self.crow, "col": self.col, "n": self.n, "rows": self.rows,
                "diagonal_positions": self.diagonal_positions}  # fmt: skip

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def from_sparse(Q: torch.Tensor, name: str = "Q") -> tuple[torch.Tensor, SymmetricPattern]:
    """Values and pattern of a sparse symmetric ``(n, n)`` COO/CSR tensor (checked: square, symmetric, diagonal)."""
    Q = check_sparse_matrix(Q, name, square=True)
    if Q.dim() != 2:
        raise ValueError(f"{name} must be one (n, n) sparse matrix (batch the operator with .expand), got shape "
                         f"{tuple(Q.shape)}")  # fmt: skip
    Q = check_symmetric_input(Q, "full")
    p, structure = lower_structure(Q, "full")  # symmetric pattern, whole diagonal
    lower_values(Q, p, structure)  # finite, symmetric values
    values = p.kernel_values(Q)
    return values, SymmetricPattern(p.crow, p.col, Q.shape[-1])


def inverse_matmul(Q: torch.Tensor, B: torch.Tensor, factor: CholeskyFactor) -> torch.Tensor:
    """``X = Q⁻¹ B`` (``B`` ``(n, k)``) by ``factor``, through the library's one solve rule with the symmetric
    convention (see the module), so it is differentiable any number of times."""
    return linear_solve(Q, B, FactorSolver(factor), pattern_of(Q), symmetric="full")


def symmetric_matmul(Q: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``Q B`` (``B`` ``(n, k)``): one sparse product, its gradient w.r.t. ``Q``'s values by the symmetric convention
    (see the module); differentiable any number of times."""
    return kernel_mm(Q, B, pattern_of(Q), transpose=False, symmetric="full")


def exact_inv_quad_logdet(
    op: LinearOperator, inv_quad_rhs: torch.Tensor | None, logdet: bool, reduce_inv_quad: bool, solve, log_det
) -> tuple[torch.Tensor, torch.Tensor]:
    """linear_operator's ``inv_quad_logdet`` contract from an exact ``solve(B) = A⁻¹ B`` (``B``: ``(..., n, k)``) and
    ``log_det() = log det A``: ``(Σ_k b_kᵀ A⁻¹ b_k or its per-column terms, log det A)``, 0-d zeros where not asked."""
    empty = torch.zeros([], dtype=op.dtype, device=op.device)
    inv_quad = empty
    if inv_quad_rhs is not None:
        rhs = inv_quad_rhs.unsqueeze(-1) if inv_quad_rhs.dim() == 1 else inv_quad_rhs
        inv_quad = (rhs * solve(rhs)).sum(-2)
        if reduce_inv_quad:
            inv_quad = inv_quad.sum(-1)
    return inv_quad, (log_det() if logdet else empty)


class SparseSymmetricOperator(LinearOperator):
    """Base of the two operators: values ``(*batch, nnz)`` on a :class:`SymmetricPattern` (see the module)."""

    def __init__(self, values: torch.Tensor, pattern: SymmetricPattern):
        if not isinstance(pattern, SymmetricPattern):
            raise TypeError(f"pattern must be a SymmetricPattern, got {type(pattern).__name__}")
        if not isinstance(values, torch.Tensor) or values.dim() < 1 or values.shape[-1] != pattern.nnz:
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ValueError(f"values must have shape (..., {pattern.nnz}) (one per stored entry), got {shape}")
        super().__init__(values, pattern=pattern)
        self.values, self.pattern = values, pattern
        self._factors: dict[int, CholeskyFactor] = {}

    # ---- helpers --------------------------------------------------------------------------------------------------
    def _flat_values(self) -> torch.Tensor:
        return self.values.reshape(-1, self.pattern.nnz)

    def _matrices(self) -> list[torch.Tensor]:
        return [self.pattern.matrix(v) for v in self._flat_values().unbind(0)]

    def _factor(self, b: int) -> CholeskyFactor:
        """The sparse Cholesky factor of batch element ``b`` of ``Q`` (computed once per operator)."""
        if b not in self._factors:
            self._factors[b] = cholesky(self.pattern.matrix(self._flat_values()[b].detach()))
        return self._factors[b]

    def _per_batch(self, rhs: torch.Tensor, fn) -> torch.Tensor:
        """Apply ``fn(b, Q_b, rhs_b)`` (``rhs_b``: ``(n, k)``) over the broadcast batch; result ``(*batch, n, k)``."""
        if len(self.batch_shape) == 0 and rhs.dim() > 2:  # one matrix: all right-hand sides as columns of one call
            n, k = rhs.shape[-2:]
            columns = rhs.movedim(-2, 0).reshape(n, -1)
            return fn(0, self.pattern.matrix(self.values), columns).reshape(n, *rhs.shape[:-2], k).movedim(0, -2)
        batch = broadcast_shapes(self.batch_shape, rhs.shape[:-2])
        values = self.values.expand(batch + (self.pattern.nnz,)).reshape(-1, self.pattern.nnz)
        rhs_flat = rhs.expand(batch + rhs.shape[-2:]).reshape(-1, *rhs.shape[-2:])
        # the operator's own (flat) batch element behind each broadcast one: it picks the cached factor
        index = torch.arange(self.batch_shape.numel()).reshape(self.batch_shape).expand(batch).reshape(-1)
        out = [fn(int(index[i]), self.pattern.matrix(values[i]), rhs_flat[i]) for i in range(values.shape[0])]
        return torch.stack(out).reshape(batch + out[0].shape[-2:])

    # ---- LinearOperator API -----------------------------------------------------------------------------------------
    def _size(self) -> torch.Size:
        return torch.Size(self.values.shape[:-1] + (self.pattern.n, self.pattern.n))

    def _with_values(self, values: torch.Tensor) -> LinearOperator:
        return self.__class__(values, self.pattern)

    def _transpose_nonbatch(self) -> LinearOperator:
        # symmetric, with symmetric gradients (see the module): Qᵀ is Q itself
        return self

    def _expand_batch(self, batch_shape: torch.Size) -> LinearOperator:
        return self._with_values(self.values.expand(*batch_shape, self.pattern.nnz))

    def _permute_batch(self, *dims: int) -> LinearOperator:
        return self._with_values(self.values.permute(*dims, len(dims)))

    def _unsqueeze_batch(self, dim: int) -> LinearOperator:
        return self._with_values(self.values.unsqueeze(dim))

    # ---- shared exact algebra: subclasses say what a product, a solve and an inverse quadratic are -----------------
    _represents_inverse = False  # True: the operator is Q⁻¹ (log det and roots flip)

    def _product_block(self, b: int, Q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _solve_block(self, b: int, Q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _apply(self, rhs: torch.Tensor, fn) -> torch.Tensor:
        vector = rhs.dim() == 1
        out = self._per_batch(rhs.unsqueeze(-1) if vector else rhs, fn)
        return out.squeeze(-1) if vector else out

    def _matmul(self, rhs: torch.Tensor) -> torch.Tensor:
        return self._apply(rhs, self._product_block)

    def matmul(self, other):
        # linear_operator's generic Matmul function detaches its arguments in the backward (no create_graph), which
        # would drop second derivatives; a dense right-hand side goes straight to the exact, twice-differentiable
        # product instead (same result and first derivatives)
        if isinstance(other, torch.Tensor) and other.layout == torch.strided and other.dim() >= 1:
            if other.dim() == 1 or other.shape[:-2] == torch.Size() and self.batch_shape == torch.Size():
                return self._matmul(other)
            return self._matmul(other.expand(broadcast_shapes(self.batch_shape, other.shape[:-2]) + other.shape[-2:]))
        return super().matmul(other)

    def solve(self, right_tensor: torch.Tensor, left_tensor: torch.Tensor | None = None) -> torch.Tensor:
        out = self._apply(right_tensor, self._solve_block)
        return out if left_tensor is None else left_tensor @ out

    def _logdets(self) -> torch.Tensor:
        """``log det`` of the operator per batch element: ``±log det Q`` with the selected-inverse gradient."""
        values = self._flat_values()
        out = [sparse_logdet(self.pattern.matrix(values[b]), factor=self._factor(b)) for b in range(values.shape[0])]
        logdet_q = torch.stack(out).reshape(self.batch_shape)
        return -logdet_q if self._represents_inverse else logdet_q

    def inv_quad_logdet(
        self, inv_quad_rhs: torch.Tensor | None = None, logdet: bool = False, reduce_inv_quad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        solve = functools.partial(self._per_batch, fn=self._solve_block)
        return exact_inv_quad_logdet(self, inv_quad_rhs, logdet, reduce_inv_quad, solve, self._logdets)

    def inv_quad(self, inv_quad_rhs: torch.Tensor, reduce_inv_quad: bool = True) -> torch.Tensor:
        return self.inv_quad_logdet(inv_quad_rhs, reduce_inv_quad=reduce_inv_quad)[0]

    def logdet(self) -> torch.Tensor:
        return self._logdets()

    def root_decomposition(self, method: str | None = None) -> LinearOperator:
        return RootLinearOperator(CholeskyRoot.of(self, inverse=self._represents_inverse))

    def root_inv_decomposition(self, initial_vectors=None, test_vectors=None, method: str | None = None):
        return RootLinearOperator(CholeskyRoot.of(self, inverse=not self._represents_inverse))

    def zero_mean_mvn_samples(self, num_samples: int) -> torch.Tensor:
        """Exact draws ``A ε`` with ``A`` the sparse Cholesky root; detached from the values, with a warning when they
        require grad (``rsample``: the pathwise derivative of the factor is dense; ``sample()`` asks for none)."""
        if torch.is_grad_enabled() and self.values.requires_grad:
            warnings.warn(
                f"samples of a {type(self).__name__} carry no gradient w.r.t. the precision's stored values (the "
                "pathwise derivative of its sparse Cholesky factor is dense); they are detached from them. Draw with "
                "sample() (or under torch.no_grad()) when no gradient is wanted",
                stacklevel=3,
            )
        eps = torch.randn(num_samples, *self.batch_shape, self.pattern.n, dtype=self.dtype, device=self.device)
        root = CholeskyRoot.of(self, inverse=self._represents_inverse)
        return root._matmul(eps.movedim(0, -1)).movedim(-1, 0)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_factors"] = {}
        return state

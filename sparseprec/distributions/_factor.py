"""A sparse lower-triangular factor as the distributions use it: products, solves and its diagonal, with autograd.

The user's factor ``L`` (COO or CSR, ``(n, n)`` or ``(b, n, n)``) is read once into its kernel form (see
:mod:`sparseprec.ops._pattern`): one CSR matrix of shape ``(N, N)``, ``N = b n``, block-diagonal for a batched
factor, whose values are a differentiable view of ``L``'s stored values. Every operation then works on dense tensors
of shape ``(..., [b,] n)``: their leading dimensions become the columns of an ``(N, P)`` right-hand side, so any
sample shape and batch shape costs one sparse kernel call.

Gradients reach ``L`` as a sparse tensor with its layout and stored pattern (the ops' convention), never densely.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_sparse_matrix
from ..ops import sparse_csr_tensor, sparse_mm, sparse_triangular_solve
from ..ops._values import stored_values
from ..pattern import pattern_of
from ._pairs import product_pattern

__all__ = ["TriangularFactor"]


class TriangularFactor:
    """Lower-triangular sparse ``L`` (stored diagonal) or unit lower-triangular ``I + L`` (strictly lower part stored).

    Parameters
    ----------
    L : torch.Tensor
        Sparse COO/CSR, ``(n, n)`` or ``(b, n, n)``, float32/float64.
    name : str
        Argument name used in error messages.
    unit : bool
        The diagonal is an implied 1 and ``L`` stores only entries strictly below it.
    """

    def __init__(self, L: torch.Tensor, name: str, unit: bool):
        check_sparse_matrix(L, name, square=True)
        self.tensor = L
        self.name = name
        self.unit = unit
        self.n = L.shape[-1]
        self.batch: int | None = L.shape[0] if L.dim() == 3 else None
        self.pattern = pattern_of(L, name)
        self.pattern.check_triangular(upper=False, unitriangular=unit, name=name)
        self.values = stored_values(L, self.pattern)
        self.kernel = self._kernel_with(self.values)

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size(() if self.batch is None else (self.batch,))

    @property
    def N(self) -> int:
        return self.pattern.n_rows

    def _kernel_with(self, values: torch.Tensor) -> torch.Tensor:
        return sparse_csr_tensor(self.pattern.crow, self.pattern.col, values, (self.N, self.N))

    # ---- arrangement: (..., [b,] n) <-> (N, P) ----------------------------------------------------------------------
    def to_columns(self, T: torch.Tensor) -> torch.Tensor:
        """``(..., [b,] n)`` to the kernel's ``(N, P)`` right-hand side (``P`` = product of the leading dims)."""
        if self.batch is None:
            return T.reshape(math.prod(T.shape[:-1]), self.n).transpose(0, 1)
        P = math.prod(T.shape[:-2])  # explicit sizes: a reshape(-1, ...) is ambiguous when n = 0
        return T.reshape(P, self.batch, self.n).permute(1, 2, 0).reshape(self.N, P)

    def from_columns(self, X: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Inverse of :meth:`to_columns` for a result of the given ``(..., [b,] n)`` shape."""
        if self.batch is None:
            return X.transpose(0, 1).reshape(shape)
        return X.reshape(self.batch, self.n, X.shape[1]).permute(2, 0, 1).reshape(shape)

    def check_operand(self, T: torch.Tensor, what: str) -> None:
        if T.shape[-1] != self.n or (self.batch is not None and (T.dim() < 2 or T.shape[-2] != self.batch)):
            expected = f"(..., {self.n})" if self.batch is None else f"(..., {self.batch}, {self.n})"
            raise ValueError(f"{what} must have shape {expected} against {self.name}, got {tuple(T.shape)}")

    # ---- operations -------------------------------------------------------------------------------------------------
    def matmul(self, T: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """``L T`` (or ``Lᵀ T``) along the last dimension of ``T`` (``(..., [b,] n)``)."""
        X = self.to_columns(T)
        Y = sparse_mm(self.kernel, X, transpose=transpose)
        if self.unit:
            Y = Y + X
        return self.from_columns(Y, T.shape)

    def solve(self, T: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """``L⁻¹ T`` (or ``L⁻ᵀ T``) along the last dimension of ``T``."""
        X = self.to_columns(T)
        Y = sparse_triangular_solve(self.kernel, X, upper=False, unitriangular=self.unit, transpose=transpose)
        return self.from_columns(Y, T.shape)

    def squared_matmul(self, W: torch.Tensor) -> torch.Tensor:
        """``(L ∘ L) W``: ``Σ_j L_ij² W_j`` along the last dimension (implied unit diagonal included)."""
        X = self.to_columns(W)
        Y = sparse_mm(self._kernel_with(self.values.square()), X)
        if self.unit:
            Y = Y + X
        return self.from_columns(Y, W.shape)

    def log_abs_diagonal(self) -> torch.Tensor:
        """``log |L_ii|``, shape ``([b,] n)`` (zeros for the implied unit diagonal)."""
        if self.unit:
            return self.values.new_zeros(self.batch_shape + (self.n,))
        diagonal = self.values.index_select(0, self.pattern.diagonal_positions())
        return diagonal.abs().log().reshape(self.batch_shape + (self.n,))

    def diagonal(self) -> torch.Tensor:
        """``L_ii``, shape ``([b,] n)`` (ones for the implied unit diagonal)."""
        if self.unit:
            return self.values.new_ones(self.batch_shape + (self.n,))
        return self.values.index_select(0, self.pattern.diagonal_positions()).reshape(self.batch_shape + (self.n,))

    def _unit_columns(self) -> torch.Tensor:
        """``e_j`` for every column ``j`` and batch element, ``(n, [b,] n)`` (row ``j`` holds ``e_j``)."""
        eye = torch.eye(self.n, dtype=self.values.dtype, device=self.values.device)
        return eye.reshape((self.n,) + (1,) * len(self.batch_shape) + (self.n,)).expand(
            (self.n,) + self.batch_shape + (self.n,)
        )

    def dense(self) -> torch.Tensor:
        """``L`` as a dense ``([b,] n, n)`` tensor (differentiable; small ``n`` only)."""
        return self.matmul(self._unit_columns()).movedim(0, -1)  # [j, b, i] = L[b, i, j]

    def dense_inverse(self) -> torch.Tensor:
        """``L⁻¹`` as a dense ``([b,] n, n)`` tensor (differentiable; small ``n`` only)."""
        return self.solve(self._unit_columns()).movedim(0, -1)

    # ---- the product L D Lᵀ ------------------------------------------------------------------------------------------
    def product(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The entries of ``L diag(w) Lᵀ`` on its pattern, for each ``w`` in ``W`` (``(..., [b,] n)``).

        Returns ``keys`` (``(m,)``, int64, ``row * N + col`` in the kernel, sorted; both triangles) and ``values``
        (``(m, P)``, differentiable w.r.t. ``L``'s values and ``W``). Cost: one term per pair of entries sharing a
        column of ``L``, ``Σ_k c_k²`` for column counts ``c_k``; the pairing is cached with the pattern.
        """
        pairs = self._pairs()
        X = self.to_columns(W)
        values = self.values
        if self.unit:
            values = torch.cat([values, values.new_ones(self.N)])
        first, second, inverse, keys, column = pairs
        terms = (values[first] * values[second]).unsqueeze(-1) * X.index_select(0, column)
        out = terms.new_zeros(keys.numel(), X.shape[1]).index_add_(0, inverse, terms)
        return keys, out

    def _pairs(self) -> tuple[torch.Tensor, ...]:
        return self.pattern.derived(("ldlt_pairs", self.unit), self._build_pairs)

    def _build_pairs(self) -> tuple[torch.Tensor, ...]:
        row, col = self.pattern.row.long(), self.pattern.col.long()
        if self.unit:
            diag = torch.arange(self.N, device=row.device)
            row, col = torch.cat([row, diag]), torch.cat([col, diag])
        first, second, inverse, keys = product_pattern(col, row, self.N, self.N)
        return first, second, inverse, keys, col[first]

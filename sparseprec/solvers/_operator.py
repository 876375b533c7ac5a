"""The linear operator a Krylov solver iterates with: a sparse tensor, a dense tensor or a callable.

Every solver works on ``(n, k)`` blocks (a 1-D right-hand side is one column). :class:`Operator` hides what ``A`` is:

* sparse COO/CSR: products go through the cached kernel CSR matrix of :mod:`sparseprec.ops` (int32 indices where they
  fit) and are written into a preallocated block, so the loop allocates nothing;
* dense: ``torch.mm`` into the same block;
* callable ``f``: called with a tensor shaped like the right-hand side (``(n,)`` for a 1-D ``B``, else ``(n, k)``)
  and must return ``A`` applied to it, same shape, dtype and device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._validation import check_dense, check_sparse_matrix, describe
from ..ops import sparse_mm
from ..pattern import Assembly, pattern_of

__all__ = ["Operator", "as_operator", "values_version"]


def values_version(A: torch.Tensor) -> tuple[int, ...]:
    """Version counters of a tensor ``A``'s index and value data (they move with every in-place change)."""
    if A.layout == torch.strided:
        return (A._version,)
    with torch.no_grad():  # (values() of a CSR tensor that requires grad would record a backward node)
        if A.layout == torch.sparse_csr:
            parts = (A.crow_indices(), A.col_indices(), A.values())
        else:
            parts = (A._indices(), A._values())
        return tuple(t._version for t in parts)


class Operator:
    """``A`` as seen by the solvers: block products, its transpose, symmetry and diagonal where ``A`` is a tensor."""

    def __init__(self, A: torch.Tensor | Callable, n: int, vector: bool):
        self.A = A
        self.n = n
        self.vector = vector  # the right-hand side was 1-D: callables get (n,) tensors
        if isinstance(A, torch.Tensor) and A.layout != torch.strided:
            self.kind = "sparse"
            self.pattern = pattern_of(A)
            self.values = self.pattern.kernel_values(A.detach())
            self.kernel = self.pattern.kernel_matrix(self.values)
        elif isinstance(A, torch.Tensor):
            self.kind = "dense"
            self.dense = A.detach()
        else:
            self.kind = "callable"
        self._checked_output = False

    @property
    def is_tensor(self) -> bool:
        return self.kind != "callable"

    # ---- products ----------------------------------------------------------------------------------------------------
    def matmul_into(self, X: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out = A X`` for a block ``X`` of shape ``(n, k)`` (no autograd; ``out`` is overwritten)."""
        if self.kind == "sparse":
            # in place with beta = 0 (out's old content, NaN included, is ignored): `addmm(..., out=out)` would copy
            # the block once more; a single column goes through the sparse matrix-vector kernel, 1.5-2x faster
            # than the one-column matrix product on CPU
            if X.shape[1] == 1 and X.is_contiguous() and out.is_contiguous():
                out.view(-1).addmv_(self.kernel, X.view(-1), beta=0.0)
                return out
            return out.addmm_(self.kernel, X, beta=0.0)
        if self.kind == "dense":
            return torch.mm(self.dense, X, out=out)
        Y = self.A(X.reshape(self.n) if self.vector else X)
        self._check_output(Y, X)
        return out.copy_(Y.reshape(out.shape))

    def _check_output(self, Y: object, X: torch.Tensor) -> None:
        if self._checked_output:
            return
        shape = (self.n,) if self.vector else tuple(X.shape)
        if not isinstance(Y, torch.Tensor):
            raise TypeError(f"the operator A (a callable) must return a torch.Tensor, got {type(Y).__name__}")
        if tuple(Y.shape) != shape or Y.dtype != X.dtype or Y.device != X.device or Y.layout != torch.strided:
            raise ValueError(
                f"the operator A (a callable) must map a tensor to one of the same shape, dtype and device: given a "
                f"{describe(X.reshape(shape))} it returned a {describe(Y)}"
            )
        self._checked_output = True

    def apply(self, X: torch.Tensor) -> torch.Tensor:
        """``A X`` with autograd (gradients to ``A``'s stored values, to a dense ``A``, or through the callable).

        ``X`` has the right-hand side's shape.
        """
        if self.kind == "sparse":
            return sparse_mm(self.A, X)
        if self.kind == "dense":
            return self.A @ X
        Y = self.A(X)
        if not isinstance(Y, torch.Tensor) or Y.shape != X.shape:
            raise ValueError("the operator A (a callable) must return a tensor of its input's shape")
        return Y

    # ---- structure -------------------------------------------------------------------------------------------------
    def values_version(self) -> tuple[int, ...]:
        """Version counters of a tensor ``A``'s index and value data (they move with every in-place change)."""
        return values_version(self.A)

    def _structurally_symmetric(self, crow_t: torch.Tensor, col_t: torch.Tensor) -> bool:
        # pattern-only: checked once per pattern
        pattern = self.pattern
        return pattern.derived(
            "structurally_symmetric", lambda: torch.equal(crow_t, pattern.crow) and torch.equal(col_t, pattern.col)
        )

    def transpose(self) -> torch.Tensor:
        """``Aᵀ`` as a tensor of the same kind (sparse: CSR with the pattern's cached transposed index data)."""
        if self.kind == "sparse":
            return self.pattern.transposed_kernel_matrix(self.values)
        if self.kind == "dense":
            return self.dense.mT
        raise TypeError("the transpose of a callable operator is unknown")

    def asymmetry(self) -> tuple[float, float]:
        """``(max |A - Aᵀ|, max |A|)`` for a tensor ``A`` (an entry stored on one side only counts in full)."""
        if self.kind == "sparse":
            At = self.transpose()
            crow_t, col_t = At.crow_indices(), At.col_indices()
            if not self._structurally_symmetric(crow_t, col_t):
                # structurally non-symmetric; only a real problem if the unmatched entries are nonzero
                return self._asymmetry_by_coordinates()
            values = self.values
            diff = (values - At.values()).abs().max() if values.numel() else values.new_zeros(())
            scale = values.abs().max() if values.numel() else values.new_zeros(())
            return float(diff), float(scale)
        if self.kind == "dense":
            A = self.dense
            return float((A - A.mT).abs().max()), float(A.abs().max())
        raise TypeError("the symmetry of a callable operator is unknown")

    def _asymmetry_by_coordinates(self) -> tuple[float, float]:
        # Compare A and Aᵀ as coordinate lists: entries present on one side only count with their full value.
        p = self.pattern
        n = p.n_cols
        row, col, values = p.row.long(), p.col.long(), self.values
        diff = Assembly(torch.cat([row, col]), torch.cat([col, row]), n, n).sum(torch.cat([values, -values]))
        return float(diff.abs().max()), float(values.abs().max())

    def diagonal(self) -> torch.Tensor:
        """The diagonal of a tensor ``A`` as a dense ``(n,)`` tensor (zeros where nothing is stored)."""
        if self.kind == "sparse":
            p = self.pattern
            on_diag = p.row == p.col
            d = self.values.new_zeros(self.n)
            return d.index_add_(0, p.row[on_diag].long(), self.values[on_diag])
        if self.kind == "dense":
            return self.dense.diagonal().clone()
        raise TypeError("the diagonal of a callable operator is unknown")


def as_operator(A: object, B: torch.Tensor, name: str = "A") -> Operator:
    """Validate ``A`` against the right-hand side ``B`` (dense ``(n,)`` or ``(n, k)``) and wrap it.

    Raises
    ------
    TypeError
        ``A`` is neither a tensor nor callable; wrong layout or dtype; dtypes of ``A`` and ``B`` differ.
    ValueError
        ``A`` not square or batched; ``B`` of the wrong size; devices differ.
    """
    check_dense(B, "B", dims=(1, 2))
    n = B.shape[0]
    if isinstance(A, torch.Tensor):
        if A.layout == torch.strided:
            check_dense(A, name, dims=(2,))
        else:
            check_sparse_matrix(A, name, square=True)
            if A.dim() != 2:
                raise ValueError(
                    f"{name} must be a single (n, n) matrix, got a batched tensor of shape {tuple(A.shape)}"
                )
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"{name} must be square, got shape {tuple(A.shape)}")
        if A.shape[1] != n:
            raise ValueError(
                f"{name} of shape {tuple(A.shape)} needs B.shape[0] == {A.shape[1]}, got B of shape {tuple(B.shape)}"
            )
        if A.dtype != B.dtype:
            raise TypeError(f"{name} and B must have the same dtype, got {A.dtype} and {B.dtype}")
        if A.device != B.device:
            raise ValueError(f"{name} and B must be on the same device, got {A.device} and {B.device}")
    elif not callable(A):
        raise TypeError(
            f"{name} must be a sparse COO/CSR tensor, a dense tensor or a callable v -> A v, got {type(A).__name__}"
        )
    return Operator(A, n, vector=B.dim() == 1)

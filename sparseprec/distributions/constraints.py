"""Constraints on sparse factors, for ``arg_constraints`` and argument validation.

torch's own constraints (``lower_cholesky``, ...) index dense tensors and raise on sparse ones. These check a sparse
COO/CSR ``(n, n)`` or ``(b, n, n)`` factor from its stored entries only: ``check(L)`` returns a boolean tensor of
shape ``L.shape[:-2]`` (one flag per matrix in the batch), as torch's matrix constraints do, so
``torch.distributions.Distribution``'s validation and Pyro's accept them.
"""

from __future__ import annotations

import torch
from torch.distributions import constraints

from ..ops._pattern import pattern_of

__all__ = ["SparseLowerCholesky", "SparseStrictlyLower", "sparse_lower_cholesky", "sparse_strictly_lower"]


def _per_matrix(L: torch.Tensor, ok_per_entry: torch.Tensor) -> torch.Tensor:
    """Reduce per-entry flags (kernel order) to one flag per matrix of the batch."""
    pattern = pattern_of(L)
    if L.dim() == 2:
        return ok_per_entry.all()
    n = L.shape[-2]
    bad = (~ok_per_entry).to(torch.int64)
    per_batch = torch.zeros(L.shape[0], dtype=torch.int64, device=L.device)
    per_batch.index_add_(0, pattern.row.long() // n, bad)
    return per_batch == 0


class SparseLowerCholesky(constraints.Constraint):
    """Sparse lower-triangular matrix with every diagonal entry stored and positive, all values finite."""

    event_dim = 2

    def check(self, value: torch.Tensor) -> torch.Tensor:
        pattern = pattern_of(value)
        values = pattern.kernel_values(value).detach()
        lower = pattern.row >= pattern.col
        ok = lower & torch.isfinite(values)
        on_diagonal = pattern.row == pattern.col
        ok = ok & (~on_diagonal | (values > 0))
        diagonal_count = torch.zeros(pattern.n_rows, dtype=torch.int64, device=values.device)
        diagonal_count.index_add_(
            0, pattern.row[on_diagonal].long(), torch.ones_like(values[on_diagonal], dtype=torch.int64)
        )
        result = _per_matrix(value, ok)
        complete = (diagonal_count == 1).reshape(value.shape[:-2] + (value.shape[-1],)).all(-1)
        return result & complete

    def __repr__(self) -> str:
        return "SparseLowerCholesky()"


class SparseStrictlyLower(constraints.Constraint):
    """Sparse matrix storing only finite entries strictly below the diagonal (the unit diagonal of an LDLᵀ factor)."""

    event_dim = 2

    def check(self, value: torch.Tensor) -> torch.Tensor:
        pattern = pattern_of(value)
        values = pattern.kernel_values(value).detach()
        return _per_matrix(value, (pattern.row > pattern.col) & torch.isfinite(values))

    def __repr__(self) -> str:
        return "SparseStrictlyLower()"


sparse_lower_cholesky = SparseLowerCholesky()
sparse_strictly_lower = SparseStrictlyLower()

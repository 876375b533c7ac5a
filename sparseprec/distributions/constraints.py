"""Constraints on sparse factors, for ``arg_constraints`` and argument validation.

torch's own constraints (``lower_cholesky``, ...) index dense tensors and raise on sparse ones. These check a sparse
COO/CSR ``(n, n)`` or ``(b, n, n)`` factor from its stored entries only: ``check(L)`` returns a boolean tensor of
shape ``L.shape[:-2]`` (one flag per matrix in the batch), as torch's matrix constraints do, so
``torch.distributions.Distribution``'s validation and Pyro's accept them.
"""

from __future__ import annotations

import torch
from torch.distributions import constraints

from ..cholesky._structure import lower_structure, lower_values
from ..pattern import pattern_of

__all__ = [
    "SparseLowerCholesky",
    "SparseStrictlyLower",
    "SparseSymmetricPositiveDiagonal",
    "sparse_lower_cholesky",
    "sparse_strictly_lower",
    "sparse_symmetric_positive_diagonal",
]


def _per_matrix(L: torch.Tensor, ok_per_entry: torch.Tensor) -> torch.Tensor:
    """Reduce per-entry flags (kernel order) to one flag per matrix of the batch."""
    if L.dim() == 2:
        return ok_per_entry.all()
    pattern = pattern_of(L)
    bad = (~ok_per_entry).to(torch.int64)
    per_batch = torch.zeros(L.shape[0], dtype=torch.int64, device=L.device)
    per_batch.index_add_(0, pattern.row.long() // L.shape[-2], bad)
    return per_batch == 0


def _all_finite(values: torch.Tensor) -> bool:
    # one reduction: the sum of finite values is finite unless it overflows, and then the exact check runs
    return bool(torch.isfinite(values.sum()))


def _structure_ok(value: torch.Tensor, unitriangular: bool) -> bool:
    """The stored pattern is lower triangular with the whole diagonal (or strictly lower); cached per pattern."""
    try:
        pattern_of(value).check_triangular(upper=False, unitriangular=unitriangular, name="value")
    except ValueError:
        return False
    return True


class SparseLowerCholesky(constraints.Constraint):
    """Sparse lower-triangular matrix with every diagonal entry stored and positive, all values finite.

    Cost: the pattern is checked once per sparsity pattern; the values by one reduction over the stored entries and
    one over the diagonal (the per-entry checks run only when these find a problem, to say which matrix has it).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions.constraints import sparse_lower_cholesky
    >>> L = torch.tensor([[[1.0, 0.0], [2.0, 3.0]], [[1.0, 0.0], [2.0, -3.0]]]).to_sparse_csr()
    >>> sparse_lower_cholesky.check(L)  # one flag per matrix: the second has a negative diagonal entry
    tensor([ True, False])
    """

    event_dim = 2

    def check(self, value: torch.Tensor) -> torch.Tensor:
        batch = value.shape[:-2]
        if not _structure_ok(value, unitriangular=False):
            return torch.zeros(batch, dtype=torch.bool, device=value.device)
        pattern = pattern_of(value)
        values = pattern.kernel_values(value).detach()
        positive = (values.index_select(0, pattern.diagonal_positions()) > 0).reshape(batch + (-1,)).all(-1)
        if _all_finite(values):
            return positive
        return positive & _per_matrix(value, torch.isfinite(values))

    def __repr__(self) -> str:
        return "SparseLowerCholesky()"


class SparseStrictlyLower(constraints.Constraint):
    r"""Sparse matrix storing only finite entries strictly below the diagonal (the unit diagonal of an :math:`LDL^\top`
    factor)."""

    event_dim = 2

    def check(self, value: torch.Tensor) -> torch.Tensor:
        batch = value.shape[:-2]
        if not _structure_ok(value, unitriangular=True):
            return torch.zeros(batch, dtype=torch.bool, device=value.device)
        values = pattern_of(value).kernel_values(value).detach()
        if _all_finite(values):
            return torch.ones(batch, dtype=torch.bool, device=value.device)
        return _per_matrix(value, torch.isfinite(values))

    def __repr__(self) -> str:
        return "SparseStrictlyLower()"


class SparseSymmetricPositiveDiagonal(constraints.Constraint):
    r"""Unbatched sparse ``(n, n)`` matrix, symmetric in pattern and values (to :math:`1000\, \varepsilon \max\lvert Q
    \rvert`, as :func:`sparseprec.cholesky.cholesky` requires), finite, with every diagonal entry stored and positive.

    These are necessary conditions for positive definiteness; the Cholesky factorisation decides the rest.
    """

    event_dim = 2

    def check(self, value: torch.Tensor) -> torch.Tensor:
        try:
            pattern, structure = lower_structure(value, "full")
            lower_values(value, pattern, structure)
        except ValueError:
            return torch.tensor(False, device=value.device)
        values = pattern.kernel_values(value).detach()
        return (values[pattern.row == pattern.col] > 0).all()

    def __repr__(self) -> str:
        return "SparseSymmetricPositiveDiagonal()"


sparse_lower_cholesky = SparseLowerCholesky()
sparse_strictly_lower = SparseStrictlyLower()
sparse_symmetric_positive_diagonal = SparseSymmetricPositiveDiagonal()

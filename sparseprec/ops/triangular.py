"""``sparse_triangular_solve``: sparse triangular solves with gradients on the stored entries only."""

from __future__ import annotations

import torch

from .._validation import check_flag
from ..pattern import SparsePattern, pattern_of
from ._operands import operands
from ._solve_rule import linear_solve

__all__ = ["sparse_triangular_solve"]

#: From this many right-hand sides on, a zero pivot is looked for on the diagonal (one gather of N values) rather
#: than in the solution (a sum over N p values): the gather costs about as much as a sum over 4-8 columns.
_DIAGONAL_CHECK_COLUMNS = 8


class _Triangular:
    """The triangular kernel as a solver for :func:`~sparseprec.ops._solve_rule.linear_solve`.

    A unit-triangular ``A`` is solved as the plain triangular kernel of :math:`A + I`, whose index data (the stored
    entries and the diagonal merged, row by row) is built once per pattern; a call then forms the ``nnz + N`` values
    with one gather from the stored values and a trailing 1. torch's own ``unitriangular=True`` forms :math:`A + I` by
    a sparse addition, coalesce and sort on every call instead (15x slower than the solve itself at n = 10⁶).
    """

    def __init__(self, pattern: SparsePattern, values: torch.Tensor, upper: bool, unitriangular: bool, name: str):
        self.pattern, self.values, self.name = pattern, values, name
        self.upper, self.unitriangular = upper, unitriangular
        # A zero pivot always makes the solution non-finite, so one finite solution proves the diagonal has no zero
        # and the later solves with this kernel (the backward's) need no check; a unit diagonal needs none at all.
        self._checked = unitriangular
        if unitriangular and pattern.nnz:
            crow, col, source = pattern.derived(("unit_diagonal_kernel", upper), self._build_unit)
            merged = torch.cat([values, values.new_ones(1)]).index_select(0, source)
            size = (pattern.n_rows, pattern.n_cols)
            self.kernel = torch.sparse_csr_tensor(crow, col, merged, size, check_invariants=False)
        else:
            self.kernel = pattern.kernel_matrix(values)

    def _build_unit(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Index data of :math:`A + I` for a strictly triangular pattern: ``crow`` and ``col``, and for every merged
        entry its ``source``, the stored entry it holds, or ``nnz`` (the trailing 1) on the diagonal; all in the kernel
        index dtype. Row ``r`` keeps its stored entries in order and gains its diagonal entry last (lower) or first
        (upper), so stored entry ``e`` of row ``r`` moves to ``e + r`` (lower) or ``e + r + 1`` (upper)."""
        pattern = self.pattern
        crow, row = pattern.crow.long(), pattern.row.long()
        rows = torch.arange(pattern.n_rows, device=crow.device)
        stored = torch.arange(pattern.nnz, device=crow.device)
        moved = stored + row + int(self.upper)
        diagonal = (crow[:-1] if self.upper else crow[1:]) + rows
        merged_crow = crow + torch.arange(pattern.n_rows + 1, device=crow.device)
        merged_col = torch.empty(pattern.nnz + pattern.n_rows, dtype=torch.int64, device=crow.device)
        merged_col.index_copy_(0, moved, pattern.col.long()).index_copy_(0, diagonal, rows)
        source = torch.full_like(merged_col, pattern.nnz).index_copy_(0, moved, stored)
        dtype = pattern.crow.dtype
        return merged_crow.to(dtype), merged_col.to(dtype), source.to(dtype)

    def solve(self, B: torch.Tensor, transpose: bool) -> torch.Tensor:
        if self.pattern.nnz == 0 and self.unitriangular:  # A = I
            return B.clone()
        # torch's CSR triangular solve (MKL on CPU, cuSPARSE on CUDA); a block-diagonal kernel is solved in one call.
        X = torch.triangular_solve(B, self.kernel, upper=self.upper, transpose=transpose).solution
        if not self._checked:
            # A zero pivot makes X non-finite: with few columns one summing pass over X finds it, and only then is the
            # diagonal inspected to name the row; with many, reading the N diagonal values is the cheaper pass.
            if X.shape[1] >= _DIAGONAL_CHECK_COLUMNS or not bool(torch.isfinite(X.sum())):
                self.pattern.raise_if_zero_diagonal(self.values, self.name)
            self._checked = True
        return X


def sparse_triangular_solve(
    A: torch.Tensor,
    B: torch.Tensor,
    upper: bool = True,
    unitriangular: bool = False,
    transpose: bool = False,
) -> torch.Tensor:
    r"""Solve :math:`A X = B` (or :math:`A^\top X = B`) for a sparse triangular ``A``; gradients at its stored entries.

    Forward: :math:`X = \mathrm{op}(A)^{-1} B` with :math:`\mathrm{op}(A) = A`, or :math:`A^\top` when
    ``transpose=True``. With ``unitriangular=True`` the diagonal of ``A`` is taken to be 1 and must not be stored.

    Backward, with :math:`G = \partial L / \partial X`: :math:`\partial L / \partial B = \mathrm{op}(A)^{-\top} G`
    (one more triangular solve) and, at stored :math:`(i, j)` only,

    .. math::

        \frac{\partial L}{\partial A_{ij}} = -\sum_k (\partial L/\partial B)_{ik} X_{jk} \quad (\text{transpose=False}),
        \qquad
        \frac{\partial L}{\partial A_{ij}} = -\sum_k X_{ik} (\partial L/\partial B)_{jk} \quad (\text{transpose=True}).

    The gradient w.r.t. ``A`` has ``A``'s layout and indices (coalesced indices for an uncoalesced COO ``A``); no
    dense ``n x n`` intermediate is formed. A batched ``A`` is solved as one block-diagonal triangular system whose
    index data is built once per pattern and cached, so a batch costs one kernel call. The backward is one more
    triangular solve and a sampled product, both on the autograd graph under ``create_graph=True``: the op is
    differentiable any number of times w.r.t. ``A``'s stored values and ``B``.

    Parameters
    ----------
    A : torch.Tensor
        Sparse COO or CSR triangular matrix, shape ``(n, n)`` or ``(b, n, n)``; float32 or float64.
    B : torch.Tensor
        Dense right-hand sides, shape ``(n, p)`` (or ``(n,)``) for an unbatched ``A``, ``(b, n, p)`` for a batched one.
    upper : bool
        ``A`` is upper triangular (default) or lower triangular (``False``).
    unitriangular : bool
        The diagonal of ``A`` is an implied 1; ``A`` must then store only strictly triangular entries.
    transpose : bool
        Solve with :math:`A^\top` instead of :math:`A`.

    Returns
    -------
    torch.Tensor
        Dense ``X`` with the shape of ``B``.

    Raises
    ------
    TypeError
        Non-tensor, dense ``A``, sparse ``B``, non-floating or mismatched dtypes, ``upper``/``unitriangular``/
        ``transpose`` not bools (a string or ``None`` would silently pick a branch).
    ValueError
        Non-square ``A``, wrong ranks, size or batch mismatch, device mismatch, stored entries on the wrong side of the
        diagonal for ``upper``, stored diagonal entries with ``unitriangular=True``, a row without a stored diagonal
        entry, or a zero on the diagonal (all naming the offending entry).

    Examples
    --------
    >>> import torch
    >>> from sparseprec import sparse_triangular_solve
    >>> L = torch.tensor([[2.0, 0.0], [1.0, 4.0]]).to_sparse_csr().requires_grad_()
    >>> B = torch.tensor([[2.0], [5.0]])
    >>> X = sparse_triangular_solve(L, B, upper=False)
    >>> X.detach()
    tensor([[1.],
            [1.]])
    >>> X.sum().backward()
    >>> L.grad.values()  # gradient at the three stored entries only
    tensor([-0.3750, -0.2500, -0.2500])
    """
    upper, unitriangular = check_flag(upper, "upper"), check_flag(unitriangular, "unitriangular")
    transpose = check_flag(transpose, "transpose")
    ops = operands(A, B, square=True, allow_vector=True)
    pattern = pattern_of(A)
    pattern.check_triangular(upper, unitriangular, "A")
    solver = _Triangular(pattern, pattern.kernel_values(A.detach()), upper, unitriangular, "A")
    X = linear_solve(A, ops.B2, solver, pattern, transpose=transpose)  # shape: (b n, p)
    return X.reshape(ops.out_shape)

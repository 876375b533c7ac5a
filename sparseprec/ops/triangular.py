"""``sparse_triangular_solve``: sparse triangular solves with gradients on the stored entries only."""

from __future__ import annotations

import torch

from .._validation import check_flag
from ..pattern import SparsePattern, pattern_of
from ._operands import operands
from ._solve_rule import linear_solve

__all__ = ["sparse_triangular_solve"]


class _Triangular:
    """The triangular kernel as a solver for :func:`~sparseprec.ops._solve_rule.linear_solve`."""

    def __init__(self, pattern: SparsePattern, values: torch.Tensor, upper: bool, unitriangular: bool, name: str):
        self.pattern, self.values, self.name = pattern, values, name
        self.upper, self.unitriangular = upper, unitriangular
        self.kernel = pattern.kernel_matrix(values)

    def solve(self, B: torch.Tensor, transpose: bool) -> torch.Tensor:
        if self.pattern.nnz == 0:  # only reachable with unitriangular=True: A = I (MKL returns NaN here)
            return B.clone()
        # torch's CSR triangular solve (MKL on CPU, cuSPARSE on CUDA); a block-diagonal kernel is solved in one call.
        X = torch.triangular_solve(
            B, self.kernel, upper=self.upper, transpose=transpose, unitriangular=self.unitriangular
        ).solution
        # A zero pivot always makes the solution non-finite; the sum finds that in one cheap pass, and only then is
        # the diagonal inspected to name the row.
        if not self.unitriangular and not bool(torch.isfinite(X.sum())):
            self.pattern.raise_if_zero_diagonal(self.values, self.name)
        return X


def sparse_triangular_solve(
    A: torch.Tensor,
    B: torch.Tensor,
    upper: bool = True,
    unitriangular: bool = False,
    transpose: bool = False,
) -> torch.Tensor:
    r"""Solve ``A X = B`` (or ``Aᵀ X = B``) for a sparse triangular ``A``, with gradients at ``A``'s stored entries.

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
        Solve with ``Aᵀ`` instead of ``A``.

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

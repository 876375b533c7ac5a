"""``sparse_triangular_solve``: sparse triangular solves with gradients on the stored entries only."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ._operands import Operands, operands
from ._pattern import SparsePattern, pattern_of
from ._sampled import sampled_product

__all__ = ["sparse_triangular_solve"]


def _solve(kernel: torch.Tensor, B2: torch.Tensor, upper: bool, unitriangular: bool, transpose: bool) -> torch.Tensor:
    # torch's CSR triangular solve (MKL on CPU, cuSPARSE on CUDA); a block-diagonal kernel is solved in one call.
    if kernel.values().numel() == 0:  # only reachable with unitriangular=True: A = I (MKL returns NaN here)
        return B2.clone()
    return torch.triangular_solve(B2, kernel, upper=upper, transpose=transpose, unitriangular=unitriangular).solution


class _SparseTriangularSolve(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        A: torch.Tensor,
        B: torch.Tensor,
        upper: bool,
        unitriangular: bool,
        transpose: bool,
        ops: Operands,
        pattern: SparsePattern,
    ) -> torch.Tensor:
        values = pattern.kernel_values(A)
        kernel = pattern.kernel_matrix(values)
        X = _solve(kernel, ops.B2, upper, unitriangular, transpose)  # shape: (b n, p)
        # A zero pivot always makes the solution non-finite; the sum finds that in one cheap pass, and only then is
        # the diagonal inspected to name the row.
        if not unitriangular and not bool(torch.isfinite(X.sum())):
            pattern.raise_if_zero_diagonal(values, "A")
        ctx.A, ctx.pattern, ctx.kernel, ctx.ops, ctx.B_shape = A, pattern, kernel, ops, B.shape
        ctx.flags = (upper, unitriangular, transpose)
        ctx.save_for_backward(X)
        return X.reshape(ops.out_shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, G: torch.Tensor):
        (X,) = ctx.saved_tensors
        upper, unitriangular, transpose = ctx.flags
        pattern, kernel = ctx.pattern, ctx.kernel
        # X = op(A)^{-1} B with op(A) = A or A^T.  dB = op(A)^{-T} G: one more solve with the transpose flag flipped.
        dB = _solve(kernel, ctx.ops.to_kernel(G), upper, unitriangular, not transpose)
        grad_A = None
        if ctx.needs_input_grad[0]:
            # d op(A) = -dB X^T, so dA_ij = -sum_k dB_ik X_jk (transpose=False) or -sum_k X_ik dB_jk (transpose=True),
            # evaluated at the stored (i, j) only.
            # (the sign goes on X, n x p, rather than on the nnz-long result)
            minus_X = X.neg()
            if transpose:
                dA = sampled_product(pattern, kernel, minus_X, dB)
            else:
                dA = sampled_product(pattern, kernel, dB, minus_X)
            grad_A = pattern.gradient_like(ctx.A, dA)
        grad_B = dB.reshape(ctx.B_shape) if ctx.needs_input_grad[1] else None
        return grad_A, grad_B, None, None, None, None, None


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
    index data is built once per pattern and cached, so a batch costs one kernel call.

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
        Non-tensor, dense ``A``, sparse ``B``, non-floating or mismatched dtypes.
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
    >>> X
    tensor([[1.],
            [1.]], grad_fn=<_SparseTriangularSolveBackward>)
    >>> X.sum().backward()
    >>> L.grad.values()  # gradient at the three stored entries only
    tensor([-0.3750, -0.2500, -0.2500])
    """
    ops = operands(A, B, square=True, allow_vector=True)
    pattern = pattern_of(A)
    pattern.check_triangular(bool(upper), bool(unitriangular), "A")
    return _SparseTriangularSolve.apply(A, B, bool(upper), bool(unitriangular), bool(transpose), ops, pattern)

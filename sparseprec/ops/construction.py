"""Building a CSR matrix from learnable values with an O(nnz) backward.

torch's own ``torch.sparse_csr_tensor(crow, col, values)`` is differentiable w.r.t. ``values``, but its backward
(and that of ``A.values()`` on a CSR tensor) materialises a dense ``n x n`` gradient: at ``n = 9e4`` that is a 65 GB
allocation. :func:`sparse_csr_tensor` is the drop-in whose backward reads the gradient only at the stored entries.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .._validation import check_dense, check_tensor
from ._pattern import pattern_of

__all__ = ["sparse_csr_tensor"]


def _values_at(grad: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Entries of ``grad`` (any layout) at the stored positions of the CSR matrix ``A``, shaped like ``A.values()``."""
    if grad.layout == torch.sparse_csr and (
        grad.col_indices() is A.col_indices()
        or (torch.equal(grad.crow_indices(), A.crow_indices()) and torch.equal(grad.col_indices(), A.col_indices()))
    ):
        return grad.values()
    pattern = pattern_of(A)
    rows, cols = pattern.row.long(), pattern.col.long()
    n, m = A.shape[-2], A.shape[-1]
    if grad.layout == torch.strided:
        return grad.reshape(pattern.n_rows, m)[rows, cols % m].reshape(A.values().shape)
    # another sparse pattern: look each stored entry up among the gradient's sorted (coalesced) linear keys
    g = grad.to_sparse_coo().coalesce()
    idx = g.indices()
    g_rows, g_cols = (idx[0] * n + idx[1], idx[0] * m + idx[2]) if g.dim() == 3 else (idx[0], idx[1])
    g_keys = g_rows * pattern.n_cols + g_cols
    if g_keys.numel() == 0:
        return grad.new_zeros(A.values().shape)
    keys = rows * pattern.n_cols + cols
    pos = torch.searchsorted(g_keys, keys).clamp_(max=g_keys.numel() - 1)
    out = torch.where(g_keys[pos] == keys, g.values()[pos], 0)
    return out.reshape(A.values().shape)


class _CSRFromValues(torch.autograd.Function):
    @staticmethod
    def forward(ctx, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, ...]):
        A = torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)
        ctx.A = A
        return A

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        return None, None, _values_at(grad, ctx.A), None


def sparse_csr_tensor(
    crow_indices: torch.Tensor,
    col_indices: torch.Tensor,
    values: torch.Tensor,
    size: tuple[int, ...] | torch.Size,
) -> torch.Tensor:
    r"""A CSR matrix built from ``values`` whose backward to ``values`` costs O(nnz), never O(n²).

    Forward: the CSR tensor with the given row pointers, column indices and values (no copy).
    Backward: for an incoming gradient :math:`\bar A` (sparse with the same pattern, as every op of
    :mod:`sparseprec.ops` returns; any other sparse pattern; or dense),
    :math:`\partial L / \partial v_e = \bar A_{i_e j_e}` for the stored entries :math:`e = (i_e, j_e)`.

    Parameters
    ----------
    crow_indices : torch.Tensor
        Row pointers, int32 or int64, shape ``(n + 1,)`` or ``(b, n + 1)``.
    col_indices : torch.Tensor
        Column indices (sorted within each row), same dtype, shape ``(nnz,)`` or ``(b, nnz)``.
    values : torch.Tensor
        Dense values, shape ``(nnz,)`` or ``(b, nnz)``; may require grad.
    size : tuple of int
        ``(n, m)`` or ``(b, n, m)``.

    Returns
    -------
    torch.Tensor
        Sparse CSR tensor.

    Raises
    ------
    TypeError
        Arguments that are not tensors, or a sparse ``values``.
    ValueError
        Index and value shapes that disagree.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.ops import sparse_csr_tensor, sparse_mm
    >>> v = torch.tensor([2.0, 1.0, 3.0], requires_grad=True)
    >>> A = sparse_csr_tensor(torch.tensor([0, 1, 3]), torch.tensor([0, 0, 1]), v, (2, 2))
    >>> sparse_mm(A, torch.ones(2, 1)).sum().backward()
    >>> v.grad
    tensor([1., 1., 1.])
    """
    check_tensor(crow_indices, "crow_indices")
    check_tensor(col_indices, "col_indices")
    check_dense(values, "values", dims=(1, 2))
    if col_indices.shape != values.shape:
        raise ValueError(
            f"col_indices and values must have the same shape, got {tuple(col_indices.shape)} and {tuple(values.shape)}"
        )
    return _CSRFromValues.apply(crow_indices, col_indices, values, tuple(size))

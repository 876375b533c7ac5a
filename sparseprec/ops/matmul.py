"""``sparse_mm``: sparse times dense, with the gradient w.r.t. the sparse operand on its stored entries only."""

from __future__ import annotations

import torch

from .._validation import check_flag
from ..pattern import pattern_of
from ._operands import operands
from ._products import kernel_mm

__all__ = ["sparse_mm"]


def sparse_mm(A: torch.Tensor, B: torch.Tensor, *, transpose: bool = False) -> torch.Tensor:
    r"""Sparse-dense matrix product ``C = A B`` with gradients w.r.t. ``A`` at its stored entries only.

    Forward: :math:`C = A B`, batched as :math:`C_b = A_b B_b`; with ``transpose=True``, :math:`C = A^\top B`
    (through the transpose's CSR index data, built once per pattern and cached; ``A`` is never copied into a
    transposed tensor).

    Backward, with :math:`G = \partial L / \partial C`:

    .. math::

        \frac{\partial L}{\partial B} = A^\top G, \qquad
        \frac{\partial L}{\partial A_{ij}} = \sum_k G_{ik} B_{jk} \quad \text{for stored } (i, j) \text{ only,}

    and for ``transpose=True``: :math:`\partial L / \partial B = A G` and
    :math:`\partial L / \partial A_{ij} = \sum_k B_{ik} G_{jk}`.

    The gradient w.r.t. ``A`` is a sparse tensor with ``A``'s layout and indices (for an uncoalesced COO ``A``: its
    coalesced indices, duplicates summed as torch does); the gradient w.r.t. ``B`` is dense. No ``n x m`` dense
    intermediate is formed: ``dA`` is a sampled dense-dense product on the stored pattern, O(nnz p) time and O(nnz)
    memory. The backward is itself written with these two products, so the op is differentiable any number of
    times (Hessians and Hessian-vector products through ``A`` and ``B`` are exact). Pattern-derived index data (CSR
    row pointers of a COO input, the transpose's CSR) is computed once per sparsity pattern and cached (see
    :func:`sparseprec.clear_caches`).

    Parameters
    ----------
    A : torch.Tensor
        Sparse COO or CSR matrix, shape ``(n, m)`` or batched ``(b, n, m)``; int32 or int64 CSR indices; float32 or
        float64 values.
    B : torch.Tensor
        Dense tensor, shape ``(m, p)`` or ``(m,)`` for an unbatched ``A``, ``(b, m, p)`` for a batched one. Same dtype
        and device as ``A``. (With ``transpose=True`` the roles of ``n`` and ``m`` swap.)
    transpose : bool
        Multiply by :math:`A^\top` instead of :math:`A` (keyword only).

    Returns
    -------
    torch.Tensor
        Dense ``C`` of shape ``(n, p)``, ``(n,)`` or ``(b, n, p)`` (``m`` for ``n`` with ``transpose=True``).

    Raises
    ------
    TypeError
        ``A`` or ``B`` not a tensor, ``A`` dense or of another sparse layout, ``B`` sparse, dtypes not floating or not
        equal, ``transpose`` not a bool.
    ValueError
        Wrong number of dimensions, hybrid ``A``, inner sizes or batch sizes that do not match, devices that differ.

    Examples
    --------
    >>> import torch
    >>> from sparseprec import sparse_mm
    >>> A = torch.tensor([[2.0, 0.0], [1.0, 3.0]]).to_sparse_csr().requires_grad_()
    >>> B = torch.tensor([[1.0], [2.0]])
    >>> C = sparse_mm(A, B)
    >>> C.detach()
    tensor([[2.],
            [7.]])
    >>> C.sum().backward()
    >>> A.grad.values()  # one gradient per stored entry: B_j summed over columns
    tensor([1., 1., 2.])
    >>> sparse_mm(A.detach(), B, transpose=True)  # Aᵀ B
    tensor([[4.],
            [6.]])
    """
    transpose = check_flag(transpose, "transpose")
    ops = operands(A, B, square=False, allow_vector=True, transpose=transpose)
    pattern = pattern_of(A)
    C = kernel_mm(A, ops.B2, pattern, transpose=transpose)  # shape: (b n, p)
    return C.reshape(ops.out_shape)

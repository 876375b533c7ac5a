"""Building sparse matrices from learnable values with an O(nnz) backward.

torch's own ``torch.sparse_csr_tensor(crow, col, values)`` is differentiable w.r.t. ``values``, but its backward
(and that of ``A.values()`` on a CSR tensor) materialises a dense ``n x n`` gradient: at ``n = 9e4`` that is a 65 GB
allocation. ``torch.sparse_coo_tensor``'s backward is sparse but matches the gradient's pattern to the input's on
every call. :func:`sparse_csr_tensor` and :func:`sparse_coo_tensor` are drop-ins whose backward reads the gradient only
at the stored entries and, for the gradients the ops of :mod:`sparseprec.ops` return (same pattern, same index
tensors), does no index work at all; a sparse gradient on the same positions in other index tensors (torch's sum of
two gradients, the gradient of one of torch's own ops) is recognised by comparing the indices, O(nnz), before any
coalescing. The ops themselves differentiate such a tensor w.r.t. the values it was built from, so when it feeds
several ops their gradients are summed as dense values and no sparse gradient is formed at all.
"""

from __future__ import annotations

import math
import numbers

import torch

from .._validation import check_dense, check_tensor
from ..pattern import pattern_of, rows_from_crow
from ._values import remember_source, wrap_values

__all__ = ["sparse_csr_tensor", "sparse_coo_tensor"]


def _check_indices(index: object, name: str) -> None:
    """Index tensors must be int32/int64: a float index would be truncated, a bool one read as 0/1."""
    check_tensor(index, name)
    if index.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name} must have dtype torch.int32 or torch.int64, got {index.dtype}")


def _check_size(size: object, dims: int | None) -> tuple[int, ...]:
    """``size`` as a tuple of non-negative ints: 2 or 3 of them, or ``dims`` when given."""
    allowed = (2, 3) if dims is None else (dims,)
    if isinstance(size, torch.Size):
        size = tuple(size)
    if not isinstance(size, (tuple, list)) or len(size) not in allowed:
        expected = " or ".join(f"{d} sizes" for d in allowed)
        raise TypeError(f"size must be a tuple of {expected} ((n, m) or (b, n, m)), got {size!r}")
    for s in size:
        integer_tensor = isinstance(s, torch.Tensor) and s.dim() == 0 and not s.is_floating_point()
        if isinstance(s, bool) or not (isinstance(s, numbers.Integral) or integer_tensor):
            raise TypeError(f"size must hold ints, got {size!r}")
    out = tuple(int(s) for s in size)
    if min(out) < 0:
        raise ValueError(f"size must be non-negative, got {out}")
    return out


def sparse_csr_tensor(
    crow_indices: torch.Tensor,
    col_indices: torch.Tensor,
    values: torch.Tensor,
    size: tuple[int, ...] | torch.Size,
) -> torch.Tensor:
    r"""A CSR matrix from ``values`` whose backward to ``values`` costs :math:`O(\mathrm{nnz})`, never :math:`O(n^2)`.

    Forward: the CSR tensor with the given row pointers, column indices and values (no copy).
    Backward: for an incoming gradient :math:`\bar A` (sparse with the same pattern, as every op of
    :mod:`sparseprec.ops` returns; any other sparse pattern; or dense),
    :math:`\partial L / \partial v_e = \bar A_{i_e j_e}` for the stored entries :math:`e = (i_e, j_e)`.

    Parameters
    ----------
    crow_indices : torch.Tensor
        Row pointers, int32 or int64, shape ``(n + 1,)`` or ``(*batch, n + 1)``.
    col_indices : torch.Tensor
        Column indices (sorted within each row), same dtype, shape ``(nnz,)`` or ``(*batch, nnz)``.
    values : torch.Tensor
        Dense values, shape ``(nnz,)`` or ``(*batch, nnz)``; may require grad.
    size : tuple of int
        ``(n, m)`` or ``(*batch, n, m)``. The ops take no or one batch dimension; with more the tensor is still
        differentiable w.r.t. ``values`` through its own ``values()``, ``to_dense()`` or the library's distributions.

    Returns
    -------
    torch.Tensor
        Sparse CSR tensor.

    Raises
    ------
    TypeError
        Arguments that are not tensors, a sparse ``values``, index tensors that are not int32/int64 (a float index
        would be truncated), a ``size`` that is not 2 or 3 ints.
    ValueError
        Index and value shapes that disagree, a negative size, index data out of range or not a valid CSR structure
        (row pointers from 0, non-decreasing, ending at nnz; columns in range, strictly increasing within a row).

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
    _check_indices(crow_indices, "crow_indices")
    _check_indices(col_indices, "col_indices")
    check_tensor(values, "values")
    if values.dim() == 0:
        raise ValueError("values must have shape (nnz,) or (*batch, nnz), got a 0-D tensor")
    check_dense(values, "values", dims=(values.dim(),))
    size = _check_size(size, values.dim() + 1)
    if col_indices.shape != values.shape:
        raise ValueError(
            f"col_indices and values must have the same shape, got {tuple(col_indices.shape)} and {tuple(values.shape)}"
        )
    if values.dim() > 2:  # two or more batch dimensions: torch's own backward cannot reach the values
        batch, nnz = values.shape[:-1], values.shape[-1]
        flat = torch.sparse_csr_tensor(
            crow_indices.reshape(-1, crow_indices.shape[-1]), col_indices.reshape(-1, nnz),
            values.detach().reshape(-1, nnz), (math.prod(batch), *size[-2:]), check_invariants=False,
        )  # fmt: skip
        pattern_of(flat, "(crow_indices, col_indices)")  # the index data checked, once per pattern
        A = _BatchedCSR.apply(values, crow_indices, col_indices, size)
        return remember_source(A, values)
    template = torch.sparse_csr_tensor(crow_indices, col_indices, values.detach(), size, check_invariants=False)
    A = wrap_values(values, template, pattern_of(template, "(crow_indices, col_indices)"), raw=True)
    return remember_source(A, values)


class _BatchedCSR(torch.autograd.Function):
    r"""A CSR tensor with two or more batch dimensions from its values ``(*batch, nnz)``, differentiable w.r.t. them.

    torch's own ``torch.sparse_csr_tensor`` cannot back-propagate into such a tensor (its backward converts the
    gradient to CSR through COO, which refuses more than two sparse dimensions). Backward: the incoming gradient read
    at the stored entries, :math:`\partial L / \partial v_{b,e} = \bar A_{b, i_e, j_e}`. A CSR gradient on the same
    pattern (what ``.values()`` sends back) gives its values as they are, a dense one is gathered at the entries, any
    other sparse one (e.g. the empty zero gradient of an unused output) is matched to the entries by sorted search,
    O(nnz log nnz).
    """

    @staticmethod
    def forward(ctx, values, crow, col, size):
        ctx.save_for_backward(crow, col)
        return torch.sparse_csr_tensor(crow, col, values.detach(), size, check_invariants=False)

    @staticmethod
    def backward(ctx, grad):
        crow, col = ctx.saved_tensors
        batch, nnz = tuple(col.shape[:-1]), col.shape[-1]
        if grad.layout == torch.sparse_csr and grad.col_indices().shape == col.shape:
            if torch.equal(grad.crow_indices(), crow) and torch.equal(grad.col_indices(), col):
                return grad.values(), None, None, None
        rows = rows_from_crow(crow.reshape(-1, crow.shape[-1])[0], nnz)
        cols = col.reshape(-1, nnz)[0]
        if grad.layout == torch.strided:
            return grad[..., rows, cols], None, None, None
        # any other sparse gradient: flat (batch, row, column) keys of its entries, looked up for ours
        coo = grad.to_sparse_coo().coalesce()
        if coo._nnz() == 0:
            return torch.zeros((*batch, nnz), dtype=grad.dtype, device=grad.device), None, None, None
        n = grad.shape[-1]
        keys = torch.zeros(coo._nnz(), dtype=torch.int64, device=grad.device)
        for dim, size in enumerate(grad.shape):
            keys = keys * size + coo.indices()[dim]  # sorted, as the COO tensor is coalesced
        batch_index = torch.arange(math.prod(batch), device=grad.device).unsqueeze(-1)
        ours = ((batch_index * n + rows) * n + cols).reshape(-1)
        position = torch.searchsorted(keys, ours).clamp(max=keys.numel() - 1)
        values = torch.where(keys[position] == ours, coo.values()[position], 0.0)
        return values.reshape(*batch, nnz), None, None, None


def sparse_coo_tensor(
    indices: torch.Tensor,
    values: torch.Tensor,
    size: tuple[int, ...] | torch.Size,
    *,
    is_coalesced: bool | None = None,
) -> torch.Tensor:
    r"""A COO matrix built from ``values`` whose backward to ``values`` costs O(nnz) and no index matching.

    Forward: ``torch.sparse_coo_tensor(indices, values, size, is_coalesced=is_coalesced)`` (duplicates, if any, are
    summed by every op). Backward: :math:`\partial L / \partial v_e = \bar A_{i_e j_e}` for every stored entry
    :math:`e` (each duplicate receives the gradient of its position). For the gradients the ops of
    :mod:`sparseprec.ops` return this is a plain read (a gather through the cached coalescing map for uncoalesced
    indices); dense gradients and other sparse patterns are read at the stored positions.

    Parameters
    ----------
    indices : torch.Tensor
        int64 indices, shape ``(2, nnz)`` or ``(3, nnz)`` (batch, row, column).
    values : torch.Tensor
        Dense values, shape ``(nnz,)``; may require grad.
    size : tuple of int
        ``(n, m)`` or ``(b, n, m)``.
    is_coalesced : bool, optional
        Declare the indices sorted and unique (as torch's argument of the same name); ``None`` lets torch decide.

    Returns
    -------
    torch.Tensor
        Sparse COO tensor.

    Raises
    ------
    TypeError
        Arguments that are not tensors, a sparse ``values``, ``indices`` not int32/int64 (a float index would be
        truncated), a ``size`` that is not 2 or 3 ints, ``is_coalesced`` not ``None`` or a bool.
    ValueError
        ``indices`` not of shape ``(len(size), nnz)`` matching ``values``, a negative size, indices out of range (or
        not sorted and unique when declared coalesced).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.ops import sparse_coo_tensor, sparse_mm
    >>> v = torch.tensor([2.0, 1.0, 3.0], requires_grad=True)
    >>> A = sparse_coo_tensor(torch.tensor([[0, 1, 1], [0, 0, 1]]), v, (2, 2), is_coalesced=True)
    >>> sparse_mm(A, torch.tensor([[1.0], [10.0]])).sum().backward()
    >>> v.grad
    tensor([ 1.,  1., 10.])
    """
    _check_indices(indices, "indices")
    check_dense(values, "values", dims=(1,))
    size = _check_size(size, None)
    if is_coalesced is not None and not isinstance(is_coalesced, bool):
        raise TypeError(f"is_coalesced must be None or a bool, got {type(is_coalesced).__name__} {is_coalesced!r}")
    if indices.dim() != 2 or indices.shape[0] != len(size) or indices.shape[1] != values.shape[0]:
        raise ValueError(
            f"indices must have shape ({len(size)}, nnz) with nnz = values.shape[0] = {values.shape[0]}, got "
            f"{tuple(indices.shape)}"
        )
    template = torch.sparse_coo_tensor(
        indices, values.detach(), size, is_coalesced=is_coalesced, check_invariants=False
    )
    A = wrap_values(values, template, pattern_of(template, "indices"), raw=True)
    return remember_source(A, values)

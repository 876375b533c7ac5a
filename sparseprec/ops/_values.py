"""Between a sparse tensor and the dense vector of its stored values: two maps, each the other's adjoint.

For a sparsity pattern with stored positions :math:`(i_e, j_e)`:

* ``read``: a matrix :math:`S` (sparse of any pattern, or dense) :math:`\\mapsto v_e = S_{i_e j_e}`;
* ``wrap``: a vector :math:`v \\mapsto` the sparse matrix with value :math:`v_e` at :math:`(i_e, j_e)`.

:math:`\\langle \\mathrm{read}(S), v\\rangle = \\langle S, \\mathrm{wrap}(v)\\rangle`, so the backward of one is the
other. Each backward is written with the other's autograd function, which makes both differentiable any number of
times (a Hessian through a sparse operand's values passes through them twice).

Two orderings of the values exist (see :mod:`sparseprec.ops._pattern`):

* *kernel* order: one value per distinct position, row-major (the ops' working order; an uncoalesced COO tensor's
  duplicates are summed into it, and a gradient comes back on its coalesced indices);
* *raw* order: the tensor's own stored values as the user gave them (``(b, nnz)`` for a batched CSR tensor; every
  duplicate of an uncoalesced COO tensor separately, each reading the matrix at its position).

Gradients w.r.t. one sparse matrix that feeds several ops (a log-determinant and a quadratic form) are summed on its
dense values, never as sparse tensors: a matrix built by :func:`sparseprec.sparse_csr_tensor` /
:func:`sparseprec.sparse_coo_tensor` hands every op its values (:func:`as_operand`, :func:`stored_values`), and
:func:`read_once` gives any other matrix (a user's leaf tensor) the same form through one read of its values. torch's
own sum of two sparse gradients (an add with coalescing and sorting, wrong for batched CSR) is thereby avoided; where
such a sum still reaches a read (a gradient from torch's own ops plus ours), a gradient on the same positions in new
index tensors is recognised by an O(nnz) comparison of the indices, before any coalescing or searching.
"""

from __future__ import annotations

import warnings

import torch

from ..pattern import SparsePattern, same_memory

__all__ = [
    "stored_values",
    "read_once",
    "source_values",
    "wrap_values",
    "read_values",
    "operand_values",
    "operand_gradient",
    "as_operand",
    "remember_source",
]

# The attribute by which a sparse tensor made by sparseprec.sparse_csr_tensor / sparse_coo_tensor remembers the values
# tensor it was built from (raw order), so the ops can differentiate w.r.t. those values directly.
_SOURCE = "_sparseprec_values"


def _own_indices(S: torch.Tensor, template: torch.Tensor) -> bool:
    """``S`` stores exactly ``template``'s index tensors (same memory): its values can be read without matching."""
    if S.layout != template.layout or S.shape != template.shape:
        return False
    if S.layout == torch.sparse_csr:
        return same_memory(S.crow_indices(), template.crow_indices()) and same_memory(
            S.col_indices(), template.col_indices()
        )
    return same_memory(S._indices(), template._indices())


def _equal_indices(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Index tensors holding the same numbers (any integer dtypes): O(nnz), no sorting."""
    if a.shape != b.shape:
        return False
    return torch.equal(a, b if b.dtype == a.dtype else b.to(a.dtype))


def _same_positions(S: torch.Tensor, template: torch.Tensor) -> bool:
    """``S`` stores ``template``'s positions in the same order, in other index tensors (e.g. torch's sum of two
    gradients on the pattern, whose indices are new memory): compared by value, O(nnz). For COO both must be
    coalesced (a coalesced tensor's order is the sorted one)."""
    if S.layout != template.layout or S.shape != template.shape:
        return False
    if S.layout == torch.sparse_csr:
        return _equal_indices(S.col_indices(), template.col_indices()) and _equal_indices(
            S.crow_indices(), template.crow_indices()
        )
    return S.is_coalesced() and template.is_coalesced() and _equal_indices(S._indices(), template._indices())


def _at_positions(S: torch.Tensor, pattern: SparsePattern, m: int) -> torch.Tensor:
    """Entries of ``S`` (dense, or sparse of another pattern) at the pattern's kernel positions, ``(nnz,)``."""
    rows, cols = pattern.row.long(), pattern.col.long()
    if S.layout == torch.strided:
        return S.reshape(pattern.n_rows, m)[rows, cols % m]
    n = S.shape[-2]
    g = S.to_sparse_coo().coalesce()
    idx = g.indices()
    g_rows, g_cols = (idx[0] * n + idx[1], idx[0] * m + idx[2]) if g.dim() == 3 else (idx[0], idx[1])
    g_keys = g_rows * pattern.n_cols + g_cols
    if g_keys.numel() == 0:  # (S.new_zeros would make a sparse tensor here)
        return torch.zeros(pattern.nnz, dtype=S.dtype, device=S.device)
    keys = rows * pattern.n_cols + cols
    pos = torch.searchsorted(g_keys, keys).clamp_(max=g_keys.numel() - 1)
    return torch.where(g_keys[pos] == keys, g.values()[pos], 0)


def _read(S: torch.Tensor, template: torch.Tensor, pattern: SparsePattern, raw: bool) -> torch.Tensor:
    if _own_indices(S, template) or _same_positions(S, template):
        if S.layout == torch.sparse_csr:
            return S.values() if raw else S.values().reshape(-1)
        if raw or pattern.inverse is None:
            return S._values()
        return pattern.kernel_values(S)  # duplicates summed into the kernel order
    if S.layout == torch.sparse_coo and template.layout == torch.sparse_coo and S.is_coalesced():
        grad_indices = pattern.coo_grad_indices
        if grad_indices is not None and (
            same_memory(S._indices(), grad_indices) or _equal_indices(S._indices(), grad_indices)
        ):
            kernel = S._values()  # a kernel-ordered gradient of an uncoalesced tensor (see ``wrap``)
        else:
            kernel = _at_positions(S, pattern, template.shape[-1])
    else:
        kernel = _at_positions(S, pattern, template.shape[-1])
    if not raw:
        return kernel
    if template.layout == torch.sparse_csr:
        return kernel.reshape(template.values().shape)
    return kernel if pattern.inverse is None else kernel[pattern.inverse]


def _wrap(values: torch.Tensor, template: torch.Tensor, pattern: SparsePattern, raw: bool) -> torch.Tensor:
    if template.layout == torch.sparse_csr:
        values = values.reshape(template.values().shape)
        return torch.sparse_csr_tensor(
            template.crow_indices(), template.col_indices(), values, template.shape, check_invariants=False
        )
    if raw:
        return torch.sparse_coo_tensor(
            template._indices(), values, template.shape, is_coalesced=template.is_coalesced(), check_invariants=False
        )
    return pattern.gradient_like(template, values)


class _Read(torch.autograd.Function):
    @staticmethod
    def forward(ctx, S: torch.Tensor, template: torch.Tensor, pattern: SparsePattern, raw: bool) -> torch.Tensor:
        ctx.template, ctx.pattern, ctx.raw = template, pattern, raw  # index data only: no autograd history
        ctx.built_by = type(S.grad_fn).__name__  # saves no tensor: backward may run again (see read_once)
        return _read(S, template, pattern, raw)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        _warn_if_once_differentiable(ctx.built_by)
        return wrap_values(grad.contiguous(), ctx.template, ctx.pattern, raw=ctx.raw), None, None, None


class _Wrap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: torch.Tensor, template: torch.Tensor, pattern: SparsePattern, raw: bool) -> torch.Tensor:
        ctx.template, ctx.pattern, ctx.raw = template, pattern, raw
        return _wrap(values, template, pattern, raw)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return read_values(grad, ctx.template, ctx.pattern, raw=ctx.raw), None, None, None


def _template(A: torch.Tensor) -> torch.Tensor:
    """``A`` without autograd history (the index tensors are shared, not copied)."""
    return A.detach() if A.requires_grad else A


def remember_source(A: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Mark ``A`` (just built from ``values`` in its raw order) with its source values; returns ``A``."""
    if values.requires_grad:
        setattr(A, _SOURCE, values)
    return A


def source_values(A: torch.Tensor) -> torch.Tensor | None:
    """The values ``A`` was built from by :func:`sparseprec.sparse_csr_tensor`/:func:`sparseprec.sparse_coo_tensor`, in
    ``A``'s raw order (``(*batch, nnz)`` for batched CSR), when they require grad and grad mode is on; else ``None``."""
    source = getattr(A, _SOURCE, None)
    return source if source is not None and torch.is_grad_enabled() else None


def _source_kernel_values(A: torch.Tensor, pattern: SparsePattern) -> torch.Tensor | None:
    """Kernel-ordered values of ``A`` as a differentiable function of the values it was built from, or ``None``."""
    source = source_values(A)
    return None if source is None else pattern.to_kernel_order(source)


def read_once(A: torch.Tensor, pattern: SparsePattern) -> torch.Tensor:
    r"""``A`` as one differentiable read of its values, for a matrix that feeds several ops.

    Every op differentiates w.r.t. a sparse operand by a sparse gradient on its pattern; when ``A`` feeds two ops
    (a log-determinant and a quadratic form), torch sums those two sparse tensors (an add that coalesces and sorts,
    :math:`O(\mathrm{nnz} \log \mathrm{nnz})`, and wrong for batched CSR). The result of ``read_once`` is a sparse
    tensor equal to ``A`` — on ``A``'s own index tensors (CSR, coalesced COO) or its coalesced ones (uncoalesced COO)
    — built from :math:`v = \mathrm{read}(A)` (kernel order) as :func:`sparseprec.sparse_csr_tensor` builds one, so
    the ops differentiate w.r.t. :math:`v`: their gradients are summed densely, :math:`O(\mathrm{nnz})`, and the one
    read's backward forms ``A``'s gradient once, with ``A``'s layout and (coalesced) positions, as each op returns it.

    Returns ``A`` itself when there is nothing to merge: ``A`` dense, not requiring grad, grad mode off, or ``A`` built
    by sparseprec's constructors (its ops use its source values already). Use the result in place of ``A`` for as long
    as ``A``'s values stay as they are (e.g. the lifetime of a distribution built on ``A``); the read saves no
    tensors, so several backward passes may run through it.
    """
    if A.layout == torch.strided or not (A.requires_grad and torch.is_grad_enabled()):
        return A
    if getattr(A, _SOURCE, None) is not None:
        return A
    values = _Read.apply(A, _template(A), pattern, False)
    return remember_source(wrap_values(values, A, pattern, raw=False), values)


def as_operand(A: torch.Tensor, pattern: SparsePattern) -> torch.Tensor:
    """What the autograd functions take for a sparse ``A``: the values it was built from by
    :func:`sparseprec.sparse_csr_tensor`/:func:`sparseprec.sparse_coo_tensor` (kernel order, differentiable; no sparse
    gradient is then ever formed or summed — torch sums two batched CSR gradients wrongly), else ``A`` itself."""
    if A.layout == torch.strided:
        return A
    values = _source_kernel_values(A, pattern)
    return A if values is None else values


def stored_values(A: torch.Tensor, pattern: SparsePattern) -> torch.Tensor:
    """``A``'s stored values in kernel order, ``(nnz,)``, differentiable (any order) w.r.t. ``A``.

    The gradient reaching ``A`` is sparse with ``A``'s layout and indices (coalesced indices for an uncoalesced COO
    ``A``), or goes straight to the values ``A`` was built from by :func:`sparseprec.sparse_csr_tensor` /
    :func:`sparseprec.sparse_coo_tensor`. Without autograd this is ``pattern.kernel_values(A)``: no copy for CSR and
    coalesced COO.
    """
    if not (A.requires_grad and torch.is_grad_enabled()):
        return pattern.kernel_values(A)
    values = _source_kernel_values(A, pattern)
    if values is not None:
        return values
    return _Read.apply(A, _template(A), pattern, False)


def wrap_values(values: torch.Tensor, template: torch.Tensor, pattern: SparsePattern, *, raw: bool) -> torch.Tensor:
    """The sparse tensor with ``template``'s layout and positions holding ``values``, differentiable w.r.t. them.

    ``raw=False``: ``values`` in kernel order (the result has ``template``'s coalesced positions), as every gradient
    w.r.t. a sparse operand is returned. ``raw=True``: ``values`` in ``template``'s own stored order (its very index
    tensors, duplicates included). The backward reads the incoming gradient (sparse of any pattern, or dense) at the
    positions, O(nnz) and without index matching when it holds the same index tensors.
    """
    template = _template(template)
    if not (values.requires_grad and torch.is_grad_enabled()):
        return _wrap(values, template, pattern, raw)
    return _Wrap.apply(values, template, pattern, raw)


def read_values(S: torch.Tensor, template: torch.Tensor, pattern: SparsePattern, *, raw: bool) -> torch.Tensor:
    """Entries of ``S`` (sparse of any pattern, or dense) at ``template``'s positions; the adjoint of
    :func:`wrap_values`, differentiable w.r.t. ``S``."""
    template = _template(template)
    if not (S.requires_grad and torch.is_grad_enabled()):
        return _read(S, template, pattern, raw)
    return _Read.apply(S, template, pattern, raw)


def operand_values(operand: torch.Tensor, pattern: SparsePattern) -> torch.Tensor:
    """Kernel-ordered values of an op's operand: the sparse matrix's stored values, or the values themselves."""
    return operand if operand.layout == torch.strided else pattern.kernel_values(operand)


# torch's own sparse constructors: their backward to the values is not differentiable again (torch 2.x), so a second
# derivative through a matrix they built is lost (COO) or crashes inside torch (CSR), upstream of this library
_ONCE_DIFFERENTIABLE_CONSTRUCTORS = ("SparseCooTensorWithDimsAndTensorsBackward0", "SparseCompressedTensorBackward0")


def operand_gradient(grad: torch.Tensor, operand: torch.Tensor, pattern: SparsePattern) -> torch.Tensor:
    """A kernel-ordered gradient in the operand's form: sparse like the matrix (:func:`wrap_values`), or as is.

    When a graph of the derivative is being built (``create_graph=True``) for a matrix made by torch's own
    ``torch.sparse_coo_tensor``/``torch.sparse_csr_tensor`` from values that require grad, a warning says that torch
    will drop the second derivative through those values (use :func:`sparseprec.sparse_coo_tensor` /
    :func:`sparseprec.sparse_csr_tensor`, whose backward is differentiable).
    """
    if operand.layout == torch.strided:
        return grad
    _warn_if_once_differentiable(type(operand.grad_fn).__name__)
    return wrap_values(grad, operand, pattern, raw=False)


def _warn_if_once_differentiable(built_by: str) -> None:
    """Warn when a graph of the derivative is being built (``create_graph=True``) for a sparse matrix whose autograd
    node ``built_by`` is one of torch's own constructors (see :func:`operand_gradient`)."""
    if torch.is_grad_enabled() and built_by in _ONCE_DIFFERENTIABLE_CONSTRUCTORS:
        warnings.warn(
            f"a sparse operand was built by torch's own constructor ({built_by}), whose backward "
            "to the values is not differentiable again: second derivatives (create_graph=True, Hessians) through "
            "those values are lost or fail inside torch. Build it with sparseprec.sparse_coo_tensor / "
            "sparseprec.sparse_csr_tensor (same arguments), whose backward is twice differentiable.",
            UserWarning,
            stacklevel=3,
        )

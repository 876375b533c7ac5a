"""The two products every op is made of, on the kernel matrix (values + cached pattern), each the other's derivative.

* ``kernel_mm(v, B)``: :math:`C = K B` (or :math:`K^\\top B`), :math:`K` the kernel CSR matrix with values ``v``;
* ``sampled_product(U, V)``: :math:`s_e = \\sum_k U_{i_e k} V_{j_e k}`, the entries of :math:`U V^\\top` at the
  stored positions only (never forming :math:`U V^\\top`).

Backward of the product, with :math:`G = \\partial L/\\partial C`: :math:`\\partial L/\\partial B = K^\\top G`
(a product) and :math:`\\partial L/\\partial v = \\mathrm{sampled}(G, B)` (:math:`\\mathrm{sampled}(B, G)` for
:math:`K^\\top B`). Backward of the sampled product, with :math:`g = \\partial L/\\partial s` and :math:`S` the kernel
matrix holding :math:`g`: :math:`\\partial L/\\partial U = S V`, :math:`\\partial L/\\partial V = S^\\top U` (products).
Each backward calls the other's autograd function, so both are differentiable any number of times, at O(nnz p) per
derivative and without a dense ``n x n`` intermediate.

``symmetric_directions`` reads a gradient :math:`U V^\\top` at the stored entries under the library's convention for a
symmetric operand (docs/concepts.md, "Gradients w.r.t. a symmetric sparse matrix"); the product takes the same
``symmetric`` argument as the solve rule (:mod:`sparseprec.ops._solve_rule`).
"""

from __future__ import annotations

import torch

from ..pattern import SparsePattern
from ._values import as_operand, operand_gradient, operand_values

__all__ = ["kernel_mm", "sampled_product", "symmetric_directions", "check_symmetric", "SYMMETRIC_STORAGES"]

#: The values of ``symmetric`` that declare an operand symmetric: both triangles stored, or one triangle standing for
#: both (``None`` declares nothing: every stored value is an independent entry)
SYMMETRIC_STORAGES = ("full", "lower", "upper")


def _sampled(pattern: SparsePattern, U: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    if pattern.nnz == 0 or U.shape[-1] == 0:
        return U.new_zeros(pattern.nnz)
    if U.shape[-1] == 1 and U.device.type != "cpu":
        u = U.reshape(-1).index_select(0, pattern.row)
        return u.mul_(V.reshape(-1).index_select(0, pattern.col))
    # Written into a fresh kernel matrix in place (out=): without out=, sampled_addmm first clones its sparse input,
    # indices and values. Its values must be finite (beta = 0 multiplies them; NaN * 0 is NaN), hence zeros. On the
    # CPU this row-parallel kernel also beats two nnz-long gathers and a product at p = 1.
    kernel = pattern.kernel_matrix(U.new_zeros(pattern.nnz))
    return torch.sparse.sampled_addmm(kernel, U, V.transpose(0, 1), beta=0.0, out=kernel).values()


def _mm(values: torch.Tensor, B: torch.Tensor, pattern: SparsePattern, transpose: bool) -> torch.Tensor:
    rows = pattern.n_cols if transpose else pattern.n_rows
    if B.shape[-1] == 0 or pattern.nnz == 0:
        return B.new_zeros(rows, B.shape[-1])
    kernel = pattern.transposed_kernel_matrix(values) if transpose else pattern.kernel_matrix(values)
    return kernel @ B


class _KernelMM(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, operand: torch.Tensor, B: torch.Tensor, pattern: SparsePattern, transpose: bool, symmetric: str | None
    ) -> torch.Tensor:
        ctx.save_for_backward(operand, B)
        ctx.pattern, ctx.transpose, ctx.symmetric = pattern, transpose, symmetric
        return _mm(operand_values(operand, pattern), B, pattern, transpose)

    @staticmethod
    def backward(ctx, G: torch.Tensor):
        operand, B = ctx.saved_tensors
        G = G.contiguous()
        grad_operand = grad_B = None
        if ctx.needs_input_grad[0]:
            # C = K B: dK_ij = sum_k G_ik B_jk; C = Kᵀ B: dK_ij = sum_k B_ik G_jk; at stored (i, j) only
            U, V = (B, G) if ctx.transpose else (G, B)
            grad = symmetric_directions(ctx.pattern, ctx.symmetric, U, V)
            grad_operand = operand_gradient(grad, operand, ctx.pattern)
        if ctx.needs_input_grad[1]:
            grad_B = kernel_mm(operand, G, ctx.pattern, transpose=not ctx.transpose, symmetric=ctx.symmetric)
        return grad_operand, grad_B, None, None, None


class _SampledProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, U: torch.Tensor, V: torch.Tensor, pattern: SparsePattern) -> torch.Tensor:
        ctx.save_for_backward(U, V)
        ctx.pattern = pattern
        return _sampled(pattern, U, V)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        U, V = ctx.saved_tensors
        grad_U = kernel_mm(g, V, ctx.pattern, transpose=False) if ctx.needs_input_grad[0] else None
        grad_V = kernel_mm(g, U, ctx.pattern, transpose=True) if ctx.needs_input_grad[1] else None
        return grad_U, grad_V, None


def _recorded(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def kernel_mm(
    operand: torch.Tensor,
    B: torch.Tensor,
    pattern: SparsePattern,
    *,
    transpose: bool,
    symmetric: str | None = None,
) -> torch.Tensor:
    """:math:`K B` (``transpose=False``, ``B`` of shape ``(M, p)``) or :math:`K^\\top B` (``(N, p)``) for the kernel
    matrix ``K`` of ``operand``: the sparse matrix itself (of ``pattern``), or its kernel-ordered values (dense
    ``(nnz,)``); differentiable w.r.t. ``operand`` and ``B``, any number of times. ``symmetric`` declares ``K``
    symmetric (see :func:`symmetric_directions`); it changes only the gradient w.r.t. ``operand``."""
    if not _recorded(operand, B):
        return _mm(operand_values(operand, pattern), B, pattern, transpose)
    return _KernelMM.apply(as_operand(operand, pattern), B, pattern, transpose, check_symmetric(symmetric))


def sampled_product(pattern: SparsePattern, U: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Values :math:`(U V^\\top)_{i_e j_e}` at the pattern's entries, kernel order, ``(nnz,)``; ``U`` ``(N, p)``,
    ``V`` ``(M, p)``; differentiable w.r.t. ``U`` and ``V``, any number of times."""
    if not _recorded(U, V):
        return _sampled(pattern, U, V)
    return _SampledProduct.apply(U, V, pattern)


def check_symmetric(symmetric: object) -> str | None:
    """``symmetric`` itself if it is ``None`` or one of :data:`SYMMETRIC_STORAGES`, else ``ValueError``."""
    if symmetric is not None and symmetric not in SYMMETRIC_STORAGES:
        raise ValueError(f"symmetric must be None or one of {SYMMETRIC_STORAGES}, got {symmetric!r}")
    return symmetric


def symmetric_directions(
    pattern: SparsePattern, symmetric: str | None, U: torch.Tensor, V: torch.Tensor
) -> torch.Tensor:
    """The gradient at the stored values, kernel order ``(nnz,)``, when :math:`\\partial L/\\partial A = U V^\\top`
    (``U`` ``(N, p)``, ``V`` ``(M, p)``), under the convention ``symmetric`` declares; differentiable w.r.t. ``U`` and
    ``V``.

    With :math:`g = U V^\\top` and :math:`s_{ij} = g_{ij} + g_{ji}` (the derivative along :math:`E_{ij} + E_{ji}`):
    ``None`` gives :math:`g_{ij}` (independent entries); ``"full"`` (both triangles stored) :math:`s_{ij}/2`;
    ``"lower"``/``"upper"`` (one stored value stands for :math:`A_{ij}` and :math:`A_{ji}`) :math:`s_{ij}` off the
    diagonal and :math:`g_{ii}` on it. The convention is stated once, in docs/concepts.md ("Gradients w.r.t. a
    symmetric sparse matrix").
    """
    g = sampled_product(pattern, U, V)
    if symmetric is None:
        return g
    s = g + sampled_product(pattern, V, U)
    if symmetric == "full":
        return s * 0.5
    return torch.where(pattern.on_diagonal(), s * 0.5, s)

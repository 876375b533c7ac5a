"""The derivative of a linear solve with a sparse operand, written once for every kind of solver.

For :math:`X = \\mathrm{op}(A)^{-1} B` (:math:`\\mathrm{op}(A) = A`, or :math:`A^\\top` with ``transpose``) and
:math:`G = \\partial L/\\partial X`, differentiating :math:`\\mathrm{op}(A) X = B` gives
:math:`d\\,\\mathrm{op}(A)\\, X + \\mathrm{op}(A)\\, dX = dB`, hence

.. math::

    \\frac{\\partial L}{\\partial B} = \\mathrm{op}(A)^{-\\top} G =: \\Lambda, \\qquad
    \\frac{\\partial L}{\\partial\\, \\mathrm{op}(A)} = -\\Lambda X^\\top,

read at the stored entries only: :math:`\\partial L/\\partial A_{ij} = -(\\Lambda X^\\top)_{ij}`, or
:math:`-(X \\Lambda^\\top)_{ij}` with ``transpose``. :math:`\\Lambda` is the same solve with ``transpose`` flipped,
done through this very function, and the gradient is a sampled product (:mod:`sparseprec.ops._products`); so the
backward is itself differentiable, and second derivatives (Hessians, Hessian-vector products) come out exact.

A *solver* supplies only ``solve(B, transpose) -> X`` for the ``(n, p)`` block ``B``, without autograd (a
triangular kernel, a Cholesky factor, a Krylov method or any user function).

Symmetric operands: ``symmetric="full"`` (both triangles stored) or ``"lower"``/``"upper"`` (one triangle standing for
both) declares that the matrix a solver inverts is symmetric, and the gradient at the stored values then follows the
library's one convention for symmetric operands (:func:`~sparseprec.ops._products.symmetric_directions`, stated in
docs/concepts.md, "Gradients w.r.t. a symmetric sparse matrix"). ``symmetric=None`` treats every stored value as an
independent entry.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ..pattern import SparsePattern
from ._products import check_symmetric, symmetric_directions
from ._values import as_operand, operand_gradient

__all__ = ["LinearSolver", "linear_solve"]


class LinearSolver(Protocol):
    """What :func:`linear_solve` needs from a solver: ``op(A)⁻¹ B`` for a dense, non-empty ``(n, p)`` block, no
    autograd."""

    def solve(self, B: torch.Tensor, transpose: bool) -> torch.Tensor: ...


def _solve(solver: LinearSolver, B: torch.Tensor, transpose: bool) -> torch.Tensor:
    """``solver.solve``; an empty block (no columns, or ``n = 0``) is answered here, as torch answers it: zeros."""
    if B.numel() == 0:
        return B.new_zeros(B.shape)
    return solver.solve(B, transpose)


class _LinearSolve(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        operand: torch.Tensor,
        B: torch.Tensor,
        solver: LinearSolver,
        pattern: SparsePattern,
        transpose: bool,
        symmetric: str | None,
    ) -> torch.Tensor:
        X = _solve(solver, B, transpose)  # shape: (n, p)
        ctx.save_for_backward(operand, X)
        ctx.solver, ctx.pattern, ctx.transpose, ctx.symmetric = solver, pattern, transpose, symmetric
        return X

    @staticmethod
    def backward(ctx, G: torch.Tensor):
        operand, X = ctx.saved_tensors
        # Λ = op(A)⁻ᵀ G: the same solve, transposed, on the autograd graph when the caller builds one (create_graph)
        Lam = linear_solve(operand, G.contiguous(), ctx.solver, ctx.pattern, not ctx.transpose, ctx.symmetric)
        grad_operand = None
        if ctx.needs_input_grad[0]:
            # ∂L/∂op(A) = −Λ Xᵀ; for op(A) = Aᵀ that is ∂L/∂A = −X Λᵀ (the sign goes on the n x p factor)
            U, V = (X, Lam) if ctx.transpose else (Lam, X)
            grad = symmetric_directions(ctx.pattern, ctx.symmetric, U.neg(), V)
            grad_operand = operand_gradient(grad, operand, ctx.pattern)
        grad_B = Lam if ctx.needs_input_grad[1] else None
        return grad_operand, grad_B, None, None, None, None


def linear_solve(
    operand: torch.Tensor,
    B: torch.Tensor,
    solver: LinearSolver,
    pattern: SparsePattern,
    transpose: bool = False,
    symmetric: str | None = None,
) -> torch.Tensor:
    """:math:`X = \\mathrm{op}(A)^{-1} B` for the ``(n, p)`` block ``B``, with gradients w.r.t. ``B`` and ``A``
    (see the module docstring), differentiable any number of times.

    ``operand`` is the sparse ``A`` itself (of ``pattern``; its gradient is sparse with its layout and indices) or
    its kernel-ordered stored values (dense ``(nnz,)``). It only carries the autograd dependence: the solver already
    holds ``A``. The result has ``B``'s shape. ``symmetric`` (``None``, ``"full"``, ``"lower"``, ``"upper"``) declares
    a symmetric operand and its storage (see the module docstring).
    """
    if not (torch.is_grad_enabled() and (operand.requires_grad or B.requires_grad)):
        return _solve(solver, B, transpose)
    return _LinearSolve.apply(as_operand(operand, pattern), B, solver, pattern, transpose, check_symmetric(symmetric))

"""The derivative of a linear solve, written once and shared by every solver.

For ``X = A⁻¹ B`` and an upstream gradient ``G = ∂L/∂X``, differentiating ``A X = B`` gives ``dA X + A dX = dB``, so

    ∂L/∂B = A⁻ᵀ G =: Λ,        ∂L/∂A = −Λ Xᵀ   (a sparse A: only at its stored entries).

Both follow from one construction that autograd can run for any kind of ``A`` (sparse, dense, or a callable that
captures learnable tensors): with the solution ``X*`` computed without autograd, return

    X = X* + Φ(B − A X*),        Φ(r) = 0 in the forward pass,   ∂L/∂r = A⁻ᵀ ∂L/∂Φ in the backward pass.

The value is ``X*``. Backward, ``∂L/∂r = Λ``; the residual's graph then hands ``Λ`` to ``B`` and ``−Λ X*ᵀ`` to ``A``
(through :func:`sparseprec.ops.sparse_mm` for a sparse ``A``: a sampled product on the stored pattern, no ``n × n``
intermediate; through the callable's own autograd graph otherwise). The only solve in the backward pass is
``Aᵀ Λ = G``, done by the same solver settings as the forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.autograd.function import once_differentiable

from ._operator import Operator

__all__ = ["attach_solve_gradient"]


class _AdjointOfZero(torch.autograd.Function):
    """``Φ``: zero forward, ``G -> A⁻ᵀ G`` backward."""

    @staticmethod
    def forward(ctx, residual: torch.Tensor, adjoint_solve: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.adjoint_solve = adjoint_solve
        return torch.zeros_like(residual)

    @staticmethod
    @once_differentiable
    def backward(ctx, G: torch.Tensor):
        return ctx.adjoint_solve(G.contiguous()), None


def needs_gradient(op: Operator, B: torch.Tensor) -> bool:
    """Whether the solve must be put on the autograd graph (a callable ``A`` may capture learnable tensors)."""
    if not torch.is_grad_enabled():
        return False
    if B.requires_grad:
        return True
    return op.kind == "callable" or op.A.requires_grad


def attach_solve_gradient(
    X: torch.Tensor,
    op: Operator,
    B: torch.Tensor,
    make_adjoint_solve: Callable[[], Callable[[torch.Tensor], torch.Tensor]],
) -> torch.Tensor:
    """``X* + Φ(B − A X*)``: ``X*`` on the autograd graph of ``A`` and ``B`` (see the module docstring).

    ``X`` and ``B`` have the right-hand side's shape; ``make_adjoint_solve()`` returns the map ``G -> A⁻ᵀ G`` (it is
    only asked for when something upstream requires a gradient, and may raise if it cannot be had).
    """
    residual = B - op.apply(X)
    if not residual.requires_grad:  # e.g. a callable that captures nothing learnable
        return X
    return X + _AdjointOfZero.apply(residual, make_adjoint_solve())

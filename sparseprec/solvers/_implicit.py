"""The derivative of an iterative solve: the ops' solve rule for a sparse ``A``, a residual construction otherwise.

For ``X = A⁻¹ B`` and an upstream gradient ``G = ∂L/∂X``, differentiating ``A X = B`` gives ``dA X + A dX = dB``, so

    ∂L/∂B = A⁻ᵀ G =: Λ,        ∂L/∂A = −Λ Xᵀ   (a sparse A: only at its stored entries).

A sparse ``A`` goes through :func:`sparseprec.ops._solve_rule.linear_solve` (the one rule every solve of the library
uses) with this solver's forward and adjoint solves: exact to any order of differentiation, to the accuracy of the
solves. A dense ``A`` or a callable that captures learnable tensors gets the gradient from one construction that
autograd can run for any kind of ``A``: with the solution ``X*`` computed without autograd, return

    X = X* + Φ(B − A X*),        Φ(r) = 0 in the forward pass,   ∂L/∂r = A⁻ᵀ ∂L/∂Φ in the backward pass.

The value is ``X*``. Backward, ``∂L/∂r = Λ``; the residual's graph then hands ``Λ`` to ``B`` and ``−Λ X*ᵀ`` to ``A``
(through the callable's own autograd graph). ``X*`` is a constant there, so this construction is differentiable once:
its derivative raises :class:`sparseprec.NotTwiceDifferentiableError` when differentiated again.

Symmetric operands: a solver call declares nothing, so a sparse ``A``'s stored values are independent entries even for
CG and MINRES, which check that ``A`` is symmetric but do not know whether its values are tied. A caller that knows
(``sparse_generic_solve(A, B, solve=CG(), symmetric="full")``) passes ``symmetric`` and gets the library's symmetric
convention (docs/concepts.md, "Gradients w.r.t. a symmetric sparse matrix"), from the same rule.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..ops._once import first_derivative_only
from ..ops._solve_rule import linear_solve
from ._operator import Operator

__all__ = ["attach_solve_gradient", "needs_gradient"]


class _AdjointOfZero(torch.autograd.Function):
    """``Φ``: zero forward, ``G -> A⁻ᵀ G`` backward."""

    @staticmethod
    def forward(ctx, residual: torch.Tensor, adjoint_solve: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.adjoint_solve = adjoint_solve
        ctx.save_for_backward(residual)
        return torch.zeros_like(residual)

    @staticmethod
    def backward(ctx, G: torch.Tensor):
        (residual,) = ctx.saved_tensors
        with torch.no_grad():
            Lam = ctx.adjoint_solve(G.detach().contiguous())
        # tied to the residual (it depends on A and B), so a second derivative raises even when G is a constant
        return first_derivative_only(Lam, residual, "a solver's gradient through a dense or callable A"), None


class _Krylov:
    """Forward and adjoint solves of one solver on one ``A`` as a solver for ``linear_solve`` (``(n, p)`` blocks).

    The forward solution already computed is handed back for its own right-hand side instead of being solved again.
    """

    def __init__(self, B, X, forward, adjoint, vector: bool):
        self.B, self.X, self.forward, self.adjoint, self.vector = B, X, forward, adjoint, vector

    def solve(self, B: torch.Tensor, transpose: bool) -> torch.Tensor:
        if not transpose and B is self.B:
            X, self.X, self.B = self.X, None, None  # handed out once: holding it would make a reference cycle
            return X
        rhs = B.reshape(-1) if self.vector else B
        return (self.adjoint if transpose else self.forward)(rhs).reshape(B.shape)


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
    forward_solve: Callable[[torch.Tensor], torch.Tensor],
    symmetric: str | None = None,
) -> torch.Tensor:
    """``X`` (the solution, computed without autograd) on the autograd graph of ``A`` and ``B``.

    ``X`` and ``B`` have the right-hand side's shape. ``forward_solve(R)`` is ``A⁻¹ R`` and ``make_adjoint_solve()``
    returns the map ``G -> A⁻ᵀ G`` (asked for here, so that it raises at once if it cannot be had). ``symmetric``
    declares a sparse ``A`` symmetric and its storage, as for :func:`~sparseprec.ops._solve_rule.linear_solve`.
    """
    if op.kind == "sparse":
        n, k = op.n, (B.shape[1] if B.dim() == 2 else 1)  # explicit: reshape(0, -1) is ambiguous
        B2 = B.reshape(n, k)
        solver = _Krylov(B2, X.reshape(n, k), forward_solve, make_adjoint_solve(), op.vector)
        return linear_solve(op.A, B2, solver, op.pattern, symmetric=symmetric).reshape(X.shape)
    residual = B - op.apply(X)
    if not residual.requires_grad:  # e.g. a callable that captures nothing learnable
        return X
    return X + _AdjointOfZero.apply(residual, make_adjoint_solve())

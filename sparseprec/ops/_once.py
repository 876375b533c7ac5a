"""Marking a first derivative that has no second derivative, so that differentiating it again raises.

torch's ``once_differentiable`` only sees the incoming gradient: when that gradient does not require grad (a loss
summed directly), the derivative comes back detached under ``create_graph=True`` and a Hessian silently misses every
term through the operand. :func:`first_derivative_only` instead ties the derivative to the operand it depends on
with an autograd node whose backward raises :class:`~sparseprec.errors.NotTwiceDifferentiableError`.
"""

from __future__ import annotations

import torch

from ..errors import NotTwiceDifferentiableError

__all__ = ["first_derivative_only"]


class _FirstDerivativeOnly(torch.autograd.Function):
    @staticmethod
    def forward(ctx, derivative: torch.Tensor, operand: torch.Tensor, what: str) -> torch.Tensor:
        ctx.what = what
        return derivative.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        raise NotTwiceDifferentiableError(
            f"{ctx.what} is differentiable once: its derivative cannot be differentiated again (a second derivative "
            "was asked for, e.g. by create_graph=True, torch.autograd.functional.hessian or gradgradcheck). See "
            "docs/reliability.md for what is twice differentiable."
        )


def first_derivative_only(derivative: torch.Tensor, operand: torch.Tensor, what: str) -> torch.Tensor:
    """``derivative`` itself; when a graph is being built (``create_graph=True``), one whose backward raises.

    ``operand`` is the tensor the derivative depends on in a way that is not differentiated (e.g. the stored values
    of ``Q`` behind a selected inverse); ``what`` names the function in the error message.
    """
    if not torch.is_grad_enabled():
        return derivative
    return _FirstDerivativeOnly.apply(derivative, operand, what)

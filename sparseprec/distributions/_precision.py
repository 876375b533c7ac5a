"""Computations shared by the precision-parameterised distributions (``GMRF``, ``IntrinsicGMRF``)."""

from __future__ import annotations

import math

import torch

from ..cholesky import CholeskyFactor
from ..ops import sparse_mm

__all__ = ["quadratic_form", "sample_with_factor"]


def quadratic_form(Q: torch.Tensor, r: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    r"""``rᵀ Q r`` along the last dimension of ``r`` broadcast to ``shape`` (``(..., n)``): one sparse product for all
    leading dimensions; result ``shape[:-1]``-broadcast, differentiable w.r.t. ``r`` and ``Q``'s stored values."""
    n = Q.shape[-1]
    r = r.expand(torch.broadcast_shapes(r.shape, shape))
    columns = r.reshape(math.prod(r.shape[:-1]), n).transpose(0, 1)
    return (columns * sparse_mm(Q, columns)).sum(0).reshape(r.shape[:-1])


def sample_with_factor(factor: CholeskyFactor, eps: torch.Tensor) -> torch.Tensor:
    r""":math:`P^\top L^{-\top} \varepsilon` for ``eps`` ``(..., m)`` and a factor :math:`Q_{pp} = L L^\top`: a draw
    from :math:`N(0, Q^{-1})` per row of standard normal ``eps`` (no gradient)."""
    m = eps.shape[-1]
    columns = eps.reshape(math.prod(eps.shape[:-1]), m).transpose(0, 1).contiguous()
    permuted = factor.solve_Lt(columns)  # L⁻ᵀ ε, permuted order
    x = torch.empty_like(permuted)
    x[factor.perm] = permuted
    return x.transpose(0, 1).reshape(eps.shape)

"""Lanczos tridiagonalisation of a symmetric operator, for many starting vectors at once."""

from __future__ import annotations

import torch

from ._base import column_dot, column_norm
from ._operator import Operator

__all__ = ["lanczos"]


def lanczos(op: Operator, V0: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``steps`` Lanczos steps from each column of ``V0`` (``(n, k)``); returns the tridiagonal matrices.

    For a symmetric ``A`` and a start :math:`v_1 = v / \lVert v \rVert` the three-term recurrence
    :math:`\beta_{j} v_{j+1} = A v_j - \alpha_j v_j - \beta_{j-1} v_{j-1}` with :math:`\alpha_j = v_j^\top A v_j`
    gives :math:`T = \mathrm{tridiag}(\beta, \alpha, \beta)` with :math:`V^\top A V = T` (no reorthogonalisation:
    enough for Gauss quadrature of :math:`v^\top f(A) v`). A column whose :math:`\beta` vanishes (an invariant
    subspace was found) is frozen; its remaining diagonal entries are set to 1 and off-diagonal ones to 0, which adds
    nothing to :math:`e_1^\top f(T) e_1` when :math:`f(1) = 0` (as for ``log``) — or, in general, decouples from
    :math:`e_1`.

    Returns
    -------
    alpha : torch.Tensor
        ``(k, steps)`` diagonals.
    beta : torch.Tensor
        ``(k, steps − 1)`` off-diagonals.
    """
    n, k = V0.shape
    work = torch.empty_like(V0)
    V = V0 / column_norm(V0, work)
    V_prev = torch.zeros_like(V0)
    W = torch.empty_like(V0)
    alphas, betas = [], []
    beta = V0.new_zeros(k)
    active = torch.ones(k, dtype=torch.bool, device=V0.device)
    tiny = torch.finfo(V0.dtype).eps * 10
    one = V0.new_ones(())
    for j in range(steps):
        op.matmul_into(V, W)
        W.addcmul_(V_prev, beta, value=-1.0)
        alpha = column_dot(V, W, work)
        W.addcmul_(V, alpha, value=-1.0)
        alphas.append(torch.where(active, alpha, one))
        if j == steps - 1:
            break
        beta = column_norm(W, work)
        scale = beta.abs().max().clamp(min=1.0)
        active = active & (beta > tiny * scale)
        beta = torch.where(active, beta, torch.zeros_like(beta))
        betas.append(beta)
        V_prev, V = V, torch.where(active, W / torch.where(active, beta, one), torch.zeros_like(W))
    alpha = torch.stack(alphas, 1)
    beta_out = torch.stack(betas, 1) if betas else V0.new_zeros(k, 0)
    return alpha, beta_out

r"""The marginal variances :math:`v = \mathrm{diag}(Q^{-1})` of a sparse precision, differentiable in ``Q``'s stored
values.

Forward: the selected inverse (:func:`sparseprec.cholesky.diag_inverse`, from the operator's cached factor).

Backward: with :math:`z_i = Q^{-1} e_i`, :math:`\partial v_i / \partial Q_{jk} = -z_i[j]\, z_i[k]`, so for an upstream
gradient :math:`g`

.. math::

    \frac{\partial \mathcal{L}}{\partial Q_{jk}} = -\bigl(Q^{-1} \operatorname{diag}(g)\, Q^{-1}\bigr)_{jk}
    = -\sum_i g_i\, z_i[j]\, z_i[k] \quad \text{at the stored } (j, k) \text{ only.}

The matrix is symmetric, so this is also the gradient under the library's convention for a symmetric matrix with both
triangles stored. It is accumulated over blocks of ``BLOCK`` columns :math:`Z = Q^{-1} E_B` (one multi-column solve by
the factor each), skipping the rows with :math:`g_i = 0`: time O(m nnz(L)) for ``m`` nonzero entries of ``g``, memory
O(n BLOCK + nnz BLOCK) — the price of an exact gradient (the selected inverse holds :math:`Q^{-1}` on the pattern only,
not the products above). The backward is not differentiable again.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..cholesky import CholeskyFactor, diag_inverse

#: columns of Q⁻¹ per solve in the backward
BLOCK = 64


class _InverseDiagonal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, factor: CholeskyFactor):
        ctx.factor = factor
        ctx.save_for_backward(rows, cols)
        return diag_inverse(factor).to(dtype=values.dtype, device=values.device)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        rows, cols = ctx.saved_tensors
        grad = g.new_zeros(rows.shape)
        active = g.nonzero().squeeze(-1)
        n = g.shape[-1]
        for start in range(0, active.numel(), BLOCK):
            nodes = active[start : start + BLOCK]
            E = g.new_zeros(n, nodes.numel())
            E[nodes, torch.arange(nodes.numel(), device=g.device)] = 1.0
            Z = ctx.factor.solve(E)  # columns z_i = Q⁻¹ e_i
            grad -= (Z[rows] * Z[cols]) @ g[nodes]
        return grad, None, None, None


def inverse_diagonal(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, factor: CholeskyFactor):
    r""":math:`\mathrm{diag}(Q^{-1})` for ``Q`` with stored ``values`` at ``(rows, cols)`` (both triangles) and its
    sparse Cholesky ``factor``, differentiable w.r.t. ``values`` (see the module)."""
    return _InverseDiagonal.apply(values, rows.to(values.device), cols.to(values.device), factor)

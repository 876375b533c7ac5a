r"""Root operators of a sparse Cholesky factorisation :math:`P Q P^\top = L L^\top` (``perm`` = P).

``CholeskyRoot(op, inverse=False)`` is :math:`A = P^\top L` (:math:`Q = A A^\top`): ``A x`` is ``(L x)`` scattered back
through the permutation, ``Aᵀ x = Lᵀ (x[perm])``. ``inverse=True`` is :math:`R = P^\top L^{-\top}`
(:math:`Q^{-1} = R R^\top`): triangular solves instead of products. Batched operators use one factor per batch element.
These roots carry no gradient to the precision's values (the factor is numeric); the operators' own ``matmul``,
``solve``, ``inv_quad_logdet`` do.
"""

from __future__ import annotations

import torch
from linear_operator.operators import LinearOperator

from ..ops import sparse_mm

__all__ = ["CholeskyRoot"]


class CholeskyRoot(LinearOperator):
    def __init__(self, values: torch.Tensor, *, owner: LinearOperator, inverse: bool = False, transposed: bool = False):
        # the owner's values are the representation (so dtype/device follow it); the factor is read from the owner
        super().__init__(values, owner=owner, inverse=inverse, transposed=transposed)
        self.owner, self.inverse, self.transposed = owner, inverse, transposed

    @classmethod
    def of(cls, owner: LinearOperator, inverse: bool = False) -> CholeskyRoot:
        return cls(owner.values, owner=owner, inverse=inverse)

    def _size(self) -> torch.Size:
        return self.owner.shape

    def _transpose_nonbatch(self) -> LinearOperator:
        return CholeskyRoot(self.owner.values, owner=self.owner, inverse=self.inverse, transposed=not self.transposed)

    def _apply(self, b: int, _Q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        factor = self.owner._factor(b)
        perm = factor.perm.to(x.device)
        x = x.detach()
        if not self.transposed:  # A x = Pᵀ (L x) or R x = Pᵀ (L⁻ᵀ x)
            y = factor.solve_Lt(x) if self.inverse else sparse_mm(factor.L, x)
            out = torch.empty_like(y)
            out[perm] = y
            return out
        xp = x[perm]  # Aᵀ x = Lᵀ (P x) or Rᵀ x = L⁻¹ (P x)
        return factor.solve_L(xp) if self.inverse else sparse_mm(factor.L, xp, transpose=True)

    def _matmul(self, rhs: torch.Tensor) -> torch.Tensor:
        vector = rhs.dim() == 1
        rhs = rhs.unsqueeze(-1) if vector else rhs
        out = self.owner._per_batch(rhs, self._apply)
        return out.squeeze(-1) if vector else out

    def _expand_batch(self, batch_shape: torch.Size) -> LinearOperator:
        owner = self.owner._expand_batch(batch_shape)
        return CholeskyRoot(owner.values, owner=owner, inverse=self.inverse, transposed=self.transposed)

    def to_dense(self) -> torch.Tensor:
        eye = torch.eye(self.shape[-1], dtype=self.dtype, device=self.device)
        return self._matmul(eye.expand(self.batch_shape + eye.shape))

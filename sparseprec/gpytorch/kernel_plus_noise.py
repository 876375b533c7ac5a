r"""``KernelPlusPrecisionInverse``: :math:`K + Q^{-1}` (a GP covariance plus sparse-precision noise), exactly.

linear_operator would treat ``K + Σ`` as a generic sum (dense Cholesky below 800 points, CG and stochastic Lanczos
above). Here, with the noise precision ``Q`` sparse:

.. math::

    K + Q^{-1} = (I + K Q)\, Q^{-1}, \qquad
    \log\det(K + Q^{-1}) = \log|\det(I + K Q)| - \log\det Q, \qquad
    (K + Q^{-1})^{-1} B = Q\, (I + K Q)^{-1} B .

``I + K Q`` has real eigenvalues :math:`\geq 1` (``K`` PSD, ``Q`` SPD), so its LU factorisation is safe; ``K Q`` is
formed by sparse products, ``log det Q`` by sparse Cholesky. Cost: one dense LU of ``n × n`` (as any exact GP) plus
sparse work; everything is differentiable in ``K`` and in ``Q``'s stored values.
"""

from __future__ import annotations

import torch
from linear_operator import to_linear_operator
from linear_operator.operators import LinearOperator

from .._validation import broadcast_shapes
from .precision_inverse import PrecisionInverseLinearOperator

__all__ = ["KernelPlusPrecisionInverse"]


class KernelPlusPrecisionInverse(LinearOperator):
    """``K + Σ`` for a covariance ``K`` (LinearOperator or dense tensor) and ``Σ = Q⁻¹`` (see the module).

    Raises ``TypeError`` for a noise that is not a :class:`PrecisionInverseLinearOperator` and ``ValueError`` when the
    sizes differ.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.gpytorch import KernelPlusPrecisionInverse, PrecisionInverseLinearOperator
    >>> from sparseprec.structures import ar1
    >>> K = torch.full((4, 4), 0.5, dtype=torch.float64) + 0.5 * torch.eye(4, dtype=torch.float64)
    >>> C = KernelPlusPrecisionInverse(K, PrecisionInverseLinearOperator.from_precision(ar1(4, 0.6)))
    >>> dense = K + torch.linalg.inv(ar1(4, 0.6).to_dense())
    >>> torch.allclose(C.logdet(), torch.logdet(dense))
    True
    """

    def __init__(self, kernel: LinearOperator | torch.Tensor, noise: PrecisionInverseLinearOperator):
        kernel = to_linear_operator(kernel)
        if not isinstance(noise, PrecisionInverseLinearOperator):
            raise TypeError(f"noise must be a PrecisionInverseLinearOperator, got {type(noise).__name__}")
        if kernel.shape[-1] != noise.shape[-1]:
            n, m = kernel.shape[-1], noise.shape[-1]
            raise ValueError(f"kernel is {n} × {n} but the noise covers {m} points")
        super().__init__(kernel, noise)
        self.kernel, self.noise = kernel, noise

    def _size(self) -> torch.Size:
        batch = broadcast_shapes(self.kernel.batch_shape, self.noise.batch_shape)
        return batch + self.kernel.matrix_shape

    def _transpose_nonbatch(self) -> LinearOperator:
        return self

    def _matmul(self, rhs: torch.Tensor) -> torch.Tensor:
        return self.kernel._matmul(rhs) + self.noise._matmul(rhs)

    def _diagonal(self) -> torch.Tensor:
        return self.kernel._diagonal() + self.noise._diagonal()

    def _expand_batch(self, batch_shape: torch.Size) -> LinearOperator:
        return KernelPlusPrecisionInverse(self.kernel._expand_batch(batch_shape), self.noise._expand_batch(batch_shape))

    def to_dense(self) -> torch.Tensor:
        return self.kernel.to_dense() + self.noise.to_dense()

    def _lu(self) -> tuple[torch.Tensor, torch.Tensor]:
        K = self.kernel.to_dense()
        QK = self.noise.solve(K.expand(self.shape))  # Q K (sparse products); K Q = (Q K)ᵀ
        M = torch.eye(self.shape[-1], dtype=K.dtype, device=K.device) + QK.mT
        return torch.linalg.lu_factor(M)

    def solve(self, right_tensor: torch.Tensor, left_tensor: torch.Tensor | None = None) -> torch.Tensor:
        vector = right_tensor.dim() == 1
        rhs = right_tensor.unsqueeze(-1) if vector else right_tensor
        LU, pivots = self._lu()
        z = torch.linalg.lu_solve(LU, pivots, rhs.expand(LU.shape[:-2] + rhs.shape[-2:]))
        out = self.noise.solve(z)
        out = out.squeeze(-1) if vector else out
        return out if left_tensor is None else left_tensor @ out

    def inv_quad_logdet(
        self, inv_quad_rhs: torch.Tensor | None = None, logdet: bool = False, reduce_inv_quad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        empty = torch.zeros([], dtype=self.dtype, device=self.device)
        LU, pivots = self._lu()
        inv_quad = empty
        if inv_quad_rhs is not None:
            rhs = inv_quad_rhs.unsqueeze(-1) if inv_quad_rhs.dim() == 1 else inv_quad_rhs
            z = torch.linalg.lu_solve(LU, pivots, rhs.expand(LU.shape[:-2] + rhs.shape[-2:]))
            inv_quad = (rhs * self.noise.solve(z)).sum(-2)
            if reduce_inv_quad:
                inv_quad = inv_quad.sum(-1)
        log_det = empty
        if logdet:
            # det(I + KQ) > 0: its eigenvalues are real and ≥ 1; the LU's diagonal carries the magnitude
            log_det = LU.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1) + self.noise.logdet()
        return inv_quad, log_det

    def inv_quad(self, inv_quad_rhs: torch.Tensor, reduce_inv_quad: bool = True) -> torch.Tensor:
        return self.inv_quad_logdet(inv_quad_rhs, reduce_inv_quad=reduce_inv_quad)[0]

    def logdet(self) -> torch.Tensor:
        return self.inv_quad_logdet(logdet=True)[1]

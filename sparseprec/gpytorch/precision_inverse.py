r"""``PrecisionInverseLinearOperator``: the covariance :math:`\Sigma = Q^{-1}` of a sparse precision ``Q`` as a
``LinearOperator``, exact (no CG, no Lanczos, no stochastic log-determinant) and O(nnz(L)) in memory.

With one sparse Cholesky factorisation :math:`P Q P^\top = L L^\top` per operator and batch element:

- ``Σ x = Q⁻¹ x`` (two triangular solves; gradient to the values as for
  :func:`sparseprec.cholesky.sparse_cholesky_solve`);
- ``solve(B) = Q B`` (one sparse product), ``inv_quad(B) = Σ_k b_kᵀ Q b_k`` — no solve at all;
- ``logdet() = −log det Q`` (gradient :math:`-(Q^{-1})_{ij}` at the stored entries, by the selected inverse);
- ``diagonal() = diag(Q⁻¹)`` by the selected inverse (exact marginal variances; no gradient);
- ``root_decomposition()``: :math:`R = P^\top L^{-\top}`, ``root_inv_decomposition()``: :math:`A = P^\top L`,
  ``zero_mean_mvn_samples``: :math:`R \varepsilon` — so ``gpytorch.distributions.MultivariateNormal(mean, op)`` has an
  exact ``log_prob`` (one sparse product and one log-determinant) and exact ``rsample``, and works in ``pyro.sample``.
"""

from __future__ import annotations

import torch
from linear_operator.operators import LinearOperator, RootLinearOperator

from ..cholesky import diag_inverse, sparse_logdet
from ..ops import sparse_mm
from ._roots import CholeskyRoot
from ._sparse_symmetric import InverseMatmul, SparseSymmetricOperator, from_sparse

__all__ = ["PrecisionInverseLinearOperator"]


class PrecisionInverseLinearOperator(SparseSymmetricOperator):
    """The inverse of a sparse SPD precision as a LinearOperator (see the module for the maths).

    Parameters
    ----------
    values : torch.Tensor
        ``(*batch, nnz)``: the stored values of ``Q``, in the order of ``pattern``.
    pattern : SymmetricPattern
        ``Q``'s fixed sparsity pattern (both triangles and the diagonal stored).

    Build it from a sparse precision with :meth:`from_precision`.

    Examples
    --------
    >>> import torch, gpytorch
    >>> from sparseprec.gpytorch import PrecisionInverseLinearOperator
    >>> from sparseprec.structures import ar1
    >>> Sigma = PrecisionInverseLinearOperator.from_precision(ar1(1000, 0.9))
    >>> mvn = gpytorch.distributions.MultivariateNormal(torch.zeros(1000, dtype=torch.float64), Sigma)
    >>> x = mvn.rsample()
    >>> dense = torch.distributions.MultivariateNormal(torch.zeros(1000, dtype=torch.float64),
    ...                                                precision_matrix=ar1(1000, 0.9).to_dense())
    >>> torch.allclose(mvn.log_prob(x), dense.log_prob(x))
    True
    """

    @classmethod
    def from_precision(cls, Q: torch.Tensor) -> PrecisionInverseLinearOperator:
        """From a sparse symmetric positive definite ``(n, n)`` COO/CSR precision; gradients flow to its values."""
        values, pattern = from_sparse(Q, "Q")
        return cls(values, pattern)

    def _inverse_block(self, b: int, Q: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        return InverseMatmul.apply(Q.values(), B, self.pattern, self._factor(b), self.transposed)

    def _matmul(self, rhs: torch.Tensor) -> torch.Tensor:
        vector = rhs.dim() == 1
        rhs = rhs.unsqueeze(-1) if vector else rhs
        out = self._per_batch(rhs, self._inverse_block)
        return out.squeeze(-1) if vector else out

    def _diagonal(self) -> torch.Tensor:
        variances = [diag_inverse(self._factor(b)) for b in range(self._flat_values().shape[0])]
        return torch.stack(variances).reshape(self.batch_shape + (self.pattern.n,))

    def to_dense(self) -> torch.Tensor:
        eye = torch.eye(self.pattern.n, dtype=self.dtype, device=self.device)
        return self._matmul(eye.expand(self.batch_shape + eye.shape))

    def solve(self, right_tensor: torch.Tensor, left_tensor: torch.Tensor | None = None) -> torch.Tensor:
        vector = right_tensor.dim() == 1
        rhs = right_tensor.unsqueeze(-1) if vector else right_tensor
        # Σ⁻¹ B = Q B with the symmetric gradient ½(g_i b_j + g_j b_i) of a symmetric solve (as dense references
        # symmetrise the gradient of a solve)
        out = self._per_batch(rhs, lambda _b, Q, x: 0.5 * (sparse_mm(Q, x) + sparse_mm(Q, x, transpose=True)))
        out = out.squeeze(-1) if vector else out
        return out if left_tensor is None else left_tensor @ out

    def _logdets(self) -> torch.Tensor:
        values = self._flat_values()
        out = [sparse_logdet(self.pattern.matrix(values[b]), factor=self._factor(b)) for b in range(values.shape[0])]
        return -torch.stack(out).reshape(self.batch_shape)

    def inv_quad_logdet(
        self, inv_quad_rhs: torch.Tensor | None = None, logdet: bool = False, reduce_inv_quad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        empty = torch.zeros([], dtype=self.dtype, device=self.device)
        inv_quad = empty
        if inv_quad_rhs is not None:
            rhs = inv_quad_rhs.unsqueeze(-1) if inv_quad_rhs.dim() == 1 else inv_quad_rhs
            inv_quad = (rhs * self._per_batch(rhs, lambda _b, Q, x: sparse_mm(Q, x))).sum(-2)
            if reduce_inv_quad:
                inv_quad = inv_quad.sum(-1)
        return inv_quad, (self._logdets() if logdet else empty)

    def inv_quad(self, inv_quad_rhs: torch.Tensor, reduce_inv_quad: bool = True) -> torch.Tensor:
        return self.inv_quad_logdet(inv_quad_rhs, reduce_inv_quad=reduce_inv_quad)[0]

    def logdet(self) -> torch.Tensor:
        return self._logdets()

    def root_decomposition(self, method: str | None = None) -> LinearOperator:
        return RootLinearOperator(CholeskyRoot.of(self, inverse=True))

    def root_inv_decomposition(self, initial_vectors=None, test_vectors=None, method: str | None = None):
        return RootLinearOperator(CholeskyRoot.of(self, inverse=False))

    def zero_mean_mvn_samples(self, num_samples: int) -> torch.Tensor:
        eps = torch.randn(num_samples, *self.batch_shape, self.pattern.n, dtype=self.dtype, device=self.device)
        return CholeskyRoot.of(self, inverse=True)._matmul(eps.movedim(0, -1)).movedim(-1, 0)

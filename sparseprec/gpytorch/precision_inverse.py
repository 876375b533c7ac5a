r"""``PrecisionInverseLinearOperator``: the covariance :math:`\Sigma = Q^{-1}` of a sparse precision ``Q`` as a
``LinearOperator``, exact (no CG, no Lanczos, no stochastic log-determinant) and O(nnz(L)) in memory.

With one sparse Cholesky factorisation :math:`P Q P^\top = L L^\top` per operator and batch element:

- ``Σ x = Q⁻¹ x`` (two triangular solves);
- ``solve(B) = Q B`` (one sparse product), ``inv_quad(B) = Σ_k b_kᵀ Q b_k`` — no solve at all;
- ``logdet() = −log det Q`` (its gradient :math:`-(Q^{-1})_{ij}` at the stored entries by the selected inverse);
- ``diagonal() = diag(Q⁻¹)`` by the selected inverse (exact marginal variances), differentiable w.r.t. the values:
  the backward costs one multi-column solve per 64 nodes (O(n nnz(L)) time, see
  :mod:`sparseprec.gpytorch._inverse_diagonal`), paid only when a loss uses the variances;
- ``root_decomposition()``: :math:`R = P^\top L^{-\top}`, ``root_inv_decomposition()``: :math:`A = P^\top L`,
  ``zero_mean_mvn_samples``: :math:`R \varepsilon` — so ``gpytorch.distributions.MultivariateNormal(mean, op)`` has an
  exact ``log_prob`` (one sparse product and one log-determinant) and exact draws, and works in ``pyro.sample``. The
  roots carry no gradient w.r.t. the values: ``rsample`` warns when they require grad and detaches its draws from them.

Gradients w.r.t. the stored values follow the library's convention for a symmetric matrix with both triangles stored
(docs/concepts.md, "Gradients w.r.t. a symmetric sparse matrix"): ``Σ @ b`` here and
``SparsePrecisionLinearOperator(Q).solve(b)`` give the same gradient, entry by entry.
"""

from __future__ import annotations

import torch

from ._inverse_diagonal import inverse_diagonal
from ._sparse_symmetric import SparseSymmetricOperator, from_sparse, inverse_matmul, symmetric_matmul

__all__ = ["PrecisionInverseLinearOperator"]


class PrecisionInverseLinearOperator(SparseSymmetricOperator):
    """The inverse of a sparse SPD precision as a LinearOperator (see the module for the maths).

    Build it from a sparse precision with :meth:`from_precision`. Gradients w.r.t. the values follow the convention
    for a symmetric matrix with both triangles stored (:ref:`symmetric-gradients`), in every method.

    Parameters
    ----------
    values : torch.Tensor
        ``(*batch, nnz)``: the stored values of ``Q``, in the order of ``pattern``.
    pattern : SymmetricPattern
        ``Q``'s fixed sparsity pattern (both triangles and the diagonal stored).

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

    _represents_inverse = True

    def _product_block(self, b: int, Q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return inverse_matmul(Q, x, self._factor(b))

    def _solve_block(self, b: int, Q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return symmetric_matmul(Q, x)  # Σ⁻¹ B = Q B

    def _diagonal(self) -> torch.Tensor:
        rows, cols = self.pattern.rows, self.pattern.col
        values = self._flat_values()
        variances = [inverse_diagonal(values[b], rows, cols, self._factor(b)) for b in range(values.shape[0])]
        return torch.stack(variances).reshape(self.batch_shape + (self.pattern.n,))

    def to_dense(self) -> torch.Tensor:
        eye = torch.eye(self.pattern.n, dtype=self.dtype, device=self.device)
        return self._matmul(eye.expand(self.batch_shape + eye.shape))

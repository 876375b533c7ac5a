r"""``SparsePrecisionLinearOperator``: a sparse symmetric positive definite matrix ``Q`` as a ``LinearOperator``.

Everything is exact and sparse: ``Q x`` is one sparse product; ``solve``, ``inv_quad_logdet``, ``logdet`` use one
sparse Cholesky factorisation of ``Q`` (:func:`sparseprec.cholesky.cholesky`, symbolic analysis cached per pattern)
per operator and batch element — never CG or Lanczos. Gradients w.r.t. the stored values (the operator's only
tensor argument, ``(*batch, nnz)``) follow the library's convention for a symmetric matrix with both triangles stored
(docs/concepts.md, "Gradients w.r.t. a symmetric sparse matrix"): for ``Q x`` and ``Q⁻¹ B`` one sampled product (or
two) at the stored entries, for ``log det Q`` the selected inverse (no ``n × n`` object).

``root_decomposition()`` is :math:`A = P^\top L` (:math:`Q = A A^\top`, sparse), ``root_inv_decomposition()`` is
:math:`R = P^\top L^{-\top}` (:math:`Q^{-1} = R R^\top`), ``zero_mean_mvn_samples`` draws :math:`N(0, Q)` as
:math:`A \varepsilon`. ``add_diagonal``/``add_jitter`` stay sparse (the pattern stores the diagonal).
"""

from __future__ import annotations

import torch
from linear_operator.operators import LinearOperator

from .._validation import broadcast_shapes
from ..cholesky import sparse_cholesky_solve
from ._sparse_symmetric import SparseSymmetricOperator, from_sparse, symmetric_matmul

__all__ = ["SparsePrecisionLinearOperator"]


class SparsePrecisionLinearOperator(SparseSymmetricOperator):
    """A sparse SPD matrix as a LinearOperator (see the module for the maths).

    Build it from a sparse tensor with :meth:`from_sparse`. Gradients w.r.t. the values follow the convention for a
    symmetric matrix with both triangles stored (:ref:`symmetric-gradients`), in every method.

    Parameters
    ----------
    values : torch.Tensor
        ``(*batch, nnz)``: the stored values, in the order of ``pattern``.
    pattern : SymmetricPattern
        The fixed sparsity pattern (both triangles and the diagonal stored).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.gpytorch import SparsePrecisionLinearOperator
    >>> from sparseprec.structures import ar1
    >>> Q = SparsePrecisionLinearOperator.from_sparse(ar1(5, 0.5))
    >>> x = torch.ones(5, dtype=torch.float64)
    >>> dense = ar1(5, 0.5).to_dense()
    >>> torch.allclose(Q @ x, dense @ x), torch.allclose(Q.logdet(), dense.logdet())
    (True, True)
    """

    @classmethod
    def from_sparse(cls, Q: torch.Tensor) -> SparsePrecisionLinearOperator:
        """From a sparse symmetric ``(n, n)`` COO/CSR tensor; gradients flow back to its values."""
        values, pattern = from_sparse(Q, "Q")
        return cls(values, pattern)

    def _product_block(self, b: int, Q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return symmetric_matmul(Q, x)

    def _solve_block(self, b: int, Q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return sparse_cholesky_solve(Q, x, factor=self._factor(b))

    def _diagonal(self) -> torch.Tensor:
        return self.values[..., self.pattern.diagonal_positions.to(self.values.device)]

    def to_dense(self) -> torch.Tensor:
        dense = self.pattern.dense(self.values)
        return 0.5 * (dense + dense.mT)  # the same matrix (symmetric values), with the symmetric gradient

    def add_diagonal(self, diag: torch.Tensor) -> LinearOperator:
        diag = torch.as_tensor(diag, dtype=self.dtype, device=self.device)
        positions = self.pattern.diagonal_positions.to(self.device)
        shape = broadcast_shapes(self.values.shape[:-1] + (self.pattern.n,), diag.shape)
        added = self.values.expand(shape[:-1] + (self.pattern.nnz,)).index_add(-1, positions, diag.expand(shape))
        return self._with_values(added)

    def add_jitter(self, jitter_val: float = 1e-3) -> LinearOperator:
        return self.add_diagonal(torch.tensor(jitter_val, dtype=self.dtype, device=self.device))

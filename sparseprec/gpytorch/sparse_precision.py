r"""``SparsePrecisionLinearOperator``: a sparse symmetric positive definite matrix ``Q`` as a ``LinearOperator``.

Everything is exact and sparse: ``Q x`` is one sparse product; ``solve``, ``inv_quad_logdet``, ``logdet`` use one
sparse Cholesky factorisation of ``Q`` (:func:`sparseprec.cholesky.cholesky`, symbolic analysis cached per pattern)
per operator and batch element — never CG or Lanczos. Gradients w.r.t. the stored values (the operator's only
tensor argument, ``(*batch, nnz)``):

- ``Q x``: :math:`\partial/\partial Q_{ij} = g_i x_j` at the stored entries;
- ``Q⁻¹ B``: :math:`-\tfrac12(\Lambda_i X_j^\top + \Lambda_j X_i^\top)` with :math:`\Lambda = Q^{-1} G`;
- ``log det Q``: :math:`(Q^{-1})_{ij}` at the stored entries, from the selected inverse (no ``n × n`` object).

``root_decomposition()`` is :math:`A = P^\top L` (:math:`Q = A A^\top`, sparse), ``root_inv_decomposition()`` is
:math:`R = P^\top L^{-\top}` (:math:`Q^{-1} = R R^\top`), ``zero_mean_mvn_samples`` draws :math:`N(0, Q)` as
:math:`A \varepsilon`. ``add_diagonal``/``add_jitter`` stay sparse (the pattern stores the diagonal).
"""

from __future__ import annotations

import torch
from linear_operator.operators import LinearOperator, RootLinearOperator

from ..cholesky import sparse_cholesky_solve, sparse_logdet
from ..ops import sparse_mm
from ._roots import CholeskyRoot
from ._sparse_symmetric import SparseSymmetricOperator, from_sparse

__all__ = ["SparsePrecisionLinearOperator"]


class SparsePrecisionLinearOperator(SparseSymmetricOperator):
    """A sparse SPD matrix as a LinearOperator (see the module for the maths).

    Parameters
    ----------
    values : torch.Tensor
        ``(*batch, nnz)``: the stored values, in the order of ``pattern``.
    pattern : SymmetricPattern
        The fixed sparsity pattern (both triangles and the diagonal stored).

    Build it from a sparse tensor with :meth:`from_sparse`.

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

    def _matmul(self, rhs: torch.Tensor) -> torch.Tensor:
        vector = rhs.dim() == 1
        rhs = rhs.unsqueeze(-1) if vector else rhs
        out = self._per_batch(rhs, lambda _b, Q, x: sparse_mm(Q, x, transpose=self.transposed))
        return out.squeeze(-1) if vector else out

    def _diagonal(self) -> torch.Tensor:
        return self.values[..., self.pattern.diagonal_positions.to(self.values.device)]

    def to_dense(self) -> torch.Tensor:
        return self.pattern.dense(self.values)

    def add_diagonal(self, diag: torch.Tensor) -> LinearOperator:
        diag = torch.as_tensor(diag, dtype=self.dtype, device=self.device)
        positions = self.pattern.diagonal_positions.to(self.device)
        shape = torch.broadcast_shapes(self.values.shape[:-1] + (self.pattern.n,), diag.shape)
        added = self.values.expand(shape[:-1] + (self.pattern.nnz,)).index_add(-1, positions, diag.expand(shape))
        return self._with_values(added)

    def add_jitter(self, jitter_val: float = 1e-3) -> LinearOperator:
        return self.add_diagonal(torch.tensor(jitter_val, dtype=self.dtype, device=self.device))

    def _solve_block(self, b: int, Q: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        return sparse_cholesky_solve(Q, B, factor=self._factor(b))

    def solve(self, right_tensor: torch.Tensor, left_tensor: torch.Tensor | None = None) -> torch.Tensor:
        vector = right_tensor.dim() == 1
        rhs = right_tensor.unsqueeze(-1) if vector else right_tensor
        out = self._per_batch(rhs, self._solve_block)
        out = out.squeeze(-1) if vector else out
        return out if left_tensor is None else left_tensor @ out

    def _logdets(self) -> torch.Tensor:
        values = self._flat_values()
        out = [sparse_logdet(self.pattern.matrix(values[b]), factor=self._factor(b)) for b in range(values.shape[0])]
        return torch.stack(out).reshape(self.batch_shape)

    def inv_quad_logdet(
        self, inv_quad_rhs: torch.Tensor | None = None, logdet: bool = False, reduce_inv_quad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        empty = torch.zeros([], dtype=self.dtype, device=self.device)
        inv_quad = empty
        if inv_quad_rhs is not None:
            rhs = inv_quad_rhs.unsqueeze(-1) if inv_quad_rhs.dim() == 1 else inv_quad_rhs
            inv_quad = (rhs * self._per_batch(rhs, self._solve_block)).sum(-2)
            if reduce_inv_quad:
                inv_quad = inv_quad.sum(-1)
        return inv_quad, (self._logdets() if logdet else empty)

    def inv_quad(self, inv_quad_rhs: torch.Tensor, reduce_inv_quad: bool = True) -> torch.Tensor:
        return self.inv_quad_logdet(inv_quad_rhs, reduce_inv_quad=reduce_inv_quad)[0]

    def logdet(self) -> torch.Tensor:
        return self._logdets()

    def root_decomposition(self, method: str | None = None) -> LinearOperator:
        return RootLinearOperator(CholeskyRoot.of(self, inverse=False))

    def root_inv_decomposition(self, initial_vectors=None, test_vectors=None, method: str | None = None):
        return RootLinearOperator(CholeskyRoot.of(self, inverse=True))

    def zero_mean_mvn_samples(self, num_samples: int) -> torch.Tensor:
        eps = torch.randn(num_samples, *self.batch_shape, self.pattern.n, dtype=self.dtype, device=self.device)
        root = CholeskyRoot.of(self, inverse=False)
        return root._matmul(eps.movedim(0, -1)).movedim(-1, 0)

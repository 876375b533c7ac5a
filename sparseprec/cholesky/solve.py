"""``sparse_cholesky_solve``: ``Q⁻¹ B`` by a sparse Cholesky factor, with exact gradients at ``Q``'s stored entries."""

from __future__ import annotations

import torch

from ..ops._solve_rule import linear_solve
from ._structure import check_symmetric_input, lower_structure
from .factor import CholeskyFactor, check_factor, cholesky

__all__ = ["sparse_cholesky_solve", "symmetric_solve", "FactorSolver"]


class FactorSolver:
    """A Cholesky factor of a symmetric ``Q`` as a solver for :func:`~sparseprec.ops._solve_rule.linear_solve`."""

    def __init__(self, factor: CholeskyFactor):
        self.factor = factor

    def solve(self, B: torch.Tensor, transpose: bool) -> torch.Tensor:  # Qᵀ = Q: ``transpose`` changes nothing
        return self.factor.solve(B)


def symmetric_solve(Q: torch.Tensor, B: torch.Tensor, factor: CholeskyFactor, triangle: str) -> torch.Tensor:
    """``Q⁻¹ B`` (``B`` ``(n,)`` or ``(n, k)``) by ``factor``, differentiable any number of times w.r.t. ``Q``'s stored
    values (the symmetric convention of ``triangle``) and ``B``."""
    pattern, _ = lower_structure(Q, triangle)
    k = B.shape[1] if B.dim() == 2 else 1
    X = linear_solve(Q, B.reshape(factor.n, k), FactorSolver(factor), pattern, symmetric=triangle)
    return X.reshape(B.shape)


def sparse_cholesky_solve(
    Q: torch.Tensor,
    B: torch.Tensor,
    backend: str = "auto",
    ordering: str | None = None,
    triangle: str = "full",
    *,
    factor: CholeskyFactor | None = None,
) -> torch.Tensor:
    r"""Solve ``Q X = B`` for a sparse SPD ``Q`` by sparse Cholesky; gradients w.r.t. ``Q``'s stored values and ``B``.

    Forward: :math:`X = Q^{-1} B` by :func:`cholesky` (symbolic analysis cached per pattern).

    Backward, with :math:`G = \partial L/\partial X` and :math:`\Lambda = Q^{-1} G` (one more solve with the same
    factor): :math:`\partial L/\partial B = \Lambda` and, along the symmetric direction of each stored entry,
    :math:`s_{ij} = -(\Lambda_i X_j^\top + \Lambda_j X_i^\top)`, mapped onto the stored values by ``triangle``
    (``"full"``: :math:`s_{ij}/2` at both ``(i, j)`` and ``(j, i)``; ``"lower"``/``"upper"``: :math:`s_{ij}` off the
    diagonal; the library's one convention, :ref:`symmetric-gradients`). O(nnz k) for the gradient on top of the two
    solves; no ``n × n`` intermediate. The backward is recorded under ``create_graph=True`` (same factor, same rule), so
    second derivatives w.r.t. ``B`` and ``Q``'s stored values are exact.

    Parameters
    ----------
    Q, backend, ordering, triangle
        As for :func:`cholesky`.
    B : torch.Tensor
        Dense ``(n,)`` or ``(n, k)``, ``Q``'s dtype and device.
    factor : CholeskyFactor, optional
        A factor of this very ``Q``, used instead of factorising again (as in :func:`sparse_logdet`).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.cholesky import sparse_cholesky_solve
    >>> Q = torch.tensor([[2.0, -1.0], [-1.0, 2.0]], dtype=torch.float64).to_sparse_csr().requires_grad_()
    >>> X = sparse_cholesky_solve(Q, torch.tensor([1.0, 1.0], dtype=torch.float64))
    >>> X.detach().round(decimals=8)
    tensor([1., 1.], dtype=torch.float64)
    >>> X.sum().backward()
    >>> Q.grad.values().round(decimals=8)  # −½(Λ_i X_j + Λ_j X_i), Λ = Q⁻¹ 1 = (1, 1)
    tensor([-1., -1., -1., -1.], dtype=torch.float64)
    """
    if factor is None:
        factor = cholesky(Q, backend=backend, ordering=ordering, triangle=triangle)
    else:
        Q = check_symmetric_input(Q, triangle)
        factor = check_factor(factor, "factor", "sparse_cholesky_solve(Q, B, factor=cholesky(Q))")
        if factor.n != Q.shape[-1]:
            raise ValueError(f"factor must be a CholeskyFactor of Q (n = {Q.shape[-1]}), got one with n = {factor.n}")
    factor._rhs(B)
    return symmetric_solve(Q, B, factor, triangle)

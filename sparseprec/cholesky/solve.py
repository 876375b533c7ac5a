"""``sparse_cholesky_solve``: ``Q⁻¹ B`` by a sparse Cholesky factor, with exact gradients at ``Q``'s stored entries."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..ops._pattern import SparsePattern
from ..ops._sampled import sampled_product
from ._structure import lower_structure
from .factor import CholeskyFactor, cholesky

__all__ = ["sparse_cholesky_solve", "symmetric_gradient"]


def symmetric_gradient(
    Q: torch.Tensor, pattern: SparsePattern, triangle: str, U: torch.Tensor, V: torch.Tensor
) -> torch.Tensor:
    """Gradient w.r.t. ``Q``'s stored values of ``L`` when ``∂L/∂Q = U Vᵀ`` (``U``, ``V`` of shape ``(n, k)``), for a
    symmetric ``Q`` as it is stored.

    With ``s_ij = (U Vᵀ)_ij + (U Vᵀ)_ji`` (the derivative along the symmetric direction ``E_ij + E_ji``):
    ``triangle="full"`` returns ``s_ij / 2`` at every stored entry (a symmetric gradient: tied parameters
    ``Q_ij = Q_ji = θ`` get ``s_ij``, as torch does for ``torch.linalg.cholesky``); ``"lower"``/``"upper"`` return
    ``s_ij`` off the diagonal (one value stands for both entries) and ``(U Vᵀ)_ii`` on it.
    """
    kernel = pattern.kernel_matrix(pattern.kernel_values(Q.detach()))
    s = sampled_product(pattern, kernel, U, V) + sampled_product(pattern, kernel, V, U)
    on_diagonal = pattern.row == pattern.col
    if triangle == "full":
        s = s * 0.5
    else:
        s = torch.where(on_diagonal, s * 0.5, s)
    return pattern.gradient_like(Q, s)


class _CholeskySolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, Q: torch.Tensor, B: torch.Tensor, factor: CholeskyFactor, triangle: str) -> torch.Tensor:
        X = factor.solve(B)
        ctx.Q, ctx.factor, ctx.triangle = Q, factor, triangle
        ctx.save_for_backward(X)
        return X

    @staticmethod
    @once_differentiable
    def backward(ctx, G: torch.Tensor):
        (X,) = ctx.saved_tensors
        # X = Q⁻¹ B, Q symmetric: dB = Q⁻¹ G =: Λ (the same factor), ∂L/∂Q = −Λ Xᵀ, read along symmetric directions
        Lam = ctx.factor.solve(G.contiguous())
        grad_Q = None
        if ctx.needs_input_grad[0]:
            n = ctx.factor.n
            pattern, _ = lower_structure(ctx.Q, ctx.triangle)
            grad_Q = symmetric_gradient(ctx.Q, pattern, ctx.triangle, Lam.reshape(n, -1).neg(), X.reshape(n, -1))
        return grad_Q, Lam if ctx.needs_input_grad[1] else None, None, None


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
    :math:`s_{ij} = -(\Lambda_i X_j^\top + \Lambda_j X_i^\top)`; see :func:`symmetric_gradient` for how ``triangle``
    maps :math:`s` onto the stored values (``"full"``: :math:`s_{ij}/2` at both ``(i, j)`` and ``(j, i)``).
    O(nnz k) for the gradient on top of the two solves; no ``n × n`` intermediate.

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
    >>> X.detach()
    tensor([1., 1.], dtype=torch.float64)
    >>> X.sum().backward()
    >>> Q.grad.values()  # −½(Λ_i X_j + Λ_j X_i), Λ = Q⁻¹ 1 = (1, 1)
    tensor([-1., -1., -1., -1.], dtype=torch.float64)
    """
    if factor is None:
        factor = cholesky(Q, backend=backend, ordering=ordering, triangle=triangle)
    elif not isinstance(factor, CholeskyFactor) or factor.n != Q.shape[-1]:
        raise ValueError(f"factor must be a CholeskyFactor of Q (n = {Q.shape[-1]}), got {factor!r}")
    factor._rhs(B)
    return _CholeskySolve.apply(Q, B, factor, triangle)

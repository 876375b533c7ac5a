"""Selected inverse, marginal variances and the exact, differentiable log-determinant of a sparse SPD ``Q``."""

from __future__ import annotations

import numpy as np
import torch

from ..ops._once import first_derivative_only
from ..ops._values import stored_values
from ..pattern import SparsePattern
from ._structure import check_symmetric_input, lower_structure
from .factor import CholeskyFactor, check_factor, cholesky

__all__ = ["selected_inverse", "diag_inverse", "sparse_logdet"]


def selected_inverse(factor: CholeskyFactor) -> torch.Tensor:
    r""":math:`Q^{-1}` on the pattern of :math:`P^\top (L + L^\top) P` (original ordering), as a symmetric CSR tensor.

    Computed by the supernodal Takahashi recursions (see :mod:`sparseprec.cholesky.takahashi`) at about the
    cost of the numeric factorisation; the pattern contains every stored entry of ``Q``. No gradient.

    Raises
    ------
    TypeError
        ``factor`` is not a :class:`CholeskyFactor` (pass ``selected_inverse(cholesky(Q))``).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.cholesky import cholesky, selected_inverse
    >>> Q = torch.tensor([[2.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, 2.0]], dtype=torch.float64)
    >>> selected_inverse(cholesky(Q.to_sparse_csr())).to_dense()
    tensor([[0.7500, 0.5000, 0.0000],
            [0.5000, 1.0000, 0.5000],
            [0.0000, 0.5000, 0.7500]], dtype=torch.float64)
    """
    factor = check_factor(factor, "factor", "selected_inverse(cholesky(Q))")
    structure, Z = factor.selected_inverse_blocks()
    L = factor.numeric.L().tocoo()
    i, j = L.row.astype(np.int64), L.col.astype(np.int64)
    values = Z[structure.locate(i, j)]
    perm = factor.perm.cpu().numpy()
    rows, cols = perm[i], perm[j]
    off = i != j
    index = torch.from_numpy(np.stack([np.concatenate([rows, cols[off]]), np.concatenate([cols, rows[off]])]))
    data = torch.from_numpy(np.concatenate([values, values[off]]))
    n = factor.n
    out = torch.sparse_coo_tensor(index, data, (n, n)).coalesce().to_sparse_csr()
    return out.to(dtype=factor.dtype, device=factor.device)


def _diagonal(factor: CholeskyFactor) -> torch.Tensor:
    factor = check_factor(factor, "factor", "diag_inverse(cholesky(Q))")
    structure, Z = factor.selected_inverse_blocks()
    j = np.arange(factor.n)
    d = np.empty(factor.n)
    d[factor.perm.cpu().numpy()] = Z[structure.locate(j, j)]
    return torch.from_numpy(d).to(dtype=factor.dtype, device=factor.device)


def diag_inverse(
    Q: torch.Tensor | CholeskyFactor, backend: str = "auto", ordering: str | None = None, triangle: str = "full"
) -> torch.Tensor:
    r""":math:`\mathrm{diag}(Q^{-1})`: the marginal variances of a GMRF with precision ``Q`` (exact; no gradient).

    ``Q`` is a sparse SPD tensor (factorised with ``backend``, ``ordering``, ``triangle`` as in :func:`cholesky`) or a
    :class:`CholeskyFactor` (then those three must be left at their defaults).

    Raises
    ------
    TypeError
        ``Q`` neither a sparse tensor nor a :class:`CholeskyFactor`.
    ValueError
        ``backend``, ``ordering`` or ``triangle`` given with a :class:`CholeskyFactor`; as :func:`cholesky` otherwise.
    sparseprec.NotPositiveDefiniteError
        As :func:`cholesky`.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.cholesky import diag_inverse
    >>> Q = torch.tensor([[2.0, -1.0], [-1.0, 2.0]], dtype=torch.float64).to_sparse_csr()
    >>> diag_inverse(Q)
    tensor([0.6667, 0.6667], dtype=torch.float64)
    """
    if isinstance(Q, CholeskyFactor):
        if (backend, ordering, triangle) != ("auto", None, "full"):
            raise ValueError(
                "backend, ordering and triangle apply only when Q is a sparse tensor, but Q is a CholeskyFactor "
                f"(backend {Q.backend!r}, ordering {Q.ordering!r}); got backend={backend!r}, ordering={ordering!r}, "
                f"triangle={triangle!r}"
            )
        return _diagonal(Q)
    if not isinstance(Q, torch.Tensor) or Q.layout == torch.strided:
        got = f"a dense tensor of shape {tuple(Q.shape)}" if isinstance(Q, torch.Tensor) else type(Q).__name__
        raise TypeError(
            "Q must be a sparse COO/CSR SPD tensor or a CholeskyFactor (e.g. diag_inverse(Q.to_sparse_csr()) or "
            f"diag_inverse(cholesky(Q))), got {got}"
        )
    return _diagonal(cholesky(Q, backend=backend, ordering=ordering, triangle=triangle))


def _inverse_at_stored(Q: torch.Tensor, pattern: SparsePattern, factor: CholeskyFactor) -> np.ndarray:
    """``(Q⁻¹)_ij`` at ``Q``'s stored entries (kernel order); the positions are cached with the pattern."""
    structure, Z = factor.selected_inverse_blocks()

    def locate():
        inverse_perm = np.empty(factor.n, dtype=np.int64)
        inverse_perm[factor.perm.cpu().numpy()] = np.arange(factor.n)
        r = inverse_perm[pattern.row.cpu().numpy().astype(np.int64)]
        c = inverse_perm[pattern.col.cpu().numpy().astype(np.int64)]
        return structure, structure.locate(np.maximum(r, c), np.minimum(r, c))

    positions = factor.pattern_derived("stored_positions", locate)
    if positions[0] is not structure:  # a structure built for this factor alone
        positions = locate()
    return Z[positions[1]]


class _SparseLogdet(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: torch.Tensor, Q: torch.Tensor, factor: CholeskyFactor, triangle: str) -> torch.Tensor:
        ctx.save_for_backward(values)
        ctx.Q, ctx.factor, ctx.triangle = Q, factor, triangle  # Q without autograd history: index data only
        return factor.logdet()

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        # ∂ log det Q / ∂Q = Q⁻¹ (symmetric), needed only at the stored entries: the selected inverse has them all.
        # One value of a one-triangle storage stands for Q_ij and Q_ji: twice the derivative off the diagonal.
        (values,) = ctx.saved_tensors
        Q, triangle = ctx.Q, ctx.triangle
        pattern, _ = lower_structure(Q, triangle)
        z = torch.from_numpy(_inverse_at_stored(Q, pattern, ctx.factor)).to(dtype=Q.dtype, device=Q.device)
        if triangle != "full":
            z = torch.where(pattern.row == pattern.col, z, 2.0 * z)
        # (Q⁻¹)_ij comes from NumPy: its own derivative, −(Q⁻¹ dQ Q⁻¹)_ij, is not implemented
        return first_derivative_only(z * g, values, "sparse_logdet (w.r.t. Q's values)"), None, None, None


def sparse_logdet(
    Q: torch.Tensor,
    backend: str = "auto",
    ordering: str | None = None,
    triangle: str = "full",
    *,
    factor: CholeskyFactor | None = None,
) -> torch.Tensor:
    r""":math:`\log\det Q` of a sparse SPD ``Q`` by sparse Cholesky, with the exact gradient at ``Q``'s stored entries.

    Forward: :math:`\log\det Q = 2 \sum_i \log L_{ii}` (:func:`cholesky`; symbolic analysis cached per pattern).

    Backward: :math:`\partial \log\det Q / \partial Q_{ij} = (Q^{-1})_{ij}` at the stored entries (symmetric, so the
    same for ``(i, j)`` and ``(j, i)``; with ``triangle="lower"``/``"upper"`` each off-diagonal stored value stands for
    both and gets :math:`2 (Q^{-1})_{ij}`: the library's one convention, :ref:`symmetric-gradients`), read from the
    selected inverse (supernodal Takahashi recursions, about one more numeric factorisation; no ``n × n``
    intermediate, memory O(nnz(L))).

    Differentiable once w.r.t. ``Q``: the second derivative :math:`-(Q^{-1} \, dQ \, Q^{-1})_{ij}` needs entries of
    :math:`Q^{-1}` outside the selected pattern, so differentiating the gradient again (``create_graph=True``, a
    Hessian) raises :class:`sparseprec.NotTwiceDifferentiableError` instead of silently dropping the term.

    Parameters
    ----------
    Q, backend, ordering, triangle
        As for :func:`cholesky`.
    factor : CholeskyFactor, optional
        A factor of this very ``Q`` (same values, same ``triangle``), e.g. one kept to sample from: it is used
        instead of factorising again (``backend`` and ``ordering`` are then ignored). Passing a factor of another
        matrix gives wrong results.

    Returns
    -------
    torch.Tensor
        0-d, ``Q``'s dtype and device.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.cholesky import sparse_logdet
    >>> Q = torch.tensor([[2.0, -1.0], [-1.0, 2.0]], dtype=torch.float64).to_sparse_csr().requires_grad_()
    >>> value = sparse_logdet(Q)
    >>> value.detach(), torch.log(torch.tensor(3.0, dtype=torch.float64))
    (tensor(1.0986, dtype=torch.float64), tensor(1.0986, dtype=torch.float64))
    >>> value.backward()
    >>> Q.grad.values()  # Q⁻¹ = [[2, 1], [1, 2]] / 3 at the stored entries
    tensor([0.6667, 0.3333, 0.3333, 0.6667], dtype=torch.float64)
    """
    if factor is None:
        factor = cholesky(Q, backend=backend, ordering=ordering, triangle=triangle)
    else:
        Q = check_symmetric_input(Q, triangle)
        factor = check_factor(factor, "factor", "sparse_logdet(Q, factor=cholesky(Q))")
        if factor.n != Q.shape[-1]:
            raise ValueError(f"factor must be a CholeskyFactor of Q (n = {Q.shape[-1]}), got one with n = {factor.n}")
    pattern, _ = lower_structure(Q, triangle)
    return _SparseLogdet.apply(stored_values(Q, pattern), Q.detach(), factor, triangle)

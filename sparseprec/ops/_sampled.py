"""The one kernel every sparse-operand gradient needs: a dense product sampled at the stored pattern.

For dense ``U`` of shape ``(N, p)`` and ``V`` of shape ``(M, p)`` and a pattern with entries ``(i_e, j_e)``::

    s_e = sum_k U[i_e, k] * V[j_e, k]          (the entries of U V^T at the stored positions only)

This never forms ``U V^T``. With one column it is two gathers and a product; with more columns it is torch's
sampled dense-dense matmul (SDDMM) on the kernel CSR matrix, which writes only ``nnz`` values.
"""

from __future__ import annotations

import torch

from ._pattern import SparsePattern

__all__ = ["sampled_product"]


def sampled_product(pattern: SparsePattern, kernel: torch.Tensor, U: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Values ``(U V^T)[i_e, j_e]`` at the pattern's entries, in kernel order, shape ``(nnz,)``.

    ``kernel`` is the pattern's kernel CSR matrix (its values are ignored).
    """
    if U.shape[-1] == 1:
        u = U.reshape(-1).index_select(0, pattern.row)
        return u.mul_(V.reshape(-1).index_select(0, pattern.col))
    if pattern.nnz == 0:
        return U.new_zeros(0)
    return torch.sparse.sampled_addmm(kernel, U, V.transpose(0, 1), beta=0.0).values()

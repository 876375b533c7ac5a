"""Assembling a CSR precision from fixed index pairs and differentiable values.

Every builder of :mod:`sparseprec.structures` knows its pattern in advance (it depends on the graph or the grid, not on
the hyper-parameters) and computes the values as a differentiable function of the hyper-parameters. :class:`Pattern`
sorts and merges the index pairs once (duplicates summed); :meth:`Pattern.matrix` then only scatters the values, so
gradients reach ``rho``, ``tau``, ``kappa`` ... through plain torch ops and :func:`sparseprec.sparse_csr_tensor`'s
O(nnz) backward.
"""

from __future__ import annotations

import numpy as np
import torch

from ..ops import sparse_csr_tensor

__all__ = ["Pattern", "as_parameter"]


class Pattern:
    """The sorted, merged pattern of ``(rows, cols)`` pairs of an ``(n, n)`` matrix.

    Parameters
    ----------
    rows, cols : numpy.ndarray
        Entry positions (int), duplicates allowed (their values are summed).
    n : int
        Matrix size.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n: int):
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        keys = rows * n + cols
        unique, inverse = np.unique(keys, return_inverse=True)
        self.n = n
        self.nnz = unique.size
        self.inverse = torch.from_numpy(inverse.reshape(-1))
        self.rows = torch.from_numpy(unique // n)
        self.cols = torch.from_numpy(unique % n)
        self.crow = torch.from_numpy(np.concatenate([[0], np.cumsum(np.bincount(unique // n, minlength=n))]))

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The CSR matrix with ``values`` (one per input pair, in input order) summed into the merged pattern."""
        device = values.device
        merged = values.new_zeros(self.nnz).index_add(0, self.inverse.to(device), values)
        return sparse_csr_tensor(self.crow.to(device), self.cols.to(device), merged, (self.n, self.n))

    def merged_matrix(self, merged: torch.Tensor) -> torch.Tensor:
        """The CSR matrix with values already in the merged (sorted) order, ``(nnz,)``."""
        device = merged.device
        return sparse_csr_tensor(self.crow.to(device), self.cols.to(device), merged, (self.n, self.n))


def as_parameter(x: float | torch.Tensor, name: str, dtype: torch.dtype, device: torch.device | None) -> torch.Tensor:
    """A scalar hyper-parameter as a 0-D tensor (kept differentiable if it is one), else ``ValueError``."""
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(x.shape)}")
        if not x.is_floating_point():
            x = x.to(dtype)
        return x.reshape(())
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name} must be a float or a 0-D tensor, got {type(x).__name__}")
    return torch.tensor(float(x), dtype=dtype, device=device)

"""Precisions of time-series models: random walks of order 1 and 2 (intrinsic) and the stationary AR(1)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .._validation import check_flag
from ._assemble import Pattern, as_int, hyper_parameters

__all__ = ["rw1", "rw2", "ar1"]


def _difference_structure(n: int, order: int, cyclic: bool) -> sp.coo_matrix:
    """``Δᵀ Δ`` for the ``order``-th difference operator ``Δ`` (``(n - order) x n``, or ``n x n`` circulant)."""
    stencil = {1: [-1.0, 1.0], 2: [1.0, -2.0, 1.0]}[order]
    m = n if cyclic else n - order
    rows = np.repeat(np.arange(m), order + 1)
    cols = (np.arange(m)[:, None] + np.arange(order + 1)[None, :]).ravel() % n
    Delta = sp.coo_matrix((np.tile(stencil, m), (rows, cols)), shape=(m, n)).tocsr()
    return (Delta.T @ Delta).tocoo()


def _random_walk(n: int, order: int, cyclic: bool, tau, dtype: torch.dtype | None) -> torch.Tensor:
    cyclic = check_flag(cyclic, "cyclic", f" (give tau by keyword: rw{order}(n, tau={cyclic!r}))")
    minimum = 3 if cyclic else order + 1
    kind = "a cyclic" if cyclic else "an"
    n = as_int(n, "n", minimum, f"{kind} RW{order} needs {minimum} points")
    (tau,) = hyper_parameters(dtype, positive=("tau",), tau=tau)
    S = _difference_structure(n, order, cyclic)
    keep = S.data != 0
    pattern = Pattern(S.row[keep], S.col[keep], n)
    return pattern.matrix(tau.unsqueeze(-1) * torch.from_numpy(S.data[keep]).to(tau))


def rw1(n: int, cyclic: bool = False, tau: float | torch.Tensor = 1.0, dtype: torch.dtype | None = None):
    r"""Precision of the first-order random walk: :math:`Q = \tau \Delta_1^\top \Delta_1`, :math:`(\Delta_1 x)_i =
    x_{i+1} - x_i`.

    Rank :math:`n - 1`, null space the constant vector (use a sum-to-zero constraint); ``cyclic=True`` wraps the
    differences around (:math:`x_{n+1} = x_1`; same rank and null space). Differentiable in ``tau``.

    Parameters
    ----------
    n : int
        Number of time points.
    cyclic : bool
        Wrap the differences around.
    tau : float or torch.Tensor
        Positive precision, 0-D or of any batch shape; a batched ``tau`` gives a batch of precisions on one pattern.
    dtype : torch.dtype, optional
        float32 or float64.

    Returns
    -------
    torch.Tensor
        Sparse CSR ``(n, n)``, or ``(*tau.shape, n, n)`` with values ``(*tau.shape, nnz)`` on the shared pattern.

    Raises
    ------
    TypeError
        ``n`` not an int (``4.0`` and ``True`` included), ``cyclic`` not a bool (e.g. ``rw1(n, 2.0)``, a ``tau``
        given by position), ``dtype`` other than float32/float64 (the result's dtype is ``dtype``, by default
        ``tau``'s, float64 for a number).
    ValueError
        Too few points, an entry of ``tau`` that is not positive and finite (named with its index).

    Examples
    --------
    >>> from sparseprec.structures import rw1
    >>> rw1(4).to_dense()
    tensor([[ 1., -1.,  0.,  0.],
            [-1.,  2., -1.,  0.],
            [ 0., -1.,  2., -1.],
            [ 0.,  0., -1.,  1.]], dtype=torch.float64)
    """
    return _random_walk(n, 1, cyclic, tau, dtype)


def rw2(n: int, cyclic: bool = False, tau: float | torch.Tensor = 1.0, dtype: torch.dtype | None = None):
    r"""Precision of the second-order random walk: :math:`Q = \tau \Delta_2^\top \Delta_2`, :math:`(\Delta_2 x)_i =
    x_i - 2 x_{i+1} + x_{i+2}`.

    Rank :math:`n - 2`, null space spanned by :math:`1` and :math:`t = (1, \dots, n)` (use two constraints); the
    cyclic version (:math:`Q` circulant with stencil ``(1, -4, 6, -4, 1)``) has rank :math:`n - 1` and null space
    :math:`1` only. Differentiable in ``tau``.

    Parameters
    ----------
    n : int
        Number of time points.
    cyclic : bool
        Wrap the differences around.
    tau : float or torch.Tensor
        Positive precision, 0-D or of any batch shape; a batched ``tau`` gives a batch of precisions on one pattern.
    dtype : torch.dtype, optional
        float32 or float64.

    Returns
    -------
    torch.Tensor
        Sparse CSR ``(n, n)``, or ``(*tau.shape, n, n)`` with values ``(*tau.shape, nnz)`` on the shared pattern.

    Raises
    ------
    TypeError
        ``n`` not an int (``4.0`` and ``True`` included), ``cyclic`` not a bool (e.g. ``rw1(n, 2.0)``, a ``tau``
        given by position), ``dtype`` other than float32/float64 (the result's dtype is ``dtype``, by default
        ``tau``'s, float64 for a number).
    ValueError
        Too few points, an entry of ``tau`` that is not positive and finite (named with its index).

    Examples
    --------
    >>> from sparseprec.structures import rw2
    >>> rw2(5).to_dense()[2]
    tensor([ 1., -4.,  6., -4.,  1.], dtype=torch.float64)
    """
    return _random_walk(n, 2, cyclic, tau, dtype)


def ar1(n: int, rho: float | torch.Tensor, tau: float | torch.Tensor = 1.0, dtype: torch.dtype | None = None):
    r"""Precision of the stationary AR(1) process :math:`x_t = \rho x_{t-1} + \varepsilon_t`,
    :math:`\varepsilon_t \sim N(0, 1/\tau)`, :math:`x_1 \sim N(0, 1/(\tau(1-\rho^2)))`.

    :math:`Q = \tau \cdot \mathrm{tridiag}(-\rho;\ 1, 1+\rho^2, \dots, 1+\rho^2, 1;\ -\rho)`, marginal variance
    :math:`1 / (\tau (1 - \rho^2))`, correlation :math:`\rho^{|i-j|}`. Differentiable in ``rho`` and ``tau``.

    Parameters
    ----------
    n : int
        Number of time points, at least 2.
    rho, tau : float or torch.Tensor
        Correlation (``|rho| < 1``) and innovation precision (positive), each 0-D or batched; they broadcast together
        to a ``batch_shape``.
    dtype : torch.dtype, optional
        float32 or float64.

    Returns
    -------
    torch.Tensor
        Sparse CSR ``(*batch_shape, n, n)`` (``(n, n)`` for 0-D parameters), values ``(*batch_shape, 3n - 2)`` on one
        shared pattern.

    Raises
    ------
    ValueError
        An entry with ``|rho| >= 1`` (or NaN), or ``tau`` not positive and finite (named with its index); ``n < 2``;
        ``rho`` and ``tau`` shapes that do not broadcast.
    TypeError
        ``n`` not an int, ``dtype`` other than float32/float64, tensors ``rho`` and ``tau`` of different dtypes
        without ``dtype`` (the result's dtype is ``dtype``, by default the tensor parameters', float64 for numbers;
        a given ``dtype`` converts them, differentiably).

    Examples
    --------
    >>> from sparseprec.structures import ar1
    >>> ar1(3, 0.5).to_dense()
    tensor([[ 1.0000, -0.5000,  0.0000],
            [-0.5000,  1.2500, -0.5000],
            [ 0.0000, -0.5000,  1.0000]], dtype=torch.float64)
    >>> import torch
    >>> Q = ar1(3, torch.tensor([0.0, 0.5]), tau=torch.tensor([[1.0], [2.0]]))  # batch shape (2, 2)
    >>> Q.shape, Q.values().shape
    (torch.Size([2, 2, 3, 3]), torch.Size([2, 2, 7]))
    >>> Q.to_dense()[1, 1]
    tensor([[ 2.0000, -1.0000,  0.0000],
            [-1.0000,  2.5000, -1.0000],
            [ 0.0000, -1.0000,  2.0000]])
    """
    n = as_int(n, "n", 2, "ar1 needs two time points")
    rho, tau = hyper_parameters(dtype, positive=("tau",), correlation=("rho",), rho=rho, tau=tau)
    i = np.arange(n)
    j = np.arange(n - 1)
    pattern = Pattern(np.concatenate([i, j, j + 1]), np.concatenate([i, j + 1, j]), n)
    rho = rho.unsqueeze(-1)
    end = rho.new_zeros(rho.shape)
    diagonal = 1 + torch.cat([end, rho.square().expand(*rho.shape[:-1], n - 2), end], dim=-1)
    values = torch.cat([diagonal, (-rho).expand(*rho.shape[:-1], 2 * (n - 1))], dim=-1)
    return pattern.matrix(tau.unsqueeze(-1) * values)

"""Precisions of time-series models: random walks of order 1 and 2 (intrinsic) and the stationary AR(1)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ._assemble import Pattern, as_bool, as_int, check_positive, hyper_parameters

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
    cyclic = as_bool(cyclic, "cyclic", f" (give tau by keyword: rw{order}(n, tau={cyclic!r}))")
    minimum = 3 if cyclic else order + 1
    n = as_int(n, "n")
    if n < minimum:
        kind = "a cyclic" if cyclic else "an"
        raise ValueError(f"{kind} RW{order} needs n >= {minimum} points, got {n}")
    (tau,) = hyper_parameters(dtype, tau=tau)
    check_positive(tau=tau)
    S = _difference_structure(n, order, cyclic)
    keep = S.data != 0
    pattern = Pattern(S.row[keep], S.col[keep], n)
    return pattern.matrix(tau * torch.from_numpy(S.data[keep]).to(tau))


def rw1(n: int, cyclic: bool = False, tau: float | torch.Tensor = 1.0, dtype: torch.dtype | None = None):
    r"""Precision of the first-order random walk: :math:`Q = \tau \Delta_1^\top \Delta_1`, :math:`(\Delta_1 x)_i =
    x_{i+1} - x_i`.

    Rank :math:`n - 1`, null space the constant vector (use a sum-to-zero constraint); ``cyclic=True`` wraps the
    differences around (:math:`x_{n+1} = x_1`; same rank and null space). Differentiable in ``tau``.

    Raises
    ------
    TypeError
        ``n`` not an int (``4.0`` and ``True`` included), ``cyclic`` not a bool (e.g. ``rw1(n, 2.0)``, a ``tau``
        given by position), ``dtype`` other than float32/float64 (the result's dtype is ``dtype``, by default
        ``tau``'s, float64 for a number).
    ValueError
        Too few points, ``tau <= 0`` or a non-finite ``tau``.

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

    Raises
    ------
    TypeError
        ``n`` not an int (``4.0`` and ``True`` included), ``cyclic`` not a bool (e.g. ``rw1(n, 2.0)``, a ``tau``
        given by position), ``dtype`` other than float32/float64 (the result's dtype is ``dtype``, by default
        ``tau``'s, float64 for a number).
    ValueError
        Too few points, ``tau <= 0`` or a non-finite ``tau``.

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

    Raises
    ------
    ValueError
        ``|rho| >= 1`` (or NaN), ``tau <= 0`` or non-finite, ``n < 2``.
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
    """
    n = as_int(n, "n")
    if n < 2:
        raise ValueError(f"ar1 needs n >= 2, got {n}")
    rho, tau = hyper_parameters(dtype, rho=rho, tau=tau)
    if not bool(rho.detach().abs() < 1):
        raise ValueError(f"rho must satisfy |rho| < 1 for a stationary AR(1), got {float(rho.detach())}")
    check_positive(tau=tau)
    i = np.arange(n)
    j = np.arange(n - 1)
    pattern = Pattern(np.concatenate([i, j, j + 1]), np.concatenate([i, j + 1, j]), n)
    inner = torch.ones(n, dtype=rho.dtype, device=rho.device)
    diagonal = inner + torch.cat([rho.new_zeros(1), rho.square().expand(n - 2), rho.new_zeros(1)])
    values = torch.cat([diagonal, (-rho).expand(2 * (n - 1))])
    return pattern.matrix(tau * values)

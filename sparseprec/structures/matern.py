"""SPDE (Matérn) precisions on a regular lattice (Lindgren, Rue & Lindström 2011)."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from ..pattern import shared_derived
from ._assemble import Pattern, as_grid_shape, as_int, as_positive_float, hyper_parameters
from .adjacency import as_scipy_adjacency
from .laplacian import _laplacian_scipy, grid_adjacency

__all__ = ["matern_spde", "matern_marginal_variance"]


def matern_spde(
    grid_shape: tuple[int, ...],
    kappa: float | torch.Tensor,
    tau: float | torch.Tensor = 1.0,
    alpha: int = 2,
    spacing: float = 1.0,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Precision of the SPDE :math:`(\kappa^2 - \Delta)^{\alpha/2} (\tau x) = \mathcal W` on a regular lattice.

    The finite-element construction of Lindgren, Rue & Lindström (2011) with lumped mass on a lattice of spacing
    :math:`h` in :math:`d = 2` or 3 dimensions: mass :math:`C = h^d I`, stiffness :math:`G = h^{d-2} L` (``L`` the
    :math:`2d+1`-point graph Laplacian, natural boundaries), :math:`K = \kappa^2 C + G`, and

    .. math::

        Q_1 = \tau^2 K, \qquad Q_\alpha = \tau^2 K C^{-1} Q_{\alpha-2} C^{-1} K
        \;\Longrightarrow\; Q_\alpha = \tau^2 h^{d(1-\alpha)} \sum_{j=0}^{\alpha} \binom{\alpha}{j}
        (\kappa^2 h^d)^{\alpha-j} G^j

    (as :math:`C` is a multiple of the identity). The pattern of :math:`G^\alpha` is built once; the values are a
    polynomial in :math:`\kappa^2` times :math:`\tau^2`, differentiable in ``kappa`` and ``tau``. Away from the
    boundary the field approximates a Matérn field with smoothness :math:`\nu = \alpha - d/2`, range
    :math:`\sqrt{8\nu}/\kappa` and marginal variance :func:`matern_marginal_variance` (boundary nodes have larger
    variance, as with any Neumann boundary).

    Parameters
    ----------
    grid_shape : tuple of int
        ``(s1, s2)`` or ``(s1, s2, s3)``; nodes numbered row-major.
    kappa, tau : float or torch.Tensor
        Positive scale and precision parameters, each 0-D or batched; they broadcast together to a ``batch_shape``.
    alpha : int
        1, 2, 3 or 4 (integer orders; default 2: :math:`\nu = 1` in 2-D).
    spacing : float
        Lattice spacing :math:`h`.
    dtype : torch.dtype, optional
        float32 or float64.

    Returns
    -------
    torch.Tensor
        Sparse CSR ``(*batch_shape, n, n)``, :math:`n = \prod_k s_k` (``(n, n)`` for 0-D parameters), values
        ``(*batch_shape, nnz)`` on one shared pattern.

    Raises
    ------
    TypeError
        Non-integer sizes in ``grid_shape`` (``2.5`` is refused, not truncated) or ``alpha``, a ``spacing`` that is
        not a number, ``dtype`` other than float32/float64, tensors ``kappa`` and ``tau`` of different dtypes
        without ``dtype`` (the result's dtype is ``dtype``, by default the tensor parameters', float64 for numbers;
        a given ``dtype`` converts them, differentiably).
    ValueError
        ``grid_shape`` not 2-D/3-D with positive sizes, ``alpha`` not in 1..4, ``spacing`` or an entry of ``kappa`` or
        ``tau`` not positive and finite (named with its index), ``kappa`` and ``tau`` shapes that do not broadcast.

    Examples
    --------
    >>> from sparseprec.structures import matern_spde
    >>> Q = matern_spde((10, 10), kappa=0.5, tau=1.0)
    >>> Q.shape, Q._nnz()  # 13-point stencil: nodes within grid distance 2
    (torch.Size([100, 100]), 1104)
    >>> import torch
    >>> matern_spde((10, 10), kappa=torch.tensor([0.25, 0.5, 1.0]), tau=1.0).values().shape
    torch.Size([3, 1104])
    """
    grid_shape = as_grid_shape(grid_shape, "grid_shape")
    alpha = as_int(alpha, "alpha")
    if alpha not in (1, 2, 3, 4):
        raise ValueError(f"alpha must be 1, 2, 3 or 4, got {alpha}")
    spacing = as_positive_float(spacing, "spacing")
    kappa, tau = hyper_parameters(dtype, positive=("kappa", "tau"), kappa=kappa, tau=tau)
    d = len(grid_shape)
    pattern, basis = shared_derived(
        ("matern_spde", grid_shape, alpha, spacing), lambda: _structure(grid_shape, alpha, spacing)
    )
    c = spacing**d
    coefficients = torch.stack(
        [math.comb(alpha, j) * (kappa.square() * c) ** (alpha - j) for j in range(alpha + 1)], dim=-1
    )  # (*batch, alpha + 1)
    values = (tau.square() * c ** (1 - alpha)).unsqueeze(-1) * (coefficients @ basis.to(kappa))
    return pattern.merged_matrix(values)


def _structure(grid_shape: tuple[int, ...], alpha: int, spacing: float) -> tuple[Pattern, torch.Tensor]:
    """The pattern of ``G^alpha`` and the values of ``G^0 ... G^alpha`` on it, ``(alpha + 1, nnz)``; built once per
    lattice (kept by :func:`sparseprec.pattern.shared_derived`), so that a training loop pays only for the polynomial
    in ``kappa``."""
    d = len(grid_shape)
    W = as_scipy_adjacency(grid_adjacency(grid_shape))
    n = W.shape[0]
    G = (spacing ** (d - 2)) * _laplacian_scipy(W)
    powers = [sp.identity(n, format="csr")]
    for _ in range(alpha):
        powers.append((powers[-1] @ G).tocsr())
    coos = [P.tocoo() for P in powers]
    pattern = Pattern(np.concatenate([c.row for c in coos]), np.concatenate([c.col for c in coos]), n)
    # row j holds G^j's entries in its own segment of the pairs and zeros elsewhere: one sum gives every basis row
    per_pair = torch.from_numpy(sp.block_diag([c.data[None, :] for c in coos]).toarray())
    return pattern, pattern.sum(per_pair)


def matern_marginal_variance(
    kappa: float | torch.Tensor, tau: float | torch.Tensor, alpha: int = 2, d: int = 2
) -> float | torch.Tensor:
    r"""The continuous-domain marginal variance :math:`\Gamma(\nu) / (\Gamma(\alpha) (4\pi)^{d/2} \kappa^{2\nu}
    \tau^2)`, :math:`\nu = \alpha - d/2 > 0` (Lindgren et al. 2011, eq. 2), for the interior of :func:`matern_spde`.

    Parameters
    ----------
    kappa, tau : float or torch.Tensor
        Positive and finite, as for :func:`matern_spde` (0-D or batched, broadcast together).
    alpha : int
        1, 2, 3 or 4, as for :func:`matern_spde`.
    d : int
        The dimension, a positive int with :math:`\alpha - d/2 > 0`.

    Returns
    -------
    float or torch.Tensor
        A float when ``kappa`` and ``tau`` are numbers, else a tensor of their broadcast shape (differentiable in
        them).

    Raises
    ------
    TypeError
        ``alpha`` or ``d`` not an int (``2.5`` or ``True`` are refused), ``kappa``/``tau`` not a number or a real
        tensor.
    ValueError
        ``kappa`` or ``tau`` not positive and finite, ``alpha`` not in 1..4, ``d`` < 1, or ``alpha - d/2 <= 0``.

    Examples
    --------
    >>> from sparseprec.structures import matern_marginal_variance
    >>> round(matern_marginal_variance(kappa=0.5, tau=1.0), 4)  # 1 / (4 pi kappa^2)
    0.3183
    """
    alpha = as_int(alpha, "alpha")
    if alpha not in (1, 2, 3, 4):
        raise ValueError(f"alpha must be 1, 2, 3 or 4, got {alpha}")
    d = as_int(d, "d", 1, "the dimension")
    nu = alpha - d / 2
    if nu <= 0:
        raise ValueError(f"alpha - d/2 must be positive, got alpha={alpha}, d={d}")
    plain = not isinstance(kappa, torch.Tensor) and not isinstance(tau, torch.Tensor)
    kappa, tau = hyper_parameters(None, positive=("kappa", "tau"), kappa=kappa, tau=tau)
    variance = math.gamma(nu) / (math.gamma(alpha) * (4 * math.pi) ** (d / 2)) / (kappa ** (2 * nu) * tau.square())
    return float(variance) if plain else variance

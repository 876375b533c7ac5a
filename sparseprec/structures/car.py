"""Conditional autoregressive precisions on a graph: intrinsic (ICAR) and proper (CAR)."""

from __future__ import annotations

import numpy as np
import torch

from ._assemble import hyper_parameters
from .adjacency import as_scipy_adjacency
from .laplacian import _laplacian_pattern

__all__ = ["icar", "car"]


def icar(adjacency: object, tau: float | torch.Tensor = 1.0, dtype: torch.dtype | None = None) -> torch.Tensor:
    r"""Precision of the intrinsic CAR (Besag) model: :math:`Q = \tau (D - W)`.

    Rank :math:`n - c` for a graph with :math:`c` connected components (an isolated node is a component with a zero
    row). Use it with a sum-to-zero constraint per component. Differentiable in ``tau``.

    Parameters
    ----------
    adjacency : graph
        Symmetric 0/1 ``(n, n)`` adjacency in any form :func:`sparseprec.structures.as_adjacency` takes (torch or
        SciPy matrix, edge list, ``libpysal.weights.W`` or ``Graph``, networkx graph).
    tau : float or torch.Tensor
        Positive precision, 0-D or of any batch shape.
    dtype : torch.dtype, optional
        float32 or float64.

    Returns
    -------
    torch.Tensor
        Sparse CSR ``(n, n)``, or ``(*tau.shape, n, n)`` with values ``(*tau.shape, nnz)`` on one shared pattern.

    Raises
    ------
    ValueError
        An entry of ``tau`` that is not positive and finite (``Q`` would not be positive semi-definite; named with its
        index), an invalid adjacency.
    TypeError
        ``dtype`` other than float32/float64, a ``tau`` that is neither a number nor a tensor (the result's dtype
        is ``dtype``, by default ``tau``'s, float64 for a number).

    Examples
    --------
    >>> from sparseprec.structures import adjacency_from_pairs, icar
    >>> icar(adjacency_from_pairs([(0, 1)]), tau=2.0).to_dense()
    tensor([[ 2., -2.],
            [-2.,  2.]], dtype=torch.float64)
    """
    W = as_scipy_adjacency(adjacency)
    (tau,) = hyper_parameters(dtype, positive=("tau",), tau=tau)
    pattern, values = _laplacian_pattern(W)
    return pattern.matrix(tau.unsqueeze(-1) * torch.from_numpy(values).to(tau))


def car(
    adjacency: object,
    rho: float | torch.Tensor,
    tau: float | torch.Tensor = 1.0,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Precision of the proper CAR model: :math:`Q = \tau (D - \rho W)`, :math:`D = \mathrm{diag}(W 1)`.

    Positive definite for :math:`|\rho| < 1` on a graph without isolated nodes (Cressie 1993; the form of Stan's and
    NumPyro's ``CAR``). Differentiable in ``rho`` and ``tau``: the values are :math:`\tau d_i` on the diagonal and
    :math:`-\tau\rho` at the edges, on a pattern computed once.

    Parameters
    ----------
    adjacency : graph
        Symmetric 0/1 ``(n, n)`` adjacency, every node with a neighbour, in any form
        :func:`sparseprec.structures.as_adjacency` takes.
    rho, tau : float or torch.Tensor
        Spatial dependence (``|rho| < 1``) and precision (positive), each 0-D or batched; they broadcast together to
        a ``batch_shape``.
    dtype : torch.dtype, optional
        float32 or float64.

    Returns
    -------
    torch.Tensor
        Sparse CSR ``(*batch_shape, n, n)`` (``(n, n)`` for 0-D parameters), values ``(*batch_shape, nnz)`` on one
        shared pattern.

    Raises
    ------
    ValueError
        An entry with ``|rho| >= 1`` (or NaN) or ``tau`` not positive and finite (named with its index), shapes
        that do not broadcast, an isolated node (degree 0: ``Q`` would be singular), an invalid adjacency.
    TypeError
        Tensors ``rho`` and ``tau`` of different dtypes without ``dtype`` (the result's dtype is ``dtype``, by
        default the tensor parameters', float64 for numbers; a given ``dtype`` converts them, differentiably).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.structures import adjacency_from_pairs, car
    >>> rho = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    >>> Q = car(adjacency_from_pairs([(0, 1), (1, 2)]), rho, tau=1.0)
    >>> Q.detach().to_dense()
    tensor([[ 1.0000, -0.5000,  0.0000],
            [-0.5000,  2.0000, -0.5000],
            [ 0.0000, -0.5000,  1.0000]], dtype=torch.float64)
    >>> rhos = torch.tensor([0.0, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    >>> Qs = car(adjacency_from_pairs([(0, 1), (1, 2)]), rhos)  # three precisions, one pattern
    >>> Qs.shape, Qs.values().shape
    (torch.Size([3, 3, 3]), torch.Size([3, 7]))
    """
    W = as_scipy_adjacency(adjacency)
    rho, tau = hyper_parameters(dtype, positive=("tau",), correlation=("rho",), rho=rho, tau=tau)
    pattern, laplacian = _laplacian_pattern(W)  # values: the degrees (diagonal first), then −1 per edge entry
    n = W.shape[0]
    degree = laplacian[:n]
    if (degree == 0).any():
        raise ValueError(
            f"a proper CAR needs every node to have a neighbour; node {int(np.flatnonzero(degree == 0)[0])} has none "
            "(model islands separately)"
        )
    base = torch.from_numpy(laplacian).to(rho)
    rho = rho.unsqueeze(-1)
    values = torch.cat([base[:n].expand(*rho.shape[:-1], n), rho * base[n:]], dim=-1)
    return pattern.matrix(tau.unsqueeze(-1) * values)

"""The Sørbye–Rue scaling of an ICAR precision, as used by the BYM2 model.

Each function takes its adjacency in any form :func:`sparseprec.structures.as_adjacency` takes (torch or SciPy matrix,
edge list, ``libpysal.weights.W`` or ``Graph``, networkx graph).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import torch

from ..cholesky import cholesky, diag_inverse
from .adjacency import _to_torch, as_scipy_adjacency
from .laplacian import _laplacian_scipy

__all__ = ["bym2_scaling", "bym2_scaling_per_node", "constrained_icar_variances"]


def _component_variances(L: sp.csr_matrix) -> np.ndarray:
    """``diag`` of the covariance of the ICAR with structure ``L`` (connected, m >= 2) under ``1ᵀx = 0``, exactly.

    Pinning node 0 gives a proper GMRF with precision ``L₋₀`` (the grounded Laplacian, positive definite); every
    representative of the intrinsic model differs from it by a multiple of ``1``, so projecting with ``P = I − 11ᵀ/m``
    gives the constrained distribution: ``Σ = P Σ₀ P`` with ``Σ₀`` zero in row/column 0 and ``L₋₀⁻¹`` elsewhere, so
    ``Σ_ii = (Σ₀)_ii − 2 (Σ₀ 1)_i / m + 1ᵀ Σ₀ 1 / m²``: one sparse Cholesky, its selected inverse and one solve.
    """
    m = L.shape[0]
    grounded = _to_torch(L[1:, 1:])
    factor = cholesky(grounded)
    s0 = np.zeros(m)
    s0[1:] = diag_inverse(factor).numpy()
    w = np.zeros(m)
    w[1:] = factor.solve(torch.ones(m - 1, dtype=torch.float64)).numpy()
    return s0 - 2 * w / m + w.sum() / m**2


def constrained_icar_variances(adjacency: object) -> torch.Tensor:
    r"""Marginal variances of the ICAR :math:`Q = D - W` under a sum-to-zero constraint per connected component.

    Exact (no jitter): per component, one sparse Cholesky factorisation of the grounded Laplacian, its selected
    inverse and one solve (see ``_component_variances``). An isolated node is its own component: constrained to
    sum to zero, it is exactly 0, so its variance is ``0`` (as :attr:`sparseprec.distributions.ICAR.variance` gives).
    Equivalently, the diagonal of the pseudo-inverse :math:`Q^+` (the covariance under the constraints).

    Examples
    --------
    >>> from sparseprec.structures import adjacency_from_pairs, constrained_icar_variances
    >>> constrained_icar_variances(adjacency_from_pairs([(0, 1)]))  # x0 = -x1, x0 - x1 ~ N(0, 1)
    tensor([0.2500, 0.2500], dtype=torch.float64)
    >>> constrained_icar_variances(adjacency_from_pairs([(0, 1)], n=3))  # node 2 isolated: pinned at 0
    tensor([0.2500, 0.2500, 0.0000], dtype=torch.float64)
    """
    W = as_scipy_adjacency(adjacency)
    L = _laplacian_scipy(W)
    count, labels = csgraph.connected_components(W, directed=False)
    out = np.zeros(W.shape[0])
    for c in range(count):
        nodes = np.flatnonzero(labels == c)
        if nodes.size >= 2:
            out[nodes] = _component_variances(L[nodes][:, nodes].tocsr())
    return torch.from_numpy(out)


def _scaling(W: sp.csr_matrix, name: str) -> tuple[int, np.ndarray, np.ndarray]:
    """The graph's component count and labels and its constrained ICAR variances (at least 2 nodes)."""
    if W.shape[0] < 2:
        raise ValueError(f"{name} needs a graph with at least 2 nodes, got {W.shape[0]}")
    count, labels = csgraph.connected_components(W, directed=False)
    return count, labels, constrained_icar_variances(W).numpy()


def bym2_scaling(adjacency: object) -> float:
    r"""The BYM2 scaling factor of the ICAR of a connected graph: the geometric mean of its constrained marginal
    variances.

    For :math:`Q = D - W` with a sum-to-zero constraint, :math:`s = \exp(\tfrac1n \sum_i \log \Sigma_{ii})` (Sørbye &
    Rue 2014; Riebler et al. 2016). The scaled precision :math:`s\,Q` has marginal variances whose geometric mean is 1,
    which makes the BYM2 mixing parameter interpretable; Stan's BYM2 case study calls :math:`s` ``scaling_factor``
    and multiplies the ICAR effect by :math:`1/\sqrt{s}`. For a graph with several connected components use
    :func:`bym2_scaling_per_node`.

    Returns
    -------
    float
        :math:`s`.

    Raises
    ------
    ValueError
        A disconnected graph; a graph with fewer than 2 nodes; an invalid adjacency.

    Examples
    --------
    >>> from sparseprec.structures import adjacency_from_pairs, bym2_scaling
    >>> round(bym2_scaling(adjacency_from_pairs([(0, 1)])), 10)
    0.25
    """
    W = as_scipy_adjacency(adjacency)
    count, _, variances = _scaling(W, "bym2_scaling")
    if count > 1:
        raise ValueError(
            f"the graph has {count} connected components: use bym2_scaling_per_node to scale each component separately"
        )
    return math.exp(float(np.log(variances).mean()))


def bym2_scaling_per_node(adjacency: object) -> torch.Tensor:
    r"""The BYM2 scaling factor of each node's connected component, ``(n,)`` float64.

    Graphs with several connected components are scaled per component (Freni-Sterrantino, Ventrucci & Rue 2018): node
    :math:`i` in component :math:`c` gets :math:`s_c = \exp(\tfrac1{|c|} \sum_{k \in c} \log \Sigma_{kk})`, the
    :func:`bym2_scaling` of its component; an isolated node gets 1 (the BYM2 model treats it as an unstructured
    effect). On a connected graph every entry is :func:`bym2_scaling`. The marginal variances :math:`\Sigma_{kk}`
    themselves are :func:`constrained_icar_variances`.

    Returns
    -------
    torch.Tensor
        ``(n,)`` float64.

    Raises
    ------
    ValueError
        A graph with fewer than 2 nodes; an invalid adjacency.

    Examples
    --------
    >>> from sparseprec.structures import adjacency_from_pairs, bym2_scaling_per_node
    >>> bym2_scaling_per_node(adjacency_from_pairs([(0, 1), (2, 3), (3, 4)], n=6))
    tensor([0.2500, 0.2500, 0.4093, 0.4093, 0.4093, 1.0000], dtype=torch.float64)
    """
    W = as_scipy_adjacency(adjacency)
    count, labels, variances = _scaling(W, "bym2_scaling_per_node")
    out = np.ones(W.shape[0])
    for c in range(count):
        nodes = np.flatnonzero(labels == c)
        if nodes.size >= 2:
            out[nodes] = math.exp(float(np.log(variances[nodes]).mean()))
    return torch.from_numpy(out)

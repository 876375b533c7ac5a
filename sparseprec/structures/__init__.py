"""Builders of structured sparse precisions (torch CSR) for GMRF models, and graph helpers.

Graphs come in any form :func:`as_adjacency` takes (torch or SciPy matrices, edge lists, libpysal ``W``/``Graph``,
networkx graphs; :func:`contiguity` for a GeoDataFrame's polygons), and every builder that takes an adjacency reads it
through that one conversion.

Every builder returns a torch sparse CSR matrix with both triangles stored; hyper-parameters given as tensors stay
differentiable (the pattern is fixed, the values are computed from them), so ``car(W, rho, tau)`` or
``matern_spde(shape, kappa, tau)`` can be learned through :func:`sparseprec.cholesky.sparse_logdet` and the ops.

Hyper-parameters may be batched: they broadcast together (torch's rules) to a ``batch_shape``, and the builder returns
one CSR tensor ``(*batch_shape, n, n)``, a batch of precisions on one shared pattern (the index tensors are the
pattern's, expanded without copy; the values are ``(*batch_shape, nnz)``). 0-D hyper-parameters give ``(n, n)``.
"""

from .adjacency import adjacency_from_pairs, adjacency_from_scipy, as_adjacency, connected_components, contiguity
from .bym2 import bym2_scaling, bym2_scaling_per_node, constrained_icar_variances
from .car import car, icar
from .image_factor import ImageFactorPattern, image_factor_pattern, image_offsets
from .laplacian import graph_laplacian, grid_adjacency, grid_laplacian
from .matern import matern_marginal_variance, matern_spde
from .temporal import ar1, rw1, rw2

__all__ = [
    "adjacency_from_pairs",
    "adjacency_from_scipy",
    "as_adjacency",
    "contiguity",
    "connected_components",
    "graph_laplacian",
    "grid_adjacency",
    "grid_laplacian",
    "icar",
    "car",
    "rw1",
    "rw2",
    "ar1",
    "matern_spde",
    "matern_marginal_variance",
    "bym2_scaling",
    "bym2_scaling_per_node",
    "constrained_icar_variances",
    "image_factor_pattern",
    "image_offsets",
    "ImageFactorPattern",
]

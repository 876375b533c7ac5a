"""Pyro integration (imports Pyro): sparseprec's distributions as Pyro distributions, and a sparse-precision autoguide.

Import explicitly (``import sparseprec.pyro``); the core package never imports Pyro.
"""

from .autoguide import AutoSparseMultivariateNormal
from .distributions import CAR, GMRF, ICAR, IntrinsicGMRF, SparseMultivariateNormal
from .laplace import LaplaceMarginal

__all__ = [
    "AutoSparseMultivariateNormal",
    "SparseMultivariateNormal",
    "GMRF",
    "CAR",
    "IntrinsicGMRF",
    "ICAR",
    "LaplaceMarginal",
]

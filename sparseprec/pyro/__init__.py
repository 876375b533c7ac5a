"""Pyro integration (imports Pyro): sparseprec's distributions as Pyro distributions.

Import explicitly (``import sparseprec.pyro``); the core package never imports Pyro.
"""

from .distributions import CAR, GMRF, ICAR, IntrinsicGMRF, SparseMultivariateNormal

__all__ = ["SparseMultivariateNormal", "GMRF", "CAR", "IntrinsicGMRF", "ICAR"]

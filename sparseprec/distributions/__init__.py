"""Layer 5: Gaussian distributions on sparse factors and precisions, with the ``torch.distributions`` API.

Importing this package registers the KL divergences of :mod:`sparseprec.distributions.kl` with
``torch.distributions.kl.kl_divergence``.
"""

from . import constraints, kl
from .constrained import ConstrainedGMRF
from .gmrf import CAR, GMRF
from .intrinsic import ICAR, IntrinsicGMRF
from .sparse_mvn import DENSE_WARNING_SIZE, SparseMultivariateNormal
from .subspace import AffineSubspace, AffineSubspaceTransform

__all__ = [
    "SparseMultivariateNormal",
    "GMRF",
    "CAR",
    "IntrinsicGMRF",
    "ICAR",
    "ConstrainedGMRF",
    "AffineSubspace",
    "AffineSubspaceTransform",
    "DENSE_WARNING_SIZE",
    "constraints",
    "kl",
]

"""GPyTorch / linear_operator integration (imports gpytorch and linear_operator; the core package does not).

- :class:`SparsePrecisionLinearOperator`: a sparse SPD matrix ``Q`` as a ``LinearOperator`` (exact solves and
  log-determinants by sparse Cholesky).
- :class:`PrecisionInverseLinearOperator`: the covariance ``Q⁻¹`` of a sparse precision, usable as the covariance of
  ``gpytorch.distributions.MultivariateNormal``.
- :class:`SparsePrecisionGaussianLikelihood`: correlated Gaussian noise ``N(0, Q⁻¹)`` with a learnable sparse
  precision, for ``ExactGP`` (exact marginal likelihood through :class:`KernelPlusPrecisionInverse`) and variational
  GPs; above ``gpytorch.settings.max_cholesky_size`` it runs GPyTorch's CG and stochastic Lanczos quadrature with
  the preconditioner :class:`LowRankPlusPrecisionInverse` (pivoted Cholesky of the kernel plus the exact noise).
- :class:`SparseCholeskyVariationalDistribution`: q(u) with a sparse Cholesky factor of its precision (or covariance)
  on a given pattern, for GPyTorch's variational strategies.
"""

from ._sparse_symmetric import SymmetricPattern
from .kernel_plus_noise import KernelPlusPrecisionInverse
from .likelihood import CorrelatedNoiseNormal, SparsePrecisionGaussianLikelihood
from .low_rank_plus_noise import LowRankPlusPrecisionInverse
from .noise import SparsePrecisionNoise
from .precision_inverse import PrecisionInverseLinearOperator
from .sparse_precision import SparsePrecisionLinearOperator
from .variational import SparseCholeskyVariationalDistribution

__all__ = [
    "SparsePrecisionLinearOperator",
    "PrecisionInverseLinearOperator",
    "KernelPlusPrecisionInverse",
    "LowRankPlusPrecisionInverse",
    "SparsePrecisionNoise",
    "SparsePrecisionGaussianLikelihood",
    "CorrelatedNoiseNormal",
    "SparseCholeskyVariationalDistribution",
    "SymmetricPattern",
]

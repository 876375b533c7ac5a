"""GPyTorch / linear_operator integration (imports gpytorch and linear_operator; the core package does not).

- :class:`SparsePrecisionLinearOperator`: a sparse SPD matrix ``Q`` as a ``LinearOperator`` (exact solves and
  log-determinants by sparse Cholesky).
- :class:`PrecisionInverseLinearOperator`: the covariance ``Q⁻¹`` of a sparse precision, usable as the covariance of
  ``gpytorch.distributions.MultivariateNormal``.
"""

from ._sparse_symmetric import SymmetricPattern
from .precision_inverse import PrecisionInverseLinearOperator
from .sparse_precision import SparsePrecisionLinearOperator

__all__ = ["SparsePrecisionLinearOperator", "PrecisionInverseLinearOperator", "SymmetricPattern"]

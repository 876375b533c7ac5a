"""sparseprec: exact, differentiable, memory-O(nnz) sparse Gaussians for PyTorch.

The core (this package and its subpackages ``ops``, ``solvers``, ``cholesky``, ...) imports only torch, NumPy and SciPy
(scikit-sparse where installed); the Pyro and GPyTorch integrations live in ``sparseprec.pyro`` and
``sparseprec.gpytorch`` and are imported explicitly.
"""

from . import cholesky, datasets, distributions, laplace, ops, pattern, solvers, structures
from .distributions import GMRF, ICAR, ConstrainedGMRF, IntrinsicGMRF, SparseMultivariateNormal
from .errors import ConvergenceError, ConvergenceWarning, NotPositiveDefiniteError, NotTwiceDifferentiableError
from .ops import sparse_coo_tensor, sparse_csr_tensor, sparse_mm, sparse_triangular_solve
from .pattern import cache_info, clear_caches
from .solvers import sparse_generic_lstsq, sparse_generic_solve

__all__ = [
    "pattern",
    "ops",
    "solvers",
    "cholesky",
    "distributions",
    "structures",
    "laplace",
    "datasets",
    "SparseMultivariateNormal",
    "GMRF",
    "IntrinsicGMRF",
    "ConstrainedGMRF",
    "ICAR",
    "sparse_mm",
    "sparse_triangular_solve",
    "sparse_generic_solve",
    "sparse_generic_lstsq",
    "sparse_csr_tensor",
    "sparse_coo_tensor",
    "ConvergenceError",
    "ConvergenceWarning",
    "NotPositiveDefiniteError",
    "NotTwiceDifferentiableError",
    "cache_info",
    "clear_caches",
]
__version__ = "0.1.0"

"""Layer 3: sparse Cholesky of SPD matrices — CHOLMOD or SciPy backends, symbolic analysis cached per pattern,
exact log-determinant and solves, gradients at the stored entries.
"""

from ..errors import NotPositiveDefiniteError
from .backends import available_backends
from .factor import CholeskyFactor, cholesky
from .inverse import diag_inverse, selected_inverse, sparse_logdet
from .settings import ExactLogDet, SLQLogDet, SparseCholesky
from .slq import slq_logdet
from .solve import sparse_cholesky_solve

__all__ = [
    "SparseCholesky",
    "ExactLogDet",
    "SLQLogDet",
    "cholesky",
    "CholeskyFactor",
    "sparse_cholesky_solve",
    "sparse_logdet",
    "slq_logdet",
    "selected_inverse",
    "diag_inverse",
    "available_backends",
    "NotPositiveDefiniteError",
]

"""Layer 1: autograd primitives on torch sparse tensors (COO, CSR).

Every op's gradient w.r.t. its sparse operand is a sparse tensor with the operand's layout and stored pattern: only
stored entries get a gradient. Pattern-derived index data is cached per sparsity pattern (see
:mod:`sparseprec.ops._pattern` and :func:`clear_pattern_cache`).
"""

from ._pattern import clear_pattern_cache
from .construction import sparse_csr_tensor
from .matmul import sparse_mm
from .triangular import sparse_triangular_solve

__all__ = ["sparse_mm", "sparse_triangular_solve", "sparse_csr_tensor", "clear_pattern_cache"]

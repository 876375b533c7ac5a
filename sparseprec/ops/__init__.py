"""Layer 1: autograd primitives on torch sparse tensors (COO, CSR).

``sparse_generic_solve`` (a solve by any solver, default MINRES) lives one layer up, in :mod:`sparseprec.solvers`.

Every op's gradient w.r.t. its sparse operand is a sparse tensor with the operand's layout and stored pattern: only
stored entries get a gradient. Pattern-derived index data is cached per sparsity pattern (see
:mod:`sparseprec.pattern`, :func:`sparseprec.cache_info` and :func:`sparseprec.clear_caches`).
"""

import warnings as _warnings

import torch as _torch

from .construction import sparse_coo_tensor, sparse_csr_tensor
from .matmul import sparse_mm
from .triangular import sparse_triangular_solve

# torch prints a one-time "CSR support is in beta" notice on the first CSR tensor of a process; every op here builds
# CSR kernels, so the notice would otherwise surface in users' programs as if they had asked for it. Consume it here.
with _warnings.catch_warnings():
    _warnings.simplefilter("ignore", UserWarning)
    _torch.sparse_csr_tensor(_torch.zeros(2, dtype=_torch.int64), _torch.zeros(1, dtype=_torch.int64), _torch.ones(1))

__all__ = [
    "sparse_mm",
    "sparse_triangular_solve",
    "sparse_csr_tensor",
    "sparse_coo_tensor",
]

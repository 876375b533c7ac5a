"""Benchmark problems shared by the benchmark scripts (not part of the installed package)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def grid_precision(s: int, kappa2: float = 1.0) -> sp.csc_matrix:
    """``Q = κ² I + L`` with ``L`` the 5-point Laplacian of an ``s × s`` grid (``n = s²``)."""
    e = np.ones(s)
    T = sp.diags([-e[:-1], 2 * e, -e[:-1]], [-1, 0, 1])
    eye = sp.identity(s)
    return (sp.kron(T, eye) + sp.kron(eye, T) + kappa2 * sp.identity(s * s)).tocsc()


def cholesky_factor(Q: sp.spmatrix) -> tuple[sp.csr_matrix, str]:
    """Lower-triangular ``L`` with ``L Lᵀ = P Q Pᵀ`` for a fill-reducing permutation ``P``, and how it was computed.

    CHOLMOD with a nested-dissection (METIS) ordering, or AMD where CHOLMOD has no METIS, when scikit-sparse is
    installed; otherwise SciPy's SuperLU in symmetric mode without pivoting (``Q = L' D L'ᵀ`` up to ordering, then
    ``L = L' D^½``).
    """
    try:
        from sksparse.cholmod import cholesky
    except ImportError:
        lu = spla.splu(Q.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        L = (lu.L @ sp.diags(np.sqrt(lu.U.diagonal()))).tocsr()
        how = "SciPy SuperLU (MMD on AᵀA+A, symmetric mode)"
    else:
        for ordering in ("metis", "amd"):
            try:
                L = cholesky(Q.tocsc(), ordering_method=ordering).L().tocsr()
            except Exception:  # CHOLMOD built without METIS
                continue
            how = f"CHOLMOD ({ordering.upper()} ordering)"
            break
    L.sort_indices()
    return L, how


def ar1_factor(n: int, rho: float = 0.8) -> sp.csr_matrix:
    """Lower bidiagonal Cholesky factor of the AR(1) precision: ``L_ii = 1``, ``L_i,i-1 = -ρ``."""
    L = sp.diags([np.ones(n), -rho * np.ones(n - 1)], [0, -1], format="csr")
    L.sort_indices()
    return L

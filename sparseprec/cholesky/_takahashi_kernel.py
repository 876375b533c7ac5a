"""The supernodal Takahashi sweep compiled with Numba, its dense block steps done by BLAS/LAPACK in place.

One compiled loop walks the supernodes from last to first (no Python step per supernode); for supernode ``J``
(diagonal block ``D = L_JJ``, ``t × t``; ``L_SJ``, ``s × t``) it calls, on the row-major block buffers read as the
column-major transposes BLAS sees:

    trtri   D⁻¹                                   (in the scratch copy of L's values)
    trmm    Ŀ = L_SJ D⁻¹                          (in place)
    symm    Z_SJ = −Z_SS Ŀ                        (Z_SS symmetric: only its lower triangle is gathered)
    lauum   Z_JJ = D⁻ᵀ D⁻¹,  then  gemm  Z_JJ −= Ŀᵀ Z_SJ

The lower triangle of ``Z_SS`` is gathered from the blocks of the ancestors while it is needed: row ``S[a]`` of
column ``S[b]`` sits in the supernode ``K`` of column ``S[b]``, found by a merge walk down ``K``'s sorted rows (no
precomputed position table). The BLAS/LAPACK routines are SciPy's (``scipy.linalg.cython_blas`` /
``cython_lapack``), called through their C addresses. Imported lazily (Numba's import costs about 0.3 s); compiled
once per machine (``cache=True``, about 2 s) and loaded from Numba's cache after that.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import binding
from numba import types
from numba.extending import get_cython_function_address

__all__ = ["selected_inverse"]


def _routine(module: str, name: str, n_args: int) -> types.ExternalFunction:
    """SciPy's Fortran-convention routine ``name`` (every argument by address) as a function compiled code calls by
    symbol name, so that the compiled sweep can be cached (a ctypes pointer would make it uncacheable)."""
    symbol = f"sparseprec_{name}"
    binding.add_symbol(symbol, get_cython_function_address(f"scipy.linalg.{module}", name))
    return types.ExternalFunction(symbol, types.void(*([types.voidptr] * n_args)))


_dtrtri = _routine("cython_lapack", "dtrtri", 6)  # uplo, diag, n, a, lda, info
_dlauum = _routine("cython_lapack", "dlauum", 5)  # uplo, n, a, lda, info
_dtrmm = _routine("cython_blas", "dtrmm", 11)  # side, uplo, transa, diag, m, n, alpha, a, lda, b, ldb
_dsymm = _routine("cython_blas", "dsymm", 12)  # side, uplo, m, n, alpha, a, lda, b, ldb, beta, c, ldc
_dgemm = _routine("cython_blas", "dgemm", 13)  # transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc

# supernodes with (s² + t²) t at most this (s rows below t columns) take plain loops: there a BLAS call's fixed cost
# exceeds its arithmetic
SMALL = 512


@numba.njit(cache=True, nogil=True)
def selected_inverse(
    starts: np.ndarray,
    width: np.ndarray,
    height: np.ndarray,
    offset: np.ndarray,
    row_start: np.ndarray,
    rows: np.ndarray,
    supernode_of: np.ndarray,
    indptr: np.ndarray,
    L_data: np.ndarray,
    small: int = SMALL,
) -> tuple[np.ndarray, int]:
    """The selected inverse ``Z`` in flat row-major blocks, from the CSC values ``L_data`` of the factor (column
    pointers ``indptr``), and −1, or the first column of a singular diagonal block."""
    Lb = np.empty(offset[-1])  # L's values in Z's blocks: column c of J is column c − starts[J] of J's block
    for J in range(starts.size):
        t, o = width[J], offset[J]
        for q in range(t):
            c = starts[J] + q
            for r in range(q):
                Lb[o + r * t + q] = 0.0  # the diagonal block's upper triangle
            for k in range(indptr[c + 1] - indptr[c]):
                Lb[o + (q + k) * t + q] = L_data[indptr[c] + k]
    Z = np.empty_like(Lb)
    # characters, integers and scalars passed by address, as Fortran routines take them
    ch = np.array([ord("L"), ord("U"), ord("N"), ord("T"), ord("R")], dtype=np.uint8)
    ints = np.zeros(3, dtype=np.int32)  # t, s, info
    reals = np.array([1.0, -1.0, 0.0])
    largest = 0
    for J in range(starts.size):
        b = height[J] - width[J]
        largest = max(largest, b)
    buffer = np.empty(max(largest * largest, 1))
    scratch = np.empty(max(small, 1))
    for J in range(starts.size - 1, -1, -1):
        t, m, o = width[J], height[J], offset[J]
        s = m - t
        if s > 0:  # lower triangle of Z_SS, column-major s × s: row S[a] of column S[b], a ≥ b
            first = row_start[J] + t
            for b in range(s):
                c = rows[first + b]
                K = supernode_of[c]
                rows_K, p, wK = row_start[K], c - starts[K], width[K]  # c is row c − starts[K] of its own supernode
                base = offset[K] + (c - starts[K])
                for a in range(b, s):
                    r = rows[first + a]
                    while rows[rows_K + p] != r:
                        p += 1
                    buffer[a + b * s] = Z[base + p * wK]
        if (s * s + t * t) * t <= small:
            column = _small_block(Lb, Z, buffer, scratch, o, t, s)
        else:
            ints[0], ints[1] = t, s
            column = _blas_block(Lb, Z, buffer, o, t, s, ch, ints, reals)
        if column >= 0:
            return Z, starts[J] + column
    return Z, -1


@numba.njit(cache=True, nogil=True)
def _blas_block(Lb, Z, buffer, o, t, s, ch, ints, reals) -> int:
    """Supernode steps by BLAS/LAPACK on the column-major views (large blocks); −1, or the singular local column."""
    L_, U_, N_, T_, R_ = ch[0:], ch[1:], ch[2:], ch[3:], ch[4:]
    t_, s_, info_ = ints[0:], ints[1:], ints[2:]
    one, minus_one, zero = reals[0:], reals[1:], reals[2:]
    D = Lb[o:]  # row-major t × t lower = column-major upper, leading dimension t
    _dtrtri(U_.ctypes, N_.ctypes, t_.ctypes, D.ctypes, t_.ctypes, info_.ctypes)
    if ints[2] != 0:
        return ints[2] - 1
    ZJ, Lbar, ZSJ = Z[o:], Lb[o + t * t :], Z[o + t * t :]  # Ŀ and Z_SJ: row-major s × t = column-major t × s
    if s > 0:
        _dtrmm(L_.ctypes, U_.ctypes, N_.ctypes, N_.ctypes, t_.ctypes, s_.ctypes, one.ctypes, D.ctypes,
               t_.ctypes, Lbar.ctypes, t_.ctypes)  # fmt: skip
        _dsymm(R_.ctypes, L_.ctypes, t_.ctypes, s_.ctypes, minus_one.ctypes, buffer.ctypes, s_.ctypes,
               Lbar.ctypes, t_.ctypes, zero.ctypes, ZSJ.ctypes, t_.ctypes)  # fmt: skip
    # Z_JJ = D⁻ᵀ D⁻¹: the column-major upper U = (D⁻¹)ᵀ, U Uᵀ by lauum, mirrored to the lower triangle
    for i in range(t * t):
        ZJ[i] = D[i]
    _dlauum(U_.ctypes, t_.ctypes, ZJ.ctypes, t_.ctypes, info_.ctypes)
    for j in range(t):
        for i in range(j + 1, t):
            ZJ[i + j * t] = ZJ[j + i * t]
    if s > 0:
        _dgemm(N_.ctypes, T_.ctypes, t_.ctypes, t_.ctypes, s_.ctypes, minus_one.ctypes, Lbar.ctypes, t_.ctypes,
               ZSJ.ctypes, t_.ctypes, one.ctypes, ZJ.ctypes, t_.ctypes)  # fmt: skip
    return -1


@numba.njit(cache=True, nogil=True)
def _small_block(Lb, Z, buffer, scratch, o, t, s) -> int:
    """The same steps as plain loops, row-major (small blocks, where a BLAS call costs more than its arithmetic);
    ``scratch`` receives D⁻¹. −1, or the singular local column."""
    for j in range(t):  # D⁻¹ (lower) by forward substitution, column by column
        d = Lb[o + j * t + j]
        if d == 0.0:
            return j
        scratch[j * t + j] = 1.0 / d
        for i in range(j + 1, t):
            acc = 0.0
            for k in range(j, i):
                acc += Lb[o + i * t + k] * scratch[k * t + j]
            scratch[i * t + j] = -acc / Lb[o + i * t + i]
    below = o + t * t
    for a in range(s):  # Ŀ = L_SJ D⁻¹, row by row, in place (entry q needs the row's entries k ≥ q)
        for q in range(t):
            acc = 0.0
            for k in range(q, t):
                acc += Lb[below + a * t + k] * scratch[k * t + q]
            Lb[below + a * t + q] = acc
    for a in range(s):  # Z_SJ = −Z_SS Ŀ (Z_SS from its lower triangle in the column-major buffer)
        for q in range(t):
            acc = 0.0
            for b in range(s):
                z = buffer[a + b * s] if a >= b else buffer[b + a * s]
                acc += z * Lb[below + b * t + q]
            Z[below + a * t + q] = -acc
    for i in range(t):  # Z_JJ = D⁻ᵀ D⁻¹ − Ŀᵀ Z_SJ (symmetric: the lower triangle computed, mirrored)
        for j in range(i + 1):
            acc = 0.0
            for k in range(i, t):
                acc += scratch[k * t + i] * scratch[k * t + j]
            for a in range(s):
                acc -= Lb[below + a * t + i] * Z[below + a * t + j]
            Z[o + i * t + j] = acc
            Z[o + j * t + i] = acc
    return -1

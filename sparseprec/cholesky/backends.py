"""Sparse Cholesky backends: CHOLMOD (through scikit-sparse, optional) and SciPy's SuperLU (always there).

Both factorise ``Q[perm][:, perm] = L Lᵀ`` for a fill-reducing ``perm`` and split the work into a *symbolic* step
(the ordering, and for CHOLMOD the elimination tree and column counts), which depends only on the sparsity pattern and
is cached per pattern by :mod:`sparseprec.cholesky.factor`, and a *numeric* step run for every new set of values.
Everything here works on CPU float64 NumPy/SciPy arrays.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import NotPositiveDefiniteError
from ._structure import LowerStructure

__all__ = ["Backend", "Numeric", "CholmodBackend", "ScipyBackend", "available_backends", "get_backend"]


def _not_positive_definite(column: int | None, pivot: float | None, backend: str) -> NotPositiveDefiniteError:
    where = "" if column is None else f" at column {column}"
    value = "" if pivot is None else f" (pivot {pivot:.6g})"
    return NotPositiveDefiniteError(
        f"Q is not positive definite: the Cholesky factorisation ({backend}) broke down{where}{value}. Check the "
        "values of Q (a GMRF precision needs a positive diagonal shift for a rank-deficient structure, e.g. ICAR)",
        column,
    )


class Numeric:
    """A numeric factorisation: ``Q[perm][:, perm] = L Lᵀ``."""

    perm: np.ndarray
    logdet: float

    def solve(self, b: np.ndarray) -> np.ndarray:
        """``Q⁻¹ b`` in the original ordering, ``b`` of shape ``(n,)`` or ``(n, k)``."""
        raise NotImplementedError

    def L(self) -> sp.csc_matrix:
        """The lower-triangular factor (diagonal included) in the permuted ordering."""
        raise NotImplementedError


class Backend:
    """A factorisation library: ``analyze`` once per pattern, ``factorize`` per set of values."""

    name: str = ""
    orderings: tuple[str, ...] = ()
    default_ordering: str = ""

    def analyze(self, structure: LowerStructure, ordering: str) -> object:
        raise NotImplementedError

    def factorize(self, symbolic: object, structure: LowerStructure, values: np.ndarray) -> Numeric:
        raise NotImplementedError


def _lower_csc(structure: LowerStructure, values: np.ndarray) -> sp.csc_matrix:
    n = structure.n
    return sp.csc_matrix((values, structure.indices, structure.indptr), shape=(n, n))


# ---- CHOLMOD ---------------------------------------------------------------------------------------------------------
class _CholmodNumeric(Numeric):
    def __init__(self, factor):
        self.factor = factor
        self.perm = factor.P()
        self.logdet = float(factor.logdet())

    def solve(self, b: np.ndarray) -> np.ndarray:
        return self.factor.solve_A(b)

    def L(self) -> sp.csc_matrix:
        return self.factor.L()


class CholmodBackend(Backend):
    """CHOLMOD (SuiteSparse) through scikit-sparse: supernodal or simplicial as CHOLMOD chooses; orderings ``"amd"``
    (default), ``"metis"`` and ``"nesdis"`` (where SuiteSparse was built with METIS), ``"natural"``, ``"best"``."""

    name = "cholmod"
    orderings = ("amd", "metis", "nesdis", "natural", "best")
    default_ordering = "amd"

    def __init__(self):
        from sksparse import cholmod  # raises ImportError where scikit-sparse is missing

        self.cholmod = cholmod

    def analyze(self, structure: LowerStructure, ordering: str) -> object:
        pattern = _lower_csc(structure, np.ones(structure.take.size))
        try:
            return self.cholmod.analyze(pattern, mode="auto", ordering_method=ordering), ordering
        except self.cholmod.CholmodError as error:
            raise ValueError(f"CHOLMOD could not analyse Q with ordering={ordering!r}: {error}") from error

    def factorize(self, symbolic: object, structure: LowerStructure, values: np.ndarray) -> Numeric:
        analysis, ordering = symbolic
        Q = _lower_csc(structure, values)
        try:
            factor = analysis.cholesky(Q)
        except self.cholmod.CholmodNotPositiveDefiniteError:
            # the supernodal code does not say where; a simplicial LDLᵀ with the same ordering does
            factor = self.cholmod.cholesky(Q, mode="simplicial", ordering_method=ordering)
        d = factor.D()
        bad = np.flatnonzero(~(d > 0))
        if bad.size:  # the first non-positive pivot in elimination order is where L Lᵀ breaks down
            j = int(bad[0])
            raise _not_positive_definite(int(factor.P()[j]), float(d[j]), self.name)
        return _CholmodNumeric(factor)


# ---- SciPy -----------------------------------------------------------------------------------------------------------
class _ScipyNumeric(Numeric):
    def __init__(self, lu, symbolic: _ScipySymbolic, pivots: np.ndarray):
        self.lu, self.symbolic, self.perm, self.pivots = lu, symbolic, symbolic.perm, pivots
        self.logdet = float(np.log(pivots).sum())
        self._L: sp.csc_matrix | None = None

    def solve(self, b: np.ndarray) -> np.ndarray:
        x = np.empty_like(b)
        x[self.perm] = self.lu.solve(np.ascontiguousarray(b[self.perm]))
        return x

    def L(self) -> sp.csc_matrix:
        # Q[perm][:, perm] = L_unit D L_unitᵀ (SuperLU's U = D L_unitᵀ), so L = L_unit D^½, on the symbolic fill
        # pattern (the entries SuperLU dropped as exact zeros are put back as stored zeros); assembled once
        if self._L is None:
            unit = sp.csc_matrix(self.lu.L)
            unit.sort_indices()
            n = self.pivots.size
            fill, fill_keys = self.symbolic.fill, self.symbolic.fill_keys
            cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(unit.indptr))
            keys = cols * n + unit.indices
            where = np.searchsorted(fill_keys, keys)
            if where.size and (where.max() >= fill_keys.size or not np.array_equal(fill_keys[where], keys)):
                raise RuntimeError("scipy backend: SuperLU's factor has an entry outside the symbolic fill pattern")
            data = np.zeros(fill.nnz)
            data[where] = unit.data * np.sqrt(self.pivots)[cols]
            self._L = sp.csc_matrix((data, fill.indices, fill.indptr), shape=(n, n))
        return self._L


class _ScipySymbolic:
    def __init__(self, perm: np.ndarray, take: np.ndarray, indices: np.ndarray, indptr: np.ndarray):
        self.perm, self.take, self.indices, self.indptr = perm, take, indices, indptr
        self.fill = _symbolic_fill(indices, indptr)
        n = indptr.size - 1
        # the fill pattern's entries as sorted keys column * n + row (CSC order), to place each numeric factor's
        # entries in it
        self.fill_keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.fill.indptr)) * n + self.fill.indices


def _symbolic_fill(indices: np.ndarray, indptr: np.ndarray) -> sp.csc_matrix:
    """The pattern of the Cholesky factor of the permuted matrix whose full CSC structure is ``indices``/``indptr``.

    SuperLU drops entries of ``L`` that come out exactly zero (stored zeros of ``Q``, exact cancellation), which would
    leave a pattern that is not a fill pattern and miss entries of ``Q``. The symbolic pattern is read off the factor
    of the M-matrix with the same structure (off-diagonal −1, diagonal degree + 1: strictly diagonally dominant):
    its elimination only ever adds same-signed terms, so no entry of the symbolic fill cancels.
    """
    n = indptr.size - 1
    cols = np.repeat(np.arange(n), np.diff(indptr))
    degree = np.bincount(cols, minlength=n) - 1
    values = np.where(indices == cols, degree[cols] + 1.0, -1.0)
    M = sp.csc_matrix((values, indices, indptr), shape=(n, n))
    lu = spla.splu(M, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    fill = sp.csc_matrix(lu.L)
    fill.sort_indices()
    return fill


class ScipyBackend(Backend):
    """SciPy's SuperLU used as a Cholesky: symmetric mode, no pivoting (diagonal pivots of an SPD matrix are positive),
    on ``Q`` permuted once by a minimum-degree ordering of its pattern (``"mmd"``, default) or reverse Cuthill–McKee
    (``"rcm"``) or none (``"natural"``). Exact; no extra install."""

    name = "scipy"
    orderings = ("mmd", "rcm", "natural")
    default_ordering = "mmd"

    def analyze(self, structure: LowerStructure, ordering: str) -> object:
        n = structure.n
        row, col = structure.row, structure.col
        if ordering == "natural":
            perm = np.arange(n)
        elif ordering == "rcm":
            from scipy.sparse.csgraph import reverse_cuthill_mckee

            pattern = sp.csr_matrix((np.ones(row.size), (row, col)), shape=(n, n))
            perm = np.asarray(reverse_cuthill_mckee(pattern + pattern.T, symmetric_mode=True), dtype=np.int64)
        else:
            # the ordering depends on the pattern only: factorise a diagonally dominant matrix with Q's pattern
            off = row != col
            values = np.where(off, -1.0, 0.0)
            degree = np.bincount(row[off], minlength=n) + np.bincount(col[off], minlength=n)
            values[~off] = degree[row[~off]] + 1.0
            low = sp.csc_matrix((values, (row, col)), shape=(n, n))
            full = (low + sp.triu(low.T, 1)).tocsc()
            lu = spla.splu(full, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
            perm = np.argsort(lu.perm_c)
        # CSC structure of the full permuted matrix Q[perm][:, perm], as positions in the lower-triangle values
        inverse = np.empty(n, dtype=np.int64)
        inverse[perm] = np.arange(n)
        strict = np.flatnonzero(row != col)
        source = np.concatenate([np.arange(row.size), strict])
        new_row = np.concatenate([inverse[row], inverse[col[strict]]])
        new_col = np.concatenate([inverse[col], inverse[row[strict]]])
        order = np.lexsort((new_row, new_col))
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(new_col, minlength=n), out=indptr[1:])
        return _ScipySymbolic(perm, source[order], new_row[order].astype(np.int32), indptr.astype(np.int32))

    def factorize(self, symbolic: object, structure: LowerStructure, values: np.ndarray) -> Numeric:
        n = structure.n
        Qp = sp.csc_matrix((values[symbolic.take], symbolic.indices, symbolic.indptr), shape=(n, n))
        try:
            lu = spla.splu(Qp, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        except RuntimeError as error:  # an exactly zero pivot
            raise _not_positive_definite(None, 0.0, f"{self.name}: {error}") from None
        pivots = lu.U.diagonal()
        identity = np.arange(n)
        bad = np.flatnonzero(~(pivots > 0))
        if bad.size or not (np.array_equal(lu.perm_r, identity) and np.array_equal(lu.perm_c, identity)):
            j = int(bad[0]) if bad.size else int(np.flatnonzero(lu.perm_r != identity)[0])
            raise _not_positive_definite(int(symbolic.perm[j]), float(pivots[j]), self.name)
        return _ScipyNumeric(lu, symbolic, pivots)


def available_backends() -> tuple[str, ...]:
    """Names of the backends usable here (``"cholmod"`` needs scikit-sparse)."""
    try:
        CholmodBackend()
    except ImportError:
        return ("scipy",)
    return ("cholmod", "scipy")


_BACKENDS: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """``"auto"`` (CHOLMOD where installed, else SciPy), ``"cholmod"`` or ``"scipy"``."""
    if name == "auto":
        name = available_backends()[0]
    if name not in ("cholmod", "scipy"):
        raise ValueError(f"backend must be 'auto', 'cholmod' or 'scipy', got {name!r}")
    if name not in _BACKENDS:
        if name == "cholmod":
            try:
                _BACKENDS[name] = CholmodBackend()
            except ImportError as error:
                raise ImportError(
                    "backend='cholmod' needs scikit-sparse: install SuiteSparse headers (e.g. apt-get install "
                    "libsuitesparse-dev) and `pip install sparseprec[cholmod]`, or use backend='scipy'"
                ) from error
        else:
            _BACKENDS[name] = ScipyBackend()
    return _BACKENDS[name]

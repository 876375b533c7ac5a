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
import torch

from ..errors import NotPositiveDefiniteError
from ..pattern import crow_from_rows
from ._structure import LowerStructure

__all__ = ["Backend", "Numeric", "CholmodBackend", "ScipyBackend", "available_backends", "get_backend"]


# Pivot d_j (L_jj² of L Lᵀ, D_jj of L D Lᵀ) is singular at or below c · n · ε₆₄ · S_j + ε(dtype) · Q_jj, with
# c = PIVOT_TOLERANCE_FACTOR and S_j the largest diagonal entry in column j's elimination subtree: see the docstring
# of sparseprec.cholesky.cholesky for the choice.
PIVOT_TOLERANCE_FACTOR = 10.0
_EPS64 = float(np.finfo(np.float64).eps)


def _not_positive_definite(
    column: int, step: int, pivot: float, threshold: float, backend: str
) -> NotPositiveDefiniteError:
    reason = "not positive" if not pivot > 0 else f"below the singularity threshold {threshold:.3g}"
    return NotPositiveDefiniteError(
        f"Q is not positive definite (numerically singular or indefinite): the sparse Cholesky factorisation "
        f"(backend {backend!r}) broke down at column {column} of Q (original ordering; elimination step {step} of "
        f"the fill-reducing ordering), where the pivot {pivot:.6g} is {reason} (see sparseprec.cholesky.cholesky). "
        "Check the values of Q (a GMRF precision needs a positive diagonal shift for a rank-deficient structure, "
        "e.g. ICAR)",
        column,
    )


def _elimination_parents(L: sp.spmatrix) -> np.ndarray:
    """The elimination tree of a Cholesky factor from its (lower, CSC) pattern: the parent of column ``j`` is the
    first row below the diagonal stored in column ``j``; ``-1`` at a root."""
    L = sp.csc_matrix(L)
    n = L.shape[0]
    cols = np.repeat(np.arange(n, dtype=np.int64), np.diff(L.indptr))
    below = np.flatnonzero(L.indices > cols)
    below = below[np.lexsort((L.indices[below], cols[below]))]
    with_parent, first = np.unique(cols[below], return_index=True)
    parent = np.full(n, -1, dtype=np.int64)
    parent[with_parent] = L.indices[below[first]]
    return parent


def _subtree_max(values: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """``max`` of ``values`` over every node's subtree of the forest ``parent`` (``-1`` at roots), by pointer jumping:
    after the pass with ``up`` = the ancestors ``2^k`` levels up, every node holds the maximum over its descendants
    less than ``2^(k+1)`` levels below it (``log₂`` depth passes of O(n))."""
    best = values.copy()
    up = parent.copy()
    while True:
        has = np.flatnonzero(up >= 0)
        if not has.size:
            return best
        np.maximum.at(best, up[has], best[has])
        jump = np.full_like(up, -1)
        jump[has] = up[up[has]]
        up = jump


def pivot_error(
    pivots: np.ndarray,
    diagonal: np.ndarray,
    parents,
    input_eps: float,
    perm: np.ndarray,
    backend: str,
    stop: int | None = None,
) -> NotPositiveDefiniteError | None:
    """The :class:`NotPositiveDefiniteError` for the first elimination step ``j`` whose pivot is not above
    ``c n ε₆₄ S_j + ε Q_jj`` (``c = PIVOT_TOLERANCE_FACTOR``, ``ε = input_eps`` the epsilon of ``Q``'s dtype, ``S_j``
    the largest diagonal entry of ``Q`` in column ``j``'s subtree of the elimination tree: the rows and columns that
    pivot is computed from); ``None`` when every pivot passes.

    ``pivots`` are the pivots of the first ``pivots.size`` elimination steps: all of them, or, with ``stop``, those
    before the step ``stop`` where the factorisation stopped at an exactly zero pivot. ``diagonal`` is ``Q``'s
    diagonal in the elimination order; ``parents()`` gives the elimination tree (called only when some pivot fails
    the test with ``S_j`` replaced by its bound ``max(diagonal)``); ``perm`` maps elimination steps to columns of ``Q``.
    """
    m = pivots.size
    rounding = PIVOT_TOLERANCE_FACTOR * diagonal.size * _EPS64  # of the float64 factorisation, relative to S_j
    own = input_eps * diagonal[:m]  # the rounding of Q's values to its dtype
    bad = np.flatnonzero(~(pivots > rounding * diagonal.max() + own))  # (NaN fails too)
    scale = None
    if bad.size:
        scale = _subtree_max(diagonal, parents())
        bad = np.flatnonzero(~(pivots > rounding * scale[:m] + own))
    if bad.size:
        j, pivot = int(bad[0]), float(pivots[bad[0]])
    elif stop is not None:
        j, pivot = stop, 0.0
    else:
        return None
    threshold = rounding * float(scale[j] if scale is not None else diagonal.max()) + input_eps * float(diagonal[j])
    return _not_positive_definite(int(perm[j]), j, pivot, threshold, backend)


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

    def factorize(self, symbolic: object, structure: LowerStructure, values: np.ndarray, input_eps: float) -> Numeric:
        """Factorise the lower-triangle ``values``; raise :class:`NotPositiveDefiniteError` (from :func:`pivot_error`,
        ``input_eps`` the epsilon of ``Q``'s dtype) at the first pivot that is not positive or is below the
        singularity threshold, the backend's own error chained."""
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

    def factorize(self, symbolic: object, structure: LowerStructure, values: np.ndarray, input_eps: float) -> Numeric:
        analysis, ordering = symbolic
        Q = _lower_csc(structure, values)
        diagonal = values[structure.diagonal_entries]
        not_positive_definite = self.cholmod.CholmodNotPositiveDefiniteError

        def check(factor, stop: int | None = None) -> NotPositiveDefiniteError | None:
            perm = factor.P()
            pivots = factor.D() if stop is None else factor.D()[:stop]  # D_jj, or L_jj² of an L Lᵀ factor
            parents = lambda: _elimination_parents(factor.LD())  # noqa: E731
            return pivot_error(pivots, diagonal[perm], parents, input_eps, perm, self.name, stop=stop)

        try:
            factor = analysis.cholesky(Q)
        except not_positive_definite as error:
            # L Lᵀ stopped at its first non-positive pivot. A simplicial L D Lᵀ with the same ordering runs past
            # negative pivots and gives every pivot, so the first small or non-positive one is found; it stops only
            # at an exactly zero pivot (CHOLMOD's `column`, elimination order), with the pivots before it available
            try:
                factor = self.cholmod.cholesky(Q, mode="simplicial", ordering_method=ordering)
            except not_positive_definite as retry_error:
                raise check(retry_error.factor, stop=int(retry_error.column)) from retry_error
            found = check(factor)
            if found is not None:
                raise found from error
            return _CholmodNumeric(factor)  # (rounding differed; every pivot of the L D Lᵀ is clear of zero)
        found = check(factor)
        if found is not None:
            raise found
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
        self._parents: np.ndarray | None = None

    def parents(self) -> np.ndarray:
        """The elimination tree (read off the fill pattern once, when a pivot check first needs it)."""
        if self._parents is None:
            self._parents = _elimination_parents(self.fill)
        return self._parents


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
        indptr = crow_from_rows(torch.from_numpy(new_col), n).numpy()  # column pointers (CSC)
        return _ScipySymbolic(perm, source[order], new_row[order].astype(np.int32), indptr.astype(np.int32))

    @staticmethod
    def _splu(Qp: sp.csc_matrix):
        """SuperLU in symmetric mode without pivoting: ``(lu, None)``, or ``(None, SuperLU's error or None)`` where it
        meets an exactly zero pivot (it stops, or takes an off-diagonal pivot)."""
        try:
            lu = spla.splu(Qp, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        except RuntimeError as error:
            if "singular" not in str(error):
                raise
            return None, error
        identity = np.arange(Qp.shape[0])
        if not np.array_equal(lu.perm_c, identity):
            raise RuntimeError("scipy backend: SuperLU reordered the columns in symmetric mode")
        return (lu, None) if np.array_equal(lu.perm_r, identity) else (None, None)

    def factorize(self, symbolic: object, structure: LowerStructure, values: np.ndarray, input_eps: float) -> Numeric:
        n = structure.n
        Qp = sp.csc_matrix((values[symbolic.take], symbolic.indices, symbolic.indptr), shape=(n, n))
        diagonal = values[structure.diagonal_entries][symbolic.perm]
        lu, cause = self._splu(Qp)
        if lu is not None:
            pivots = lu.U.diagonal()
            found = pivot_error(pivots, diagonal, symbolic.parents, input_eps, symbolic.perm, self.name)
            if found is not None:
                raise found
            return _ScipyNumeric(lu, symbolic, pivots)
        # An exactly zero pivot, which SuperLU does not locate. Without pivoting, the pivots of a leading block
        # Qp[:k, :k] are the first k pivots of Qp: bisect for the longest leading block factorised without one
        # (log₂ n factorisations, on this error path only); the zero pivot is the next step.
        good, bad, leading = 0, n, np.zeros(0)
        while bad - good > 1:
            k = (good + bad) // 2
            trial, _ = self._splu(Qp[:k, :k].tocsc())
            if trial is None:
                bad = k
            else:
                good, leading = k, trial.U.diagonal()
        found = pivot_error(leading, diagonal, symbolic.parents, input_eps, symbolic.perm, self.name, stop=good)
        raise found from cause


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

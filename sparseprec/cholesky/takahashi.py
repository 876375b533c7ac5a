r"""Selected inverse: :math:`Q^{-1}` on the pattern of :math:`L + L^\top`, by the supernodal Takahashi recursions.

With :math:`A = Q_{\pi\pi} = L L^\top` (``Q[perm][:, perm]``) and :math:`Z = A^{-1}`, :math:`Z = L^{-\top} L^{-1}`
satisfies :math:`Z L = L^{-\top}`, an upper-triangular matrix with diagonal :math:`1 / L_{jj}`. Reading it below and on
the diagonal of column block :math:`J` (a supernode: columns :math:`J` sharing the row structure :math:`S` below them)
gives the recursions of Takahashi, Fagan & Chen (1973), in block form (as in Erisman & Tinney 1975; Rue & Martino 2007
for GMRFs):

.. math::

    \hat L = L_{SJ} L_{JJ}^{-1}, \qquad Z_{SJ} = -Z_{SS} \hat L, \qquad
    Z_{JJ} = L_{JJ}^{-\top} L_{JJ}^{-1} - \hat L^\top Z_{SJ}.

:math:`Z_{SS}` only involves columns after :math:`J` (ancestors in the elimination tree), and every pair of rows of
``S`` is in the filled pattern, so sweeping the supernodes from last to first computes ``Z`` exactly on the pattern of
``L``, at the cost of a numeric factorisation. Blocks are dense row-major arrays in one flat buffer. The sweep runs
compiled (:mod:`sparseprec.cholesky._takahashi_kernel`, Numba calling BLAS/LAPACK in place, no Python step per
supernode); where Numba cannot be imported, the same recursions run as a NumPy loop with one Python step per supernode
(about 2–3× slower; measured in ``docs/benchmarks.md``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack
from threadpoolctl import ThreadpoolController

__all__ = ["SupernodalStructure", "takahashi"]

# The NumPy loop's Z_SS gathers (positions of all s × s pairs of every supernode) are computed with its first sweep and
# kept up to this many entries in total (int32 where the buffers allow: 0.8 GB at the limit; about 3 nnz(L) on 2-D
# grids), else recomputed during every sweep. The compiled sweep finds the positions as it goes and needs none.
GATHER_BUDGET = 200_000_000


class SupernodalStructure:
    """Pattern-only data of the sweep for one Cholesky fill pattern (cached with the symbolic analysis).

    Blocks: supernode ``J`` (columns ``starts[J] .. starts[J] + width[J] − 1``, row structure ``rows_J`` of length
    ``height[J]``) is a dense row-major ``height × width`` array at ``offset[J]`` of one flat buffer.
    """

    def __init__(self, L: sp.csc_matrix):
        n = L.shape[0]
        indptr, indices = L.indptr.astype(np.int64), L.indices.astype(np.int64)
        counts = np.diff(indptr)
        cols = np.arange(n)
        # column j+1 continues j's supernode when it is j's parent and has one fewer entry
        second = np.where(counts > 1, indices[np.minimum(indptr[:-1] + 1, max(L.nnz - 1, 0))], -1)
        merge = np.zeros(n, dtype=bool)
        merge[1:] = (second[:-1] == cols[1:]) & (counts[:-1] == counts[1:] + 1)
        starts = np.flatnonzero(~merge)
        width = np.append(starts[1:], n) - starts
        height = counts[starts]
        self.n, self.nnz, self.starts, self.width, self.height = n, L.nnz, starts, width, height
        self.supernode_of = np.repeat(np.arange(starts.size), width)
        self.offset = np.zeros(starts.size + 1, dtype=np.int64)
        np.cumsum(height * width, out=self.offset[1:])
        self.row_start, self.indptr = indptr[starts], indptr
        self.rows = indices
        self.first = np.cumsum(height) - height  # where block J's rows begin in the concatenation of all rows_J
        J, q, block_row = self._entry_blocks()
        if not np.array_equal(indices[self.row_start[J] + block_row], indices):
            raise ValueError("the factor's pattern is not a Cholesky fill pattern (columns of a supernode differ)")
        block = np.repeat(np.arange(starts.size), height)
        self._key = block * n + indices[self.row_start[block] + (np.arange(int(height.sum())) - self.first[block])]
        # the NumPy loop's own data, built on its first use (the compiled sweep needs neither)
        self._L_position: np.ndarray | None = None
        self._gathers: list[np.ndarray] | None = None

    def _entry_blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For every entry of ``L`` (CSC order): its supernode ``J``, its column ``q`` within ``J`` and its row within
        ``J``'s block (entry ``p`` of column ``c`` is block row ``(c − start) + (p − indptr[c])``)."""
        entry_col = np.repeat(np.arange(self.n), np.diff(self.indptr))
        J = self.supernode_of[entry_col]
        q = entry_col - self.starts[J]
        return J, q, q + (np.arange(self.nnz) - self.indptr[entry_col])

    def L_position(self) -> np.ndarray:
        """Where every entry of ``L`` (CSC order) goes in the flat block buffer (the NumPy loop's scatter; built on
        first use)."""
        if self._L_position is None:
            J, q, block_row = self._entry_blocks()
            self._L_position = self.offset[J] + block_row * self.width[J] + q
        return self._L_position

    def gathers(self) -> list[np.ndarray] | None:
        """The NumPy loop's ``Z_SS`` positions for every supernode (built on first use), or ``None`` beyond
        :data:`GATHER_BUDGET` entries."""
        below = self.height - self.width
        if self._gathers is None and int((below.astype(np.int64) ** 2).sum()) <= GATHER_BUDGET:
            small = self.offset[-1] < 2**31 - 1
            self._gathers = [self._gather(J).astype(np.int32) if small else self._gather(J) for J in range(below.size)]
        return self._gathers

    def below(self, J: int) -> np.ndarray:
        """``S``: the rows of supernode ``J`` below its diagonal block."""
        return self.rows[self.row_start[J] + self.width[J] : self.row_start[J] + self.height[J]]

    def locate(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Flat buffer positions of the lower entries ``(i, j)``, ``i >= j`` (permuted indices)."""
        J = self.supernode_of[j]
        key = J * self.n + i
        local = np.minimum(np.searchsorted(self._key, key), self._key.size - 1)
        if not np.array_equal(self._key[local], key):
            raise ValueError("an entry asked for is not in the pattern of the Cholesky factor")
        return self.offset[J] + (local - self.first[J]) * self.width[J] + (j - self.starts[J])

    def _gather(self, J: int) -> np.ndarray:
        """Positions of ``Z_SS`` (all ``s × s`` pairs, row-major) for supernode ``J``."""
        S = self.below(J)
        if S.size == 0:
            return np.zeros(0, dtype=np.int64)
        i, j = np.maximum.outer(S, S).ravel(), np.minimum.outer(S, S).ravel()
        return self.locate(i, j)


_CONTROLLER: list[ThreadpoolController] = []


def _single_threaded_blas():
    """A context with the BLAS pools (OpenBLAS, MKL, ...) at one thread: the sweep issues one small ``trtri`` and two
    small products per supernode, which a thread pool only slows down (measured on a shared 2-core machine: n = 3,600,
    2,709 supernodes, 236 ms with OpenBLAS's 2 threads against 113 ms with one; n = 40,000: 1.74 s against 0.46 s).
    The controller, which lists the loaded libraries, is made once (about 25 µs per use after that)."""
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


def _compiled_sweep():
    """The compiled sweep, or ``None`` where Numba cannot be imported (imported on first use, not with the library)."""
    if not _KERNEL:
        try:
            from ._takahashi_kernel import selected_inverse
        except ImportError:
            selected_inverse = None
        _KERNEL.append(selected_inverse)
    return _KERNEL[0]


_KERNEL: list = []


def _singular(column: int) -> ValueError:
    return ValueError(f"singular diagonal block in the factor at column {column}")


def takahashi(structure: SupernodalStructure, L_data: np.ndarray, compiled: bool = True) -> np.ndarray:
    """The selected inverse ``Z`` in ``structure``'s flat block buffers, for the factor values ``L_data`` (CSC): the
    compiled sweep where Numba is available and ``compiled``, else the NumPy loop; the BLAS runs single-threaded
    during either (:func:`_single_threaded_blas`)."""
    sweep = _compiled_sweep() if compiled else None
    with _single_threaded_blas():
        if sweep is None:
            Lb = np.zeros(structure.offset[-1])
            Lb[structure.L_position()] = L_data
            return _sweep(structure, Lb)
        s = structure
        values = np.ascontiguousarray(L_data, dtype=np.float64)
        Z, column = sweep(s.starts, s.width, s.height, s.offset, s.row_start, s.rows, s.supernode_of, s.indptr, values)
    if column >= 0:
        raise _singular(column)
    return Z


def _sweep(structure: SupernodalStructure, Lb: np.ndarray) -> np.ndarray:
    Z = np.empty_like(Lb)  # every block is written whole below
    gathers = structure.gathers()
    for J in range(structure.starts.size - 1, -1, -1):
        t, m, o = int(structure.width[J]), int(structure.height[J]), int(structure.offset[J])
        block = Lb[o : o + m * t].reshape(m, t)
        # (the block's upper triangle is zero in the buffer, and trtri leaves it as it is)
        inv, info = lapack.dtrtri(block[:t], lower=1)
        if info != 0:
            raise _singular(int(structure.starts[J]) + info - 1)
        ZJJ = inv.T @ inv
        s = m - t
        Zb = Z[o : o + m * t].reshape(m, t)
        if s:
            where = gathers[J] if gathers is not None else structure._gather(J)
            ZSS = Z[where].reshape(s, s)
            Lbar = block[t:] @ inv  # L_SJ L_JJ⁻¹, (s, t)
            ZSJ = ZSS @ Lbar
            np.negative(ZSJ, out=ZSJ)
            ZJJ -= Lbar.T @ ZSJ
            Zb[t:] = ZSJ
        Zb[:t] = ZJJ
    return Z

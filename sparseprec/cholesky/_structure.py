"""From a torch sparse symmetric ``Q`` to the lower-triangle CSC arrays the backends factorise, once per pattern.

``Q`` may store the full symmetric matrix (``triangle="full"``), or only its lower or upper triangle. The structure
built here is cached on the :class:`~sparseprec.ops._pattern.SparsePattern` of ``Q``, so a training loop with a fixed
pattern pays only for one gather of the values per call.
"""

from __future__ import annotations

import numpy as np
import torch

from .._validation import check_sparse_matrix
from ..pattern import SparsePattern, crow_from_rows, pattern_of

__all__ = ["TRIANGLES", "LowerStructure", "lower_structure", "check_symmetric_input"]

TRIANGLES = ("full", "lower", "upper")


class LowerStructure:
    """Index data that turns ``Q``'s kernel-ordered values into the CSC arrays of its lower triangle.

    Attributes
    ----------
    n : int
    take : np.ndarray
        For every lower-triangle CSC entry, the position of its value among ``Q``'s kernel values.
    indptr, indices : np.ndarray
        CSC structure of the lower triangle (rows sorted within each column).
    row, col : np.ndarray
        Row and column of every lower-triangle CSC entry.
    mirror : np.ndarray or None
        ``triangle="full"``: for every stored entry of ``Q`` (kernel order), the kernel position of its transpose.
    entry_of_kernel : np.ndarray
        For every kernel entry of ``Q``, its position in the lower-triangle CSC arrays (where the gradient of that
        stored value comes from).
    diagonal_entries : np.ndarray
        The position of ``Q_jj`` in the lower-triangle CSC arrays, for ``j = 0, ..., n − 1``.
    """

    def __init__(self, pattern: SparsePattern, triangle: str):
        n = pattern.n_rows
        row = pattern.row.cpu().numpy().astype(np.int64)
        col = pattern.col.cpu().numpy().astype(np.int64)
        if triangle == "upper":
            row, col = col, row  # the upper triangle of Q is the lower triangle of Qᵀ = Q
        self.n, self.triangle = n, triangle
        self.mirror = None
        if triangle == "full":
            key = row * n + col
            order = np.argsort(key)
            twin_key = col * n + row
            pos = np.searchsorted(key[order], twin_key)
            pos = np.minimum(pos, key.size - 1)
            found = key[order][pos] == twin_key if key.size else np.zeros(0, dtype=bool)
            if not found.all():
                e = int(np.flatnonzero(~found)[0])
                raise ValueError(
                    f"Q (triangle='full') stores entry ({row[e]}, {col[e]}) but not ({col[e]}, {row[e]}): the pattern "
                    "is not symmetric. Store both triangles, or pass triangle='lower'/'upper' if only one is stored"
                )
            self.mirror = order[pos]
            keep = np.flatnonzero(row >= col)
        else:
            wrong = np.flatnonzero(row < col)
            if wrong.size:
                e = int(wrong[0])
                r, c = (row[e], col[e]) if triangle == "lower" else (col[e], row[e])
                side = "above" if triangle == "lower" else "below"
                raise ValueError(
                    f"Q was declared triangle='{triangle}' but stores entry ({r}, {c}) {side} the diagonal; pass "
                    "triangle='full' if both triangles are stored"
                )
            keep = np.arange(row.size)
        csc_order = np.lexsort((row[keep], col[keep]))
        self.take = keep[csc_order]
        self.row, self.col = row[self.take], col[self.take]
        self.indices = self.row
        self.indptr = crow_from_rows(torch.from_numpy(self.col), n).numpy()  # column pointers (CSC)
        # where each kernel entry's gradient is read: its own lower entry, or (full, upper entries) its mirror's
        position = np.empty(row.size, dtype=np.int64)
        position[self.take] = np.arange(self.take.size)
        if triangle == "full":
            upper = row < col
            position[upper] = position[self.mirror[upper]]
        self.entry_of_kernel = position
        diagonal = self.row == self.col
        if np.count_nonzero(diagonal) != n:
            has = np.zeros(n, dtype=bool)
            has[self.row[diagonal]] = True
            j = int(np.flatnonzero(~has)[0])
            raise ValueError(f"Q has no stored diagonal entry in row {j}: a positive definite matrix needs one")
        self.diagonal_entries = np.flatnonzero(diagonal)  # one per column, in column order (CSC)


def check_symmetric_input(Q: object, triangle: str) -> torch.Tensor:
    """Validate ``Q`` (sparse, 2-D, square, non-empty, float) and ``triangle``."""
    Q = check_sparse_matrix(Q, "Q", square=True)
    if Q.dim() != 2:
        raise ValueError(f"Q must be a single (n, n) matrix, got a batched tensor of shape {tuple(Q.shape)}")
    if Q.shape[0] == 0:
        raise ValueError("Q is empty (shape (0, 0)): there is nothing to factorise")
    if triangle not in TRIANGLES:
        raise ValueError(f"triangle must be one of {TRIANGLES}, got {triangle!r}")
    return Q


def lower_structure(Q: torch.Tensor, triangle: str) -> tuple[SparsePattern, LowerStructure]:
    """The (cached) pattern of ``Q`` and its lower-triangle structure for ``triangle``."""
    pattern = pattern_of(Q, "Q")
    return pattern, pattern.derived(("cholesky_lower_structure", triangle), lambda: LowerStructure(pattern, triangle))


def lower_values(Q: torch.Tensor, pattern: SparsePattern, structure: LowerStructure) -> np.ndarray:
    """The values of ``Q``'s lower triangle in CSC order, float64 NumPy, after checking them (finite; symmetric)."""
    values = pattern.kernel_values(Q.detach()).to(device="cpu", dtype=torch.float64).numpy()
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        e = int(bad[0])
        raise ValueError(f"Q has a non-finite value {values[e]} at entry ({pattern.row[e]}, {pattern.col[e]})")
    if structure.mirror is not None and values.size:
        diff = np.abs(values - values[structure.mirror])
        e = int(np.argmax(diff))
        scale = float(np.abs(values).max())
        eps = float(torch.finfo(Q.dtype).eps)
        if diff[e] > 1000 * eps * scale:
            r, c = int(pattern.row[e]), int(pattern.col[e])
            raise ValueError(
                f"Q is not symmetric: Q[{r}, {c}] = {values[e]:.6g} but Q[{c}, {r}] = {values[structure.mirror[e]]:.6g}"
            )
    return values[structure.take]

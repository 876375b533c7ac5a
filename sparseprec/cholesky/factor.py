"""``cholesky(Q)``: a sparse Cholesky factor of an SPD ``Q``, with the symbolic analysis cached per pattern."""

from __future__ import annotations

import threading

import numpy as np
import scipy.sparse as sp
import torch

from .._validation import check_dense
from ._structure import check_symmetric_input, lower_structure, lower_values
from .backends import Numeric, get_backend
from .takahashi import SupernodalStructure, takahashi

__all__ = ["CholeskyFactor", "cholesky", "symbolic_analyses"]

_COUNT = {"analyses": 0}
_LOCK = threading.Lock()


def symbolic_analyses() -> int:
    """How many symbolic analyses (orderings) this process has run: a repeated pattern does not add one.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.cholesky import cholesky, symbolic_analyses
    >>> Q = torch.tensor([[2.0, -1.0], [-1.0, 2.0]], dtype=torch.float64).to_sparse_csr()
    >>> before = symbolic_analyses()
    >>> _ = cholesky(Q, backend="scipy"); _ = cholesky(Q * 3, backend="scipy")
    >>> symbolic_analyses() - before
    1
    """
    return _COUNT["analyses"]


class CholeskyFactor:
    r"""Sparse Cholesky factor of an SPD matrix: :math:`Q_{pp} = L L^\top` with ``p = perm`` (``Q[perm][:, perm]``).

    Made by :func:`cholesky`. The numeric factor lives with the backend (CPU, float64); results come back in ``Q``'s
    dtype and device.

    Attributes
    ----------
    n : int
    backend, ordering : str
        What factorised ``Q`` and with which fill-reducing ordering.
    perm : torch.Tensor
        int64 ``(n,)``: the permutation.
    """

    def __init__(self, numeric: Numeric, n: int, dtype: torch.dtype, device: torch.device, backend: str, ordering: str):
        self.numeric, self.n, self.dtype, self.device = numeric, n, dtype, device
        self.backend, self.ordering = backend, ordering
        self.perm = torch.from_numpy(np.asarray(numeric.perm, dtype=np.int64)).to(device)
        self._L: torch.Tensor | None = None
        self._pattern_cache: tuple[dict, tuple] | None = None  # where pattern-only data of this factor is kept
        self._inverse: tuple[SupernodalStructure, np.ndarray] | None = None

    def selected_inverse_blocks(self) -> tuple[SupernodalStructure, np.ndarray]:
        """The selected inverse in supernodal block form (permuted ordering), computed once per factor; its
        pattern-only structure is cached with the symbolic analysis."""
        if self._inverse is None:
            L = sp.csc_matrix(self.numeric.L())
            L.sort_indices()
            cache, key = self._pattern_cache if self._pattern_cache is not None else ({}, None)
            structure = cache.get(("selected_inverse", key))
            if structure is None or structure.nnz != L.nnz:
                structure = SupernodalStructure(L)
                cache[("selected_inverse", key)] = structure
            self._inverse = (structure, takahashi(structure, L.data))
        return self._inverse

    def __repr__(self) -> str:
        return f"CholeskyFactor(n={self.n}, backend={self.backend!r}, ordering={self.ordering!r}, dtype={self.dtype})"

    def logdet(self) -> torch.Tensor:
        r""":math:`\log\det Q = 2 \sum_i \log L_{ii}` as a 0-d tensor (no gradient; see ``sparse_logdet``)."""
        return torch.tensor(self.numeric.logdet, dtype=self.dtype, device=self.device)

    def _rhs(self, B: object) -> torch.Tensor:
        B = check_dense(B, "B", dims=(1, 2))
        if B.shape[0] != self.n:
            raise ValueError(f"B must have {self.n} rows (the size of Q), got shape {tuple(B.shape)}")
        if B.dtype != self.dtype or B.device != self.device:
            raise ValueError(
                f"B must have Q's dtype {self.dtype} and device {self.device}, got {B.dtype} and {B.device}"
            )
        return B

    def solve(self, B: torch.Tensor) -> torch.Tensor:
        r""":math:`Q^{-1} B` for dense ``B`` of shape ``(n,)`` or ``(n, k)`` (original ordering; no gradient)."""
        B = self._rhs(B)
        b = B.detach().to(device="cpu", dtype=torch.float64).numpy()
        x = self.numeric.solve(b)
        return torch.from_numpy(np.ascontiguousarray(x)).to(dtype=self.dtype, device=self.device)

    @property
    def L(self) -> torch.Tensor:
        """The lower-triangular factor as a torch CSR tensor (permuted ordering; diagonal stored)."""
        if self._L is None:
            L = sp.csr_matrix(self.numeric.L())
            L.sort_indices()
            self._L = torch.sparse_csr_tensor(
                torch.from_numpy(L.indptr.astype(np.int64)),
                torch.from_numpy(L.indices.astype(np.int64)),
                torch.from_numpy(L.data),
                (self.n, self.n),
            ).to(dtype=self.dtype, device=self.device)
        return self._L

    def diagonal(self) -> torch.Tensor:
        r"""The pivots :math:`L_{ii}` (permuted ordering: pivot ``i`` belongs to node ``perm[i]``), ``(n,)``; no
        gradient. :math:`\log\det Q = 2 \sum_i \log L_{ii}`."""
        L = self.L
        return L.values()[L.crow_indices()[1:] - 1]  # the diagonal is the last stored entry of each row of lower L

    def _triangular(self, B: torch.Tensor, transpose: bool) -> torch.Tensor:
        B = self._rhs(B)
        B2 = B.detach().reshape(self.n, -1)
        X = torch.triangular_solve(B2, self.L, upper=False, transpose=transpose).solution
        return X.reshape(B.shape)

    def solve_L(self, B: torch.Tensor) -> torch.Tensor:
        r""":math:`L^{-1} B` (``B`` in the permuted ordering: ``B = C[perm]`` for a ``C`` in the original one)."""
        return self._triangular(B, transpose=False)

    def solve_Lt(self, B: torch.Tensor) -> torch.Tensor:
        r""":math:`L^{-\top} B` (result in the permuted ordering: scatter it back with ``X[perm] = result``)."""
        return self._triangular(B, transpose=True)


def cholesky(
    Q: torch.Tensor, backend: str = "auto", ordering: str | None = None, triangle: str = "full"
) -> CholeskyFactor:
    r"""Sparse Cholesky factorisation of a symmetric positive definite ``Q``: :math:`Q_{pp} = L L^\top`.

    The symbolic analysis (fill-reducing ordering; for CHOLMOD also the elimination tree and column counts) depends
    only on ``Q``'s sparsity pattern and is cached with it: a loop that changes only the values of a fixed pattern
    refactorises numerically (see :func:`symbolic_analyses`). Tensors on another device are factorised on the CPU in
    float64; results return to ``Q``'s device and dtype.

    Parameters
    ----------
    Q : torch.Tensor
        Sparse COO or CSR ``(n, n)``, float32 or float64, positive definite, with every diagonal entry stored.
    backend : {"auto", "cholmod", "scipy"}
        ``"cholmod"`` (scikit-sparse, the ``cholmod`` extra), ``"scipy"`` (SuperLU in symmetric mode without
        pivoting; no extra install), or ``"auto"``: CHOLMOD where installed.
    ordering : str, optional
        Fill-reducing ordering: CHOLMOD ``"amd"`` (default), ``"metis"``, ``"nesdis"``, ``"natural"``, ``"best"``;
        SciPy ``"mmd"`` (minimum degree, default), ``"rcm"``, ``"natural"``.
    triangle : {"full", "lower", "upper"}
        What ``Q`` stores: both triangles (default; checked for symmetry, values to ``1000 ε max|Q|``), or only its
        lower or upper triangle (each stored off-diagonal value then stands for both ``Q_ij`` and ``Q_ji``).

    Returns
    -------
    CholeskyFactor

    Raises
    ------
    sparseprec.NotPositiveDefiniteError
        With the column (original ordering) where the factorisation broke down.
    ValueError
        Non-square, batched or empty ``Q``; a non-symmetric ``Q`` (``triangle="full"``) or entries on the wrong side
        (``"lower"``/``"upper"``); a missing diagonal entry; NaN/Inf values; an unknown ordering.
    TypeError
        Dense or non-floating ``Q``.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.cholesky import cholesky
    >>> Q = torch.tensor([[4.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 4.0]], dtype=torch.float64)
    >>> factor = cholesky(Q.to_sparse_csr())
    >>> factor.logdet(), torch.logdet(Q)
    (tensor(4.0254, dtype=torch.float64), tensor(4.0254, dtype=torch.float64))
    >>> factor.solve(torch.ones(3, dtype=torch.float64))
    tensor([0.3571, 0.4286, 0.3571], dtype=torch.float64)
    """
    Q = check_symmetric_input(Q, triangle)
    chosen = get_backend(backend)
    ordering = chosen.default_ordering if ordering is None else ordering
    if ordering not in chosen.orderings:
        raise ValueError(f"ordering must be one of {chosen.orderings} for backend {chosen.name!r}, got {ordering!r}")
    pattern, structure = lower_structure(Q, triangle)
    values = lower_values(Q, pattern, structure)
    cache = pattern.__dict__.setdefault("_cholesky_symbolic", {})
    key = (chosen.name, ordering, triangle)
    with _LOCK:
        symbolic = cache.get(key)
    if symbolic is None:
        symbolic = chosen.analyze(structure, ordering)
        with _LOCK:
            cache[key] = symbolic
            _COUNT["analyses"] += 1
    numeric = chosen.factorize(symbolic, structure, values)
    factor = CholeskyFactor(numeric, Q.shape[0], Q.dtype, Q.device, chosen.name, ordering)
    factor._pattern_cache = (cache, key)
    return factor

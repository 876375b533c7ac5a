"""Pattern-derived index data of a sparse matrix, computed once per sparsity pattern and cached.

Every op works on one *kernel matrix*: a single CSR matrix with sorted, unique column indices per row. A batched input
``(b, n, m)`` becomes the block-diagonal CSR matrix of shape ``(b n, b m)``; its index arrays are built once per
pattern and reused on every call, so batching costs one kernel call and no per-call index work. A block-diagonal
triangular matrix is triangular, so the same holds for triangular solves.

For a COO input the kernel ordering is the coalesced (row-major) ordering. A coalesced COO input is already in that
order; an uncoalesced one is summed into it with ``index_add`` through a cached inverse map (duplicates are summed, as
torch does), and its gradient is returned on the coalesced indices, whose values are ``dL/dA_ij`` for each stored
``(i, j)``, so the gradient flows back to each duplicate value unchanged.

The cache
---------
:func:`pattern_of` keys patterns by layout, shape, device, index dtypes and number of stored entries. Among the entries
with the same key, the index tensors are compared first by identity (same data pointer, same version counter: the
cache holds a reference to the tensors it saw, so their memory cannot be reused by another tensor while cached, and
an in-place change through the sparse tensor's own index tensors bumps the version and drops the stale entry) and then
by value with ``torch.equal`` (O(nnz), far cheaper than a sort). A
training loop that rebuilds ``torch.sparse_coo_tensor(indices, values)`` every step, or even calls ``.coalesce()``
every step, therefore pays the COO->CSR conversion once. A pattern is checked when it is built, before any index
work (:func:`sparseprec._validation.check_sparse_indices`: index ranges and signs, CSR row pointers, sorted unique
columns within each row, the order of a coalesced COO tensor), so a cache hit costs no check and an invalid pattern
raises ``ValueError`` and is never cached. The cache keeps the :data:`CACHE_SIZE` most recently used
patterns; :func:`clear_pattern_cache` empties it.

Index tensors are treated as immutable once an op has seen them, as torch itself does (it checks sparse invariants only
at construction). torch gives the index tensor inside a sparse tensor a version counter of its own, so a write into
the *source* tensor that ``torch.sparse_coo_tensor(indices, ...)`` was built from is not seen: after such a write, call
:func:`clear_pattern_cache`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from .._validation import check_sparse_indices

__all__ = ["SparsePattern", "pattern_of", "clear_pattern_cache", "same_memory", "CACHE_SIZE"]

CACHE_SIZE = 64


def same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` and ``b`` view the same memory the same way (same data pointer, shape and strides)."""
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()


def _rows_from_crow(crow: torch.Tensor, nnz: int) -> torch.Tensor:
    counts = crow[1:] - crow[:-1]
    return torch.repeat_interleave(torch.arange(counts.numel(), device=crow.device), counts.long(), output_size=nnz)


def _crow_from_sorted_rows(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    torch.cumsum(torch.bincount(rows, minlength=n_rows), 0, out=crow[1:])
    return crow


class SparsePattern:
    """Index data of one sparsity pattern, in the kernel (block-diagonal CSR) ordering.

    Attributes
    ----------
    layout : torch.layout
        Layout of the inputs this pattern was built from (``torch.sparse_coo`` or ``torch.sparse_csr``).
    shape : tuple of int
        Shape of those inputs, ``(n, m)`` or ``(b, n, m)``.
    crow, col : torch.Tensor
        Row pointers ``(N + 1,)`` and column indices ``(nnz,)`` of the kernel matrix, ``N = b n``.
    row : torch.Tensor
        Row index of every kernel entry, ``(nnz,)``.

    The three index arrays are int32 when sizes allow, else int64.

    Build it through :func:`pattern_of`, which checks ``A``'s index data first (the constructor trusts it).
    """

    def __init__(self, A: torch.Tensor):
        self.layout = A.layout
        self.shape = tuple(A.shape)
        self.device = A.device
        batch = A.shape[0] if A.dim() == 3 else 1
        n, m = A.shape[-2], A.shape[-1]
        self.n_rows, self.n_cols = batch * n, batch * m
        self.inverse: torch.Tensor | None = None  # uncoalesced COO entry -> kernel entry
        self.coo_grad_indices: torch.Tensor | None = None
        if A.layout == torch.sparse_csr:
            self._from_csr(A, batch, n, m)
        else:
            self._from_coo(A, batch, n, m)
        self.nnz = self.col.numel()
        # Kernels get int32 indices where they fit: torch's MKL path converts int64 CSR indices to int32 on every call,
        # index_select gathers faster with them, and the cache holds half the bytes.
        fits = max(self.n_rows, self.n_cols, self.nnz) < 2**31 - 1
        self._index_dtype = torch.int32 if fits else torch.int64
        self.crow, self.col, self.row = (t.to(self._index_dtype) for t in (self.crow, self.col, self.row))
        self._transpose: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._diagonal: torch.Tensor | None = None  # kernel positions of the diagonal entries, once checked
        self._checked: set[tuple[bool, bool]] = set()

    def _from_csr(self, A: torch.Tensor, batch: int, n: int, m: int) -> None:
        crow, col = A.crow_indices(), A.col_indices()
        if A.dim() == 2:
            self.crow, self.col = crow, col
        else:
            nnz_b = col.shape[-1]
            offsets = torch.arange(batch, device=crow.device, dtype=torch.int64)
            flat = (crow[:, 1:].long() + (offsets * nnz_b)[:, None]).reshape(-1)
            self.crow = torch.cat([flat.new_zeros(1), flat])
            self.col = (col.long() + (offsets * m)[:, None]).reshape(-1)
        self.row = _rows_from_crow(self.crow, self.col.numel())

    def _from_coo(self, A: torch.Tensor, batch: int, n: int, m: int) -> None:
        idx = A._indices()
        if A.dim() == 2:
            rows, cols = idx[0], idx[1]
        else:
            rows, cols = idx[0] * n + idx[1], idx[0] * m + idx[2]
        if not A.is_coalesced():
            key = rows * self.n_cols + cols
            unique, self.inverse = torch.unique(key, sorted=True, return_inverse=True)
            rows, cols = unique // self.n_cols, unique % self.n_cols
            if A.dim() == 2:
                self.coo_grad_indices = torch.stack([rows, cols])
            else:
                b_idx = rows // n
                self.coo_grad_indices = torch.stack([b_idx, rows % n, cols % m])
        self.row, self.col = rows, cols
        self.crow = _crow_from_sorted_rows(rows, self.n_rows)

    # ---- values ---------------------------------------------------------------------------------------------------
    def kernel_values(self, A: torch.Tensor) -> torch.Tensor:
        """Values of ``A`` in kernel order, ``(nnz,)`` (duplicates of an uncoalesced COO input summed)."""
        return self.to_kernel_order(A.values() if self.layout == torch.sparse_csr else A._values())

    def to_kernel_order(self, values: torch.Tensor) -> torch.Tensor:
        """A tensor's stored values as it holds them (``(b, nnz)`` for a batched CSR tensor; each duplicate of an
        uncoalesced COO tensor separately) in kernel order, ``(nnz,)``, duplicates summed; differentiable."""
        if self.layout == torch.sparse_csr:
            return values.reshape(-1)
        if self.inverse is None:
            return values
        return values.new_zeros(self.nnz).index_add(0, self.inverse, values)

    def kernel_matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The kernel CSR matrix ``(N, M)`` with the given kernel-ordered values."""
        return torch.sparse_csr_tensor(self.crow, self.col, values, (self.n_rows, self.n_cols), check_invariants=False)

    def transposed_kernel_matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The CSR matrix of the kernel's transpose ``(M, N)``; its index data is built on first use and cached."""
        if self._transpose is None:
            col = self.col.long()
            perm = torch.argsort(col, stable=True)
            crow_t = _crow_from_sorted_rows(col[perm], self.n_cols).to(self._index_dtype)
            self._transpose = (crow_t, self.row[perm], perm)
        crow_t, col_t, perm = self._transpose
        return torch.sparse_csr_tensor(crow_t, col_t, values[perm], (self.n_cols, self.n_rows), check_invariants=False)

    def gradient_like(self, A: torch.Tensor, kernel_grad: torch.Tensor) -> torch.Tensor:
        """Wrap kernel-ordered gradient values as a sparse tensor with ``A``'s layout and indices.

        For an uncoalesced COO ``A`` the indices are ``A``'s coalesced indices (see the module docstring).
        """
        if self.layout == torch.sparse_csr:
            values = kernel_grad.reshape(A.values().shape)
            return torch.sparse_csr_tensor(A.crow_indices(), A.col_indices(), values, A.shape, check_invariants=False)
        indices = A._indices() if self.coo_grad_indices is None else self.coo_grad_indices
        return torch.sparse_coo_tensor(indices, kernel_grad, A.shape, is_coalesced=True, check_invariants=False)

    # ---- triangular structure ---------------------------------------------------------------------------------------
    def _entry_location(self, k: int) -> str:
        n = self.shape[-2]
        r, c = int(self.row[k]), int(self.col[k])
        if len(self.shape) == 2:
            return f"({r}, {c})"
        m = self.shape[-1]
        return f"({r // n}, {r % n}, {c % m}) [batch, row, column]"

    def _row_location(self, r: int) -> str:
        n = self.shape[-2]
        return f"row {r}" if len(self.shape) == 2 else f"batch {r // n}, row {r % n}"

    def check_triangular(self, upper: bool, unitriangular: bool, name: str) -> None:
        """Check (once per pattern) that the stored entries fit ``upper``/``unitriangular``, else ``ValueError``."""
        if (upper, unitriangular) in self._checked:
            return
        wrong_side = self.row > self.col if upper else self.row < self.col
        bad = torch.nonzero(wrong_side)
        if bad.numel():
            side = "below" if upper else "above"
            raise ValueError(
                f"{name} was declared {'upper' if upper else 'lower'} triangular (upper={upper}) but stores "
                f"{bad.shape[0]} entries {side} the diagonal, e.g. at {self._entry_location(int(bad[0, 0]))}"
            )
        on_diag = self.row == self.col
        if unitriangular:
            diag = torch.nonzero(on_diag)
            if diag.numel():
                raise ValueError(
                    f"{name} stores {diag.shape[0]} diagonal entries (e.g. at {self._entry_location(int(diag[0, 0]))}) "
                    "but unitriangular=True: the stored pattern must be strictly triangular (the unit diagonal is "
                    "implied); drop the diagonal or pass unitriangular=False"
                )
        else:
            positions = torch.nonzero(on_diag).reshape(-1)
            if positions.numel() != self.n_rows:
                has = torch.zeros(self.n_rows, dtype=torch.bool, device=self.device)
                has[self.row[positions].long()] = True
                r = int(torch.nonzero(~has)[0, 0])
                raise ValueError(
                    f"{name} has no stored diagonal entry in {self._row_location(r)}: a triangular matrix with a "
                    "missing diagonal is singular (pass unitriangular=True if the diagonal is an implied 1)"
                )
            self._diagonal = positions
        self._checked.add((upper, unitriangular))

    def diagonal_positions(self) -> torch.Tensor:
        """Kernel positions of the diagonal entries, row by row, ``(N,)`` (after a non-unit triangular check)."""
        if self._diagonal is None:
            raise RuntimeError("diagonal_positions() needs a passed check_triangular(..., unitriangular=False) first")
        return self._diagonal

    def raise_if_zero_diagonal(self, values: torch.Tensor, name: str) -> None:
        """Raise ``ValueError`` naming the first row whose stored diagonal value is exactly zero."""
        if self._diagonal is None:
            return
        zero = torch.nonzero(values[self._diagonal] == 0)
        if zero.numel():
            r = int(self.row[self._diagonal[zero[0, 0]]])
            raise ValueError(f"{name} has a zero on the diagonal in {self._row_location(r)}: the matrix is singular")


class _PatternCache:
    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[int, tuple[tuple, tuple[torch.Tensor, ...], tuple[int, ...], SparsePattern]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self._next = 0

    @staticmethod
    def _indices(A: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if A.layout == torch.sparse_csr:
            return (A.crow_indices(), A.col_indices())
        return (A._indices(),)

    def get(self, A: torch.Tensor, name: str) -> SparsePattern:
        indices = self._indices(A)
        meta = (
            A.layout,
            tuple(A.shape),
            A.device,
            tuple(t.dtype for t in indices),
            tuple(t.shape for t in indices),
            A.layout == torch.sparse_coo and A.is_coalesced(),
        )
        versions = tuple(t._version for t in indices)
        with self._lock:
            candidates = []
            for key, (entry_meta, seen, seen_versions, pattern) in list(self._entries.items()):
                if entry_meta != meta:
                    continue
                identical = all(same_memory(s, t) for s, t in zip(seen, indices, strict=True))
                if identical and seen_versions == versions:
                    self._entries.move_to_end(key)
                    return pattern
                if identical:  # written in place since: the cached pattern is stale
                    del self._entries[key]
                else:
                    candidates.append((key, seen, pattern))
            for key, seen, pattern in candidates:
                if all(torch.equal(s, t) for s, t in zip(seen, indices, strict=True)):
                    # same pattern held in new tensors: remember the new ones for the identity check next time
                    self._entries[key] = (meta, indices, versions, pattern)
                    self._entries.move_to_end(key)
                    return pattern
        # A miss: check the indices before any index work (a bad pattern must neither crash a conversion nor be cached).
        check_sparse_indices(A, name)
        pattern = SparsePattern(A)
        with self._lock:
            self._entries[self._next] = (meta, indices, versions, pattern)
            self._next += 1
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return pattern

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_CACHE = _PatternCache(CACHE_SIZE)


def pattern_of(A: torch.Tensor, name: str = "A") -> SparsePattern:
    """The (cached) :class:`SparsePattern` of a sparse COO/CSR matrix ``A`` that passed ``check_sparse_matrix``.

    On a cache miss the index data is checked first (:func:`sparseprec._validation.check_sparse_indices`: ranges,
    signs, CSR row pointers, sorted unique columns per row, coalesced order); a hit costs no check.

    Parameters
    ----------
    A : torch.Tensor
        Sparse COO or CSR matrix ``(n, m)`` or ``(b, n, m)``.
    name : str, optional
        The argument's name in error messages (default ``"A"``).

    Raises
    ------
    TypeError, ValueError
        Invalid index data, naming ``name``, the offending entry's position and value and the allowed range.
    """
    return _CACHE.get(A, name)


def clear_pattern_cache() -> None:
    """Forget every cached sparsity pattern (frees the index data the cache holds).

    Examples
    --------
    >>> import sparseprec
    >>> sparseprec.ops.clear_pattern_cache()
    """
    _CACHE.clear()

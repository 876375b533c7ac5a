"""The sparsity pattern: index data of a sparse matrix, and every cache derived from it (the base layer).

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
by value with ``torch.equal`` (O(nnz), far cheaper than a sort). A training loop that rebuilds
``torch.sparse_coo_tensor(indices, values)`` every step, or even calls ``.coalesce()`` every step, therefore pays the
COO->CSR conversion once. A pattern is checked when it is built, before any index work
(:func:`sparseprec._validation.check_sparse_indices`: index ranges and signs, CSR row pointers, sorted unique columns
within each row, the order of a coalesced COO tensor), so a cache hit costs no check and an invalid pattern raises
``ValueError`` and is never cached.

Everything the library derives from a pattern alone (transposes, Cholesky symbolic analyses and elimination
structures, selected-inverse block structures, Gram and union patterns of conditioning, product pairs of a factor)
is stored on the pattern through :meth:`SparsePattern.derived`, under the cache's one lock, and counted in bytes. The
cache keeps the most recently used patterns while their index data and derived data together stay within a byte
budget (:func:`set_cache_limits`, default 1 GiB and 1024 patterns); :func:`cache_info` reports hits, misses,
symbolic analyses and bytes, like :func:`functools.lru_cache`'s ``cache_info``; :func:`clear_caches` empties it.
Data derived from something other than a sparse tensor (the finite-element matrices of a lattice, say) is kept the
same way by :func:`shared_derived`.

Index tensors are treated as immutable once an op has seen them, as torch itself does (it checks sparse invariants only
at construction). torch gives the index tensor inside a sparse tensor a version counter of its own, so a write into
the *source* tensor that ``torch.sparse_coo_tensor(indices, ...)`` was built from is not seen: after such a write, call
:func:`clear_caches`.

This module imports nothing from the rest of the library but its argument checks: every layer may use it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import NamedTuple, TypeVar

import numpy as np
import torch

from ._validation import check_sparse_indices

__all__ = [
    "SparsePattern",
    "Assembly",
    "CacheInfo",
    "pattern_of",
    "cache_info",
    "clear_caches",
    "set_cache_limits",
    "shared_derived",
    "note_symbolic_analysis",
    "rows_from_crow",
    "crow_from_rows",
    "same_memory",
]

T = TypeVar("T")


def same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` and ``b`` view the same memory the same way (same data pointer, shape and strides)."""
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()


def rows_from_crow(crow: torch.Tensor, nnz: int) -> torch.Tensor:
    """The row of every stored entry of a CSR matrix, int64 ``(nnz,)``, from its row pointers ``crow`` ``(n + 1,)``.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.pattern import rows_from_crow
    >>> rows_from_crow(torch.tensor([0, 2, 2, 3]), 3)
    tensor([0, 0, 2])
    """
    counts = crow[1:] - crow[:-1]
    return torch.repeat_interleave(torch.arange(counts.numel(), device=crow.device), counts.long(), output_size=nnz)


def crow_from_rows(rows: torch.Tensor | np.ndarray, n_rows: int) -> torch.Tensor:
    """CSR row pointers ``(n_rows + 1,)`` (int64, on ``rows``' device) of entries with sorted row indices ``rows``.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.pattern import crow_from_rows
    >>> crow_from_rows(torch.tensor([0, 0, 2]), 3)
    tensor([0, 2, 2, 3])
    """
    rows = torch.as_tensor(rows).long()
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    torch.cumsum(torch.bincount(rows, minlength=n_rows), 0, out=crow[1:])
    return crow


class Assembly:
    r"""Index pairs ``(rows[k], cols[k])`` of an ``(n_rows, n_cols)`` matrix merged into sorted unique CSR order.

    The one home of "sort the keys, sum the duplicates": :meth:`sum` maps values given per input pair to the merged
    entries, :math:`v'_e = \sum_{k \mapsto e} v_k`, with ``index_add`` (differentiable w.r.t. the
    values, batched over leading dimensions). Builders of precisions, conditioning, factors and the variational
    distribution assemble their matrices with it.

    Parameters
    ----------
    rows, cols : torch.Tensor or numpy.ndarray
        Integer positions, one per input pair, duplicates allowed.
    n_rows, n_cols : int
        The matrix's shape.

    Attributes
    ----------
    row, col : torch.Tensor
        int64 ``(nnz,)``: the merged entries in row-major order.
    crow : torch.Tensor
        int64 ``(n_rows + 1,)``: their CSR row pointers.
    inverse : torch.Tensor
        int64 ``(len(rows),)``: the merged entry of every input pair.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.pattern import Assembly
    >>> a = Assembly(torch.tensor([1, 0, 1]), torch.tensor([0, 1, 0]), 2, 2)
    >>> a.row, a.col, a.sum(torch.tensor([1.0, 2.0, 3.0]))
    (tensor([0, 1]), tensor([1, 0]), tensor([2., 4.]))
    """

    def __init__(self, rows: torch.Tensor | np.ndarray, cols: torch.Tensor | np.ndarray, n_rows: int, n_cols: int):
        rows, cols = torch.as_tensor(rows).long(), torch.as_tensor(cols).long()
        self.n_rows, self.n_cols = n_rows, n_cols
        keys, self.inverse = torch.unique(rows * n_cols + cols, sorted=True, return_inverse=True)
        self.inverse = self.inverse.reshape(-1)
        self.nnz = keys.numel()
        self.row = keys // max(n_cols, 1)
        self.col = keys % max(n_cols, 1)
        self.crow = crow_from_rows(self.row, n_rows)
        self._devices: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(crow, col, inverse)`` on ``device`` (copied once per device)."""
        device = torch.device(device)
        if device not in self._devices:
            self._devices[device] = tuple(t.to(device) for t in (self.crow, self.col, self.inverse))
        return self._devices[device]

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Values ``(..., len(rows))`` per input pair summed into the merged entries, ``(..., nnz)``."""
        inverse = self.on(values.device)[2]
        return values.new_zeros(values.shape[:-1] + (self.nnz,)).index_add(-1, inverse, values)


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
        self._diagonal: torch.Tensor | None = None  # kernel positions of the diagonal entries, once checked
        self._checked: set[tuple[bool, bool]] = set()
        self._derived: dict[Hashable, object] = {}
        indices = (self.crow, self.col, self.row, self.inverse, self.coo_grad_indices)
        self.index_nbytes = sum(nbytes(t) for t in indices)  # what the pattern holds without derived data
        self.nbytes = self.index_nbytes

    def derived(self, key: Hashable, build: Callable[[], T]) -> T:
        """Data derived from this pattern alone, built by ``build()`` on first use and kept with the pattern.

        Built and stored under the cache's lock (``build`` may itself call :func:`pattern_of`); its bytes count
        towards the cache's budget, and it is dropped with the pattern when the pattern is evicted or
        :func:`clear_caches` runs. ``key`` names the kind of data and its options, e.g.
        ``("cholesky_symbolic", backend, ordering)``.
        """
        return _CACHE.derived(self, key, build)

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
        self.row = rows_from_crow(self.crow, self.col.numel())

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
        self.crow = crow_from_rows(rows, self.n_rows)

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
        crow_t, col_t, perm = self.derived("transpose", self._build_transpose)
        values_t = values.index_select(0, perm)  # (index_select gathers 3x faster than values[perm])
        return torch.sparse_csr_tensor(crow_t, col_t, values_t, (self.n_cols, self.n_rows), check_invariants=False)

    def _build_transpose(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        col = self.col.long()
        perm = torch.argsort(col, stable=True)
        crow_t = crow_from_rows(col[perm], self.n_cols).to(self._index_dtype)
        return crow_t, self.row[perm], perm

    def on_diagonal(self) -> torch.Tensor:
        """Boolean ``(nnz,)``: which kernel entries lie on the diagonal (cached)."""
        return self.derived("on_diagonal", lambda: self.row == self.col)

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
        zero = torch.nonzero(values.index_select(0, self._diagonal) == 0)
        if zero.numel():
            r = int(self.row[self._diagonal[zero[0, 0]]])
            raise ValueError(f"{name} has a zero on the diagonal in {self._row_location(r)}: the matrix is singular")


def nbytes(value: object, _seen: set[int] | None = None) -> int:
    """Bytes held by tensors and arrays inside ``value`` (tuples, lists, dicts, objects' attributes), each counted
    once."""
    seen = set() if _seen is None else _seen
    if value is None or isinstance(value, (bool, int, float, str, torch.device, torch.dtype)) or id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            return 0  # a sparse tensor's index tensors are counted where they are held separately
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(nbytes(v, seen) for v in value.values())
    if isinstance(value, (tuple, list, set, frozenset)):
        return sum(nbytes(v, seen) for v in value)
    attributes = getattr(value, "__dict__", None)
    if attributes is None and hasattr(value, "__slots__"):
        attributes = {k: getattr(value, k, None) for k in value.__slots__}
    return sum(nbytes(v, seen) for v in (attributes or {}).values())


class CacheInfo(NamedTuple):
    """What :func:`cache_info` reports."""

    hits: int
    """Sparse tensors whose pattern was found in the cache."""
    misses: int
    """Sparse tensors whose pattern was checked and built."""
    patterns: int
    """Patterns held now."""
    derived: int
    """Pieces of derived data held now (on the held patterns, and by :func:`shared_derived`)."""
    symbolic_analyses: int
    """Cholesky symbolic analyses (fill-reducing orderings) run by this process."""
    bytes: int
    """Bytes held now: the patterns' index data and all derived data."""
    max_bytes: int
    """The byte budget (:func:`set_cache_limits`)."""
    max_patterns: int
    """The bound on the number of patterns (:func:`set_cache_limits`)."""


class _PatternCache:
    def __init__(self, max_bytes: int, max_patterns: int):
        self.max_bytes, self.max_patterns = max_bytes, max_patterns
        self._entries: OrderedDict[int, tuple[tuple, tuple[torch.Tensor, ...], tuple[int, ...], SparsePattern]] = (
            OrderedDict()
        )
        # (meta, data pointers of the index tensors) -> entry key: a hit on the very same index memory is one lookup,
        # whatever the number of cached patterns (the loop over entries is for new memory holding a known pattern)
        self._by_memory: dict[tuple, int] = {}
        self._memory_of: dict[int, tuple] = {}
        self._shared = SparsePattern.__new__(SparsePattern)  # holder of data not derived from a sparse tensor
        self._shared._derived, self._shared.nbytes = {}, 0
        self._lock = threading.RLock()
        self._next = 0
        self.hits = self.misses = self.analyses = 0
        self.bytes = 0

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
        memory = (meta, tuple(t.data_ptr() for t in indices))
        with self._lock:
            key = self._by_memory.get(memory)
            if key is not None and key in self._entries:
                _, seen, seen_versions, pattern = self._entries[key]
                if all(same_memory(s, t) for s, t in zip(seen, indices, strict=True)):
                    if seen_versions == versions:
                        self._entries.move_to_end(key)
                        self.hits += 1
                        return pattern
                    self._drop(key)  # written in place since: the cached pattern is stale
            candidates = []
            for key, (entry_meta, seen, seen_versions, pattern) in list(self._entries.items()):
                if entry_meta != meta:
                    continue
                identical = all(same_memory(s, t) for s, t in zip(seen, indices, strict=True))
                if identical and seen_versions == versions:
                    self._entries.move_to_end(key)
                    self._remember(key, memory)
                    self.hits += 1
                    return pattern
                if identical:  # written in place since: the cached pattern is stale
                    self._drop(key)
                else:
                    candidates.append((key, seen, pattern))
            for key, seen, pattern in candidates:
                if all(torch.equal(s, t) for s, t in zip(seen, indices, strict=True)):
                    # same pattern held in new tensors: remember the new ones for the identity check next time
                    self._entries[key] = (meta, indices, versions, pattern)
                    self._entries.move_to_end(key)
                    self._remember(key, memory)
                    self.hits += 1
                    return pattern
        # A miss: check the indices before any index work (a bad pattern must neither crash a conversion nor be cached).
        check_sparse_indices(A, name)
        pattern = SparsePattern(A)
        with self._lock:
            self.misses += 1
            self._entries[self._next] = (meta, indices, versions, pattern)
            self._remember(self._next, memory)
            self._next += 1
            self.bytes += pattern.nbytes
            self._evict(keep=pattern)
        return pattern

    def derived(self, pattern: SparsePattern, key: Hashable, build: Callable[[], T]) -> T:
        with self._lock:
            try:
                return pattern._derived[key]  # type: ignore[return-value]
            except KeyError:
                pass
            value = build()
            pattern._derived[key] = value
            size = nbytes(value)
            pattern.nbytes += size
            if pattern is self._shared or any(entry[3] is pattern for entry in self._entries.values()):
                self.bytes += size
                self._evict(keep=pattern)
            return value

    def _remember(self, key: int, memory: tuple) -> None:
        """Map the index memory ``memory`` to entry ``key`` (replacing the entry's previous memory)."""
        previous = self._memory_of.pop(key, None)
        if previous is not None and self._by_memory.get(previous) == key:
            del self._by_memory[previous]
        self._by_memory[memory] = key
        self._memory_of[key] = memory

    def _drop(self, key: int) -> None:
        memory = self._memory_of.pop(key, None)
        if memory is not None and self._by_memory.get(memory) == key:
            del self._by_memory[memory]
        pattern = self._entries.pop(key)[3]
        self.bytes -= pattern.nbytes
        # A pattern still referenced elsewhere keeps working; its derived data is rebuilt on demand.
        pattern._derived = {}
        pattern.nbytes = pattern.index_nbytes

    def _evict(self, keep: SparsePattern) -> None:
        while self._entries and (self.bytes > self.max_bytes or len(self._entries) > self.max_patterns):
            key, entry = next(iter(self._entries.items()))
            if entry[3] is keep:
                if len(self._entries) == 1:
                    break
                self._entries.move_to_end(key)
                continue
            self._drop(key)

    def clear(self) -> None:
        with self._lock:
            for key in list(self._entries):
                self._drop(key)
            self._shared._derived, self._shared.nbytes = {}, 0
            self.bytes = 0

    def info(self) -> CacheInfo:
        with self._lock:
            derived = sum(len(entry[3]._derived) for entry in self._entries.values()) + len(self._shared._derived)
            return CacheInfo(
                self.hits, self.misses, len(self._entries), derived, self.analyses, self.bytes, self.max_bytes,
                self.max_patterns,
            )  # fmt: skip

    def __len__(self) -> int:
        return len(self._entries)


_CACHE = _PatternCache(max_bytes=2**30, max_patterns=1024)


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

    Examples
    --------
    >>> import torch
    >>> from sparseprec.pattern import pattern_of
    >>> A = torch.tensor([[2.0, 0.0], [1.0, 3.0]]).to_sparse_csr()
    >>> p = pattern_of(A)
    >>> p.row, p.col, pattern_of(A) is p
    (tensor([0, 1, 1], dtype=torch.int32), tensor([0, 0, 1], dtype=torch.int32), True)
    """
    return _CACHE.get(A, name)


def shared_derived(key: Hashable, build: Callable[[], T]) -> T:
    """Data derived from something other than a sparse tensor (e.g. a lattice's shape), kept like a pattern's
    derived data: built once under the cache's lock, counted in :func:`cache_info`, dropped by :func:`clear_caches`.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.pattern import shared_derived
    >>> shared_derived(("doctest", 3), lambda: torch.arange(3))
    tensor([0, 1, 2])
    """
    return _CACHE.derived(_CACHE._shared, key, build)


def note_symbolic_analysis() -> None:
    """Count one symbolic analysis in :func:`cache_info` (called by the Cholesky layer when it orders a new pattern).

    Examples
    --------
    >>> from sparseprec.pattern import cache_info, note_symbolic_analysis
    >>> before = cache_info().symbolic_analyses
    >>> note_symbolic_analysis()
    >>> cache_info().symbolic_analyses - before
    1
    """
    with _CACHE._lock:
        _CACHE.analyses += 1


def cache_info() -> CacheInfo:
    """Statistics of the pattern cache: hits, misses, patterns and derived data held, symbolic analyses, bytes.

    Examples
    --------
    >>> import torch
    >>> import sparseprec
    >>> sparseprec.clear_caches()  # forget the patterns seen so far (the counters go on counting)
    >>> before = sparseprec.cache_info()
    >>> A = torch.tensor([[2.0, 0.0], [1.0, 3.0]]).to_sparse_csr()
    >>> _ = sparseprec.sparse_mm(A, torch.ones(2, 1)); _ = sparseprec.sparse_mm(A * 2, torch.ones(2, 1))
    >>> after = sparseprec.cache_info()
    >>> after.misses - before.misses, after.hits - before.hits  # one pattern built, then found again
    (1, 1)
    """
    return _CACHE.info()


def clear_caches() -> None:
    """Forget every cached pattern and all data derived from patterns (symbolic analyses, selected-inverse structures,
    lattice matrices); the counters of :func:`cache_info` keep counting.

    Examples
    --------
    >>> import sparseprec
    >>> sparseprec.clear_caches()
    >>> sparseprec.cache_info().bytes
    0
    """
    _CACHE.clear()


def set_cache_limits(max_bytes: int | None = None, max_patterns: int | None = None) -> tuple[int, int]:
    """Bound the cache by bytes (index data plus derived data) and by number of patterns; least recently used
    patterns are evicted first (the one in use is kept even when it alone exceeds the budget). Returns the previous
    ``(max_bytes, max_patterns)``; ``None`` leaves a limit as it is.

    Raises
    ------
    TypeError, ValueError
        A limit that is not a non-negative ``int``.

    Examples
    --------
    >>> from sparseprec.pattern import set_cache_limits
    >>> previous = set_cache_limits(max_bytes=2**28)
    >>> _ = set_cache_limits(*previous)
    """
    for name, value in (("max_bytes", max_bytes), ("max_patterns", max_patterns)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int or None, got {type(value).__name__} {value!r}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    with _CACHE._lock:
        previous = (_CACHE.max_bytes, _CACHE.max_patterns)
        if max_bytes is not None:
            _CACHE.max_bytes = max_bytes
        if max_patterns is not None:
            _CACHE.max_patterns = max_patterns
        _CACHE._evict(keep=None)  # type: ignore[arg-type]
    return previous

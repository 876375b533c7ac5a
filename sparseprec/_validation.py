"""Small argument checks shared by every layer.

Each check raises ``TypeError`` (wrong kind of object, layout or dtype) or ``ValueError`` (wrong shape, size, device or
contents) with a message that names the argument, what was expected and what was given. Checks are plain ``if``
statements, never ``assert``, so they survive ``python -O``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "SPARSE_LAYOUTS",
    "FLOAT_DTYPES",
    "describe",
    "check_tensor",
    "check_sparse_matrix",
    "check_sparse_indices",
    "check_dense",
    "check_same_dtype_device",
    "check_flag",
]

SPARSE_LAYOUTS = (torch.sparse_coo, torch.sparse_csr)
FLOAT_DTYPES = (torch.float32, torch.float64)

_LAYOUT_NAMES = {
    torch.strided: "dense (strided)",
    torch.sparse_coo: "sparse COO",
    torch.sparse_csr: "sparse CSR",
    torch.sparse_csc: "sparse CSC",
    torch.sparse_bsr: "sparse BSR",
    torch.sparse_bsc: "sparse BSC",
}


def describe(x: torch.Tensor) -> str:
    """One-line description of a tensor for error messages: layout, shape, dtype and device."""
    layout = _LAYOUT_NAMES.get(x.layout, str(x.layout))
    return f"{layout} tensor of shape {tuple(x.shape)}, dtype {x.dtype}, device {x.device}"


def check_tensor(x: object, name: str) -> torch.Tensor:
    """Raise ``TypeError`` unless ``x`` is a ``torch.Tensor``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_sparse_matrix(A: object, name: str, *, square: bool = False) -> torch.Tensor:
    """Check that ``A`` is a sparse COO/CSR floating-point matrix of shape ``(n, m)`` or ``(b, n, m)``.

    Hybrid tensors (dense trailing dimensions) are refused: their values are not one number per stored entry.
    """
    check_tensor(A, name)
    if A.layout not in SPARSE_LAYOUTS:
        raise TypeError(f"{name} must be a sparse COO or CSR tensor, got a {describe(A)}")
    if A.dim() not in (2, 3):
        raise ValueError(f"{name} must have shape (n, m) or (b, n, m), got shape {tuple(A.shape)}")
    if A.dense_dim() != 0:
        raise ValueError(
            f"{name} must store one scalar per entry (dense_dim 0), got a hybrid tensor with dense_dim "
            f"{A.dense_dim()} and shape {tuple(A.shape)}"
        )
    if A.layout == torch.sparse_coo and A.sparse_dim() != A.dim():
        raise ValueError(f"{name} must have all dimensions sparse, got sparse_dim {A.sparse_dim()} of {A.dim()}")
    if A.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype torch.float32 or torch.float64, got {A.dtype}")
    if square and A.shape[-1] != A.shape[-2]:
        raise ValueError(f"{name} must be square, got shape {tuple(A.shape)}")
    if A.layout == torch.sparse_csr:
        with torch.no_grad():  # (values() of a CSR tensor that requires grad would record a dense-backward node)
            values_shape = A.values().shape
        if values_shape != A.col_indices().shape:
            raise ValueError(
                f"{name} must store one value per column index, got values of shape {tuple(values_shape)} and "
                f"col_indices of shape {tuple(A.col_indices().shape)}"
            )
    return A


def _position(batched: bool, b: int, k: int) -> str:
    return f"[{b}, {k}]" if batched else f"[{k}]"


def _first(mask: torch.Tensor) -> tuple[int, ...]:
    """Position of the first ``True`` of ``mask`` (row-major), as a tuple of ints."""
    return tuple(int(i) for i in torch.nonzero(mask)[0])


def check_sparse_indices(A: torch.Tensor, name: str) -> None:
    """Check the index data of a sparse COO/CSR matrix ``A`` (one that passed :func:`check_sparse_matrix`).

    torch checks none of this unless asked (``check_invariants=False`` is its default), and a kernel given bad
    indices silently drops or misplaces entries, or crashes with an unrelated message. Checked here:

    - CSR: ``crow_indices`` and ``col_indices`` of one dtype; ``crow_indices`` of shape ``(*batch, n + 1)``
      starting at 0, non-decreasing and ending at ``nnz = col_indices.shape[-1]`` (in every batch);
      ``col_indices`` of shape ``(*batch, nnz)`` with values in ``[0, m)`` and **strictly increasing within each
      row** (sorted and unique: torch's own CSR invariant, which every kernel here assumes).
    - COO: every index in ``[0, size)`` of its dimension (so no negatives); for a tensor marked coalesced, entries
      strictly increasing in row-major order (sorted and unique, torch's meaning of coalesced). An uncoalesced COO
      tensor may hold duplicates, in any order (they are summed).

    Vectorised: O(nnz + n) work and one host synchronisation when the indices are valid; the offending entry is located
    only when raising. :func:`sparseprec.ops._pattern.pattern_of` runs it once per sparsity pattern (on a cache miss),
    before any index work, so a bad pattern is never cached.

    Raises
    ------
    TypeError
        CSR row pointers and column indices of different dtypes.
    ValueError
        Index arrays of the wrong shape, or an index entry that breaks a rule above; the message names ``name``, the
        entry's position and value, and the allowed range.
    """
    if A.layout == torch.sparse_csr:
        _check_csr_indices(A, name)
    else:
        _check_coo_indices(A, name)


def _check_csr_indices(A: torch.Tensor, name: str) -> None:
    crow, col = A.crow_indices(), A.col_indices()
    shape = tuple(A.shape)
    batch, (n, m) = shape[:-2], shape[-2:]
    if crow.dtype != col.dtype:
        raise TypeError(
            f"{name} must have crow_indices and col_indices of the same dtype, got {crow.dtype} and {col.dtype}"
        )
    if tuple(crow.shape) != (*batch, n + 1):
        raise ValueError(
            f"{name} must have crow_indices of shape {(*batch, n + 1)} (n + 1 row pointers per matrix) for its shape "
            f"{shape}, got {tuple(crow.shape)}"
        )
    if col.dim() != crow.dim() or tuple(col.shape[:-1]) != batch:
        raise ValueError(
            f"{name} must have col_indices of shape {(*batch, 'nnz')} for its shape {shape}, got {tuple(col.shape)}"
        )
    nnz = col.shape[-1]
    count = crow.numel() // (n + 1)
    crow2, col2 = crow.reshape(count, n + 1), col.reshape(count, nnz)
    batched = bool(batch)
    # Row starts, for the order check: valid row pointers lie in [0, nnz] (clamped so that a bad crow, reported
    # first, cannot make the scatter fail).
    starts = torch.zeros(crow2.shape[0], nnz + 1, dtype=torch.bool, device=crow.device)
    starts.scatter_(1, crow2.clamp(0, nnz).long(), True)
    not_increasing = (col2[:, 1:] <= col2[:, :-1]) & ~starts[:, 1:nnz]
    if col2.numel():
        low, high = torch.aminmax(col2)
        out_of_range = (low < 0) | (high >= m)
    else:  # (aminmax refuses empty tensors)
        out_of_range = torch.zeros((), dtype=torch.bool, device=col.device)
    flags = [
        (crow2[:, 0] != 0).any(),
        (crow2[:, 1:] < crow2[:, :-1]).any(),
        (crow2[:, -1] != nnz).any(),
        out_of_range,
        not_increasing.any(),
    ]
    first_bad, decreasing, last_bad, col_range, unsorted = torch.stack(flags).tolist()
    if first_bad:
        (b,) = _first(crow2[:, 0] != 0)
        raise ValueError(
            f"{name} has crow_indices{_position(batched, b, 0)} = {int(crow2[b, 0])}, expected 0: CSR row pointers "
            "start at 0"
        )
    if decreasing:
        b, i = _first(crow2[:, 1:] < crow2[:, :-1])
        raise ValueError(
            f"{name} has decreasing row pointers: crow_indices{_position(batched, b, i + 1)} = "
            f"{int(crow2[b, i + 1])} < crow_indices{_position(batched, b, i)} = {int(crow2[b, i])}; expected a "
            f"non-decreasing sequence from 0 to nnz = {nnz}"
        )
    if last_bad:
        (b,) = _first(crow2[:, -1] != nnz)
        raise ValueError(
            f"{name} has crow_indices{_position(batched, b, n)} = {int(crow2[b, -1])}, expected nnz = {nnz} (the "
            "number of stored entries, col_indices.shape[-1])"
        )
    if col_range:
        b, k = _first((col2 < 0) | (col2 >= m))
        raise ValueError(
            f"{name} has a column index out of range: col_indices{_position(batched, b, k)} = {int(col2[b, k])}, "
            f"expected 0 <= column < {m} (shape {shape})"
        )
    if unsorted:
        b, k = _first(not_increasing)
        k += 1
        row = int(torch.searchsorted(crow2[b].contiguous(), crow2.new_tensor([k]), right=True)[0]) - 1
        where = f"batch {b}, row {row}" if batched else f"row {row}"
        raise ValueError(
            f"{name} has column indices that are not strictly increasing in {where}: "
            f"col_indices{_position(batched, b, k)} = {int(col2[b, k])} follows "
            f"col_indices{_position(batched, b, k - 1)} = {int(col2[b, k - 1])}; CSR column indices must be sorted "
            "and unique within each row (torch's invariant; e.g. build the matrix with .to_sparse_csr())"
        )


def _check_coo_indices(A: torch.Tensor, name: str) -> None:
    idx = A._indices()
    shape = tuple(A.shape)
    if idx.shape[1] == 0:
        return
    size = torch.tensor(shape, dtype=idx.dtype, device=idx.device)
    low, high = torch.aminmax(idx, dim=1)
    out_of_range = (low < 0) | (high >= size)  # per dimension
    flags = [out_of_range.any()]
    coalesced = A.is_coalesced()
    if coalesced:
        # row-major order of (row, column), batch and row folded into one row number (valid once the range passed)
        rows = idx[0]
        for d in range(1, len(shape) - 1):
            rows = rows * shape[d] + idx[d]
        cols = idx[-1]
        later = (rows[1:] > rows[:-1]) | ((rows[1:] == rows[:-1]) & (cols[1:] > cols[:-1]))
        flags.append(~later.all())
    bad_range, *unsorted = torch.stack(flags).tolist()
    if bad_range:
        d = _first(out_of_range)[0]
        (k,) = _first((idx[d] < 0) | (idx[d] >= shape[d]))
        what = {len(shape) - 1: "columns", len(shape) - 2: "rows"}.get(d, "batch")
        raise ValueError(
            f"{name} has an index out of range in dimension {d} ({what}): "
            f"indices[{d}, {k}] = {int(idx[d, k])}, expected 0 <= index < {shape[d]} (shape {shape})"
        )
    if coalesced and unsorted[0]:
        (k,) = _first(~later)
        k += 1
        raise ValueError(
            f"{name} is marked coalesced but its indices are not sorted and unique: entry {k} at "
            f"{tuple(idx[:, k].tolist())} follows entry {k - 1} at {tuple(idx[:, k - 1].tolist())} (row-major order "
            "expected); call .coalesce(), or build it without is_coalesced=True"
        )


def check_dense(B: object, name: str, *, dims: tuple[int, ...]) -> torch.Tensor:
    """Check that ``B`` is a dense (strided) floating-point tensor with one of the allowed numbers of dimensions."""
    check_tensor(B, name)
    if B.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got a {describe(B)}")
    if B.dim() not in dims:
        allowed = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{name} must be {allowed}, got shape {tuple(B.shape)}")
    if B.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype torch.float32 or torch.float64, got {B.dtype}")
    return B


def check_flag(value: object, name: str, hint: str = "") -> bool:
    """Raise ``TypeError`` (naming ``name``, then ``hint``) unless ``value`` is a bool (NumPy's included): a string,
    ``None`` or a number given by position (``rw1(n, 2.0)`` meant as ``tau``) would be read as truthy or falsy,
    silently choosing a branch."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}{hint}")
    return bool(value)


def check_same_dtype_device(A: torch.Tensor, B: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise unless ``A`` and ``B`` share dtype and device."""
    if A.dtype != B.dtype:
        raise TypeError(f"{name_a} and {name_b} must have the same dtype, got {A.dtype} and {B.dtype}")
    if A.device != B.device:
        raise ValueError(f"{name_a} and {name_b} must be on the same device, got {A.device} and {B.device}")


def lower_pattern_pairs(pattern: object, n: int, size_name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` (int64 NumPy, ``rows > cols``) of the off-diagonal entries a user-given ``pattern`` names.

    ``pattern`` is a sparse ``(n, n)`` tensor (its stored positions) or a ``(2, m)`` integer index tensor; an entry
    above the diagonal stands for its mirror and the diagonal is dropped. ``size_name`` says what ``n`` is, for
    the error messages.
    """
    if not isinstance(pattern, torch.Tensor):
        raise TypeError(f"pattern must be a torch.Tensor, got {type(pattern).__name__}")
    if pattern.layout in (torch.sparse_coo, torch.sparse_csr):
        if tuple(pattern.shape) != (n, n):
            raise ValueError(f"pattern must have shape ({n}, {n}) ({size_name}), got {tuple(pattern.shape)}")
        check_sparse_indices(pattern, "pattern")  # before torch converts (or crashes on) indices it never checked
        index = pattern.to_sparse_coo().coalesce().indices()
    else:
        if pattern.dim() != 2 or pattern.shape[0] != 2:
            raise ValueError(
                f"pattern must be a sparse ({n}, {n}) tensor or a (2, m) index tensor, got {pattern.shape}"
            )
        index = pattern.long()
        if index.numel() and (index.min() < 0 or index.max() >= n):
            raise ValueError(f"pattern indices must lie in [0, {n}), got [{int(index.min())}, {int(index.max())}]")
    r, c = index[0].cpu().numpy().astype(np.int64), index[1].cpu().numpy().astype(np.int64)
    off = r != c
    return np.maximum(r, c)[off], np.minimum(r, c)[off]


def broadcast_shapes(*shapes: Sequence[int]) -> torch.Size:
    """The broadcast of ``shapes`` (each a sequence of ints), as :func:`torch.broadcast_shapes`, without its first-call
    cost: torch's imports ``torch.fx``'s symbolic shapes (and SymPy) the first time it runs, 0.5–1 s measured on this
    project's 2-core machine, which every first distribution of a process paid. Raises ``RuntimeError`` as torch's
    does for shapes that do not broadcast.

    Examples
    --------
    >>> from sparseprec._validation import broadcast_shapes
    >>> broadcast_shapes((2, 1), (3,), ())
    torch.Size([2, 3])
    """
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for index, shape in enumerate(shapes):
        for dim, size in enumerate(shape, start=ndim - len(shape)):
            size = int(size)
            if size == 1 or size == out[dim]:
                continue
            if out[dim] != 1:
                raise RuntimeError(
                    f"Attempting to broadcast a dimension of length {size} at {dim - ndim}! Mismatching argument at "
                    f"index {index} had {tuple(shape)}; but expected shape should be broadcastable to {out}"
                )
            out[dim] = size
    return torch.Size(out)

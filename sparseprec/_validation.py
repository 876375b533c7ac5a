"""Small argument checks shared by every layer.

Each check raises ``TypeError`` (wrong kind of object, layout or dtype) or ``ValueError`` (wrong shape, size, device or
contents) with a message that names the argument, what was expected and what was given. Checks are plain ``if``
statements, never ``assert``, so they survive ``python -O``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "SPARSE_LAYOUTS",
    "FLOAT_DTYPES",
    "describe",
    "check_tensor",
    "check_sparse_matrix",
    "check_dense",
    "check_same_dtype_device",
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
    return A


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

"""Validation of ``(A, B)`` operand pairs and their reshaping to the kernel's 2-D form."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validation import check_dense, check_same_dtype_device, check_sparse_matrix

__all__ = ["Operands", "operands"]


@dataclass(frozen=True)
class Operands:
    """A validated pair: ``B`` reshaped to ``(b m, p)`` and the shape the result must be given back."""

    B2: torch.Tensor
    out_shape: tuple[int, ...]


def operands(A: object, B: object, *, square: bool, allow_vector: bool, transpose: bool = False) -> Operands:
    """Validate ``A`` (sparse ``(n, m)``/``(b, n, m)``) and ``B`` (dense ``(m, p)``/``(b, m, p)``, or ``(m,)``).

    With ``transpose`` the product is ``Aᵀ B``: ``B`` needs ``n`` rows and the result has ``m``.

    Raises
    ------
    TypeError
        Non-tensor arguments, wrong layouts, non-floating or mismatched dtypes.
    ValueError
        Wrong ranks, non-square ``A`` where required, size or batch mismatch, device mismatch.
    """
    A = check_sparse_matrix(A, "A", square=square)
    if A.dim() == 2:
        B = check_dense(B, "B", dims=(1, 2) if allow_vector else (2,))
    else:
        B = check_dense(B, "B", dims=(3,))
    check_same_dtype_device(A, B, "A", "B")
    n, m = (A.shape[-1], A.shape[-2]) if transpose else (A.shape[-2], A.shape[-1])
    if A.dim() == 3 and B.shape[0] != A.shape[0]:
        raise ValueError(
            f"A and B must have the same batch size, got A of shape {tuple(A.shape)} and B of shape {tuple(B.shape)}"
        )
    rows_b = B.shape[0] if B.dim() == 1 else B.shape[-2]
    if rows_b != m:
        what = "B.shape[0]" if B.dim() == 1 else "B.shape[-2]"
        op = f"A^T (A of shape {tuple(A.shape)})" if transpose else f"A of shape {tuple(A.shape)}"
        raise ValueError(f"{op} needs {what} == {m}, got B of shape {tuple(B.shape)}")
    if B.dim() == 1:
        return Operands(B.reshape(m, 1).contiguous(), (n,))
    p = B.shape[-1]
    out_shape = (n, p) if B.dim() == 2 else (B.shape[0], n, p)
    rows = m if B.dim() == 2 else B.shape[0] * m  # explicit: reshape(-1, 0) is ambiguous for zero columns
    return Operands(B.reshape(rows, p).contiguous(), out_shape)

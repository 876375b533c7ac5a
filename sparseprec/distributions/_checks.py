"""Argument checks shared by the distributions."""

from __future__ import annotations

import torch

from .._validation import check_dense, check_tensor

__all__ = ["check_vector", "check_like"]


def check_vector(t: object, name: str) -> torch.Tensor:
    check_tensor(t, name)
    if t.layout == torch.strided and t.dim() == 0:
        raise ValueError(f"{name} must have shape (..., n), got a 0-D tensor")
    return check_dense(t, name, dims=(t.dim(),))


def check_like(t: torch.Tensor, name: str, tril: torch.Tensor, tril_name: str, n: int) -> None:
    if t.dtype != tril.dtype:
        raise TypeError(f"{name} and {tril_name} must have the same dtype, got {t.dtype} and {tril.dtype}")
    if t.device != tril.device:
        raise ValueError(f"{name} and {tril_name} must be on the same device, got {t.device} and {tril.device}")
    if t.shape[-1] != n:
        raise ValueError(
            f"{name} must have shape (..., {n}) to match {tril_name} of shape {tuple(tril.shape)}, got {tuple(t.shape)}"
        )

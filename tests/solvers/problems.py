"""Small test problems with known structure (dense references come from torch.linalg)."""

from __future__ import annotations

import torch

from tests.conftest import random_pattern, sparse_from_dense


def symmetric_pattern(n: int, density: float, generator: torch.Generator) -> torch.Tensor:
    mask = random_pattern((n, n), density, generator)
    return mask | mask.T | torch.eye(n, dtype=torch.bool)


def spd_matrix(n: int, dtype=torch.float64, seed: int = 0, density: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """A sparse SPD matrix (dense values, pattern mask): symmetric off-diagonal part made diagonally dominant."""
    g = torch.Generator().manual_seed(seed)
    mask = symmetric_pattern(n, density, g)
    W = torch.randn(n, n, generator=g, dtype=torch.float64)
    W = (W + W.T) * mask * ~torch.eye(n, dtype=torch.bool)
    A = W + torch.diag(W.abs().sum(1) + 0.5 + torch.rand(n, generator=g, dtype=torch.float64))
    return A.to(dtype), mask


def indefinite_matrix(n: int, dtype=torch.float64, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A sparse symmetric indefinite matrix: an SPD one shifted by a multiple of I into the middle of its spectrum."""
    A, mask = spd_matrix(n, torch.float64, seed)
    eig = torch.linalg.eigvalsh(A)
    shift = 0.5 * (eig[n // 2] + eig[n // 2 + 1])
    A = A - shift * torch.eye(n, dtype=torch.float64)
    eig = torch.linalg.eigvalsh(A)
    assert (eig < 0).any() and (eig > 0).any()
    return A.to(dtype), mask


def nonsymmetric_matrix(n: int, dtype=torch.float64, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A sparse non-symmetric matrix with a dominant diagonal (well conditioned, far from symmetric)."""
    g = torch.Generator().manual_seed(seed)
    mask = random_pattern((n, n), 0.15, g) | torch.eye(n, dtype=torch.bool)
    W = torch.randn(n, n, generator=g, dtype=torch.float64) * mask * ~torch.eye(n, dtype=torch.bool)
    A = W + torch.diag(W.abs().sum(1) + 1.0)
    return A.to(dtype), mask


def as_kind(A: torch.Tensor, mask: torch.Tensor, kind: str):
    """``A`` as a dense tensor, a sparse tensor of one of conftest's layouts, or a callable."""
    if kind == "dense":
        return A
    if kind == "callable":
        return lambda v: A @ v
    return sparse_from_dense(A, mask, kind)


def grid_laplacian(s: int, conductance: torch.Tensor | None = None, shift: float = 0.0) -> torch.Tensor:
    """5-point graph Laplacian of an ``s × s`` grid plus ``shift I``, as CSR (float64). Edge weights are the mean of
    the two nodes' ``conductance`` (a per-node field; 1 when not given)."""
    n = s * s
    idx = torch.arange(n).reshape(s, s)
    i = torch.cat([idx[:, :-1].reshape(-1), idx[:-1, :].reshape(-1)])
    j = torch.cat([idx[:, 1:].reshape(-1), idx[1:, :].reshape(-1)])
    c = torch.ones(n, dtype=torch.float64) if conductance is None else conductance.reshape(-1).double()
    w = 0.5 * (c[i] + c[j])
    degree = torch.zeros(n, dtype=torch.float64).index_add_(0, i, w).index_add_(0, j, w) + shift
    rows = torch.cat([i, j, torch.arange(n)])
    cols = torch.cat([j, i, torch.arange(n)])
    vals = torch.cat([-w, -w, degree])
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n)).coalesce().to_sparse_csr()

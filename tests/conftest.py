"""Shared test helpers: random sparse problems in every supported layout, with their dense references."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import sparseprec

# Tests build their inputs with torch's invariant checks on (and opting in silences torch's warning about it).
torch.sparse.check_sparse_tensor_invariants.enable()

LAYOUTS = ["coo", "csr", "csr32", "coo_uncoalesced"]


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each device a test should hold on: the CPU always, CUDA where a GPU is present (skipped otherwise)."""
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _fresh_pattern_cache():
    sparseprec.clear_caches()
    yield


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state, whatever ran before it: torch's initial seed differs per
    process, so a test drawing from the global generators would otherwise see new draws on every run."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def random_pattern(shape, density, generator, *, triangle=None, diagonal=True):
    """Boolean mask of a random sparsity pattern.

    ``triangle`` is None, 'upper', 'lower', 'strict_upper' or 'strict_lower'; non-strict triangles store the whole
    diagonal when ``diagonal``. Batched masks hold the same number of entries in every batch (as batched CSR needs)
    but different positions.
    """
    n, m = shape[-2], shape[-1]
    allowed = torch.ones(n, m, dtype=torch.bool)
    if triangle is not None:
        allowed = allowed.triu(1) if triangle.endswith("upper") else allowed.tril(-1)
    else:
        diagonal = False
    k = int(density * int(allowed.sum()))
    scores = torch.rand(shape, generator=generator).masked_fill(~allowed, -1.0)
    flat = scores.reshape(-1, n * m)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask.scatter_(1, flat.topk(k, dim=1).indices, True)
    mask = mask.reshape(shape)
    if triangle is not None and not triangle.startswith("strict") and diagonal:
        mask |= torch.eye(n, dtype=torch.bool)
    return mask


def sparse_from_dense(dense: torch.Tensor, mask: torch.Tensor, layout: str) -> torch.Tensor:
    """Sparse tensor with exactly the entries of ``mask`` (explicit zeros kept), in the requested layout.

    ``coo_uncoalesced`` splits every stored value into two duplicate entries (halves), in shuffled order.
    """
    idx = mask.nonzero().T
    vals = dense[mask]
    if layout == "coo":
        return torch.sparse_coo_tensor(idx, vals, dense.shape).coalesce()
    if layout == "coo_uncoalesced":
        g = torch.Generator().manual_seed(7)
        perm = torch.randperm(2 * vals.numel(), generator=g)
        idx2 = torch.cat([idx, idx], 1)[:, perm]
        vals2 = torch.cat([vals / 2, vals / 2])[perm]
        A = torch.sparse_coo_tensor(idx2, vals2, dense.shape)
        assert vals.numel() == 0 or not A.is_coalesced()
        return A
    if dense.dim() == 3:
        parts = [sparse_from_dense(d, mk, "csr") for d, mk in zip(dense, mask, strict=True)]
        crow = torch.stack([a.crow_indices() for a in parts])
        col = torch.stack([a.col_indices() for a in parts])
        vals = torch.stack([a.values() for a in parts])
        A = torch.sparse_csr_tensor(crow, col, vals, dense.shape, check_invariants=True)
    else:
        A = torch.sparse_coo_tensor(idx, vals, dense.shape).coalesce().to_sparse_csr()
    if layout == "csr32":
        A = torch.sparse_csr_tensor(
            A.crow_indices().int(), A.col_indices().int(), A.values(), A.shape, check_invariants=True
        )
    return A


def rebuild(A: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``A``'s pattern with new (differentiable) values, via constructors whose backward is O(nnz)."""
    if A.layout == torch.sparse_csr:
        return sparseprec.sparse_csr_tensor(A.crow_indices(), A.col_indices(), values, A.shape)
    return sparseprec.sparse_coo_tensor(A._indices(), values, A.shape, is_coalesced=A.is_coalesced())


def stored_values(A: torch.Tensor) -> torch.Tensor:
    return A.values() if A.layout == torch.sparse_csr else A._values()


def dense_grad_at_pattern(dense_grad: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """The entries of a dense gradient at the stored positions of the sparse gradient ``G`` (in ``G``'s order)."""
    Gc = G.to_sparse_coo().coalesce() if G.layout == torch.sparse_csr else G
    idx = Gc._indices()
    expected = dense_grad[tuple(idx)]
    if G.layout == torch.sparse_csr:
        return expected.reshape(G.values().shape)
    return expected

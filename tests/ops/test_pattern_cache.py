"""The pattern cache: pattern-derived index data is built once per sparsity pattern, and never reused wrongly."""

from __future__ import annotations

import torch

from sparseprec import sparse_mm, sparse_triangular_solve
from sparseprec.ops import _pattern


def _coo(indices, values, n):
    return torch.sparse_coo_tensor(indices, values, (n, n))


def test_rebuilt_tensor_with_same_indices_hits_cache(monkeypatch):
    built = []
    original = _pattern.SparsePattern.__init__

    def counting(self, A):
        built.append(A.layout)
        original(self, A)

    monkeypatch.setattr(_pattern.SparsePattern, "__init__", counting)
    n = 50
    idx = torch.stack([torch.arange(n), torch.arange(n)])
    B = torch.randn(n, 2, dtype=torch.float64)
    for step in range(5):
        values = torch.full((n,), 2.0 + step, dtype=torch.float64)
        A = _coo(idx, values, n)  # uncoalesced flag: a new tensor every step, same index storage
        torch.testing.assert_close(sparse_mm(A, B), B * (2.0 + step))
    assert built == [torch.sparse_coo]


def test_coalesce_every_step_hits_cache_by_value():
    n = 40
    idx = torch.stack([torch.arange(n), torch.arange(n)])
    B = torch.randn(n, 1, dtype=torch.float64)
    first = _pattern.pattern_of(_coo(idx, torch.ones(n, dtype=torch.float64), n).coalesce())
    for _ in range(3):
        A = _coo(idx.clone(), torch.ones(n, dtype=torch.float64), n).coalesce()  # fresh index memory
        assert _pattern.pattern_of(A) is first
        sparse_triangular_solve(A, B, upper=False)


def test_in_place_change_of_indices_is_seen():
    n = 4
    idx = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])
    B = torch.arange(1.0, 5.0, dtype=torch.float64).reshape(n, 1)
    A = _coo(idx, torch.ones(n, dtype=torch.float64), n).coalesce()
    torch.testing.assert_close(sparse_mm(A, B), B)
    A._indices()[1, 0] = 3  # same memory, new pattern: row 0 now reads column 3
    torch.testing.assert_close(sparse_mm(A, B)[0, 0], torch.tensor(4.0, dtype=torch.float64))


def test_csr_patterns_are_cached_and_distinguished():
    eye = torch.eye(3, dtype=torch.float64)
    A1 = eye.to_sparse_csr()
    A2 = (eye + torch.diag(torch.ones(2, dtype=torch.float64), -1)).to_sparse_csr()
    assert _pattern.pattern_of(A1) is _pattern.pattern_of(A1)
    assert _pattern.pattern_of(A1) is not _pattern.pattern_of(A2)
    B = torch.ones(3, 1, dtype=torch.float64)
    torch.testing.assert_close(sparse_mm(A2, B), torch.tensor([[1.0], [2.0], [2.0]], dtype=torch.float64))


def test_cache_is_bounded_and_clearable():
    B = torch.ones(2, 1, dtype=torch.float64)
    for k in range(_pattern.CACHE_SIZE + 10):
        A = torch.sparse_coo_tensor(torch.tensor([[0], [k % 2]]), torch.ones(1, dtype=torch.float64), (2, 2 + k))
        sparse_mm(A, torch.ones(2 + k, 1, dtype=torch.float64))
    assert len(_pattern._CACHE) == _pattern.CACHE_SIZE
    _pattern.clear_pattern_cache()
    assert len(_pattern._CACHE) == 0
    sparse_mm(torch.eye(2, dtype=torch.float64).to_sparse(), B)
    assert len(_pattern._CACHE) == 1


def test_write_into_source_indices_needs_clear():
    # documented contract: torch gives the sparse tensor's indices their own version counter, so a write into the
    # source tensor is invisible; clear_pattern_cache() makes the next call see the new pattern.
    idx = torch.tensor([[0, 1], [0, 1]])
    B = torch.tensor([[1.0], [10.0]], dtype=torch.float64)
    sparse_mm(_coo(idx, torch.ones(2, dtype=torch.float64), 2).coalesce(), B)
    idx[1, 0] = 1
    _pattern.clear_pattern_cache()
    C = sparse_mm(_coo(idx, torch.ones(2, dtype=torch.float64), 2).coalesce(), B)
    torch.testing.assert_close(C, torch.tensor([[10.0], [10.0]], dtype=torch.float64))

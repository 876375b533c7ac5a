"""The pattern cache: pattern-derived index data is built once per sparsity pattern, and never reused wrongly."""

from __future__ import annotations

import torch

import sparseprec
from sparseprec import pattern as _pattern
from sparseprec import sparse_mm, sparse_triangular_solve


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


def test_cache_is_bounded_by_patterns_and_clearable():
    previous = _pattern.set_cache_limits(max_patterns=8)
    try:
        B = torch.ones(2, 1, dtype=torch.float64)
        for k in range(20):
            A = torch.sparse_coo_tensor(torch.tensor([[0], [k % 2]]), torch.ones(1, dtype=torch.float64), (2, 2 + k))
            sparse_mm(A, torch.ones(2 + k, 1, dtype=torch.float64))
        assert len(_pattern._CACHE) == 8
        assert sparseprec.cache_info().patterns == 8
        sparseprec.clear_caches()
        assert len(_pattern._CACHE) == 0
        assert sparseprec.cache_info().bytes == 0
        sparse_mm(torch.eye(2, dtype=torch.float64).to_sparse(), B)
        assert len(_pattern._CACHE) == 1
    finally:
        _pattern.set_cache_limits(*previous)


def _tridiagonal(n):
    i = torch.arange(n)
    rows = torch.cat([i, i[1:], i[:-1]])
    cols = torch.cat([i, i[:-1], i[1:]])
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(3 * n - 2, dtype=torch.float64), (n, n))


def test_cache_counts_bytes_of_index_and_derived_data():
    n = 1000
    A = _tridiagonal(n).coalesce()
    p = _pattern.pattern_of(A)
    index_bytes = sum(t.numel() * t.element_size() for t in (p.crow, p.col, p.row))  # int32 kernel indices
    assert sparseprec.cache_info().bytes == index_bytes
    sparse_mm(A, torch.ones(n, 1, dtype=torch.float64), transpose=True)  # builds the cached transpose
    transpose_bytes = (n + 1) * 4 + (3 * n - 2) * 4 + (3 * n - 2) * 8  # crow_t, col_t (int32), permutation (int64)
    info = sparseprec.cache_info()
    assert info.bytes == index_bytes + transpose_bytes
    assert info.derived == 1


def test_byte_budget_evicts_least_recently_used_pattern():
    previous = _pattern.set_cache_limits(max_bytes=60_000)
    try:
        first = _pattern.pattern_of(_tridiagonal(1000).coalesce())  # ~24 kB of index data
        second = _pattern.pattern_of(_tridiagonal(1001).coalesce())
        assert sparseprec.cache_info().patterns == 2
        _pattern.pattern_of(_tridiagonal(1002).coalesce())  # over 60 kB: the least recently used goes
        info = sparseprec.cache_info()
        assert info.patterns == 2 and info.bytes <= 60_000
        assert _pattern.pattern_of(_tridiagonal(1001).coalesce()) is second
        assert _pattern.pattern_of(_tridiagonal(1000).coalesce()) is not first
    finally:
        _pattern.set_cache_limits(*previous)


def test_cache_info_counts_hits_misses_and_symbolic_analyses():
    from sparseprec.cholesky import cholesky

    sparseprec.clear_caches()
    before = sparseprec.cache_info()
    Q = _tridiagonal(20).coalesce() * 1.0
    Q = torch.sparse_coo_tensor(Q.indices(), torch.where(Q.indices()[0] == Q.indices()[1], 4.0, -1.0), Q.shape)
    cholesky(Q.coalesce(), backend="scipy")
    cholesky((Q * 2).coalesce(), backend="scipy")
    after = sparseprec.cache_info()
    assert after.symbolic_analyses - before.symbolic_analyses == 1
    assert after.misses - before.misses == 1
    assert after.hits - before.hits >= 1
    sparseprec.clear_caches()
    cholesky(Q.coalesce(), backend="scipy")  # the analysis was dropped with the pattern
    assert sparseprec.cache_info().symbolic_analyses - after.symbolic_analyses == 1


def test_clear_caches_drops_lattice_matrices():
    from sparseprec.structures import matern_spde

    sparseprec.clear_caches()
    matern_spde((6, 5), kappa=1.0)
    assert sparseprec.cache_info().derived >= 1
    sparseprec.clear_caches()
    assert sparseprec.cache_info().derived == 0


def test_set_cache_limits_refuses_bad_values():
    import pytest

    with pytest.raises(TypeError, match="max_bytes"):
        _pattern.set_cache_limits(max_bytes=1.5)
    with pytest.raises(ValueError, match="max_patterns"):
        _pattern.set_cache_limits(max_patterns=-1)


def test_assembly_sums_duplicates_in_row_major_order():
    rows = torch.tensor([2, 0, 2, 1, 0])
    cols = torch.tensor([1, 2, 1, 0, 2])
    a = _pattern.Assembly(rows, cols, 3, 3)
    dense = torch.zeros(3, 3, dtype=torch.float64)
    values = torch.arange(1.0, 6.0, dtype=torch.float64)
    dense.index_put_((rows, cols), values, accumulate=True)
    merged = a.sum(values)
    torch.testing.assert_close(torch.sparse_csr_tensor(a.crow, a.col, merged, (3, 3)).to_dense(), dense)
    assert a.crow.tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(a.sum(values.expand(4, 5)), merged.expand(4, 3))  # batched values


def test_write_into_source_indices_needs_clear():
    # documented contract: torch gives the sparse tensor's indices their own version counter, so a write into the
    # source tensor is invisible; clear_caches() makes the next call see the new pattern.
    idx = torch.tensor([[0, 1], [0, 1]])
    B = torch.tensor([[1.0], [10.0]], dtype=torch.float64)
    sparse_mm(_coo(idx, torch.ones(2, dtype=torch.float64), 2).coalesce(), B)
    idx[1, 0] = 1
    _pattern.clear_caches()
    C = sparse_mm(_coo(idx, torch.ones(2, dtype=torch.float64), 2).coalesce(), B)
    torch.testing.assert_close(C, torch.tensor([[10.0], [10.0]], dtype=torch.float64))

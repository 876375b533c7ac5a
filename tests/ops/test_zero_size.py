"""Zero-size dimensions give the empty answer, as torch does (no 'cannot reshape tensor of 0 elements')."""

from __future__ import annotations

import pytest
import torch

from sparseprec.ops import sparse_mm, sparse_triangular_solve
from sparseprec.solvers import sparse_generic_solve

DT = torch.float64


def _dense_solve(A, B):
    return torch.linalg.solve(A.to_dense(), B)


OPS = {
    "mm": lambda A, B: sparse_mm(A, B),
    "mm_transpose": lambda A, B: sparse_mm(A, B, transpose=True),
    "triangular": lambda A, B: sparse_triangular_solve(A, B, upper=False),
    "generic": lambda A, B: sparse_generic_solve(A, B, solve=_dense_solve),
}


@pytest.mark.parametrize("op", OPS, ids=str)
@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_zero_columns(op, layout):
    A = torch.tensor([[2.0, 0.0], [1.0, 3.0]], dtype=DT)
    A = (A.to_sparse_csr() if layout == "csr" else A.to_sparse_coo()).requires_grad_()
    B = torch.zeros(2, 0, dtype=DT, requires_grad=True)
    X = OPS[op](A, B)
    assert X.shape == (2, 0)
    X.sum().backward()
    assert torch.equal(A.grad.to_dense(), torch.zeros(2, 2, dtype=DT))
    assert B.grad.shape == (2, 0)


@pytest.mark.parametrize("op", OPS, ids=str)
def test_empty_matrix(op):
    A = torch.zeros(0, 0, dtype=DT).to_sparse_csr()
    assert OPS[op](A, torch.zeros(0, 3, dtype=DT)).shape == (0, 3)


def test_batched_zero_columns_and_empty_rows():
    A = torch.stack([torch.eye(2, dtype=DT)] * 2).to_sparse_csr()
    assert sparse_mm(A, torch.zeros(2, 2, 0, dtype=DT)).shape == (2, 2, 0)
    Z = torch.zeros(3, 2, dtype=DT).to_sparse_csr()  # no stored entry at all
    torch.testing.assert_close(sparse_mm(Z, torch.ones(2, 4, dtype=DT)), torch.zeros(3, 4, dtype=DT))

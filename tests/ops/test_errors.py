"""Every misuse of the ops raises a TypeError/ValueError whose message names the argument, expected and actual."""

from __future__ import annotations

import pytest
import torch

from sparseprec import sparse_csr_tensor, sparse_mm, sparse_triangular_solve


def lower(n=3, dtype=torch.float64):
    return (torch.eye(n, dtype=dtype) * 2 + torch.tril(torch.ones(n, n, dtype=dtype), -1)).to_sparse_csr()


OPS = {
    "mm": lambda A, B: sparse_mm(A, B),
    "trsv": lambda A, B: sparse_triangular_solve(A, B, upper=False),
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: (lower().to_dense().tolist(), torch.ones(3, 1)), TypeError, r"A must be a torch.Tensor, got list"),
        (lambda: (lower(), [[1.0]] * 3), TypeError, r"B must be a torch.Tensor, got list"),
        (
            lambda: (lower().to_dense(), torch.ones(3, 1)),
            TypeError,
            r"A must be a sparse COO or CSR tensor, got a dens",
        ),
        (lambda: (lower().to_sparse_csc(), torch.ones(3, 1)), TypeError, r"got a sparse CSC tensor of shape \(3, 3\)"),
        (lambda: (lower(), torch.ones(3, 1, dtype=torch.float64).to_sparse()), TypeError, r"B must be a dense"),
        (
            lambda: (torch.ones(3, dtype=torch.float64).to_sparse(), torch.ones(3, 1)),
            ValueError,
            r"A must have shape \(n, m\) or \(b, n, m\), got shape \(3,\)",
        ),
        (lambda: (lower(), torch.ones(3, 1, 1, dtype=torch.float64)), ValueError, r"B must be 1-D or 2-D, got shape"),
        (lambda: (lower(), torch.ones(4, 2, dtype=torch.float64)), ValueError, r"needs B.shape\[-2\] == 3"),
        (lambda: (lower(), torch.ones(3, 2, dtype=torch.float32)), TypeError, r"same dtype.*float64 and torch.float32"),
        (lambda: (lower(), torch.ones(3, 2, dtype=torch.float64, device="meta")), ValueError, r"same device"),
        (
            lambda: (torch.eye(3, dtype=torch.int64).to_sparse_csr(), torch.ones(3, 1, dtype=torch.int64)),
            TypeError,
            r"A must have dtype torch.float32 or torch.float64, got torch.int64",
        ),
        (
            lambda: (torch.stack([lower().to_dense()] * 2).to_sparse(), torch.ones(3, 3, 1, dtype=torch.float64)),
            ValueError,
            r"same batch size, got A of shape \(2, 3, 3\) and B of shape \(3, 3, 1\)",
        ),
        (
            lambda: (torch.stack([lower().to_dense()] * 2).to_sparse(), torch.ones(2, 3, dtype=torch.float64)),
            ValueError,
            r"B must be 3-D, got shape \(2, 3\)",
        ),
        (
            lambda: (torch.ones(3, 3, 2, dtype=torch.float64).to_sparse(2), torch.ones(3, 1, dtype=torch.float64)),
            ValueError,
            r"hybrid tensor with dense_dim 1",
        ),
    ],
)
def test_bad_operands(op, make, exc, match):
    A, B = make()
    with pytest.raises(exc, match=match):
        OPS[op](A, B)


def test_triangular_needs_square():
    A = torch.ones(3, 4, dtype=torch.float64).to_sparse_csr()
    with pytest.raises(ValueError, match=r"A must be square, got shape \(3, 4\)"):
        sparse_triangular_solve(A, torch.ones(3, 1, dtype=torch.float64))


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_wrong_side_of_diagonal(layout):
    A = lower()
    A = A if layout == "csr" else A.to_sparse_coo()
    msg = r"declared upper triangular \(upper=True\) but stores 3 entries below .* \(1, 0\)"
    with pytest.raises(ValueError, match=msg):
        sparse_triangular_solve(A, torch.ones(3, 1, dtype=torch.float64), upper=True)


def test_wrong_side_batched_names_batch():
    dense = torch.stack([torch.eye(3), torch.eye(3)]).double()
    dense[1, 0, 2] = 1.0
    with pytest.raises(ValueError, match=r"above the diagonal, e.g. at \(1, 0, 2\) \[batch, row, column\]"):
        sparse_triangular_solve(dense.to_sparse(), torch.ones(2, 3, 1, dtype=torch.float64), upper=False)


def test_stored_diagonal_with_unitriangular():
    with pytest.raises(ValueError, match=r"stores 3 diagonal entries .* but unitriangular=True"):
        sparse_triangular_solve(lower(), torch.ones(3, 1, dtype=torch.float64), upper=False, unitriangular=True)


def test_missing_diagonal_is_singular():
    dense = torch.eye(3, dtype=torch.float64)
    dense[1, 1] = 0.0
    dense[2, 1] = 1.0
    with pytest.raises(ValueError, match=r"no stored diagonal entry in row 1: .* singular"):
        sparse_triangular_solve(dense.to_sparse_csr(), torch.ones(3, 1, dtype=torch.float64), upper=False)


@pytest.mark.parametrize("p", [1, 2, 8, 20])  # few columns: found in the solution; many: on the diagonal
@pytest.mark.parametrize("batched", [False, True])
def test_zero_on_the_diagonal_is_singular(batched, p):
    idx = torch.tensor([[0, 1, 1, 2], [0, 0, 1, 2]])
    A = torch.sparse_coo_tensor(idx, torch.tensor([1.0, 2.0, 0.0, 3.0], dtype=torch.float64), (3, 3)).coalesce()
    B = torch.ones(3, p, dtype=torch.float64)
    where = "row 1"
    if batched:
        A = torch.stack([torch.eye(3, dtype=torch.float64).to_sparse(), A])
        B = torch.stack([B, B])
        where = "batch 1, row 1"
    with pytest.raises(ValueError, match=rf"zero on the diagonal in {where}: the matrix is singular"):
        sparse_triangular_solve(A, B, upper=False)


def test_csr_construction_checks():
    with pytest.raises(ValueError, match=r"col_indices and values must have the same shape, got \(2,\) and \(3,\)"):
        sparse_csr_tensor(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), torch.ones(3), (2, 2))
    with pytest.raises(TypeError, match=r"values must be a dense"):
        sparse_csr_tensor(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), torch.ones(2).to_sparse(), (2, 2))

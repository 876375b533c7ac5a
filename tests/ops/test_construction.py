"""sparse_csr_tensor: values -> CSR with a backward that reads the gradient at the stored entries only."""

from __future__ import annotations

import pytest
import torch

from sparseprec import sparse_coo_tensor, sparse_csr_tensor, sparse_mm, sparse_triangular_solve


def test_backward_from_every_gradient_layout():
    crow, col = torch.tensor([0, 1, 3]), torch.tensor([0, 0, 1])
    v = torch.tensor([2.0, 1.0, 3.0], dtype=torch.float64, requires_grad=True)
    A = sparse_csr_tensor(crow, col, v, (2, 2))
    W = torch.tensor([[10.0, 20.0], [30.0, 40.0]], dtype=torch.float64)
    # dense incoming gradient
    (g,) = torch.autograd.grad(A, v, W)
    torch.testing.assert_close(g, torch.tensor([10.0, 30.0, 40.0], dtype=torch.float64))
    # sparse gradient on another pattern (missing (1, 0), extra (0, 1))
    other = torch.sparse_coo_tensor(torch.tensor([[0, 0, 1], [0, 1, 1]]), torch.tensor([1.0, 5.0, 7.0]), (2, 2))
    (g,) = torch.autograd.grad(A, v, other.double())
    torch.testing.assert_close(g, torch.tensor([1.0, 0.0, 7.0], dtype=torch.float64))


def test_batched_values():
    crow = torch.tensor([[0, 1, 2], [0, 1, 2]])
    col = torch.tensor([[0, 1], [1, 0]])
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    A = sparse_csr_tensor(crow, col, v, (2, 2, 2))
    B = torch.tensor([[[1.0], [10.0]], [[1.0], [10.0]]], dtype=torch.float64)
    C = sparse_mm(A, B)
    torch.testing.assert_close(C, torch.tensor([[[1.0], [20.0]], [[30.0], [4.0]]], dtype=torch.float64))
    C.sum().backward()
    torch.testing.assert_close(v.grad, torch.tensor([[1.0, 10.0], [10.0, 1.0]], dtype=torch.float64))


def test_large_n_backward_is_not_densified():
    # torch.sparse_csr_tensor's own backward would allocate n^2 * 8 bytes = 320 GB here.
    n = 200_000
    ar = torch.arange(n)
    v = torch.full((n,), 2.0, dtype=torch.float64, requires_grad=True)
    A = sparse_csr_tensor(torch.arange(n + 1), ar, v, (n, n))
    B = torch.ones(n, 1, dtype=torch.float64)
    sparse_triangular_solve(A, B, upper=False).sum().backward()
    torch.testing.assert_close(v.grad, torch.full((n,), -0.25, dtype=torch.float64))


@pytest.mark.parametrize("coalesced", [True, False])
def test_coo_construction_matches_torch_constructor(coalesced):
    # duplicates at (0, 0) when uncoalesced; the gradient of each value is dL/dA at its position
    idx = torch.tensor([[0, 1, 1], [0, 0, 1]]) if coalesced else torch.tensor([[1, 0, 1, 0], [1, 0, 0, 0]])
    n_values = idx.shape[1]
    W = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    B = torch.tensor([[1.0, -1.0], [10.0, 2.0]], dtype=torch.float64)
    grads = []
    for build in (torch.sparse_coo_tensor, sparse_coo_tensor):
        v = torch.arange(1.0, n_values + 1, dtype=torch.float64, requires_grad=True)
        kwargs = {"is_coalesced": True} if coalesced else {}
        A = build(idx, v, (2, 2), **kwargs)
        (sparse_mm(A, B) * W).sum().backward()
        grads.append(v.grad)
    torch.testing.assert_close(grads[1], grads[0])
    # dL/dA = W B^T, read at each stored position
    dense = W @ B.T
    torch.testing.assert_close(grads[1], dense[idx[0], idx[1]])


def test_coo_construction_dense_and_other_pattern_gradients():
    idx = torch.tensor([[0, 1, 1], [0, 0, 1]])
    v = torch.tensor([2.0, 1.0, 3.0], dtype=torch.float64, requires_grad=True)
    A = sparse_coo_tensor(idx, v, (2, 2))
    (g,) = torch.autograd.grad(A, v, torch.tensor([[10.0, 20.0], [30.0, 40.0]], dtype=torch.float64))
    torch.testing.assert_close(g, torch.tensor([10.0, 30.0, 40.0], dtype=torch.float64))
    other = torch.sparse_coo_tensor(torch.tensor([[0, 0], [0, 1]]), torch.tensor([1.0, 5.0]), (2, 2)).double()
    A = sparse_coo_tensor(idx, v, (2, 2))
    (g,) = torch.autograd.grad(A, v, other)
    torch.testing.assert_close(g, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))


def test_coo_construction_checks():
    with pytest.raises(ValueError, match=r"indices must have shape \(2, nnz\) with nnz = values.shape\[0\] = 3, got"):
        sparse_coo_tensor(torch.zeros(2, 2, dtype=torch.long), torch.ones(3), (2, 2))


def test_a_gradient_with_no_stored_entries_reads_as_zeros():
    values = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    A = sparse_csr_tensor(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), values, (2, 2))
    empty = torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64), (2, 2))
    A.backward(empty.to_sparse_csr())
    torch.testing.assert_close(values.grad, torch.zeros(2, dtype=torch.float64))

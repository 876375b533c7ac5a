"""sparse_triangular_solve against torch.linalg.solve_triangular, its gradients, and torch's gradcheck."""

from __future__ import annotations

import itertools

import pytest
import torch

from sparseprec import sparse_triangular_solve
from tests.conftest import LAYOUTS, dense_grad_at_pattern, random_pattern, rebuild, sparse_from_dense, stored_values

FLAGS = list(itertools.product([True, False], repeat=3))  # (upper, unitriangular, transpose)


def triangular_problem(layout, batched, upper, unitriangular, dtype=torch.float64, n=6, p=3, seed=0):
    """A well-conditioned random sparse triangular matrix (diagonal in ±[1, 2]) and right-hand sides."""
    g = torch.Generator().manual_seed(seed)
    shape = (2, n, n) if batched else (n, n)
    side = "upper" if upper else "lower"
    mask = random_pattern(shape, 0.5, g, triangle=("strict_" + side) if unitriangular else side)
    dense = 0.4 * torch.randn(shape, generator=g, dtype=dtype)
    diag = (1 + torch.rand(shape[:-1], generator=g, dtype=dtype)) * torch.sign(torch.randn(shape[:-1], generator=g))
    dense = dense + torch.diag_embed(diag - torch.diagonal(dense, dim1=-2, dim2=-1))
    dense = dense * mask
    A = sparse_from_dense(dense, mask, layout)
    B = torch.randn(*shape[:-1], p, generator=g, dtype=dtype)
    return A, dense, B


def dense_solve(dense, B, upper, unitriangular, transpose):
    M = dense.transpose(-2, -1) if transpose else dense
    return torch.linalg.solve_triangular(M, B, upper=upper != transpose, unitriangular=unitriangular)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("upper,unitriangular,transpose", FLAGS)
def test_forward_and_gradients_match_dense(layout, batched, upper, unitriangular, transpose):
    A, dense, B = triangular_problem(layout, batched, upper, unitriangular)
    A.requires_grad_()
    B.requires_grad_()
    W = torch.randn_like(B)
    X = sparse_triangular_solve(A, B, upper=upper, unitriangular=unitriangular, transpose=transpose)
    (X * W).sum().backward()

    Ad = dense.clone().requires_grad_()
    Bd = B.detach().clone().requires_grad_()
    Xd = dense_solve(Ad, Bd, upper, unitriangular, transpose)
    (Xd * W).sum().backward()

    torch.testing.assert_close(X, Xd, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(B.grad, Bd.grad, rtol=1e-10, atol=1e-10)
    assert A.grad.layout == A.layout
    torch.testing.assert_close(stored_values(A.grad), dense_grad_at_pattern(Ad.grad, A.grad), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("upper,unitriangular,transpose", FLAGS)
def test_gradcheck(layout, batched, upper, unitriangular, transpose):
    A, _, B = triangular_problem(layout, batched, upper, unitriangular, n=4, p=2)
    values = stored_values(A).detach().clone().requires_grad_()
    B.requires_grad_()

    def f(v, b):
        return sparse_triangular_solve(rebuild(A, v), b, upper=upper, unitriangular=unitriangular, transpose=transpose)

    assert torch.autograd.gradcheck(f, (values, B))


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("upper", [True, False])
def test_float32(layout, upper):
    A, dense, B = triangular_problem(layout, False, upper, False, dtype=torch.float32, n=30)
    X = sparse_triangular_solve(A, B, upper=upper)
    torch.testing.assert_close(X, dense_solve(dense, B, upper, False, False), rtol=1e-4, atol=1e-5)


def test_vector_right_hand_side():
    A, dense, B = triangular_problem("csr", False, False, False)
    x = sparse_triangular_solve(A, B[:, 0], upper=False)
    assert x.shape == B[:, 0].shape
    torch.testing.assert_close(x, dense_solve(dense, B, False, False, False)[:, 0])


def test_n_equals_one():
    A = torch.tensor([[4.0]], dtype=torch.float64).to_sparse_csr().requires_grad_()
    B = torch.tensor([[2.0, 8.0]], dtype=torch.float64, requires_grad=True)
    X = sparse_triangular_solve(A, B, upper=True)
    torch.testing.assert_close(X, torch.tensor([[0.5, 2.0]], dtype=torch.float64))
    X.sum().backward()
    # X = B / a: dX/da = -B / a^2 summed over columns = -(2 + 8) / 16
    torch.testing.assert_close(A.grad.values(), torch.tensor([-10.0 / 16.0], dtype=torch.float64))
    torch.testing.assert_close(B.grad, torch.full((1, 2), 0.25, dtype=torch.float64))


def test_unitriangular_with_empty_pattern_is_identity():
    A = torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), (3, 3))
    B = torch.randn(3, 2)
    torch.testing.assert_close(sparse_triangular_solve(A, B, unitriangular=True), B)

"""sparse_mm against the dense product, its gradients, and torch's gradcheck."""

from __future__ import annotations

import pytest
import torch

from sparseprec import sparse_mm
from tests.conftest import LAYOUTS, dense_grad_at_pattern, random_pattern, rebuild, sparse_from_dense, stored_values


def _problem(layout, batched, dtype=torch.float64, n=6, m=5, p=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (2, n, m) if batched else (n, m)
    mask = random_pattern(shape, 0.4, g)
    dense = torch.randn(shape, generator=g, dtype=dtype) * mask
    A = sparse_from_dense(dense, mask, layout)
    B = torch.randn(*shape[:-2], m, p, generator=g, dtype=dtype)
    return A, dense, mask, B


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_and_gradients_match_dense(layout, batched, dtype):
    A, dense, mask, B = _problem(layout, batched, dtype)
    A.requires_grad_()
    B.requires_grad_()
    W = torch.randn(*B.shape[:-2], A.shape[-2], B.shape[-1], dtype=dtype)
    C = sparse_mm(A, B)
    (C * W).sum().backward()

    Ad = dense.clone().requires_grad_()
    Bd = B.detach().clone().requires_grad_()
    Cd = Ad @ Bd
    (Cd * W).sum().backward()

    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(C, Cd, **tol)
    torch.testing.assert_close(B.grad, Bd.grad, **tol)
    # gradient w.r.t. A: same layout, values = dense gradient at the stored entries
    assert A.grad.layout == A.layout
    torch.testing.assert_close(stored_values(A.grad), dense_grad_at_pattern(Ad.grad, A.grad), **tol)


@pytest.mark.parametrize("layout", ["coo", "csr", "csr32"])
@pytest.mark.parametrize("batched", [False, True])
def test_gradient_keeps_indices(layout, batched):
    A, *_, B = _problem(layout, batched)
    A.requires_grad_()
    sparse_mm(A, B).sum().backward()
    if A.layout == torch.sparse_csr:
        assert torch.equal(A.grad.crow_indices(), A.crow_indices())
        assert torch.equal(A.grad.col_indices(), A.col_indices())
        assert A.grad.crow_indices().dtype == A.crow_indices().dtype
    else:
        assert torch.equal(A.grad._indices(), A._indices())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batched", [False, True])
def test_gradcheck(layout, batched):
    A, _, _, B = _problem(layout, batched, n=4, m=3, p=2)
    values = stored_values(A).detach().clone().requires_grad_()
    B = B.requires_grad_()
    assert torch.autograd.gradcheck(lambda v, b: sparse_mm(rebuild(A, v), b), (values, B))


def test_vector_right_hand_side():
    A, dense, _, B = _problem("csr", False)
    b = B[:, 0].clone().requires_grad_()
    c = sparse_mm(A, b)
    assert c.shape == (A.shape[0],)
    torch.testing.assert_close(c, dense @ b)
    values = A.values().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda v, x: sparse_mm(rebuild(A, v), x), (values, b))


def test_uncoalesced_duplicates_are_summed():
    idx = torch.tensor([[0, 1, 0, 1], [0, 1, 0, 0]])
    A = torch.sparse_coo_tensor(idx, torch.tensor([1.0, 2.0, 3.0, 5.0], dtype=torch.float64), (2, 2))
    B = torch.tensor([[1.0], [10.0]], dtype=torch.float64)
    torch.testing.assert_close(sparse_mm(A, B), torch.tensor([[4.0], [25.0]], dtype=torch.float64))
    # the gradient reaches every duplicate value with dL/dA_ij of its (i, j)
    v = torch.tensor([1.0, 2.0, 3.0, 5.0], dtype=torch.float64, requires_grad=True)
    sparse_mm(torch.sparse_coo_tensor(idx, v, (2, 2)), B).sum().backward()
    torch.testing.assert_close(v.grad, torch.tensor([1.0, 10.0, 1.0, 1.0], dtype=torch.float64))


def test_empty_matrix_and_empty_rows():
    A = torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), (3, 4)).requires_grad_()
    B = torch.randn(4, 2, requires_grad=True)
    C = sparse_mm(A, B)
    torch.testing.assert_close(C, torch.zeros(3, 2))
    C.sum().backward()
    assert A.grad._values().numel() == 0
    torch.testing.assert_close(B.grad, torch.zeros(4, 2))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batched", [False, True])
def test_transposed_product_matches_dense(layout, batched):
    A, dense, mask, _ = _problem(layout, batched)
    g = torch.Generator().manual_seed(1)
    B = torch.randn(*A.shape[:-2], A.shape[-2], 3, generator=g, dtype=torch.float64, requires_grad=True)
    A.requires_grad_()
    W = torch.randn(*A.shape[:-2], A.shape[-1], 3, generator=g, dtype=torch.float64)
    C = sparse_mm(A, B, transpose=True)
    (C * W).sum().backward()
    Ad = dense.clone().requires_grad_()
    Bd = B.detach().clone().requires_grad_()
    Cd = Ad.transpose(-1, -2) @ Bd
    (Cd * W).sum().backward()
    torch.testing.assert_close(C, Cd)
    torch.testing.assert_close(B.grad, Bd.grad)
    assert A.grad.layout == A.layout
    torch.testing.assert_close(stored_values(A.grad), dense_grad_at_pattern(Ad.grad, A.grad))


def test_transposed_product_gradcheck_and_shape_errors():
    A, *_ = _problem("csr", False)
    values = stored_values(A).clone().requires_grad_()
    B = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, B: sparse_mm(rebuild(A, v), B, transpose=True), (values, B))
    assert sparse_mm(A, torch.ones(6, dtype=torch.float64), transpose=True).shape == (5,)
    with pytest.raises(ValueError, match=r"A\^T \(A of shape \(6, 5\)\) needs B.shape\[-2\] == 6"):
        sparse_mm(A, torch.ones(5, 2, dtype=torch.float64), transpose=True)

"""Hypothesis-driven random sparsity patterns (empty rows and columns, n = 1, empty matrices) against dense maths."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseprec import sparse_mm, sparse_triangular_solve
from tests.conftest import dense_grad_at_pattern, sparse_from_dense, stored_values

LAYOUT = st.sampled_from(["coo", "csr", "csr32", "coo_uncoalesced"])


@st.composite
def masks(draw, triangular=False):
    n = draw(st.integers(1, 7))
    m = n if triangular else draw(st.integers(1, 7))
    bits = draw(st.lists(st.booleans(), min_size=n * m, max_size=n * m))
    mask = torch.tensor(bits, dtype=torch.bool).reshape(n, m)
    if draw(st.booleans()):  # force some empty rows
        mask[draw(st.integers(0, n - 1))] = False
    return mask


@settings(max_examples=60, deadline=None)
@given(mask=masks(), layout=LAYOUT, p=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_mm_random_patterns(mask, layout, p, seed):
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(mask.shape, generator=g, dtype=torch.float64) * mask
    A = sparse_from_dense(dense, mask, layout).requires_grad_()
    B = torch.randn(mask.shape[1], p, generator=g, dtype=torch.float64, requires_grad=True)
    C = sparse_mm(A, B)
    C.sum().backward()
    Ad = dense.clone().requires_grad_()
    Bd = B.detach().clone().requires_grad_()
    (Ad @ Bd).sum().backward()
    torch.testing.assert_close(C, Ad @ Bd)
    torch.testing.assert_close(B.grad, Bd.grad)
    torch.testing.assert_close(stored_values(A.grad), dense_grad_at_pattern(Ad.grad, A.grad))


@settings(max_examples=60, deadline=None)
@given(
    mask=masks(triangular=True),
    layout=LAYOUT,
    upper=st.booleans(),
    unitriangular=st.booleans(),
    transpose=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_triangular_random_patterns(mask, layout, upper, unitriangular, transpose, seed):
    n = mask.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    mask = (mask.triu() if upper else mask.tril()) & ~eye
    if not unitriangular:
        mask |= eye
    g = torch.Generator().manual_seed(seed)
    dense = 0.3 * torch.randn(n, n, generator=g, dtype=torch.float64)
    dense = (dense + torch.diag(1.5 + torch.rand(n, generator=g, dtype=torch.float64))) * mask
    A = sparse_from_dense(dense, mask, layout).requires_grad_()
    B = torch.randn(n, 2, generator=g, dtype=torch.float64, requires_grad=True)
    X = sparse_triangular_solve(A, B, upper=upper, unitriangular=unitriangular, transpose=transpose)
    X.sum().backward()
    Ad = dense.clone().requires_grad_()
    Bd = B.detach().clone().requires_grad_()
    M = Ad.T if transpose else Ad
    Xd = torch.linalg.solve_triangular(M, Bd, upper=upper != transpose, unitriangular=unitriangular)
    Xd.sum().backward()
    torch.testing.assert_close(X, Xd)
    torch.testing.assert_close(B.grad, Bd.grad)
    if mask.any():
        torch.testing.assert_close(stored_values(A.grad), dense_grad_at_pattern(Ad.grad, A.grad))

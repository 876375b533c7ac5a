"""Drop-in agreement with torchsparsegradutils (same signatures, same outputs and gradients)."""

from __future__ import annotations

import pytest
import torch

from sparseprec import sparse_mm, sparse_triangular_solve
from tests.conftest import random_pattern, sparse_from_dense
from tests.ops.test_triangular import triangular_problem

tsgu = pytest.importorskip("torchsparsegradutils")


def _grads(fn, A, B):
    A = A.detach().requires_grad_()
    B = B.detach().clone().requires_grad_()
    out = fn(A, B)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
    return out, A.grad, B.grad


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize(
    "upper,unitriangular,transpose", [(True, False, False), (False, False, True), (False, True, False)]
)
def test_triangular_solve_matches(layout, upper, unitriangular, transpose):
    A, _, B = triangular_problem(layout, False, upper, unitriangular, n=20, p=4, seed=3)
    kw = dict(upper=upper, unitriangular=unitriangular, transpose=transpose)
    ours = _grads(lambda a, b: sparse_triangular_solve(a, b, **kw), A, B)
    theirs = _grads(lambda a, b: tsgu.sparse_triangular_solve(a, b, **kw), A, B)
    torch.testing.assert_close(ours[0], theirs[0])
    torch.testing.assert_close(ours[2], theirs[2])
    torch.testing.assert_close(ours[1].to_dense(), theirs[1].to_dense())


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_mm_matches(layout):
    g = torch.Generator().manual_seed(1)
    mask = random_pattern((15, 12), 0.3, g)
    A = sparse_from_dense(torch.randn(15, 12, generator=g, dtype=torch.float64) * mask, mask, layout)
    B = torch.randn(12, 3, generator=g, dtype=torch.float64)
    ours = _grads(sparse_mm, A, B)
    theirs = _grads(tsgu.sparse_mm, A, B)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.to_dense(), b.to_dense())

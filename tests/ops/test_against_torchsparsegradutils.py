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


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_generic_solve_matches_and_accepts_their_solvers(layout):
    # symmetric A (their default transpose_solve reuses `solve` on A, which is only right for symmetric A)
    from torchsparsegradutils.utils import linear_cg
    from torchsparsegradutils.utils.linear_cg import LinearCGSettings

    from sparseprec import sparse_generic_solve
    from tests.solvers.problems import as_kind, spd_matrix

    A, mask = spd_matrix(25)
    A = as_kind(A, mask, layout)
    B = torch.randn(25, 3, dtype=torch.float64)
    settings = LinearCGSettings(cg_tolerance=1e-12, max_cg_iterations=500)
    theirs = _grads(lambda a, b: tsgu.sparse_generic_solve(a, b, solve=linear_cg, settings=settings), A, B)
    ours = _grads(lambda a, b: sparse_generic_solve(a, b, rtol=1e-12), A, B)  # our default: MINRES
    with_their_solver = _grads(lambda a, b: sparse_generic_solve(a, b, solve=linear_cg, settings=settings), A, B)
    for result in (ours, with_their_solver):
        torch.testing.assert_close(result[0], theirs[0], rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(result[2], theirs[2], rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(result[1].to_dense(), theirs[1].to_dense(), rtol=1e-6, atol=1e-8)

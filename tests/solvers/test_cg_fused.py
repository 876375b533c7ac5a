"""CG's fused loops against the mathematics: dense solves, the textbook recurrence, per-column convergence.

CG runs a single CPU column with host scalars and blocks with fused, chunked passes (``solvers/_blocks.py``); both
must be the Hestenes–Stiefel recurrence and freeze each column once it converges.
"""

from __future__ import annotations

import pytest
import torch

import sparseprec.solvers._blocks as blocks
from sparseprec import ConvergenceWarning
from sparseprec.solvers import CG, Jacobi, Status
from sparseprec.solvers._blocks import BlockPasses

DTYPES = [torch.float32, torch.float64]


def spd(n: int, dtype: torch.dtype, seed: int = 0, spread: float = 1.0) -> torch.Tensor:
    """A sparse SPD matrix: a 1-D Laplacian plus a positive diagonal whose scale grows with ``spread``."""
    g = torch.Generator().manual_seed(seed)
    main = 2.0 + spread * torch.rand(n, generator=g, dtype=torch.float64)
    A = torch.diag(main) - torch.diag(torch.ones(n - 1, dtype=torch.float64), 1)
    A = A - torch.diag(torch.ones(n - 1, dtype=torch.float64), -1)
    return A.to(dtype).to_sparse_csr()


def textbook_cg(A: torch.Tensor, b: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """The iterates x_1 … x_steps of unpreconditioned CG from x_0 = 0, in float64, one vector at a time."""
    A, b = A.double(), b.double()
    x, r = torch.zeros_like(b), b.clone()
    p, rr = r.clone(), r @ r
    iterates = []
    for _ in range(steps):
        q = A @ p
        alpha = rr / (p @ q)
        x, r = x + alpha * p, r - alpha * q
        rr_next = r @ r
        p, rr = r + (rr_next / rr) * p, rr_next
        iterates.append(x.clone())
    return iterates


@pytest.fixture(params=["unchunked", "chunked"])
def chunking(request, monkeypatch):
    """Blocks in one chunk, and in chunks of a few rows (the chunked passes of a large block on a CPU)."""
    if request.param == "chunked":
        monkeypatch.setattr(blocks, "CHUNK_ELEMENTS", 8)
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3])
def test_matches_dense_solve(dtype, k, chunking):
    n = 40
    A = spd(n, dtype)
    B = torch.randn(n, k, generator=torch.Generator().manual_seed(1), dtype=dtype)
    solution = CG(rtol=1e-5 if dtype == torch.float32 else 1e-12).solve(A, B)
    expected = torch.linalg.solve(A.to_dense().double(), B.double())
    assert solution.success
    tol = 1e-3 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(solution.value.double(), expected, rtol=tol, atol=tol)
    assert solution.value.dtype == dtype and solution.value.shape == B.shape


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("steps", [1, 3, 7])
def test_iterates_follow_textbook_recurrence(k, steps, chunking):
    # maxiter = steps stops CG after exactly `steps` iterations (the tolerance is out of reach): its X is x_steps
    n = 30
    A = spd(n, torch.float64, spread=5.0)
    B = torch.randn(n, k, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with pytest.warns(ConvergenceWarning):
        solution = CG(rtol=1e-14, maxiter=steps, throw=False).solve(A, B)
    assert solution.status is Status.MAX_ITERATIONS
    for j in range(k):
        expected = textbook_cg(A.to_dense(), B[:, j], steps)[-1]
        torch.testing.assert_close(solution.value[:, j], expected, rtol=1e-10, atol=1e-12)
    assert solution.iterations.tolist() == [steps] * k


def test_single_column_equals_block_column():
    # the host-scalar loop (one column) and the block loop (the same column twice) run the same recurrence
    n = 50
    A = spd(n, torch.float64, spread=3.0)
    b = torch.randn(n, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    single = CG(rtol=1e-10).solve(A, b)
    block = CG(rtol=1e-10).solve(A, torch.cat([b, b], 1))
    torch.testing.assert_close(block.value[:, :1], single.value, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(block.value[:, 1:], single.value, rtol=1e-12, atol=1e-14)
    # the two loops sum their inner products in different orders (BLAS dot vs chunked column sums): on another CPU a
    # residual that lands on the tolerance may stop one of them a step earlier, so the counts may differ by one
    assert all(abs(int(i) - int(single.iterations[0])) <= 1 for i in block.iterations)


@pytest.mark.parametrize("dtype", DTYPES)
def test_columns_converge_independently(dtype, chunking):
    # an easy column (an eigenvector of A: exact after one step), a zero column, and hard ones; every column meets
    # its own tolerance and stops there, and a converged column's x is frozen (its own solution, not perturbed by
    # the iterations the other columns still need)
    n = 60
    A = spd(n, dtype, spread=20.0)
    dense = A.to_dense().double()
    g = torch.Generator().manual_seed(4)
    hard = torch.randn(n, 2, generator=g, dtype=torch.float64)
    eigvec = torch.linalg.eigh(dense).eigenvectors[:, :1]
    B = torch.cat([hard[:, :1], eigvec, torch.zeros(n, 1, dtype=torch.float64), hard[:, 1:]], 1).to(dtype)
    rtol = 1e-4 if dtype == torch.float32 else 1e-10
    solution = CG(rtol=rtol).solve(A, B)
    assert solution.converged.all()
    its = solution.iterations
    assert its[2] == 0  # b = 0: x = 0 already meets the test
    assert its[1] < its[0] and its[1] < its[3]
    residual = torch.linalg.vector_norm(B.double() - dense @ solution.value.double(), dim=0)
    bnorm = torch.linalg.vector_norm(B.double(), dim=0)
    assert (residual <= 10 * rtol * bnorm + 1e-30).all()
    # each column equals its own solve
    for j in range(4):
        alone = CG(rtol=rtol).solve(A, B[:, j])
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(solution.value[:, j], alone.value, rtol=tol, atol=tol)
        assert abs(int(alone.iterations) - int(its[j])) <= 1  # (different summation orders, as above)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 3])
def test_jacobi_preconditioned_matches_dense(dtype, k, chunking):
    n = 40
    A = spd(n, dtype, spread=100.0)
    B = torch.randn(n, k, generator=torch.Generator().manual_seed(5), dtype=dtype)
    solution = CG(rtol=1e-5 if dtype == torch.float32 else 1e-12, preconditioner=Jacobi).solve(A, B)
    expected = torch.linalg.solve(A.to_dense().double(), B.double())
    tol = 1e-3 if dtype == torch.float32 else 1e-9
    assert solution.success
    torch.testing.assert_close(solution.value.double(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("k", [1, 2])
def test_not_positive_definite_column_is_reported(k):
    # A = diag(1, -1): b = e_2 has pᵀAp < 0 at once; in a block, the other column (b = e_1) still converges
    A = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64).to_sparse_csr()
    B = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)[:, :k]
    with pytest.warns(ConvergenceWarning):
        solution = CG(rtol=1e-10, throw=False).solve(A, B)
    assert solution.status is Status.NOT_POSITIVE_DEFINITE
    assert not bool(solution.converged[0])
    assert int(solution.iterations[0]) == 0
    if k == 2:
        assert bool(solution.converged[1])
        torch.testing.assert_close(solution.value[:, 1], torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_symmetry_check_repeats_after_values_change():
    # a matrix found symmetric is not checked again, unless its values change in place
    A = spd(5, torch.float64)
    b = torch.ones(5, dtype=torch.float64)
    CG(rtol=1e-10).solve(A, b)
    A.values()[1] += 1.0  # entry (0, 1) only: no longer symmetric
    with pytest.raises(ValueError, match="symmetric"):
        CG(rtol=1e-10).solve(A, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 5])
def test_block_passes_are_column_inner_products(dtype, k, monkeypatch):
    monkeypatch.setattr(blocks, "CHUNK_ELEMENTS", 7)
    g = torch.Generator().manual_seed(6)
    X, Y, P, Q = (torch.randn(23, k, generator=g, dtype=dtype) for _ in range(4))
    passes = BlockPasses(X)
    assert len(passes.bounds) > 1
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(passes.dot(X, Y), (X * Y).sum(0), **tol)
    rz, rr = passes.dots(X, Y)
    torch.testing.assert_close(rz, (X * Y).sum(0), **tol)
    torch.testing.assert_close(rr, (X * X).sum(0), **tol)
    alpha = torch.rand(k, generator=g, dtype=dtype)
    X0, R0 = X.clone(), Y.clone()
    square = passes.step(X, P, Y, Q, alpha, square=True)
    torch.testing.assert_close(X, X0 + P * alpha, **tol)
    torch.testing.assert_close(Y, R0 - Q * alpha, **tol)
    torch.testing.assert_close(square, (Y * Y).sum(0), **tol)

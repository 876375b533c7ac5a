"""sparse_generic_solve: any solver forward, exact implicit gradients at the stored entries."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from sparseprec import ConvergenceError, sparse_generic_solve
from sparseprec.solvers import CG, BiCGSTAB, bicgstab, cg
from tests.conftest import dense_grad_at_pattern, rebuild, stored_values
from tests.solvers.problems import as_kind, indefinite_matrix, nonsymmetric_matrix, spd_matrix


def scipy_solve(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """A non-differentiable direct solver: SciPy's spsolve on a CSR copy of A."""
    csr = A.to_sparse_csr()
    M = sp.csr_matrix((csr.values().numpy(), csr.col_indices().numpy(), csr.crow_indices().numpy()), shape=A.shape)
    X = spla.spsolve(M.tocsc(), B.numpy())
    return torch.from_numpy(np.asarray(X)).reshape(B.shape)


def check_against_dense(A, mask, layout, B, **kwargs):
    As = as_kind(A, mask, layout).requires_grad_()
    Bs = B.clone().requires_grad_()
    weights = torch.randn(B.shape, dtype=B.dtype)
    X = sparse_generic_solve(As, Bs, **kwargs)
    assert X.shape == B.shape
    (X * weights).sum().backward()
    Ad, Bd = A.clone().requires_grad_(), B.clone().requires_grad_()
    Xd = torch.linalg.solve(Ad, Bd)
    (Xd * weights).sum().backward()
    torch.testing.assert_close(X, Xd, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(Bs.grad, Bd.grad, rtol=1e-7, atol=1e-9)
    assert As.grad.layout == As.layout
    torch.testing.assert_close(stored_values(As.grad), dense_grad_at_pattern(Ad.grad, As.grad), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("layout", ["coo", "csr", "csr32", "coo_uncoalesced"])
@pytest.mark.parametrize("k", [None, 1, 3])
def test_default_minres_on_symmetric_indefinite(layout, k):
    A, mask = indefinite_matrix(30)
    B = torch.randn(30, dtype=torch.float64) if k is None else torch.randn(30, k, dtype=torch.float64)
    check_against_dense(A, mask, layout, B, rtol=1e-13)


@pytest.mark.parametrize("solve", [CG(rtol=1e-13), cg], ids=["CG-object", "cg-function"])
def test_cg_on_spd(solve):
    A, mask = spd_matrix(30)
    kwargs = {} if isinstance(solve, CG) else {"rtol": 1e-13}
    check_against_dense(A, mask, "csr", torch.randn(30, 2, dtype=torch.float64), solve=solve, **kwargs)


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("solve", [BiCGSTAB(rtol=1e-13), scipy_solve], ids=["BiCGSTAB", "scipy-spsolve"])
def test_non_symmetric_default_transpose_solve_is_right(layout, solve):
    # the default backward solves with Aᵀ (not A): only right for non-symmetric A if Aᵀ is really what it gets
    A, mask = nonsymmetric_matrix(30)
    check_against_dense(A, mask, layout, torch.randn(30, 2, dtype=torch.float64), solve=solve)


def test_transpose_solve_receives_A_itself():
    # torchsparsegradutils' convention: transpose_solve(A, G) must return A⁻ᵀ G
    A, mask = nonsymmetric_matrix(20)
    seen = []

    def transpose_solve(A_, G):
        seen.append(A_)
        return torch.linalg.solve(A_.to_dense().T, G)

    B = torch.randn(20, dtype=torch.float64)
    check_against_dense(A, mask, "csr", B, solve=scipy_solve, transpose_solve=transpose_solve)
    assert len(seen) == 1 and torch.equal(seen[0].to_dense(), A)


def test_kwargs_reach_both_solves():
    A, mask = spd_matrix(20)
    calls = []

    def solve(A_, B_, **kwargs):
        calls.append(kwargs)
        return cg(A_, B_, **kwargs)

    As = as_kind(A, mask, "csr").requires_grad_()
    sparse_generic_solve(As, torch.ones(20, dtype=torch.float64), solve=solve, rtol=1e-12, maxiter=500).sum().backward()
    assert calls == [{"rtol": 1e-12, "maxiter": 500}] * 2
    with pytest.raises(ConvergenceError, match="maxiter=1"):
        sparse_generic_solve(As, torch.ones(20, dtype=torch.float64), solve=cg, maxiter=1)


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_gradcheck(layout):
    A, mask = nonsymmetric_matrix(10)
    As = as_kind(A, mask, layout)
    values = stored_values(As).clone().requires_grad_()
    B = torch.randn(10, 2, dtype=torch.float64, requires_grad=True)

    def f(values, B):
        return sparse_generic_solve(rebuild(As, values), B, solve=bicgstab, rtol=1e-13)

    assert torch.autograd.gradcheck(f, (values, B), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_exact_solver_gradcheck_tight():
    A, mask = nonsymmetric_matrix(10)
    As = as_kind(A, mask, "csr")
    values = stored_values(As).clone().requires_grad_()
    B = torch.randn(10, dtype=torch.float64, requires_grad=True)
    f = lambda v, b: sparse_generic_solve(rebuild(As, v), b, solve=scipy_solve)  # noqa: E731
    assert torch.autograd.gradcheck(f, (values, B))


def test_solver_results_are_checked():
    A, mask = spd_matrix(10)
    As = as_kind(A, mask, "csr")
    B = torch.ones(10, dtype=torch.float64)
    # (n, 1) for a 1-D B is accepted, as torchsparsegradutils' solvers return it
    X = sparse_generic_solve(As, B, solve=lambda A_, B_: cg(A_, B_.unsqueeze(1), rtol=1e-12))
    assert X.shape == (10,)
    with pytest.raises(ValueError, match="solve must return a dense tensor like its right-hand side"):
        sparse_generic_solve(As, B, solve=lambda A_, B_: B_.float())
    with pytest.raises(TypeError, match="solve must return a torch.Tensor, got ndarray"):
        sparse_generic_solve(As, B, solve=lambda A_, B_: B_.numpy())
    with pytest.raises(TypeError, match="solve must be callable"):
        sparse_generic_solve(As, B, solve="cg")
    with pytest.raises(ValueError, match="single \\(n, n\\) matrix"):
        sparse_generic_solve(torch.stack([A, A]).to_sparse(), torch.ones(2, 10, 1, dtype=torch.float64))
    with pytest.raises(TypeError, match="A must be a sparse COO or CSR tensor"):
        sparse_generic_solve(A, B)


def test_symmetric_declaration_is_checked_against_the_pattern():
    """``symmetric=`` (the gradient convention of a symmetric operand, tested in tests/test_solve_convention.py) names
    a storage the pattern must have."""
    Q = torch.tensor([[4.0, 1.0, 0.0], [1.0, 3.0, -1.0], [0.0, -1.0, 2.0]], dtype=torch.float64)
    B = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="symmetric must be None or one of \\('full', 'lower', 'upper'\\), got 'yes'"):
        sparse_generic_solve(Q.to_sparse_csr(), B, symmetric="yes")
    with pytest.raises(ValueError, match='declared symmetric="full" .* pattern is not symmetric'):
        sparse_generic_solve(Q.tril().to_sparse_csr(), B, symmetric="full")
    with pytest.raises(ValueError, match='declared symmetric="lower" .* above the diagonal, at \\(0, 1\\)'):
        sparse_generic_solve(Q.to_sparse_csr(), B, symmetric="lower")
    with pytest.raises(ValueError, match='declared symmetric="upper" .* below the diagonal, at \\(1, 0\\)'):
        sparse_generic_solve(Q.to_sparse_coo(), B, symmetric="upper")
    # declared symmetric, the gradient's solve is `solve` on A itself (no transpose is built or asked for)
    seen = []

    def solve(A, rhs):
        seen.append(A)
        return torch.linalg.solve(A.to_dense(), rhs)

    A = Q.to_sparse_csr().requires_grad_()
    sparse_generic_solve(A, B, solve, symmetric="full").sum().backward()
    assert len(seen) == 2 and seen[1] is seen[0]

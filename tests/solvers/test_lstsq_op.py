"""sparse_generic_lstsq against the mathematics: dense least squares with autograd, gradcheck, second derivatives.

The rule is checked with exact dense solvers passed as ``lstsq``/``transpose_lstsq`` (so any error is the rule's),
then with the library's LSMR/LSQR (one adjoint run for the normal solve), damped problems, dense and callable ``A``.
"""

from __future__ import annotations

import pytest
import torch

from sparseprec import sparse_generic_lstsq
from sparseprec.solvers import LSMR, LSQR
from tests.conftest import dense_grad_at_pattern, random_pattern, rebuild, sparse_from_dense, stored_values


def _dense_lstsq(A, B):
    return torch.linalg.pinv(A.to_dense()) @ B


def _dense_transpose_lstsq(A, G):  # the minimum-norm solution of Aᵀ Y = G
    return torch.linalg.pinv(A.to_dense().mT) @ G


def tall_problem(layout="csr", m=12, n=5, k=3, seed=0, dtype=torch.float64, density=0.45):
    g = torch.Generator().manual_seed(seed)
    mask = random_pattern((m, n), density, g)
    mask[torch.arange(n), torch.arange(n)] = True  # full column rank (a nonzero on each column's own row)
    dense = (torch.randn(m, n, generator=g, dtype=dtype) + 2 * torch.eye(m, n, dtype=dtype)) * mask
    A = sparse_from_dense(dense, mask, layout)
    B = torch.randn((m,) if k is None else (m, k), generator=g, dtype=dtype)
    return A, dense, B


def _weights(out):
    return torch.linspace(-1, 2, out.numel(), dtype=out.dtype).reshape(out.shape)


def _reference(dense, B, damp=0.0):
    Ad = dense.clone().requires_grad_()
    Bd = B.clone().requires_grad_()
    n = dense.shape[1]
    if damp:
        stacked = torch.cat([Ad, damp * torch.eye(n, dtype=dense.dtype)])
        rhs = torch.cat([Bd, Bd.new_zeros((n,) + tuple(B.shape[1:]))])
        X = torch.linalg.lstsq(stacked, rhs).solution
    else:
        X = torch.linalg.lstsq(Ad, Bd).solution
    (X * _weights(X)).sum().backward()
    return X.detach(), Ad.grad, Bd.grad


def _close_at_pattern(grad, dense_ref, **tol):
    torch.testing.assert_close(stored_values(grad), dense_grad_at_pattern(dense_ref, grad), **tol)


def _ours(A, B, **kw):
    A = A.detach().requires_grad_()
    B = B.detach().clone().requires_grad_()
    X = sparse_generic_lstsq(A, B, **kw)
    (X * _weights(X)).sum().backward()
    return X.detach(), A, B.grad


@pytest.mark.parametrize("layout", ["coo", "csr", "csr32", "coo_uncoalesced"])
@pytest.mark.parametrize("k", [None, 1, 3])
@pytest.mark.parametrize("pair", [True, False], ids=["with_transpose_lstsq", "lstsq_on_At"])
def test_rule_matches_dense_autograd_with_exact_solvers(layout, k, pair):
    A, dense, B = tall_problem(layout, k=k)
    kw = {"lstsq": _dense_lstsq, "transpose_lstsq": _dense_transpose_lstsq if pair else None}
    X, A_leaf, gB = _ours(A, B, **kw)
    X_ref, gA_ref, gB_ref = _reference(dense, B)
    torch.testing.assert_close(X, X_ref)
    torch.testing.assert_close(gB, gB_ref)
    gA = A_leaf.grad
    assert gA.layout == A.layout
    torch.testing.assert_close(stored_values(gA), dense_grad_at_pattern(gA_ref, gA))


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_gradcheck_and_gradgradcheck_in_values_and_B(layout):
    A, _, B = tall_problem(layout, m=8, n=4, k=2, seed=3)
    values = stored_values(A).clone().requires_grad_()
    B = B.clone().requires_grad_()

    def f(v, b):
        return sparse_generic_lstsq(rebuild(A, v), b, lstsq=_dense_lstsq, transpose_lstsq=_dense_transpose_lstsq)

    assert torch.autograd.gradcheck(f, (values, B))
    assert torch.autograd.gradgradcheck(f, (values, B))


def test_result_shapes_follow_B():
    A, _, B = tall_problem(k=None)
    assert sparse_generic_lstsq(A, B, lstsq=_dense_lstsq).shape == (5,)
    assert sparse_generic_lstsq(A, B[:, None], lstsq=_dense_lstsq).shape == (5, 1)


# ---- with the library's solvers ------------------------------------------------------------------------------------
TIGHT = {"atol": 1e-12, "btol": 1e-12}


@pytest.mark.parametrize("solver", [LSMR(**TIGHT), LSQR(**TIGHT)], ids=["LSMR", "LSQR"])
@pytest.mark.parametrize("k", [None, 3])
@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_library_solvers_match_dense_autograd(solver, k, layout):
    A, dense, B = tall_problem(layout, k=k, seed=5)
    X, A_leaf, gB = _ours(A, B, lstsq=solver)
    X_ref, gA_ref, gB_ref = _reference(dense, B)
    torch.testing.assert_close(X, X_ref, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(gB, gB_ref, rtol=1e-7, atol=1e-8)
    _close_at_pattern(A_leaf.grad, gA_ref, rtol=1e-7, atol=1e-8)


def test_default_solver_is_lsmr_with_scipy_tolerances():
    A, dense, B = tall_problem(k=2, seed=6)
    X, A_leaf, gB = _ours(A, B)
    X_ref, gA_ref, gB_ref = _reference(dense, B)
    torch.testing.assert_close(X, X_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gB, gB_ref, rtol=1e-4, atol=1e-5)


def test_kwargs_reach_the_solver():
    A, dense, B = tall_problem(k=2, seed=6)
    X, A_leaf, gB = _ours(A, B, atol=1e-13, btol=1e-13)
    X_ref, gA_ref, gB_ref = _reference(dense, B)
    torch.testing.assert_close(X, X_ref, rtol=1e-9, atol=1e-10)
    _close_at_pattern(A_leaf.grad, gA_ref, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("cls", [LSMR, LSQR])
def test_damped_rule_matches_the_stacked_dense_problem(cls):
    A, dense, B = tall_problem(k=2, seed=7)
    X, A_leaf, gB = _ours(A, B, lstsq=cls(damp=0.7, **TIGHT))
    X_ref, gA_ref, gB_ref = _reference(dense, B, damp=0.7)
    torch.testing.assert_close(X, X_ref, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(gB, gB_ref, rtol=1e-7, atol=1e-8)
    _close_at_pattern(A_leaf.grad, gA_ref, rtol=1e-7, atol=1e-8)


def test_second_derivatives_with_lsmr():
    A, _, B = tall_problem(m=8, n=4, k=1, seed=8)
    values = stored_values(A).clone().requires_grad_()
    B = B.clone().requires_grad_()
    solver = LSMR(atol=1e-14, btol=1e-14)

    def f(v, b):
        return sparse_generic_lstsq(rebuild(A, v), b, lstsq=solver)

    assert torch.autograd.gradgradcheck(f, (values, B), atol=1e-6, rtol=1e-5)


def test_solver_solve_attaches_the_same_gradient():
    # LSMR.solve on a sparse A that requires grad returns X on the graph of A and B (the same rule)
    A, dense, B = tall_problem(k=2, seed=9)
    A = A.detach().requires_grad_()
    Bl = B.clone().requires_grad_()
    X = LSMR(**TIGHT).solve(A, Bl).value
    (X * _weights(X)).sum().backward()
    _, gA_ref, gB_ref = _reference(dense, B)
    torch.testing.assert_close(Bl.grad, gB_ref, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(stored_values(A.grad), dense_grad_at_pattern(gA_ref, A.grad), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("damp", [0.0, 0.5])
def test_dense_A_gets_the_dense_gradient(damp):
    _, dense, B = tall_problem(k=2, seed=10)
    Ad = dense.clone().requires_grad_()
    Bl = B.clone().requires_grad_()
    X = LSQR(damp=damp, **TIGHT)(Ad, Bl)
    (X * _weights(X)).sum().backward()
    _, gA_ref, gB_ref = _reference(dense, B, damp=damp)
    torch.testing.assert_close(Bl.grad, gB_ref, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(Ad.grad, gA_ref, rtol=1e-7, atol=1e-8)


def test_callable_pair_passes_gradients_to_captured_parameters():
    _, dense, B = tall_problem(k=2, seed=11)
    scale = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    pair = (lambda V: scale * (dense @ V), lambda U: scale * (dense.mT @ U))
    X = LSMR(**TIGHT)(pair, B)
    (X * _weights(X)).sum().backward()
    s = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    X_ref = torch.linalg.lstsq(s * dense, B).solution
    (X_ref * _weights(X_ref)).sum().backward()
    torch.testing.assert_close(X.detach(), X_ref.detach(), rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(scale.grad, s.grad, rtol=1e-7, atol=1e-8)


def test_a_solve_after_an_in_place_change_of_A_uses_the_new_values():
    # Aᵀ's gathered values are kept with A between solves: an in-place change must not be missed
    A, dense, B = tall_problem(k=2, seed=12)
    solver = LSMR(**TIGHT)
    first = solver(A, B)
    torch.testing.assert_close(first, torch.linalg.lstsq(dense, B).solution, rtol=1e-8, atol=1e-9)
    stored_values(A).mul_(2.0)
    torch.testing.assert_close(solver(A, B), first / 2, rtol=1e-8, atol=1e-9)


# ---- edge cases and errors -------------------------------------------------------------------------------------------
def test_empty_right_hand_side_gives_empty_result_and_zero_gradients():
    A, _, _ = tall_problem()
    A = A.detach().requires_grad_()
    B = torch.zeros(12, 0, dtype=torch.float64, requires_grad=True)
    X = sparse_generic_lstsq(A, B)
    assert X.shape == (5, 0)
    X.sum().backward()
    assert B.grad.shape == (12, 0)
    assert A.grad is not None and float(stored_values(A.grad).abs().sum()) == 0.0


def test_errors_name_the_argument():
    A, _, B = tall_problem(k=2)
    with pytest.raises(ValueError, match=r"B.shape\[0\] == 12"):
        sparse_generic_lstsq(A, B[:5])
    with pytest.raises(TypeError, match="same dtype|dtype"):
        sparse_generic_lstsq(A, B.float())
    with pytest.raises(TypeError, match="lstsq must be callable"):
        sparse_generic_lstsq(A, B, lstsq=3)
    with pytest.raises(TypeError, match="sparse COO or CSR"):
        sparse_generic_lstsq(A.to_dense(), B)
    with pytest.raises(ValueError, match="lstsq must return a dense tensor like"):
        sparse_generic_lstsq(A, B, lstsq=lambda A_, B_: B_[:2])
    wide = A.to_dense().mT.to_sparse_csr().requires_grad_()
    with pytest.raises(ValueError, match="A must be tall"):
        sparse_generic_lstsq(wide, torch.randn(5, dtype=torch.float64))


def test_wide_system_without_gradient_gives_the_minimum_norm_solution():
    A, dense, _ = tall_problem()
    wide = A.to_dense().mT.to_sparse_csr()
    b = torch.randn(5, dtype=torch.float64)
    x = sparse_generic_lstsq(wide, b, lstsq=LSMR(**TIGHT))
    torch.testing.assert_close(x, torch.linalg.pinv(dense.mT) @ b, rtol=1e-8, atol=1e-9)

"""LSQR and LSMR against the mathematics (dense least squares, minimum-norm solutions, damped stacked solves) and
against SciPy's ``lsqr``/``lsmr`` (iterates for small ``maxiter``, stop codes), as a registry of problems × operator
kinds × right-hand-side shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch

from sparseprec import ConvergenceError, ConvergenceWarning
from sparseprec.solvers._least_squares import STOP_REASONS, LeastSquaresSolution, LeastSquaresStatus
from sparseprec.solvers.lsmr import LSMR, lsmr
from sparseprec.solvers.lsqr import LSQR, lsqr
from tests.conftest import random_pattern, sparse_from_dense

SOLVERS = [LSMR, LSQR]
SCIPY = {LSMR: sla.lsmr, LSQR: sla.lsqr}
TIGHT = {"atol": 1e-12, "btol": 1e-12, "maxiter": 500}


# ---- problems -------------------------------------------------------------------------------------------------------
def sparse_dense(m, n, seed=0, density=0.5, dtype=torch.float64):
    """A random sparse ``(m, n)`` matrix as dense values and its mask; a nonzero on each column's (or row's) own
    diagonal position keeps it of full rank."""
    g = torch.Generator().manual_seed(seed)
    mask = random_pattern((m, n), density, g)
    r = min(m, n)
    mask[torch.arange(r), torch.arange(r)] = True
    dense = (torch.randn(m, n, generator=g, dtype=torch.float64) + 3 * torch.eye(m, n, dtype=torch.float64)) * mask
    return dense.to(dtype), mask


def as_kind(dense, mask, kind):
    """``A`` in one of the operator kinds the solvers take."""
    if kind == "dense":
        return dense
    if kind == "callable":
        return (lambda x: dense @ x, lambda y: dense.mT @ y)
    return sparse_from_dense(dense, mask, kind)


KINDS = ["coo", "csr", "csr32", "coo_uncoalesced", "dense", "callable"]


def rhs(m, k, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((m,) if k is None else (m, k), generator=g, dtype=torch.float64).to(dtype)


def stacked_reference(dense, B, damp):
    """``argmin ‖A x − b‖² + damp² ‖x‖²`` by a dense solve of the stacked problem ``[A; damp I] x = [b; 0]``."""
    m, n = dense.shape
    B2 = B.reshape(m, -1)
    stacked = torch.cat([dense, damp * torch.eye(n, dtype=dense.dtype)])
    rhs_ = torch.cat([B2, B2.new_zeros(n, B2.shape[1])])
    return torch.linalg.lstsq(stacked, rhs_).solution.reshape((n,) + tuple(B.shape[1:]))


# ---- solutions vs dense references ----------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [None, 1, 3])
def test_tall_full_rank_matches_dense_lstsq(solver, kind, k):
    dense, mask = sparse_dense(14, 6)
    B = rhs(14, k)
    solution = solver(**TIGHT).solve(as_kind(dense, mask, kind), B)
    expected = torch.linalg.lstsq(dense, B.reshape(14, -1)).solution.reshape((6,) + tuple(B.shape[1:]))
    assert isinstance(solution, LeastSquaresSolution)
    assert solution.value.shape == expected.shape
    torch.testing.assert_close(solution.value, expected, rtol=1e-8, atol=1e-10)
    assert solution.success and bool(solution.converged.all())
    assert solution.converged.shape == B.shape[1:]
    assert set(solution.stop_code.reshape(-1).tolist()) <= {1, 2, 4, 5}  # inconsistent: 2 (or 5)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", ["csr", "coo", "dense", "callable"])
def test_wide_consistent_gives_the_minimum_norm_solution(solver, kind):
    dense, mask = sparse_dense(5, 12, seed=3)
    B = rhs(5, 2, seed=4)
    solution = solver(**TIGHT).solve(as_kind(dense, mask, kind), B)
    torch.testing.assert_close(solution.value, torch.linalg.pinv(dense) @ B, rtol=1e-8, atol=1e-10)
    assert solution.stop_code.tolist() in ([1, 1], [1, 4], [4, 1], [4, 4])
    assert float(solution.residual_norm.max()) < 1e-9


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("shape", [(14, 6), (6, 6), (5, 12)], ids=["tall", "square", "wide"])
@pytest.mark.parametrize("damp", [0.3, 2.0])
def test_damped_matches_the_stacked_dense_solve(solver, shape, damp):
    dense, mask = sparse_dense(*shape, seed=5)
    B = rhs(shape[0], 3, seed=6)
    solution = solver(damp=damp, **TIGHT).solve(as_kind(dense, mask, "csr"), B)
    X = stacked_reference(dense, B, damp)
    torch.testing.assert_close(solution.value, X, rtol=1e-8, atol=1e-10)
    # the reported true residuals, recomputed from the solution
    R = B - dense @ X
    torch.testing.assert_close(solution.residual_norm, torch.linalg.vector_norm(R, dim=0), rtol=1e-7, atol=1e-10)
    assert float(solution.normal_residual_norm.max()) < 1e-8  # Aᵀ r − damp² x = 0 at the solution
    assert solution.success


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", ["csr", "dense"])
def test_float32_to_a_loose_tolerance(solver, kind):
    dense, mask = sparse_dense(30, 10, seed=7, dtype=torch.float32)
    B = rhs(30, 2, seed=8, dtype=torch.float32)
    X = solver(atol=1e-6, btol=1e-6, maxiter=200).solve(as_kind(dense, mask, kind), B).value
    assert X.dtype == torch.float32
    expected = torch.linalg.lstsq(dense.double(), B.double()).solution
    torch.testing.assert_close(X.double(), expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("solver", SOLVERS)
def test_default_iteration_limit_reaches_tight_tolerances_on_small_problems(solver):
    """Exact arithmetic needs min(m, n) steps; rounding needs a few more at atol = btol = 1e-12 (SciPy's LSMR limit
    of min(m, n) stops 3 of these 30 sparse 7 × 4 problems short of it). The default limit must leave that room."""
    for seed in range(30):
        g = torch.Generator().manual_seed(seed)
        mask = random_pattern((7, 4), 0.2, g)
        mask[torch.arange(4), torch.arange(4)] = True  # full column rank
        dense = torch.randn(7, 4, generator=g, dtype=torch.float64) * mask
        b = torch.randn(7, generator=g, dtype=torch.float64)
        solution = solver(atol=1e-12, btol=1e-12).solve(sparse_from_dense(dense, mask, "csr"), b)
        assert bool(solution.converged), seed
        torch.testing.assert_close(solution.value, torch.linalg.lstsq(dense, b).solution, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("solver", SOLVERS)
def test_x0_is_a_starting_point(solver):
    dense, mask = sparse_dense(14, 6, seed=9)
    A = as_kind(dense, mask, "csr")
    B = rhs(14, 2, seed=10)
    expected = torch.linalg.lstsq(dense, B).solution
    x0 = expected + 1e-3 * rhs(6, 2, seed=11)
    solution = solver(**TIGHT).solve(A, B, x0=x0)
    torch.testing.assert_close(solution.value, expected, rtol=1e-8, atol=1e-10)
    # starting at the solution: stop code 0 (x0 already solves it), x = x0, no iteration
    exact = solver(**TIGHT).solve(dense[:, :6][:6], dense[:6, :6] @ x0[:, 0], x0=x0[:, 0])
    assert int(exact.stop_code) in (0, 1, 4)
    torch.testing.assert_close(exact.value, x0[:, 0])


def test_thin_functions_and_call_overrides():
    dense, mask = sparse_dense(14, 6, seed=12)
    A = as_kind(dense, mask, "csr")
    B = rhs(14, None, seed=13)
    expected = torch.linalg.lstsq(dense, B.unsqueeze(1)).solution.squeeze(1)
    torch.testing.assert_close(lsmr(A, B, **TIGHT), expected)
    torch.testing.assert_close(lsqr(A, B, **TIGHT), expected)
    torch.testing.assert_close(LSMR()(A, B, **TIGHT), expected)
    torch.testing.assert_close(LSQR(atol=0.1)(A, B, atol=1e-12, btol=1e-12), expected)


def test_callables_see_vectors_for_a_vector_rhs():
    dense, _ = sparse_dense(8, 4, seed=14)
    seen = []

    def matvec(x):
        seen.append(("A", tuple(x.shape)))
        return dense @ x

    def rmatvec(y):
        seen.append(("At", tuple(y.shape)))
        return dense.mT @ y

    LSMR(**TIGHT).solve((matvec, rmatvec), rhs(8, None))
    assert set(seen) == {("A", (4,)), ("At", (8,))}


# ---- iterates and stop codes vs SciPy -------------------------------------------------------------------------------
def scipy_solve(solver, dense, b, **settings):
    """SciPy's result for the same settings (SciPy names: iter_lim for lsqr, maxiter for lsmr)."""
    fn = SCIPY[solver]
    maxiter = settings.pop("maxiter", None)
    if maxiter is not None:
        settings["iter_lim" if solver is LSQR else "maxiter"] = maxiter
    out = fn(dense.numpy(), b.numpy(), **settings)
    if solver is LSQR:  # x, istop, itn, r1norm, r2norm, anorm, acond, arnorm, xnorm, var
        return {"x": out[0], "istop": out[1], "itn": out[2], "normA": out[5], "condA": out[6], "normx": out[8]}
    return {"x": out[0], "istop": out[1], "itn": out[2], "normA": out[5], "condA": out[6], "normx": out[7]}


@pytest.mark.filterwarnings("ignore::sparseprec.ConvergenceWarning")
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("maxiter", range(1, 7))
@pytest.mark.parametrize("damp", [0.0, 0.5])
@pytest.mark.parametrize("shape", [(12, 7), (6, 9)], ids=["tall", "wide"])
def test_iterates_equal_scipy(solver, maxiter, damp, shape):
    dense, mask = sparse_dense(*shape, seed=15)
    b = rhs(shape[0], None, seed=16)
    ours = solver(maxiter=maxiter, damp=damp, throw=False)
    solution = ours.solve(as_kind(dense, mask, "csr"), b)  # stop code 7 (a warning) for the smallest maxiter
    ref = scipy_solve(solver, dense, b, maxiter=maxiter, damp=damp)
    np.testing.assert_allclose(solution.value.numpy(), ref["x"], rtol=1e-10, atol=1e-12)
    assert int(solution.stop_code) == ref["istop"]
    assert int(solution.iterations) == ref["itn"]  # same iterates, same stop: not a convergence-speed claim
    np.testing.assert_allclose(float(solution.norm_A), ref["normA"], rtol=1e-10)
    np.testing.assert_allclose(float(solution.cond_A), ref["condA"], rtol=1e-10)
    np.testing.assert_allclose(float(solution.norm_x), ref["normx"], rtol=1e-10)


def _stop_code_problem(case):
    """(A dense, b, settings, expected stop code) for a problem whose reason to stop is unambiguous."""
    dense, _ = sparse_dense(12, 5, seed=17)
    b = rhs(12, None, seed=18)
    if case == "consistent":
        return dense, dense @ rhs(5, None, seed=19), {"atol": 1e-8, "btol": 1e-8}, {1}
    if case == "inconsistent":
        return dense, b, {"atol": 1e-8, "btol": 1e-8}, {2}
    if case == "zero":
        return dense, torch.zeros(12, dtype=torch.float64), {}, {0}
    if case == "conlim":  # columns scaled over 4 decades: cond(A) about 10⁴
        scaled = dense * torch.logspace(-2, 2, 5, dtype=torch.float64)
        return scaled, b, {"conlim": 100.0, "atol": 1e-12, "btol": 1e-12}, {3}
    if case == "maxiter":
        return dense, b, {"maxiter": 2, "atol": 1e-12, "btol": 1e-12}, {7}
    raise ValueError(case)


@pytest.mark.filterwarnings("ignore::sparseprec.ConvergenceWarning")
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("case", ["consistent", "inconsistent", "zero", "conlim", "maxiter"])
def test_stop_codes_match_scipy(solver, case):
    dense, b, settings, expected = _stop_code_problem(case)
    solution = solver(throw=False, **settings).solve(dense.to_sparse_csr(), b)
    if case in ("conlim", "maxiter"):
        assert solution.status in (LeastSquaresStatus.ILL_CONDITIONED, LeastSquaresStatus.MAX_ITERATIONS)
    ref = scipy_solve(solver, dense, b, **settings) if case != "zero" else {"istop": 0, "itn": 0}
    assert int(solution.stop_code) in expected
    assert int(solution.stop_code) == ref["istop"]
    assert abs(int(solution.iterations) - ref["itn"]) <= 1
    assert bool(solution.converged) == (case not in ("conlim", "maxiter"))


@pytest.mark.filterwarnings("ignore::sparseprec.ConvergenceWarning")
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", ["csr", "dense", "callable"])
def test_each_column_of_a_block_equals_its_own_solve(solver, kind):
    """Columns that stop at different iterations and for different reasons (consistent, inconsistent, zero, tiny,
    huge) give exactly what they give alone."""
    dense, mask = sparse_dense(12, 5, seed=20)
    A = as_kind(dense, mask, kind)
    B = torch.stack(
        [
            dense @ rhs(5, None, seed=21),  # consistent: code 1
            rhs(12, None, seed=22),  # inconsistent: code 2
            torch.zeros(12, dtype=torch.float64),  # b = 0: code 0
            1e-200 * rhs(12, None, seed=23),  # tiny: the same as a unit one (scaled)
            1e200 * (dense @ rhs(5, None, seed=24)),  # huge, consistent
            rhs(12, None, seed=25) + dense @ rhs(5, None, seed=26),
        ],
        dim=1,
    )
    for settings in ({"atol": 1e-8, "btol": 1e-8}, {"maxiter": 3}, {"damp": 0.7, "atol": 1e-9, "btol": 1e-9}):
        block = solver(throw=False, **settings).solve(A, B)
        assert len(set(block.iterations.tolist())) > 1 or "maxiter" in settings
        for j in range(B.shape[1]):
            alone = solver(throw=False, **settings).solve(A, B[:, j])
            torch.testing.assert_close(block.value[:, j], alone.value, rtol=1e-12, atol=0.0)
            assert int(block.stop_code[j]) == int(alone.stop_code)
            assert int(block.iterations[j]) == int(alone.iterations)
            torch.testing.assert_close(block.norm_A[j], alone.norm_A)
            # (a residual at rounding level is noise: compared relative to ‖b‖)
            bnorm = float(torch.linalg.vector_norm(B[:, j]))
            torch.testing.assert_close(block.residual_norm[j], alone.residual_norm, rtol=1e-6, atol=1e-12 * bnorm)
    assert int(solver(throw=False).solve(A, B).stop_code[2]) == 0


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_nan_column_fails_alone(solver):
    dense, mask = sparse_dense(12, 5, seed=27)
    B = rhs(12, 3, seed=28)
    B[4, 1] = float("nan")
    with pytest.warns(ConvergenceWarning, match="NaN or Inf"):
        solution = solver(throw=False, **TIGHT).solve(as_kind(dense, mask, "csr"), B)
    assert solution.status is LeastSquaresStatus.NON_FINITE
    assert solution.converged.tolist() == [True, False, True]
    expected = torch.linalg.lstsq(dense, B[:, [0, 2]]).solution
    torch.testing.assert_close(solution.value[:, [0, 2]], expected, rtol=1e-8, atol=1e-10)


# ---- preconditioning by column scaling ------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", ["csr", "coo", "dense", "callable"])
def test_column_scaling_gives_the_same_least_squares_solution(solver, kind):
    dense, mask = sparse_dense(20, 6, seed=29)
    dense = dense * torch.logspace(-3, 3, 6, dtype=torch.float64)  # badly scaled columns
    B = rhs(20, 2, seed=30)
    expected = torch.linalg.lstsq(dense, B).solution
    A = as_kind(dense, mask, kind)
    d = 1.0 / torch.linalg.vector_norm(dense, dim=0)
    for p in [d] if kind == "callable" else ["columns", d]:
        solution = solver(preconditioner=p, **TIGHT).solve(A, B)
        torch.testing.assert_close(solution.value, expected, rtol=1e-8, atol=1e-12)
        assert float(solution.cond_A.max()) < 1e3  # the scaled problem is well conditioned


@pytest.mark.filterwarnings("ignore::sparseprec.ConvergenceWarning")
def test_column_scaling_helps_a_badly_scaled_problem():
    dense, mask = sparse_dense(40, 8, seed=31)
    dense = dense * torch.logspace(-4, 4, 8, dtype=torch.float64)
    A = as_kind(dense, mask, "csr")
    B = rhs(40, None, seed=32)
    plain = LSMR(throw=False, maxiter=30, atol=1e-10, btol=1e-10).solve(A, B)
    scaled = LSMR(throw=False, maxiter=30, atol=1e-10, btol=1e-10, preconditioner="columns").solve(A, B)
    assert scaled.success and not plain.success


# ---- the adjoint solve with its preimage ----------------------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", ["csr", "coo_uncoalesced", "dense", "callable"])
@pytest.mark.parametrize("damp, preconditioner", [(0.0, None), (0.4, None), (0.0, "columns"), (0.0, "tensor")], ids=str)
@pytest.mark.parametrize("k", [None, 3])
def test_solve_adjoint_returns_Y_and_its_preimage(solver, kind, damp, preconditioner, k):
    dense, mask = sparse_dense(15, 6, seed=33)
    G = rhs(6, k, seed=34)
    if preconditioner == "columns" and kind == "callable":
        pytest.skip("a callable pair has no column norms")
    p = torch.rand(6, dtype=torch.float64) + 0.5 if preconditioner == "tensor" else preconditioner
    Y, H, solution = solver(damp=damp, preconditioner=p, **TIGHT)._solve_adjoint(as_kind(dense, mask, kind), G)
    N = dense.mT @ dense + damp**2 * torch.eye(6, dtype=torch.float64)
    H_ref = torch.linalg.solve(N, G)
    torch.testing.assert_close(H, H_ref, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(Y, dense @ H_ref, rtol=1e-8, atol=1e-10)
    assert Y.shape == (15,) + tuple(G.shape[1:]) and H.shape == G.shape
    assert solution.success
    torch.testing.assert_close(solution.value, Y)


@pytest.mark.parametrize("solver", SOLVERS)
def test_solve_adjoint_of_a_wide_matrix_is_the_minimum_norm_solution(solver):
    dense, mask = sparse_dense(15, 6, seed=35)
    G = rhs(6, 2, seed=36)
    Y, H, _ = solver(**TIGHT)._solve_adjoint(as_kind(dense, mask, "csr"), G)
    torch.testing.assert_close(Y, torch.linalg.pinv(dense.mT) @ G, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(dense @ H, Y, rtol=1e-8, atol=1e-10)


# ---- empty problems -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", ["csr", "coo", "dense", "callable"])
@pytest.mark.parametrize("m, n, k", [(0, 4, 2), (5, 0, 2), (5, 4, 0), (0, 0, 1)])
def test_empty_problems_give_zeros(solver, kind, m, n, k):
    dense = torch.zeros(m, n, dtype=torch.float64)
    A = as_kind(dense, dense != 0, kind) if kind != "coo" else dense.to_sparse()
    B = torch.ones(m, k, dtype=torch.float64)
    x0 = torch.ones(n, k, dtype=torch.float64) if kind == "callable" else None
    solution = solver().solve(A, B, x0=x0)
    assert solution.value.shape == (n, k)
    assert not solution.value.any()
    assert solution.success and solution.stop_code.tolist() == [0] * k
    torch.testing.assert_close(solution.residual_norm, torch.linalg.vector_norm(B, dim=0))


# ---- errors and reports ---------------------------------------------------------------------------------------------
def test_failure_raises_with_the_stop_reason_and_warns_without_throw():
    dense, mask = sparse_dense(30, 10, seed=37)
    A = as_kind(dense, mask, "csr")
    B = rhs(30, 2, seed=38)
    with pytest.raises(ConvergenceError, match="maxiter=2") as info:
        LSMR(maxiter=2, atol=1e-12, btol=1e-12).solve(A, B)
    assert STOP_REASONS[7] in str(info.value)
    solution = info.value.solution
    assert isinstance(solution, LeastSquaresSolution) and solution.status is LeastSquaresStatus.MAX_ITERATIONS
    assert solution.stop_code.tolist() == [7, 7] and not solution.converged.any()
    with pytest.warns(ConvergenceWarning, match="iteration limit"):
        value = LSQR(maxiter=2, throw=False).solve(A, B).value
    assert torch.isfinite(value).all()
    with pytest.raises(ConvergenceError, match="conlim") as info:
        LSMR(conlim=1.5).solve(A, B)
    assert info.value.solution.status is LeastSquaresStatus.ILL_CONDITIONED


@pytest.mark.parametrize(
    "settings, error, match",
    [
        ({"atol": -1.0}, ValueError, "atol"),
        ({"btol": float("nan")}, ValueError, "btol"),
        ({"atol": "1e-6"}, TypeError, "atol"),
        ({"conlim": 0.0}, ValueError, "conlim"),
        ({"damp": -0.1}, ValueError, "damp"),
        ({"damp": math.inf}, ValueError, "damp"),
        ({"maxiter": 0}, ValueError, "maxiter"),
        ({"maxiter": 2.5}, TypeError, "maxiter"),
        ({"maxiter": True}, TypeError, "maxiter"),
        ({"preconditioner": "rows"}, ValueError, "columns"),
        ({"preconditioner": lambda x: x}, TypeError, "preconditioner"),
        ({"preconditioner": torch.tensor([1.0, 0.0])}, ValueError, "> 0"),
        ({"preconditioner": torch.ones(2, 2)}, ValueError, "preconditioner"),
        ({"preconditioner": "columns", "damp": 0.1}, ValueError, "changes the problem"),
        ({"throw": 1}, TypeError, "throw"),
    ],
)
@pytest.mark.parametrize("solver", SOLVERS)
def test_bad_settings_are_refused(solver, settings, error, match):
    with pytest.raises(error, match=match):
        solver(**settings)


def _bad_calls():
    dense, _ = sparse_dense(6, 4, seed=39)
    A = dense.to_sparse_csr()
    B = rhs(6, 2)
    pair = (dense.__matmul__, dense.mT.__matmul__)
    z42 = torch.zeros(4, 2, dtype=B.dtype)
    return [
        ("B rows", lambda S: S().solve(A, rhs(5, 2)), ValueError, r"B.shape\[0\] == A.shape\[0\] = 6"),
        ("B 3-D", lambda S: S().solve(A, B[None]), ValueError, "1-D or 2-D"),
        ("B int", lambda S: S().solve(A, B.long()), TypeError, "B must have dtype"),
        ("B sparse", lambda S: S().solve(A, B.to_sparse()), TypeError, "B must be a dense"),
        ("dtype", lambda S: S().solve(A, B.float()), TypeError, "same dtype"),
        ("device", lambda S: S().solve(A, B.to("meta")), ValueError, "same device"),
        ("batched", lambda S: S().solve(torch.stack([dense, dense]).to_sparse(), B), ValueError, "batched"),
        ("csc", lambda S: S().solve(dense.to_sparse_csc(), B), TypeError, "COO or CSR"),
        ("A 1-D", lambda S: S().solve(dense[0], B), ValueError, "A must be 2-D"),
        ("A int", lambda S: S().solve(dense.long(), B), TypeError, "A must have dtype"),
        ("A other", lambda S: S().solve("A", B), TypeError, "pair"),
        ("single callable", lambda S: S().solve(dense.__matmul__, B), TypeError, "pair"),
        ("x0 shape", lambda S: S().solve(A, B, x0=torch.zeros(4, 3, dtype=B.dtype)), ValueError, "x0 must have shape"),
        ("x0 dims", lambda S: S().solve(A, B, x0=torch.zeros(4, dtype=B.dtype)), ValueError, "x0 must be 2-D"),
        ("x0 damp", lambda S: S(damp=0.1).solve(A, B, x0=z42), ValueError, "x − x0"),
        ("d shape", lambda S: S(preconditioner=torch.ones(5, dtype=B.dtype)).solve(A, B), ValueError, r"\(4,\)"),
        ("d dtype", lambda S: S(preconditioner=torch.ones(4)).solve(A, B), ValueError, "float64"),
        ("columns pair", lambda S: S(preconditioner="columns").solve(pair, B), TypeError, "column norms"),
        ("matvec shape", lambda S: S().solve((lambda x: x, pair[1]), B, x0=z42), ValueError, "matvec"),
        ("rmatvec type", lambda S: S().solve((pair[0], lambda y: 1.0), B), TypeError, "rmatvec"),
        ("adjoint G rows", lambda S: S()._solve_adjoint(A, rhs(6, 2)), ValueError, r"G.shape\[0\] == A.shape\[1\] = 4"),
    ]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("case", range(len(_bad_calls())), ids=[c[0] for c in _bad_calls()])
def test_bad_calls_are_refused_with_a_message(solver, case):
    _, call, error, match = _bad_calls()[case]
    with pytest.raises(error, match=match):
        call(solver)


def test_the_solution_reports_true_residuals():
    dense, mask = sparse_dense(20, 6, seed=40)
    B = rhs(20, 3, seed=41)
    solution = LSQR(atol=1e-4, btol=1e-4).solve(as_kind(dense, mask, "csr"), B)  # loose: residuals not at 0
    X = solution.value
    R = B - dense @ X
    torch.testing.assert_close(solution.residual_norm, torch.linalg.vector_norm(R, dim=0))
    torch.testing.assert_close(solution.normal_residual_norm, torch.linalg.vector_norm(dense.mT @ R, dim=0))
    assert (solution.norm_A > 0).all() and (solution.cond_A >= 1).all() and (solution.norm_x > 0).all()
    assert "converged" in solution.message


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", ["csr", "coo", "dense"])
@pytest.mark.parametrize("k", [None, 3])
def test_on_every_device(solver, kind, k, device):
    dense, mask = sparse_dense(30, 8, seed=42)
    B = rhs(30, k, seed=43)
    A = as_kind(dense, mask, kind).to(device)
    solution = solver(**TIGHT).solve(A, B.to(device))
    assert solution.value.device.type == device.type and solution.stop_code.device.type == device.type
    expected = torch.linalg.lstsq(dense, B.reshape(30, -1)).solution.reshape((8,) + tuple(B.shape[1:]))
    torch.testing.assert_close(solution.value.cpu(), expected, rtol=1e-8, atol=1e-10)
    Y, H, _ = solver(**TIGHT)._solve_adjoint(A, expected.to(device))
    torch.testing.assert_close(H.cpu(), torch.linalg.solve(dense.mT @ dense, expected), rtol=1e-8, atol=1e-10)

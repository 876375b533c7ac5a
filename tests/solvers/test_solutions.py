"""Solutions of the Krylov solvers against torch.linalg.solve, for every kind of operator and right-hand side."""

from __future__ import annotations

import pytest
import torch

from sparseprec.solvers import CG, MINRES, SSOR, BiCGSTAB, Jacobi, Status, bicgstab, cg, minres
from tests.solvers.problems import as_kind, indefinite_matrix, nonsymmetric_matrix, spd_matrix

KINDS = ["dense", "coo", "csr", "csr32", "coo_uncoalesced", "callable"]
PROBLEMS = {
    "spd": (spd_matrix, [CG, MINRES, BiCGSTAB]),
    "indefinite": (indefinite_matrix, [MINRES]),
    "nonsymmetric": (nonsymmetric_matrix, [BiCGSTAB]),
}
CASES = [(problem, solver) for problem, (_, solvers) in PROBLEMS.items() for solver in solvers]


@pytest.mark.parametrize("problem,solver", CASES, ids=[f"{p}-{s.__name__}" for p, s in CASES])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [None, 1, 4])
def test_solution_matches_dense_solve(problem, solver, kind, k):
    n = 40
    A, mask = PROBLEMS[problem][0](n)
    g = torch.Generator().manual_seed(3)
    B = torch.randn(n, dtype=torch.float64, generator=g) if k is None else torch.randn(n, k, generator=g).double()
    solution = solver(rtol=1e-11).solve(as_kind(A, mask, kind), B)
    expected = torch.linalg.solve(A, B)
    torch.testing.assert_close(solution.value, expected, rtol=1e-8, atol=1e-9)
    assert solution.value.shape == B.shape
    assert solution.success and solution.status is Status.SUCCESS
    assert solution.converged.shape == B.shape[1:] and bool(solution.converged.all())
    assert solution.iterations.dtype == torch.int64 and bool((solution.iterations > 0).all())
    # reported residuals are the true ones, recomputed from X
    true_residual = torch.linalg.vector_norm((B - A @ solution.value).reshape(n, -1), dim=0).reshape(B.shape[1:])
    torch.testing.assert_close(solution.residual_norm, true_residual, rtol=1e-6, atol=1e-14)
    assert bool((solution.residual_norm <= 10 * solution.tolerance).all())


@pytest.mark.parametrize("solver", [CG, MINRES, BiCGSTAB])
def test_float32(solver):
    A, mask = spd_matrix(60, torch.float32)
    B = torch.randn(60, 3, generator=torch.Generator().manual_seed(0))
    X = solver(rtol=1e-5)(as_kind(A, mask, "csr"), B)
    assert X.dtype == torch.float32
    torch.testing.assert_close(X.double(), torch.linalg.solve(A.double(), B.double()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fn,make", [(cg, spd_matrix), (minres, indefinite_matrix), (bicgstab, nonsymmetric_matrix)])
def test_thin_functions_take_settings(fn, make):
    A, mask = make(30)
    B = torch.randn(30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    X = fn(as_kind(A, mask, "csr"), B, rtol=1e-12, maxiter=500)
    torch.testing.assert_close(X, torch.linalg.solve(A, B))


@pytest.mark.parametrize("solver", [CG, MINRES, BiCGSTAB])
def test_x0_is_used(solver):
    A, mask = spd_matrix(40)
    B = torch.randn(40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = torch.linalg.solve(A, B)
    cold = solver(rtol=1e-8).solve(as_kind(A, mask, "csr"), B)
    warm = solver(rtol=1e-8).solve(as_kind(A, mask, "csr"), B, x0=exact + 1e-6)
    torch.testing.assert_close(warm.value, exact, rtol=1e-7, atol=1e-8)
    assert bool((warm.iterations < cold.iterations).all())
    # an exact x0 needs no iteration at all
    assert bool((solver(rtol=1e-8).solve(as_kind(A, mask, "csr"), B, x0=exact).iterations == 0).all())


@pytest.mark.parametrize("solver", [CG, MINRES, BiCGSTAB])
def test_columns_converge_independently(solver):
    # column 0: zero right-hand side (solution 0, no iteration); column 1: an eigenvector (one iteration);
    # column 2: a generic vector. Converged columns are frozen while the others go on.
    A, mask = spd_matrix(50)
    _, vectors = torch.linalg.eigh(A)
    generic = torch.randn(50, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    B = torch.stack([torch.zeros(50, dtype=torch.float64), vectors[:, 7], generic], 1)
    solution = solver(rtol=1e-10).solve(as_kind(A, mask, "csr"), B)
    assert solution.iterations[0] == 0 and solution.iterations[1] == 1 and solution.iterations[2] > 5
    torch.testing.assert_close(solution.value[:, 0], torch.zeros(50, dtype=torch.float64))
    torch.testing.assert_close(solution.value, torch.linalg.solve(A, B), rtol=1e-8, atol=1e-9)
    # a column's result does not depend on the columns solved beside it, up to rounding: a column alone and inside a
    # block adds its products in another order, which can move the last stopping test by one iteration
    alone = solver(rtol=1e-10).solve(as_kind(A, mask, "csr"), generic)
    assert abs(int(alone.iterations) - int(solution.iterations[2])) <= 1
    torch.testing.assert_close(alone.value, solution.value[:, 2], rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("solver", [CG, MINRES, BiCGSTAB])
@pytest.mark.parametrize("preconditioner", ["jacobi-class", "jacobi", "ssor", "callable"])
def test_preconditioned_solutions(solver, preconditioner):
    A, mask = spd_matrix(40)
    As = as_kind(A, mask, "csr")
    M = {
        "jacobi-class": Jacobi,
        "jacobi": Jacobi(As),
        "ssor": SSOR(As, omega=1.2),
        "callable": lambda r: r / 2.0,
    }[preconditioner]
    for B in (torch.randn(40, 3, dtype=torch.float64), torch.randn(40, dtype=torch.float64)):
        X = solver(rtol=1e-11, preconditioner=M)(As, B)
        torch.testing.assert_close(X, torch.linalg.solve(A, B), rtol=1e-8, atol=1e-9)


def test_atol_only():
    A, mask = spd_matrix(30)
    B = torch.randn(30, dtype=torch.float64)
    solution = CG(rtol=0.0, atol=1e-9).solve(as_kind(A, mask, "csr"), B)
    assert float(solution.tolerance) == 1e-9
    assert float(torch.linalg.vector_norm(B - A @ solution.value)) < 1e-8

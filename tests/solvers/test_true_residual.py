"""The recurrence's verdict is checked against the true residual (issue 15).

A Krylov solver's stopping test reads the residual its recurrence updates. For a singular ``A`` that recursive
residual can meet any tolerance while ``x`` blows up, so a column only counts as converged when its true residual
``‖b − A x‖`` of the returned ``x`` is within ``TRUE_RESIDUAL_FACTOR`` (10) times its tolerance and ``x`` is finite.
"""

from __future__ import annotations

import pytest
import torch

from sparseprec import ConvergenceError, ConvergenceWarning
from sparseprec.solvers import CG, MINRES, BiCGSTAB, Jacobi, Status
from tests.solvers.problems import as_kind, grid_laplacian, nonsymmetric_matrix, spd_matrix

F64 = torch.float64
TRUE_RESIDUAL_FACTOR = 10  # the documented multiple of the tolerance (see Solution.converged)
# A = v vᵀ with v = (10, 0.1): symmetric positive semidefinite, det A = 0, range(A) = span(v)
SINGULAR = torch.tensor([[100.0, 1.0], [1.0, 0.01]], dtype=F64)
OUTSIDE_RANGE = torch.tensor([1.0, 1.0], dtype=F64)  # A x = b has no solution
IN_RANGE = torch.tensor([10.0, 0.1], dtype=F64)  # A x = b is solved by x = v / ‖v‖²
REFUSAL = r"CG's recurrence met the tolerance but the returned x does not.*A is singular, or too ill-conditioned"


def _relative_residual(A, B, X):
    return torch.linalg.vector_norm(B - A @ X) / torch.linalg.vector_norm(B)


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize("preconditioner", [None, Jacobi], ids=["plain", "jacobi"])
def test_cg_refuses_a_singular_system_its_recurrence_calls_converged(preconditioner, kind):
    A = SINGULAR.to_sparse_csr() if kind == "csr" else SINGULAR
    with pytest.raises(ConvergenceError, match=REFUSAL) as info:
        CG(rtol=1e-10, preconditioner=preconditioner).solve(A, OUTSIDE_RANGE)
    solution = info.value.solution
    assert solution.status is Status.TRUE_RESIDUAL_TOO_LARGE and not solution.success
    assert not bool(solution.converged)
    relative = float(_relative_residual(SINGULAR, OUTSIDE_RANGE, solution.value))
    # no x solves this system: the returned one is far from meeting rtol, and the message says by how much
    assert relative > 1e-3
    message = str(info.value)
    assert f"= {relative:.3g} ‖b‖" in message and "rtol=1e-10" in message and "float64" in message
    assert "1 of 1 columns (e.g. column 0)" in message


def test_throw_false_warns_with_the_same_message():
    with pytest.warns(ConvergenceWarning, match=REFUSAL):
        solution = CG(rtol=1e-10, throw=False).solve(SINGULAR, OUTSIDE_RANGE)
    assert solution.status is Status.TRUE_RESIDUAL_TOO_LARGE and not bool(solution.converged)
    assert float(solution.residual_norm) > TRUE_RESIDUAL_FACTOR * float(solution.tolerance)


@pytest.mark.parametrize("solver", [CG, MINRES, BiCGSTAB])
@pytest.mark.parametrize("preconditioner", [None, Jacobi], ids=["plain", "jacobi"])
def test_every_solver_refuses_a_singular_system_and_keeps_the_consistent_column(solver, preconditioner):
    # column 0 lies in the range of A (a solution exists), column 1 does not
    B = torch.stack([IN_RANGE, OUTSIDE_RANGE], 1)
    with pytest.warns(ConvergenceWarning, match=r"1 of 2 .*columns \(e.g. column 1\)"):
        solution = solver(rtol=1e-10, preconditioner=preconditioner, throw=False).solve(SINGULAR, B)
    assert not solution.success
    assert solution.converged.tolist() == [True, False]
    assert float(_relative_residual(SINGULAR, B[:, 0], solution.value[:, 0])) <= 1e-9
    with pytest.raises(ConvergenceError):
        solver(rtol=1e-10, preconditioner=preconditioner).solve(SINGULAR, OUTSIDE_RANGE)


@pytest.mark.parametrize("solver", [CG, MINRES, BiCGSTAB])
def test_every_solver_refuses_a_singular_laplacian_with_an_inconsistent_right_hand_side(solver):
    L = grid_laplacian(8)  # constants span the null space
    b = torch.randn(64, dtype=F64, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ConvergenceError):
        solver(rtol=1e-10).solve(L, b)
    # a right-hand side in the range of L has solutions: they are found, and accepted
    b = L @ b
    solution = solver(rtol=1e-10).solve(L, b)
    assert solution.success and float(_relative_residual(L, b, solution.value)) <= 1e-9


@pytest.mark.parametrize("solver", [CG, MINRES, BiCGSTAB])
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["float64", "float32"])
@pytest.mark.parametrize("preconditioner", [None, Jacobi], ids=["plain", "jacobi"])
def test_a_healthy_system_still_succeeds(solver, dtype, rtol, preconditioner):
    make = nonsymmetric_matrix if solver is BiCGSTAB else spd_matrix
    A, mask = make(50, dtype)
    B = torch.randn(50, 3, generator=torch.Generator().manual_seed(4)).to(dtype)
    solution = solver(rtol=rtol, preconditioner=preconditioner).solve(as_kind(A, mask, "csr"), B)
    assert solution.success and bool(solution.converged.all())
    true_residual = torch.linalg.vector_norm((B - A @ solution.value).double(), dim=0)
    assert bool((true_residual <= TRUE_RESIDUAL_FACTOR * solution.tolerance.double()).all())
    expected = torch.linalg.solve(A.double(), B.double())
    tolerance = 1e-8 if dtype == torch.float64 else 1e-3
    torch.testing.assert_close(solution.value.double(), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("solver", [CG, MINRES, BiCGSTAB])
def test_a_right_hand_side_whose_norm_overflows_is_solved(solver):
    # ‖b‖² overflows float64: the stopping test used to accept x = 0 at once; the solvers iterate on the
    # column-scaled b / max|b|, so the squares never overflow and x = A⁻¹ b is found
    A = 2.0 * torch.eye(2, dtype=F64)
    b = torch.tensor([1e200, 1e200], dtype=F64)
    solution = solver().solve(A, b)
    assert solution.success
    torch.testing.assert_close(solution.value, b / 2, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("solver", [CG, MINRES, BiCGSTAB])
def test_a_solution_that_overflows_is_not_converged(solver):
    # x = A⁻¹ b = 3e308 is not representable in float64: the returned x is not finite, and that is reported
    A = 0.5 * torch.eye(2, dtype=F64)
    with pytest.raises(ConvergenceError, match="NaN or Inf in 1 of 1 columns.*overflow float64") as info:
        solver().solve(A, torch.tensor([1.5e308, 1.5e308], dtype=F64))
    assert info.value.solution.status is Status.NON_FINITE


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_preconditioned_minres_checks_in_the_norm_of_its_stopping_test(scale):
    # MINRES with M stops on ‖r‖_M = √(rᵀ M r) against rtol ‖b‖_M: a scaled M changes neither the iterates nor the
    # verdict, so the check must read the true residual in that norm too
    A, mask = spd_matrix(40)
    B = torch.randn(40, 2, dtype=F64, generator=torch.Generator().manual_seed(6))
    solution = MINRES(rtol=1e-10, preconditioner=lambda r: scale * r).solve(as_kind(A, mask, "csr"), B)
    assert solution.success
    torch.testing.assert_close(solution.value, torch.linalg.solve(A, B), rtol=1e-7, atol=1e-8)

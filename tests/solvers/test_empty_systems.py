"""Zero-size systems (issue 15): a 0 x 0 system, or a right-hand side with no columns, has the empty answer, as in
``torch.linalg.solve``; every column (there are none, or they are empty) has converged in 0 iterations."""

from __future__ import annotations

import pytest
import torch

from sparseprec.solvers import CG, MINRES, BiCGSTAB, Jacobi, Status, bicgstab, cg, minres

F64 = torch.float64
SOLVERS = [CG, MINRES, BiCGSTAB]
FUNCTIONS = [cg, minres, bicgstab]


def _operator(kind, n):
    A = torch.eye(n, dtype=F64) * 2.0
    if kind == "csr":
        return A.to_sparse_csr()
    if kind == "coo":
        return A.to_sparse()
    if kind == "callable":
        return lambda v: 2.0 * v
    return A


@pytest.mark.parametrize("kind", ["dense", "csr", "coo", "callable"])
@pytest.mark.parametrize("b_shape", [(0,), (0, 3), (0, 0)], ids=str)
@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
def test_a_0x0_system_has_the_empty_solution(solver, b_shape, kind):
    A = _operator(kind, 0)
    B = torch.zeros(b_shape, dtype=F64)
    solution = solver().solve(A, B)
    reference = torch.linalg.solve(torch.zeros(0, 0, dtype=F64), B)
    assert solution.value.shape == reference.shape == B.shape and solution.value.dtype == F64
    assert solution.success and solution.status is Status.SUCCESS
    assert solution.converged.shape == b_shape[1:] and bool(solution.converged.all())
    assert solution.iterations.shape == b_shape[1:] and not bool(solution.iterations.any())
    assert solution.residual_norm.shape == b_shape[1:] and not bool(solution.residual_norm.any())


@pytest.mark.parametrize("kind", ["dense", "csr", "callable"])
@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
def test_no_right_hand_side_columns_give_an_empty_solution(solver, kind):
    A = _operator(kind, 4)
    B = torch.zeros(4, 0, dtype=F64)
    solution = solver().solve(A, B)
    assert solution.value.shape == (4, 0) and solution.success
    assert solution.converged.shape == (0,) and solution.iterations.shape == (0,)


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
def test_the_functions_return_the_empty_tensor(function):
    A = torch.zeros(0, 0, dtype=F64).to_sparse_csr()
    assert function(A, torch.zeros(0, 2, dtype=F64)).shape == (0, 2)
    assert function(A, torch.zeros(0, dtype=F64), x0=torch.zeros(0, dtype=F64)).shape == (0,)


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
def test_the_empty_system_takes_a_preconditioner_class_and_settings(solver):
    A = torch.zeros(0, 0, dtype=F64).to_sparse_csr()
    solution = solver(rtol=1e-3, atol=1e-9, maxiter=5, preconditioner=Jacobi).solve(A, torch.zeros(0, 2, dtype=F64))
    assert solution.success and solution.value.shape == (0, 2)
    torch.testing.assert_close(solution.tolerance, torch.full((2,), 1e-9, dtype=F64))  # max(rtol · 0, atol)


@pytest.mark.parametrize("b_shape", [(0,), (0, 2)], ids=str)
@pytest.mark.parametrize("kind", ["dense", "csr", "coo"])
@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
def test_gradients_of_the_empty_solve_are_empty(solver, kind, b_shape):
    A = _operator(kind, 0).requires_grad_()
    B = torch.zeros(b_shape, dtype=F64, requires_grad=True)
    X = solver()(A, B)
    assert X.shape == b_shape and X.requires_grad
    X.sum().backward()
    assert B.grad.shape == b_shape and A.grad.shape == (0, 0)


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
def test_the_empty_system_still_validates_its_arguments(solver):
    A = torch.zeros(0, 0, dtype=F64).to_sparse_csr()
    with pytest.raises(TypeError, match="A and B must have the same dtype"):
        solver().solve(A, torch.zeros(0, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"needs B.shape\[0\] == 0"):
        solver().solve(A, torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="x0 must match B"):
        solver().solve(A, torch.zeros(0, 2, dtype=F64), x0=torch.zeros(0, 3, dtype=F64))

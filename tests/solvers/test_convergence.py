"""Convergence reporting, preconditioning, refusals and argument errors of the Krylov solvers."""

from __future__ import annotations

import warnings

import pytest
import torch

import sparseprec
from sparseprec import ConvergenceError, ConvergenceWarning
from sparseprec.solvers import CG, MINRES, SSOR, BiCGSTAB, Jacobi, Solution, Status
from tests.solvers.problems import as_kind, grid_laplacian, indefinite_matrix, nonsymmetric_matrix, spd_matrix


def test_non_convergence_raises_with_an_actionable_message():
    A, mask = spd_matrix(60)
    B = torch.randn(60, 3, dtype=torch.float64)
    with pytest.raises(ConvergenceError) as info:
        CG(rtol=1e-12, maxiter=3).solve(as_kind(A, mask, "csr"), B)
    message = str(info.value)
    assert "maxiter=3" in message and "3 of 3" in message and "relative residual" in message
    assert "Try increasing `maxiter`" in message and "preconditioner" in message
    solution = info.value.solution
    assert isinstance(solution, Solution) and solution.status is Status.MAX_ITERATIONS
    assert bool((solution.iterations == 3).all()) and not bool(solution.converged.any())
    assert sparseprec.ConvergenceError is sparseprec.solvers.ConvergenceError


@pytest.mark.parametrize("solver", [CG, MINRES, BiCGSTAB])
def test_throw_false_warns_and_returns_the_last_iterate(solver):
    A, mask = spd_matrix(60)
    B = torch.randn(60, dtype=torch.float64)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        solution = solver(rtol=1e-12, maxiter=2, throw=False).solve(as_kind(A, mask, "csr"), B)
    assert not bool(solution.converged) and solution.converged.shape == ()
    assert int(solution.iterations) == 2
    relative = float(solution.residual_norm / torch.linalg.vector_norm(B))
    assert 1e-12 < relative < 1.0  # the last iterate is an improvement, and reported as what it is
    assert f"{relative:.3g}" in solution.message


def test_success_does_not_warn():
    A, mask = spd_matrix(20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solution = CG(throw=False).solve(as_kind(A, mask, "csr"), torch.ones(20, dtype=torch.float64))
    assert solution.success and "converged" in solution.message


def test_cg_reports_an_indefinite_matrix():
    A, mask = indefinite_matrix(40)
    with pytest.raises(ConvergenceError, match="not positive definite.*MINRES") as info:
        CG(rtol=1e-10).solve(as_kind(A, mask, "csr"), torch.randn(40, 2, dtype=torch.float64))
    assert info.value.solution.status is Status.NOT_POSITIVE_DEFINITE


def test_minres_reports_an_indefinite_preconditioner():
    A, mask = spd_matrix(30)
    with pytest.raises(ConvergenceError, match="symmetric positive definite preconditioner") as info:
        MINRES(preconditioner=lambda r: -r).solve(as_kind(A, mask, "csr"), torch.randn(30, dtype=torch.float64))
    assert info.value.solution.status is Status.PRECONDITIONER_NOT_POSITIVE_DEFINITE


def test_non_finite_input_is_reported():
    A, mask = spd_matrix(30)
    B = torch.randn(30, 2, dtype=torch.float64)
    B[3, 1] = float("nan")
    with pytest.raises(ConvergenceError, match="NaN or Inf.*1 of 2 columns \\(e.g. column 1\\)"):
        CG().solve(as_kind(A, mask, "csr"), B)


@pytest.mark.parametrize("solver", [CG, MINRES])
@pytest.mark.parametrize("kind", ["csr", "coo", "dense"])
def test_symmetric_solvers_refuse_a_non_symmetric_matrix(solver, kind):
    A, mask = nonsymmetric_matrix(30)
    with pytest.raises(ValueError, match=f"{solver.__name__} needs a symmetric A.*BiCGSTAB"):
        solver().solve(as_kind(A, mask, kind), torch.ones(30, dtype=torch.float64))


def test_structurally_non_symmetric_pattern_is_refused_but_explicit_zeros_are_fine():
    A, mask = spd_matrix(20)
    mask2 = mask.clone()
    mask2[0, 19] = True  # stored explicit zero above the diagonal only: still a symmetric matrix
    A2 = A.clone()
    A2[0, 19] = 0.0
    A2[19, 0] = 0.0
    X = CG(rtol=1e-12)(as_kind(A2, mask2, "csr"), torch.ones(20, dtype=torch.float64))
    torch.testing.assert_close(X, torch.linalg.solve(A2, torch.ones(20, dtype=torch.float64)))
    A2[0, 19] = 1.0
    with pytest.raises(ValueError, match="symmetric"):
        CG()(as_kind(A2, mask2, "csr"), torch.ones(20, dtype=torch.float64))


def test_jacobi_cuts_iterations_on_heterogeneous_grid():
    # conductance varying over six orders of magnitude: the diagonal spans the same range
    s = 24
    g = torch.Generator().manual_seed(0)
    conductance = 10.0 ** (6 * torch.rand(s, s, generator=g, dtype=torch.float64) - 3)
    A = grid_laplacian(s, conductance, shift=1e-3)
    B = torch.randn(s * s, 2, dtype=torch.float64, generator=g)
    plain = CG(rtol=1e-8).solve(A, B)
    jacobi = CG(rtol=1e-8, preconditioner=Jacobi).solve(A, B)
    assert bool((jacobi.iterations * 2 < plain.iterations).all()), (jacobi.iterations, plain.iterations)
    torch.testing.assert_close(jacobi.value, plain.value, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("solver", [CG, MINRES])
def test_ssor_cuts_iterations_on_poisson_grid(solver):
    s = 30
    A = grid_laplacian(s, shift=1e-4)  # κ(A) ~ 1e4
    B = torch.randn(s * s, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    plain = solver(rtol=1e-8).solve(A, B)
    ssor = solver(rtol=1e-8, preconditioner=SSOR(A, omega=1.5)).solve(A, B)
    assert int(ssor.iterations) * 2 < int(plain.iterations), (ssor.iterations, plain.iterations)
    torch.testing.assert_close(ssor.value, torch.linalg.solve(A.to_dense(), B), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "settings,match",
    [
        ({"rtol": -1.0}, "rtol must be a finite number >= 0"),
        ({"atol": float("nan")}, "atol must be a finite number >= 0"),
        ({"rtol": 0.0, "atol": 0.0}, "both 0"),
        ({"maxiter": 0}, "maxiter must be a positive int"),
    ],
)
def test_settings_are_validated_on_construction(settings, match):
    with pytest.raises(ValueError, match=match):
        CG(**settings)


def test_settings_objects_are_frozen_and_typed():
    with pytest.raises(TypeError, match="preconditioner must be None, a callable"):
        CG(preconditioner="jacobi")
    with pytest.raises(TypeError, match="throw must be a bool"):
        MINRES(throw="no")
    solver = CG(rtol=1e-8)
    with pytest.raises(AttributeError):
        solver.rtol = 1e-3  # frozen


def test_argument_errors_name_the_argument():
    A, mask = spd_matrix(10)
    As = as_kind(A, mask, "csr")
    with pytest.raises(ValueError, match=r"A of shape \(10, 10\) needs B.shape\[0\] == 10, got B of shape \(9,\)"):
        CG()(As, torch.ones(9, dtype=torch.float64))
    with pytest.raises(TypeError, match="A and B must have the same dtype"):
        CG()(As, torch.ones(10))
    with pytest.raises(ValueError, match="B must be 1-D or 2-D"):
        CG()(As, torch.ones(10, 2, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="A must be square"):
        CG()(torch.ones(10, 9, dtype=torch.float64), torch.ones(10, dtype=torch.float64))
    with pytest.raises(ValueError, match="single \\(n, n\\) matrix"):
        CG()(torch.stack([As.to_dense()] * 2).to_sparse(), torch.ones(10, dtype=torch.float64))
    with pytest.raises(TypeError, match="A must be a sparse COO/CSR tensor, a dense tensor or a callable"):
        CG()("A", torch.ones(10, dtype=torch.float64))
    with pytest.raises(ValueError, match="x0 must match B"):
        CG()(As, torch.ones(10, dtype=torch.float64), x0=torch.ones(9, dtype=torch.float64))
    with pytest.raises(ValueError, match="x0 must be 1-D"):
        CG()(As, torch.ones(10, dtype=torch.float64), x0=torch.ones(10, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="callable\\) must map a tensor to one of the same shape"):
        CG()(lambda v: v[:5], torch.ones(10, dtype=torch.float64))
    with pytest.raises(TypeError, match="preconditioner=Jacobi is built from the matrix, but A is a callable"):
        CG(preconditioner=Jacobi)(lambda v: v, torch.ones(10, dtype=torch.float64))


def test_preconditioner_errors():
    A = torch.tensor([[0.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="Jacobi needs a nonzero finite diagonal, but A has diagonal value 0 in row 0"):
        Jacobi(A)
    with pytest.raises(ValueError, match="no stored diagonal entry in row 0"):
        SSOR(torch.tensor([[0.0, 1.0], [1.0, 2.0]]).to_sparse())
    with pytest.raises(ValueError, match="omega must lie in \\(0, 2\\)"):
        SSOR(torch.eye(2), omega=2.0)

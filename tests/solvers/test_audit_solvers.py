"""Audit of the Krylov solvers (issue 15): scale-free stopping test, argument types, preconditioners for another system.

* The stopping rule ``‖r_j‖ <= max(rtol ‖b_j‖, atol)`` is invariant under ``b -> c b`` (with ``atol -> c atol``), so
  a tiny or huge right-hand side must be solved to the same relative accuracy as a unit one; the solvers used to form
  ``‖b‖`` as ``sqrt(Σ b_i²)``, which underflows to 0 (and accepted ``x = 0`` as converged) or overflows.
* A wrong type of argument is a ``TypeError``, a wrong value a ``ValueError``; messages name argument and value.
* A preconditioner built from a matrix of another size, dtype or device than the system is refused up front.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparseprec import ConvergenceError
from sparseprec.solvers import CG, MINRES, SSOR, BiCGSTAB, Jacobi, Status
from tests.solvers.problems import as_kind, indefinite_matrix, nonsymmetric_matrix, spd_matrix

F32, F64 = torch.float32, torch.float64
SOLVERS = [CG, MINRES, BiCGSTAB]
# (dtype, rtol, accepted relative error of x against the dense solution, scales of b)
PRECISIONS = {
    F32: (1e-5, 1e-3, [1e-30, 1e-23, 1e-21, 1.0, 1e21, 1e30]),
    F64: (1e-10, 1e-7, [1e-300, 1e-200, 1e-170, 1.0, 1e170, 1e200, 1e300]),
}
CASES = [(dtype, scale) for dtype, (_, _, scales) in PRECISIONS.items() for scale in scales]
SMALL = torch.tensor([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]])  # the audit's SPD example


def _problem(solver, dtype, n=30, preconditioned=False):
    # MINRES takes an indefinite A, but a preconditioner built from one (Jacobi, SSOR) is not SPD: then an SPD A
    symmetric = spd_matrix if preconditioned else indefinite_matrix
    make = {CG: spd_matrix, MINRES: symmetric, BiCGSTAB: nonsymmetric_matrix}[solver]
    A, mask = make(n, dtype)
    return A, as_kind(A, mask, "csr")


def _unit_rhs(n, k, seed=0):
    return torch.randn(n, k, dtype=F64, generator=torch.Generator().manual_seed(seed))


def _relative_error(X, A, B, scale):
    """``‖x_j − A⁻¹ b_j‖ / ‖A⁻¹ b_j‖`` per column, in float64 and in units of ``scale`` (no under/overflow)."""
    expected = torch.linalg.solve(A.double(), B.double() / scale)
    return torch.linalg.vector_norm(X.double() / scale - expected, dim=0) / torch.linalg.vector_norm(expected, dim=0)


# ---- 1. tiny and huge right-hand sides -------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype,scale", CASES, ids=[f"{str(d)[6:]}-{s:g}" for d, s in CASES])
def test_a_scaled_right_hand_side_is_solved_to_the_same_relative_accuracy(solver, dtype, scale):
    rtol, accuracy, _ = PRECISIONS[dtype]
    A, operand = _problem(solver, dtype)
    B = (_unit_rhs(30, 3) * scale).to(dtype)
    solution = solver(rtol=rtol).solve(operand, B)
    assert solution.success and bool(solution.converged.all())
    assert bool(torch.isfinite(solution.value).all())
    assert bool((_relative_error(solution.value, A, B, scale) <= accuracy).all())
    # reported in the original units: the tolerance is rtol ‖b_j‖ and the true residual is within 10 times it
    bnorm = torch.linalg.vector_norm(B.double() / scale, dim=0)
    reported = solution.tolerance.double() / scale
    torch.testing.assert_close(reported, rtol * bnorm, rtol=1e-4, atol=0.0)
    residual = torch.linalg.vector_norm((B.double() - A.double() @ solution.value.double()) / scale, dim=0)
    assert bool((residual <= 10 * rtol * bnorm).all())
    # the reported ‖b − A x‖ (computed in dtype) agrees with the float64 one up to rounding far below the tolerance
    assert bool(((solution.residual_norm.double() / scale - residual).abs() <= rtol * bnorm).all())


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("scale", [1e-23, 1e-21])
def test_the_audit_example_is_not_converged_at_zero(solver, dtype, scale):
    B = (_unit_rhs(3, 2, seed=3) * scale).to(dtype)
    solution = solver(rtol=1e-5).solve(SMALL.to(dtype).to_sparse_csr(), B)
    assert solution.success
    assert bool((solution.iterations > 0).all())
    assert bool((_relative_error(solution.value, SMALL, B, scale) <= 1e-3).all())


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_a_power_of_two_scale_changes_nothing_but_the_scale(solver, dtype):
    # scaling b by 2^e is exact, and so is the solvers' own column scaling: x scales by exactly 2^e
    _, operand = _problem(solver, dtype)
    B = _unit_rhs(30, 2, seed=5).to(dtype)
    unit = solver(rtol=1e-5).solve(operand, B).value
    for exponent in (-100, 100) if dtype == F32 else (-900, 900):
        c = 2.0**exponent
        scaled = solver(rtol=1e-5).solve(operand, B * c).value
        assert torch.equal(scaled, unit * c)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_each_column_is_scaled_on_its_own(solver, dtype):
    # one block with a zero, a tiny, a unit and a huge column: each is solved as if alone; the zero one gives x = 0
    rtol, accuracy, _ = PRECISIONS[dtype]
    A, operand = _problem(solver, dtype)
    scales = [1.0, 1e-30, 1.0, 1e30]
    unit = _unit_rhs(30, 4, seed=7)
    unit[:, 0] = 0
    B = (unit * torch.tensor(scales, dtype=F64)).to(dtype)
    solution = solver(rtol=rtol).solve(operand, B)
    assert solution.success and solution.converged.tolist() == [True] * 4
    assert torch.equal(solution.value[:, 0], torch.zeros(30, dtype=dtype))
    assert float(solution.residual_norm[0]) == 0.0 and float(solution.tolerance[0]) == 0.0
    for j in (1, 2, 3):
        assert float(_relative_error(solution.value[:, j : j + 1], A, B[:, j : j + 1], scales[j])[0]) <= accuracy


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_zero_right_hand_side_gives_zero_in_no_iteration(solver):
    _, operand = _problem(solver, F64)
    solution = solver().solve(operand, torch.zeros(30, 2, dtype=F64))
    assert solution.success
    assert torch.equal(solution.value, torch.zeros(30, 2, dtype=F64))
    assert solution.iterations.tolist() == [0, 0]


@pytest.mark.parametrize("solver", SOLVERS)
def test_atol_keeps_its_meaning_in_the_original_units(solver):
    A, operand = _problem(solver, F64)
    # ‖b‖ <= atol: x = 0 already meets max(rtol ‖b‖, atol) = atol
    tiny = _unit_rhs(30, 1) * 1e-30
    solution = solver(rtol=0.0, atol=1e-20).solve(operand, tiny)
    assert solution.success and torch.equal(solution.value, torch.zeros_like(tiny))
    assert float(solution.tolerance) == 1e-20
    # ‖b‖ ~ 1e20 with atol = 1e12 (relative 1e-8): met in the original units, and reported in them
    huge = _unit_rhs(30, 1) * 1e20
    solution = solver(rtol=0.0, atol=1e12).solve(operand, huge)
    assert solution.success
    torch.testing.assert_close(solution.tolerance, torch.tensor([1e12], dtype=F64), rtol=1e-12, atol=0.0)
    residual = torch.linalg.vector_norm(huge - A @ solution.value)
    assert float(residual) <= 10 * 1e12 and float(residual) > 0
    assert float(_relative_error(solution.value, A, huge, 1e20)[0]) <= 1e-5


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["float32", "float64"])
def test_x0_is_scaled_with_the_right_hand_side(solver, dtype):
    rtol, accuracy, _ = PRECISIONS[dtype]
    A, operand = _problem(solver, dtype)
    scale = 1e-30
    B = (_unit_rhs(30, 2, seed=9) * scale).to(dtype)
    x0 = (torch.linalg.solve(A.double(), B.double() / scale) * (1 + 1e-2) * scale).to(dtype)  # a close guess
    solution = solver(rtol=rtol).solve(operand, B, x0=x0)
    assert solution.success
    assert bool((_relative_error(solution.value, A, B, scale) <= accuracy).all())


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_preconditioned_tiny_right_hand_side_is_solved(solver):
    A, operand = _problem(solver, F32, preconditioned=True)
    B = (_unit_rhs(30, 2, seed=11) * 1e-25).to(F32)
    solution = solver(rtol=1e-5, preconditioner=Jacobi).solve(operand, B)
    assert solution.success and bool((solution.iterations > 0).all())
    assert bool((_relative_error(solution.value, A, B, 1e-25) <= 1e-3).all())


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_non_finite_right_hand_side_is_still_refused(solver):
    _, operand = _problem(solver, F64)
    B = _unit_rhs(30, 1)
    B[3, 0] = float("inf")
    with pytest.raises(ConvergenceError, match="NaN or Inf") as info:
        solver().solve(operand, B)
    assert info.value.solution.status is Status.NON_FINITE


# ---- 2. argument types -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize(
    "settings,match",
    [
        (dict(rtol="1e-6"), r"rtol must be a real number \(int or float\), got str '1e-6'"),
        (dict(atol="0"), r"atol must be a real number \(int or float\), got str '0'"),
        (dict(rtol=None), r"rtol must be a real number \(int or float\), got NoneType"),
        (dict(rtol=True), r"rtol must be a real number \(int or float\), got bool"),
        (dict(rtol=torch.tensor(1e-6)), r"rtol must be a real number \(int or float\), got Tensor"),
        (dict(maxiter=2.5), r"maxiter must be a positive int or None, got float 2.5"),
        (dict(maxiter="10"), r"maxiter must be a positive int or None, got str '10'"),
        (dict(maxiter=True), r"maxiter must be a positive int or None, got bool"),
    ],
)
def test_a_wrong_type_of_setting_is_a_type_error(solver, settings, match):
    with pytest.raises(TypeError, match=match):
        solver(**settings)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize(
    "settings,match",
    [
        (dict(rtol=-1e-6), r"rtol must be a finite number >= 0, got -1e-06"),
        (dict(rtol=float("nan")), r"rtol must be a finite number >= 0, got nan"),
        (dict(atol=float("inf")), r"atol must be a finite number >= 0, got inf"),
        (dict(maxiter=0), r"maxiter must be a positive int or None, got 0"),
        (dict(maxiter=-3), r"maxiter must be a positive int or None, got -3"),
        (dict(rtol=0, atol=0), r"rtol and atol are both 0"),
    ],
)
def test_a_wrong_value_of_setting_is_a_value_error(solver, settings, match):
    with pytest.raises(ValueError, match=match):
        solver(**settings)


@pytest.mark.parametrize("solver", SOLVERS)
def test_numpy_scalars_are_accepted_as_settings(solver):
    A, operand = _problem(solver, F64)
    B = _unit_rhs(30, 2)
    solution = solver(rtol=np.float64(1e-10), atol=np.float32(0.0), maxiter=np.int64(300)).solve(operand, B)
    assert solution.success
    torch.testing.assert_close(solution.value, torch.linalg.solve(A, B), rtol=1e-7, atol=1e-9)


# ---- 3. preconditioners built for another system ---------------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", [Jacobi, SSOR])
def test_a_preconditioner_of_another_size_is_refused(solver, kind):
    _, operand = _problem(solver, F64, n=3)
    other = kind(torch.eye(4, dtype=F64).to_sparse_csr())
    with pytest.raises(
        ValueError, match=rf"preconditioner \({kind.__name__}\) was built from a 4 x 4 matrix.*is 3 x 3"
    ):
        solver(preconditioner=other)(operand, torch.ones(3, 2, dtype=F64))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", [Jacobi, SSOR])
@pytest.mark.parametrize("built,used", [(F32, F64), (F64, F32)], ids=["f32-on-f64", "f64-on-f32"])
def test_a_preconditioner_of_another_dtype_is_refused(solver, kind, built, used):
    A, _ = _problem(solver, F64, n=10)
    M = kind(A.to(built).to_sparse_csr())
    with pytest.raises(TypeError, match=rf"\({kind.__name__}\) was built from a {built} matrix.*system .* is {used}"):
        solver(preconditioner=M)(A.to(used).to_sparse_csr(), torch.ones(10, dtype=used))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", [Jacobi, SSOR])
def test_a_preconditioner_on_another_device_is_refused(kind):
    A, _ = spd_matrix(10)
    M = kind(A.to_sparse_csr())
    with pytest.raises(ValueError, match=rf"\({kind.__name__}\) was built from a matrix on device cpu.*cuda"):
        CG(preconditioner=M)(A.cuda().to_sparse_csr(), torch.ones(10, dtype=F64, device="cuda"))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", [Jacobi, SSOR])
def test_a_preconditioner_built_from_the_system_is_accepted(solver, kind):
    A, operand = _problem(solver, F64, n=20, preconditioned=True)
    B = _unit_rhs(20, 2)
    M = kind(operand)
    solution = solver(rtol=1e-10, preconditioner=M).solve(operand, B)
    assert solution.success
    torch.testing.assert_close(solution.value, torch.linalg.solve(A, B), rtol=1e-7, atol=1e-9)
    # and its transpose (a non-symmetric solve's gradient) describes the same system
    M.transpose().check_system(20, F64, torch.device("cpu"))


# ---- 4. SSOR's omega -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("omega", ["1", True, None, torch.tensor(1.0)], ids=["str", "bool", "None", "tensor"])
def test_ssor_refuses_an_omega_that_is_not_a_number(omega):
    with pytest.raises(TypeError, match=r"omega must be a real number in \(0, 2\), got"):
        SSOR(SMALL, omega=omega)


@pytest.mark.parametrize("omega", [0.0, 2.0, -1, float("nan")])
def test_ssor_refuses_an_omega_outside_its_interval(omega):
    with pytest.raises(ValueError, match=r"omega must lie in \(0, 2\)"):
        SSOR(SMALL, omega=omega)


@pytest.mark.parametrize("omega", [1, 1.5, np.float64(0.8)])
def test_ssor_accepts_any_real_omega_in_its_interval(omega):
    A = SMALL.double()
    B = torch.ones(3, dtype=F64)
    solution = CG(rtol=1e-12, preconditioner=SSOR(A.to_sparse_csr(), omega=omega)).solve(A, B)
    assert solution.success
    torch.testing.assert_close(solution.value, torch.linalg.solve(A, B), rtol=1e-9, atol=1e-12)

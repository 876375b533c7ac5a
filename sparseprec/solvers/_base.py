"""What every Krylov solver shares: settings, validation, the block layout, reporting and the gradient.

A solver subclass only writes ``_iterate``: the iteration on a ``(n, k)`` block of right-hand sides with per-column
scalars, which runs without autograd, freezes each column once it has converged (its step sizes become 0, on the
device) and leaves the loop when no column is active. The host looks at the device only for that exit test, every
iteration on CPU and every ``CUDA_CHECK_EVERY`` iterations elsewhere.

The stopping test reads the residual the recurrence updates, never ``b − A x`` itself. In floating point the two drift
apart (by about ``eps ‖A‖ max_j ‖x_j‖`` per iteration, the ``x_j`` being the iterates), and for a singular or nearly
singular ``A`` the recurrence can reach any tolerance while ``x`` blows up. So every column the recurrence declares
converged is checked once against its true residual, recomputed from the returned ``x``: above
``TRUE_RESIDUAL_FACTOR`` times its tolerance it is refused (``Status.TRUE_RESIDUAL_TOO_LARGE``), and a non-finite ``x``
is refused too (``Status.NON_FINITE``).

The iteration runs on the column-scaled block ``B / s`` (``s_j`` the power of two nearest below ``max_i |B_ij|``, 1 for
a zero or non-finite column), from ``x0 / s``, with ``atol / s_j`` for column ``j``, and ``X`` is multiplied back by
``s``. Scaling by a power of two is exact, and it leaves the stopping rule ``‖r_j‖ <= max(rtol ‖b_j‖, atol)``
unchanged in the original units, but the norms and squared norms the solvers form can neither underflow (a tiny
``b`` read as 0, so that ``x = 0`` passed for converged) nor overflow (a huge ``b`` read as Inf).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.weak import WeakIdKeyDictionary

from .._validation import check_dense, describe
from ..errors import ConvergenceError, ConvergenceWarning
from ._implicit import attach_solve_gradient, needs_gradient
from ._operator import Operator, as_operator
from .preconditioners import Preconditioner
from .solution import CODE_STATUS, Solution, Status

__all__ = [
    "KrylovSolver",
    "IterationResult",
    "TRUE_RESIDUAL_FACTOR",
    "column_dot",
    "column_norm",
    "column_scale",
    "check_maxiter",
    "failure_codes",
]

CUDA_CHECK_EVERY = 10

# tensor A -> version of its values when it was last found symmetric (weak: forgets A with A)
_SYMMETRIC_CHECKED: WeakIdKeyDictionary = WeakIdKeyDictionary()

#: A column whose recurrence met its tolerance ``tol`` is refused when its true residual exceeds this multiple of
#: ``tol``. The drift between the recursive and the true residual is a rounding effect of a few ``eps κ(A) ‖b‖``: far
#: below ``tol`` for a healthy solve (it is the attainable accuracy), so a factor 10 leaves room for a tolerance near
#: that floor and refuses the singular or hopelessly ill-conditioned systems, whose true residual is off by orders of
#: magnitude (``‖b‖`` or more, while the recurrence reports ``rtol ‖b‖``). Across the library's tests (float32 and
#: float64, every solver and preconditioner) an accepted column's true residual is at most about 1.05 ``tol``.
TRUE_RESIDUAL_FACTOR = 10.0

# Per-column failure codes (see solution.CODE_STATUS); the larger the worse (a block reports its worst)
BREAKDOWN, PRECONDITIONER_NOT_PD, NOT_PD, TRUE_RESIDUAL, NON_FINITE = 1, 2, 3, 4, 5


def column_dot(X: torch.Tensor, Y: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
    """Column-wise inner products ``Σ_i X_ij Y_ij``, shape ``(k,)``, using ``work`` (like ``X``) as scratch."""
    return torch.mul(X, Y, out=work).sum(0)


def column_norm(X: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
    """Column-wise Euclidean norms, shape ``(k,)`` (faster than ``vector_norm(dim=0)`` on row-major blocks).

    The squares are summed unscaled: meant for blocks of moderate magnitude, such as the column-scaled blocks the
    solvers iterate on (see :func:`column_scale`); elsewhere use ``torch.linalg.vector_norm``.
    """
    return column_dot(X, X, work).clamp_(min=0).sqrt_()


def column_scale(B: torch.Tensor) -> torch.Tensor:
    """Per-column scale ``s`` of an ``(n, k)`` block, shape ``(k,)``: the power of two ``2^e <= max_i |B_ij| < 2^(e+1)``
    (so ``B / s`` is exact, with column maxima in ``[1, 2)``), and 1 for a column that is zero or not finite."""
    largest = B.abs().amax(0) if B.shape[0] else B.new_zeros(B.shape[1])
    _, exponent = torch.frexp(largest)
    one = torch.ones_like(largest)
    return torch.where(torch.isfinite(largest) & (largest > 0), torch.ldexp(one, exponent - 1), one)


def _check_real(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number (int or float), got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_maxiter(maxiter: object) -> None:
    """``maxiter`` is ``None`` or a positive int (not a bool), else ``TypeError``/``ValueError`` naming it."""
    if maxiter is None:
        return
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral):
        raise TypeError(f"maxiter must be a positive int or None, got {type(maxiter).__name__} {maxiter!r}")
    if maxiter < 1:
        raise ValueError(f"maxiter must be a positive int or None, got {maxiter!r}")


def failure_codes(stopped: torch.Tensor, code: int, residual: torch.Tensor) -> torch.Tensor:
    """Per-column codes at the end of a run: ``code`` where a column ``stopped`` early, ``NON_FINITE`` where its
    residual (norm or squared norm) is not finite (that wins), else 0."""
    codes = torch.where(stopped, code, 0)
    return torch.where(torch.isfinite(residual), codes, NON_FINITE).to(torch.int8)


@dataclass
class IterationResult:
    """What ``_iterate`` hands back: the block ``X`` and per-column state (all on the device)."""

    X: torch.Tensor
    converged: torch.Tensor  # bool (k,)
    iterations: torch.Tensor  # int64 (k,)
    codes: torch.Tensor  # int8 (k,), 0 or a failure code
    tolerance: torch.Tensor  # (k,) absolute tolerance used by the stopping test


class Preconditioning:
    """The preconditioner of one solve, applied to ``(n, k)`` blocks (callables see tensors shaped like ``B``)."""

    def __init__(self, M: Callable | None, vector: bool, n: int):
        self.M, self.vector, self.n = M, vector, n

    def __bool__(self) -> bool:
        return self.M is not None

    def __call__(self, R: torch.Tensor) -> torch.Tensor:
        given = R.reshape(self.n) if self.vector else R
        Z = self.M(given)
        if not isinstance(Z, torch.Tensor):
            raise TypeError(f"the preconditioner must return a torch.Tensor, got {type(Z).__name__}")
        if Z.shape != given.shape or Z.dtype != R.dtype or Z.device != R.device:
            raise ValueError(
                f"the preconditioner must return a tensor like its input ({describe(given)}), got a {describe(Z)}"
            )
        return Z.reshape(R.shape)

    def apply_into(self, R: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out = M R`` for an ``(n, k)`` block: written in place by a :class:`Preconditioner` that can (no new
        block per iteration), else ``M(R)`` copied into ``out``."""
        if isinstance(self.M, Preconditioner):
            written = self.M.apply_into(R, out)
            if written is not None:
                return written
        return out.copy_(self(R))


@dataclass(frozen=True)
class KrylovSolver:
    """Base class of the Krylov solvers (frozen settings; see :class:`CG` for the parameters)."""

    rtol: float = 1e-6
    atol: float = 0.0
    maxiter: int | None = None
    preconditioner: Callable | type[Preconditioner] | None = None
    throw: bool = True

    #: the solver needs a symmetric operator (checked for tensors; assumed for callables)
    symmetric: ClassVar[bool] = False
    #: default maxiter = this factor times n
    maxiter_factor: ClassVar[int] = 10

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            _check_real(getattr(self, name), name)
        if self.rtol == 0 and self.atol == 0:
            raise ValueError("rtol and atol are both 0: no solve can meet that; give one of them a positive value")
        check_maxiter(self.maxiter)
        p = self.preconditioner
        if p is not None and not callable(p):
            raise TypeError(
                "preconditioner must be None, a callable R -> M R, or a Preconditioner class such as Jacobi, got "
                f"{type(p).__name__}"
            )
        if not isinstance(self.throw, bool):
            raise TypeError(f"throw must be a bool, got {type(self.throw).__name__}")

    @property
    def name(self) -> str:
        return type(self).__name__

    # ---- public API -----------------------------------------------------------------------------------------------
    def __call__(self, A: Any, B: torch.Tensor, x0: torch.Tensor | None = None, **settings: Any) -> torch.Tensor:
        """Solve ``A X = B`` and return ``X`` (``settings`` override this solver's fields for this call)."""
        solver = dataclasses.replace(self, **settings) if settings else self
        return solver.solve(A, B, x0=x0).value

    def solve(self, A: Any, B: torch.Tensor, x0: torch.Tensor | None = None) -> Solution:
        """Solve ``A X = B``; return the :class:`Solution` (raise or warn on non-convergence per ``throw``)."""
        op = as_operator(A, B)
        if x0 is not None:
            check_dense(x0, "x0", dims=(B.dim(),))
            if x0.shape != B.shape or x0.dtype != B.dtype or x0.device != B.device:
                raise ValueError(
                    f"x0 must match B: shape {tuple(B.shape)}, dtype {B.dtype}, device {B.device}; got shape "
                    f"{tuple(x0.shape)}, dtype {x0.dtype}, device {x0.device}"
                )
        n = B.shape[0]
        k = B.shape[1] if B.dim() == 2 else 1
        maxiter = self.maxiter if self.maxiter is not None else max(self.maxiter_factor * n, 1)
        grad = needs_gradient(op, B)
        if n == 0:
            # the empty system (as torch.linalg.solve): X is (0, k), every column meets any tolerance, nothing to check
            with torch.no_grad():
                result = self._empty_result(B.detach().reshape(0, k))
                residual_norm = B.new_zeros(k)
                bnorm = test_norm = residual_norm
                scale = B.new_ones(k)
        else:
            if self.symmetric and op.is_tensor:
                self._check_symmetric(op)
            M = Preconditioning(self._preconditioner_for(A, op, B), op.vector, n)
            with torch.no_grad():
                # iterate on B / s and x0 / s (exact, see the module's doc); _report multiplies X back by s
                B2 = B.detach().reshape(n, k)
                scale = column_scale(B2)
                B2 = (B2 / scale).contiguous()
                X2 = (x0.detach().reshape(n, k) / scale).contiguous() if x0 is not None else None
                work = torch.empty_like(B2)
                bnorm = column_norm(B2, work)
                # (a tensor division: `scalar / tensor` multiplies by the reciprocal, 0 × Inf for a subnormal s)
                atol = torch.full_like(scale, self.atol) / scale
                result = self._iterate(op, M, B2, bnorm, X2, maxiter, atol)
                # the true residual B − A X of the returned X (what is reported and checked, see the module's doc)
                R = torch.sub(B2, op.matmul_into(result.X, work), out=work)
                test_norm = self._stopping_norm(R, M)
                residual_norm = column_norm(R, R)  # R is scratch now
                if test_norm is None:
                    test_norm = residual_norm
        solution = self._report(result, residual_norm, test_norm, bnorm, scale, B, maxiter)
        if grad and n == 0:
            # X + (B − A X): the empty value, on the graph of A and B (their gradients are empty too)
            solution = dataclasses.replace(solution, value=solution.value + (B - op.apply(solution.value)))
        elif grad:
            value = attach_solve_gradient(
                solution.value, op, B, lambda: self._adjoint_solve(A, op), lambda R: self.solve(op.A.detach(), R).value
            )
            solution = dataclasses.replace(solution, value=value)
        if not solution.success:
            if self.throw:
                raise ConvergenceError(solution.message, solution)
            warnings.warn(solution.message, ConvergenceWarning, stacklevel=2)
        return solution

    # ---- pieces -----------------------------------------------------------------------------------------------------
    def _empty_result(self, B: torch.Tensor) -> IterationResult:
        """The answer for ``n = 0`` (``B`` is ``(0, k)``): an empty ``X``, every column converged in 0 iterations."""
        k = B.shape[1]
        return IterationResult(
            X=torch.zeros_like(B),
            converged=torch.ones(k, dtype=torch.bool, device=B.device),
            iterations=torch.zeros(k, dtype=torch.int64, device=B.device),
            codes=torch.zeros(k, dtype=torch.int8, device=B.device),
            tolerance=self.tolerance(B.new_zeros(k)),
        )

    def _iterate(
        self,
        op: Operator,
        M: Preconditioning,
        B: torch.Tensor,
        bnorm: torch.Tensor,
        X: torch.Tensor | None,
        maxiter: int,
        atol: torch.Tensor,
    ) -> IterationResult:
        """Iterate on the block ``B`` (``(n, k)``, column norms ``bnorm``) from ``X`` (``None``: zeros), with the
        per-column absolute tolerances ``atol`` (``(k,)``, for :meth:`tolerance`)."""
        raise NotImplementedError

    def _stopping_norm(self, R: torch.Tensor, M: Preconditioning) -> torch.Tensor | None:
        """Column norms of the true residual ``R`` (``(n, k)``) in the norm of the stopping test, when that is not the
        Euclidean norm (``None``: it is). Overridden by MINRES, whose preconditioned test uses ``‖r‖_M``."""
        return None

    def _check_symmetric(self, op: Operator) -> None:
        # A tensor found symmetric is not checked again until its values change (their version counter moves): the
        # O(nnz) check costs as much as tens of iterations of a short solve repeated with the same matrix.
        version = op.values_version()
        if _SYMMETRIC_CHECKED.get(op.A) == version:
            return
        diff, scale = op.asymmetry()
        eps = torch.finfo(op.values.dtype if op.kind == "sparse" else op.dense.dtype).eps
        if not diff <= 1000 * eps * scale:
            raise ValueError(
                f"{self.name} needs a symmetric A, but max |A - Aᵀ| = {diff:.3g} (max |A| = {scale:.3g}). Use "
                "BiCGSTAB for a non-symmetric A, or symmetrise it, e.g. (A + Aᵀ) / 2."
            )
        _SYMMETRIC_CHECKED[op.A] = version

    def _preconditioner_for(self, A: Any, op: Operator, B: torch.Tensor) -> Callable | None:
        p = self.preconditioner
        if isinstance(p, type):
            if not op.is_tensor:
                raise TypeError(
                    f"preconditioner={p.__name__} is built from the matrix, but A is a callable; build it yourself "
                    f"from a matrix and pass the instance, e.g. preconditioner={p.__name__}(Q)"
                )
            return p(A)
        if isinstance(p, Preconditioner):
            p.check_system(op.n, B.dtype, B.device)
        return p

    def _adjoint_solve(self, A: Any, op: Operator) -> Callable[[torch.Tensor], torch.Tensor]:
        """``G -> A⁻ᵀ G`` with this solver's settings (for the gradient; see ``_implicit``)."""
        if self.symmetric:
            return lambda G: self.solve(A, G).value
        if not op.is_tensor:
            raise TypeError(
                f"{self.name} cannot differentiate a solve with a callable A: the gradient needs Aᵀ, which a callable "
                "does not give. Pass A as a tensor, or use sparseprec.sparse_generic_solve with a transpose_solve."
            )
        At = op.transpose()
        p = self.preconditioner
        if p is None or isinstance(p, type):
            transposed = self
        elif isinstance(p, Preconditioner):
            transposed = dataclasses.replace(self, preconditioner=p.transpose())
        else:
            raise TypeError(
                f"{self.name} cannot differentiate a solve preconditioned by a plain callable: the gradient solves "
                "with Aᵀ and needs the preconditioner's transpose. Pass a Preconditioner (e.g. Jacobi(A)) or a "
                "Preconditioner class (e.g. preconditioner=Jacobi), or solve without gradients."
            )
        return lambda G: transposed.solve(At, G).value

    def _report(
        self,
        result: IterationResult,
        residual_norm: torch.Tensor,
        test_norm: torch.Tensor,
        bnorm: torch.Tensor,
        scale: torch.Tensor,
        B: torch.Tensor,
        maxiter: int,
    ) -> Solution:
        """The :class:`Solution` of a run on the column-scaled block ``B / scale``: ``residual_norm`` is
        ``‖B_j − A X_j‖₂ / s_j`` of the returned ``X`` and ``test_norm`` the same residual in the stopping test's
        norm (checked against the recurrence's verdict); ``result``, ``bnorm`` are in the same scaled units.
        ``result.X`` is multiplied back by ``scale`` in place."""
        shape = B.shape[1:]
        X = result.X.mul_(scale)
        # a column the recurrence declared converged must have a true residual within a small multiple of its
        # tolerance (a NaN fails the comparison, so is refused too), and every column a finite X
        drifted = result.converged & ~(test_norm <= TRUE_RESIDUAL_FACTOR * result.tolerance)
        finite = torch.isfinite(residual_norm) & torch.isfinite(X).all(0)
        codes = torch.where(drifted, TRUE_RESIDUAL, result.codes)
        codes = torch.where(finite, codes, NON_FINITE).to(torch.int8)
        converged = result.converged & (codes == 0)
        failed = ~converged
        status = Status.SUCCESS
        bad = converged  # the columns the message is about: all of them on success
        column = 0
        if bool(failed.any()):
            worst_code = int(codes.max())
            status = CODE_STATUS.get(worst_code, Status.MAX_ITERATIONS)
            bad = (codes == worst_code) & failed
            column = int(torch.nonzero(bad)[0, 0])
        relative = residual_norm / torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))
        considered = relative[bad]
        worst = float(considered.max()) if considered.numel() else 0.0
        excess = test_norm[bad] / result.tolerance[bad]
        message = status.value.format(
            solver=self.name,
            iterations=int(result.iterations.max()) if result.iterations.numel() else 0,
            worst=worst,
            excess=float(excess.max()) if excess.numel() else 0.0,
            factor=TRUE_RESIDUAL_FACTOR,
            maxiter=maxiter,
            failed=int(bad.sum()),
            k=failed.numel(),
            column=column,
            rtol=self.rtol,
            atol=self.atol,
            dtype=str(B.dtype).removeprefix("torch."),
            eps=torch.finfo(B.dtype).eps,
        )
        # back to the original units (an atol / s that overflowed to Inf met the test at once: the tolerance is atol)
        tolerance = torch.where(torch.isinf(result.tolerance), self.atol, result.tolerance * scale)
        return Solution(
            value=X.reshape(B.shape),
            converged=converged.reshape(shape),
            iterations=result.iterations.reshape(shape),
            residual_norm=(residual_norm * scale).reshape(shape),
            tolerance=tolerance.reshape(shape),
            status=status,
            message=message,
        )

    # ---- helpers for _iterate ---------------------------------------------------------------------------------------
    def tolerance(self, reference_norm: torch.Tensor, atol: torch.Tensor | None = None) -> torch.Tensor:
        """Per-column absolute tolerance ``max(rtol ‖b_j‖, atol_j)`` for reference norms ``‖b_j‖`` (``atol``: the
        per-column ``(k,)`` absolute tolerances of a scaled block; ``None``: this solver's ``atol``)."""
        if atol is None:
            return torch.clamp(reference_norm * self.rtol, min=self.atol)
        return torch.maximum(reference_norm * self.rtol, atol)

    @staticmethod
    def check_every(device: torch.device) -> int:
        return 1 if device.type == "cpu" else CUDA_CHECK_EVERY

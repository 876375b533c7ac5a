r"""What LSQR and LSMR share: settings, the rectangular operator, the Golub–Kahan process, stopping rules, reporting.

Both solve, for every column ``b`` of ``B`` and a rectangular ``A`` (``m × n``, any shape),

.. math::

    \min_x \|A x - b\|_2^2 + \lambda^2 \|x\|_2^2 \qquad (\lambda = \texttt{damp} \ge 0),

i.e. the least-squares problem for :math:`\bar A = \begin{bmatrix} A \\ \lambda I \end{bmatrix}` and
:math:`\bar b = \begin{bmatrix} b \\ 0 \end{bmatrix}`, from the Golub–Kahan bidiagonalisation of ``A`` started at
``b``:

.. math::

    \beta_1 u_1 = b - A x_0,\quad \alpha_1 v_1 = A^\top u_1,\qquad
    \beta_{j+1} u_{j+1} = A v_j - \alpha_j u_j,\quad \alpha_{j+1} v_{j+1} = A^\top u_{j+1} - \beta_{j+1} v_j,

with :math:`\alpha, \beta \ge 0` the norms that make :math:`u, v` unit vectors. Each iteration costs one product with
``A`` and one with ``Aᵀ``; the methods differ in how they pick :math:`x_j \in x_0 + \operatorname{span}(v_1..v_j)`
(LSQR: :math:`\|\bar r\|` minimal, Paige & Saunders 1982; LSMR: :math:`\|\bar A^\top \bar r\|` minimal, Fong &
Saunders 2011) and share the stopping rules below.

All ``k`` columns of ``B`` are iterated as one ``(·, k)`` block: every scalar of the recurrences is a ``(k,)`` tensor
on the device, one sparse-times-dense product serves all columns, and a column that has stopped is frozen (its update
of ``x`` is multiplied by 0; its other vectors keep moving but stay finite and are never read). The host reads the
device once per iteration on a CPU (every ``CUDA_CHECK_EVERY`` iterations elsewhere) for the exit test.

Stopping rules (per column, Paige & Saunders' and SciPy's ``istop``): with :math:`\|r\|` the recurrence's estimate of
:math:`\|\bar b - \bar A x\|`, :math:`\|\bar A^\top \bar r\|` that of the normal residual, :math:`\|\bar A\|` and
:math:`\operatorname{cond}(\bar A)` the Frobenius-type estimates the recurrences build,

* 1: :math:`\|r\| \le \texttt{btol}\,\|b\| + \texttt{atol}\,\|\bar A\|\,\|x\|` — ``A x = b`` is solved (a consistent
  system);
* 2: :math:`\|\bar A^\top \bar r\| \le \texttt{atol}\,\|\bar A\|\,\|r\|` — ``x`` is a least-squares solution;
* 3: :math:`\operatorname{cond}(\bar A) \ge \texttt{conlim}`;
* 4, 5, 6: the tests of 1, 2, 3 at the working precision (``1 + t <= 1`` in ``B``'s dtype);
* 7: ``maxiter`` iterations;
* 0: ``b = 0``, so ``x = 0`` (whatever ``x0``), or ``x0`` already solves the problem (:math:`A x_0 = b` or
  :math:`A^\top (b - A x_0) = 0`);
* -1 (ours, not SciPy's): the recurrence produced NaN or Inf.

The lower codes win when several hold (as in SciPy). 0, 1, 2, 4 and 5 count as converged; 3 and 6 fail as
ill-conditioned, 7 as out of iterations.

The iteration runs on the column-scaled block ``B / s`` (``s_j`` a power of two near ``max_i |B_ij|``, as the Krylov
solvers do, see :func:`sparseprec.solvers._base.column_scale`): exact, and every test above is invariant under it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.weak import WeakIdKeyDictionary

from .._validation import check_dense, check_sparse_matrix, describe
from ..errors import ConvergenceError, ConvergenceWarning
from ..pattern import pattern_of
from ._base import CUDA_CHECK_EVERY, check_maxiter, column_scale
from ._blocks import BlockPasses
from ._operator import values_version

__all__ = [
    "LeastSquaresSolver",
    "LeastSquaresSolution",
    "LeastSquaresStatus",
    "LeastSquaresOperator",
    "GolubKahan",
    "STOP_REASONS",
    "sym_ortho",
]

#: What each stop code means (SciPy's ``istop`` for 0..7; -1 is ours).
STOP_REASONS = {
    -1: "NaN or Inf appeared in the recurrence",
    0: "b = 0 so x = 0, or x0 already solves the problem",
    1: "A x = b is solved within atol and btol",
    2: "the least-squares solution is good enough, given atol",
    3: "the estimate of cond(Ā) exceeded conlim",
    4: "A x = b is solved to the working precision",
    5: "the least-squares solution is good to the working precision",
    6: "the estimate of cond(Ā) is too large for the working precision",
    7: "the iteration limit maxiter was reached",
}

_CONVERGED_CODES = (0, 1, 2, 4, 5)


class LeastSquaresStatus(enum.Enum):
    """Outcome of a least-squares solve. Each member's value is the message shown to users (formatted)."""

    SUCCESS = (
        "{solver} converged in {iterations} iterations (e.g. column {column}: stop code {code}, {reason}; largest "
        "relative residual ‖b − A x‖/‖b‖ = {relres:.3g})."
    )
    MAX_ITERATIONS = (
        "{solver} did not converge within maxiter={maxiter} iterations in {failed} of {k} right-hand-side columns "
        "(e.g. column {column}: stop code {code}, {reason}; relative residual ‖b − A x‖/‖b‖ = {relres:.3g}, normal "
        "residual ‖Aᵀr‖/(‖A‖ ‖r‖) = {lsres:.3g}, against atol={atol:g}, btol={btol:g}). Try increasing `maxiter`, "
        "scaling the columns (preconditioner='columns'), or loosening `atol`/`btol`."
    )
    ILL_CONDITIONED = (
        "{solver} stopped in {failed} of {k} right-hand-side columns (e.g. column {column}: stop code {code}, "
        "{reason}) after {iterations} iterations: the estimate cond(Ā) = {cond:.3g} exceeds conlim={conlim:g} (or "
        "what {dtype} can resolve), so x may be dominated by amplified noise. Regularise with `damp` > 0, scale the "
        "columns (preconditioner='columns'), or raise `conlim` if A is known to be well-posed."
    )
    NON_FINITE = (
        "{solver} produced NaN or Inf in {failed} of {k} right-hand-side columns (e.g. column {column}: stop code "
        "{code}, {reason}). Check A, B and x0 for NaN/Inf values, or values so large that their squares overflow "
        "{dtype} (rescale them)."
    )


@dataclass(frozen=True)
class LeastSquaresSolution:
    r"""Result of ``LSQR(...).solve(A, B)`` / ``LSMR(...).solve(A, B)``.

    Per-column fields have shape ``B.shape[1:]`` (0-d for a 1-D ``B``).

    Attributes
    ----------
    value : torch.Tensor
        The solution ``X``, ``(n,)`` or ``(n, k)``: :math:`\arg\min_x \|A x - b\|^2 + \lambda^2 \|x\|^2` per column.
        Differentiable w.r.t. ``A`` and ``B`` when they require gradients (see the solver).
    converged : torch.Tensor
        Bool: the stop code is 0, 1, 2, 4 or 5 and ``X`` is finite.
    iterations : torch.Tensor
        int64: iterations each column took.
    stop_code : torch.Tensor
        int64: why each column stopped, SciPy's ``istop`` (0..7, see
        :data:`sparseprec.solvers._least_squares.STOP_REASONS`), or -1 when the recurrence produced NaN/Inf.
    residual_norm : torch.Tensor
        :math:`\|b - A x\|_2`, recomputed from the returned ``x`` (without the damping term
        :math:`\lambda^2 \|x\|^2`, which SciPy's ``r2norm``/``normr`` include).
    normal_residual_norm : torch.Tensor
        :math:`\|A^\top (b - A x) - \lambda^2 x\|_2`, recomputed from the returned ``x``: the gradient of the
        objective (up to a factor -2), 0 at the solution.
    norm_A : torch.Tensor
        The recurrence's estimate of :math:`\|\bar A\|_F` (of the column-scaled ``A D`` with a preconditioner).
    cond_A : torch.Tensor
        The recurrence's estimate of :math:`\operatorname{cond}(\bar A)`, what ``conlim`` is compared with.
    norm_x : torch.Tensor
        The recurrence's estimate of :math:`\|x\|` (of the scaled unknown ``D⁻¹ x`` with a preconditioner).
    status : LeastSquaresStatus
        ``SUCCESS`` or the worst failure among the columns (``NON_FINITE``, ``ILL_CONDITIONED``,
        ``MAX_ITERATIONS``, worst first).
    message : str
        ``status`` spelled out: the stop reason of a representative column and what to try.
    """

    value: torch.Tensor
    converged: torch.Tensor
    iterations: torch.Tensor
    stop_code: torch.Tensor
    residual_norm: torch.Tensor
    normal_residual_norm: torch.Tensor
    norm_A: torch.Tensor
    cond_A: torch.Tensor
    norm_x: torch.Tensor
    status: LeastSquaresStatus
    message: str

    @property
    def success(self) -> bool:
        """``True`` when every column converged."""
        return self.status is LeastSquaresStatus.SUCCESS


# ---- the operator ---------------------------------------------------------------------------------------------------
# tensor A -> (version of its index and value data, the kernel CSR matrix of Aᵀ); weak: forgotten with A
_TRANSPOSED: WeakIdKeyDictionary = WeakIdKeyDictionary()


class LeastSquaresOperator:
    """A rectangular ``A`` (``m × n``): products ``A X`` and ``Aᵀ U`` of ``(·, k)`` blocks written into given blocks.

    * sparse COO/CSR: the pattern's cached kernel CSR matrix and its transpose (``sparseprec.pattern``), through
      ``addmv_``/``addmm_`` with ``beta = 0`` (nothing allocated per product);
    * dense: ``torch.mv``/``torch.mm`` into the block (``Aᵀ`` as a transposed view);
    * a pair ``(matvec, rmatvec)`` of callables, called with ``(n, k)``/``(m, k)`` blocks (1-D tensors when ``B`` is
      1-D); ``n`` is read from ``rmatvec``'s first output when nothing else gives it.
    """

    def __init__(self, A: Any, m: int, n: int | None, vector: bool):
        self.A, self.m, self.n, self.vector = A, m, n, vector
        self._At: torch.Tensor | None = None
        self._checked = [False, False]
        if isinstance(A, torch.Tensor) and A.layout != torch.strided:
            self.kind = "sparse"
            self.pattern = pattern_of(A)
            self.values = self.pattern.kernel_values(A.detach())
            self.kernel = self.pattern.kernel_matrix(self.values)
        elif isinstance(A, torch.Tensor):
            self.kind = "dense"
            self.dense = A.detach()
        else:
            self.kind = "callable"
            self.matvec, self.rmatvec = A

    @property
    def is_tensor(self) -> bool:
        return self.kind != "callable"

    @property
    def transposed_kernel(self) -> torch.Tensor:
        if self._At is None:
            # Gathering Aᵀ's values costs about as much as a few iterations (a random-order gather of nnz values):
            # kept with A (weakly) until its values change, for the next solve with the same A -- e.g. the adjoint
            # solve of sparse_generic_lstsq's backward, or a loop of solves.
            version = values_version(self.A)
            cached = _TRANSPOSED.get(self.A)
            if cached is not None and cached[0] == version:
                self._At = cached[1]
            else:
                self._At = self.pattern.transposed_kernel_matrix(self.values)
                _TRANSPOSED[self.A] = (version, self._At)
        return self._At

    def a_into(self, X: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out = A X`` for ``X`` of shape ``(n, k)``, ``out`` ``(m, k)`` (contiguous)."""
        return self._product(X, out, transpose=False)

    def at_into(self, U: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out = Aᵀ U`` for ``U`` of shape ``(m, k)``, ``out`` ``(n, k)`` (contiguous)."""
        return self._product(U, out, transpose=True)

    def a_new(self, X: torch.Tensor) -> torch.Tensor:
        """``A X`` in a new contiguous ``(m, k)`` block (for a callable pair, this may be where ``m`` is learnt)."""
        if self.kind == "callable":
            return self._call(X, transpose=False).reshape(self.m, X.shape[1]).contiguous()
        return self.a_into(X, X.new_empty(self.m, X.shape[1]))

    def at_new(self, U: torch.Tensor) -> torch.Tensor:
        """``Aᵀ U`` in a new contiguous ``(n, k)`` block (for a callable pair, this may be where ``n`` is learnt)."""
        if self.kind == "callable":
            return self._call(U, transpose=True).reshape(self.n, U.shape[1]).contiguous()
        return self.at_into(U, U.new_empty(self.n, U.shape[1]))

    def _product(self, X: torch.Tensor, out: torch.Tensor, transpose: bool) -> torch.Tensor:
        if self.kind == "sparse":
            K = self.transposed_kernel if transpose else self.kernel
            if X.shape[1] == 1:  # the sparse matrix-vector kernel: 1.5-2x faster than a one-column product on CPU
                out.view(-1).addmv_(K, X.view(-1), beta=0.0)
                return out
            return out.addmm_(K, X, beta=0.0)
        if self.kind == "dense":
            D = self.dense.mT if transpose else self.dense
            if X.shape[1] == 1:
                torch.mv(D, X.view(-1), out=out.view(-1))
                return out
            return torch.mm(D, X, out=out)
        return out.copy_(self._call(X, transpose).reshape(out.shape))

    def _call(self, X: torch.Tensor, transpose: bool) -> torch.Tensor:
        given = X.reshape(X.shape[0]) if self.vector else X
        Y = (self.rmatvec if transpose else self.matvec)(given)
        if not self._checked[transpose]:
            self._check_output(Y, given, transpose)
        return Y

    def _check_output(self, Y: object, given: torch.Tensor, transpose: bool) -> None:
        name = "rmatvec" if transpose else "matvec"
        what = "Aᵀ u" if transpose else "A v"
        if not isinstance(Y, torch.Tensor):
            raise TypeError(f"A's {name} (computing {what}) must return a torch.Tensor, got {type(Y).__name__}")
        rows = self.n if transpose else self.m
        ok = Y.dim() == given.dim() and Y.layout == torch.strided and Y.dtype == given.dtype
        ok = ok and Y.device == given.device and tuple(Y.shape[1:]) == tuple(given.shape[1:])
        if ok and rows is not None:
            ok = Y.shape[0] == rows
        if not ok:
            expected = "(n,)" if self.vector else "(n, k)"
            if rows is not None:
                expected = f"({rows},)" if self.vector else f"({rows}, {given.shape[1]})"
            raise ValueError(
                f"A's {name} (computing {what}) must return a dense tensor of shape {expected} with the input's dtype "
                f"and device: given a {describe(given)} it returned a {describe(Y)}"
            )
        if rows is None:  # learnt from the first output
            if transpose:
                self.n = Y.shape[0]
            else:
                self.m = Y.shape[0]
        self._checked[transpose] = True

    def column_norms(self) -> torch.Tensor:
        """``‖A_{:,j}‖₂`` for every column, ``(n,)`` (tensors only)."""
        if self.kind == "sparse":
            squares = self.values.new_zeros(self.n).index_add_(0, self.pattern.col.long(), self.values.square())
            return squares.sqrt_()
        if self.kind == "dense":
            return torch.linalg.vector_norm(self.dense, dim=0)
        raise TypeError("column norms of a callable pair are unknown")


class LinearMap:
    """The operator the recurrence sees, ``M = A D`` or ``M = (A D)ᵀ`` (``D = diag(d)``, or ``I`` when ``d`` is
    ``None``), as products into given blocks; ``D`` is applied by scaling vectors, never by forming a matrix."""

    def __init__(self, base: LeastSquaresOperator, d: torch.Tensor | None, transposed: bool):
        self.base, self.transposed = base, transposed
        self.d = None if d is None else d.reshape(-1, 1)
        self._scratch: torch.Tensor | None = None

    def _scaled(self, X: torch.Tensor) -> torch.Tensor:
        if self._scratch is None or self._scratch.shape != X.shape:
            self._scratch = torch.empty_like(X)
        return torch.mul(X, self.d, out=self._scratch)

    def _a_d(self, X: torch.Tensor, out: torch.Tensor) -> torch.Tensor:  # out = A D X
        return self.base.a_into(X if self.d is None else self._scaled(X), out)

    def _d_at(self, U: torch.Tensor, out: torch.Tensor) -> torch.Tensor:  # out = D Aᵀ U
        self.base.at_into(U, out)
        return out if self.d is None else out.mul_(self.d)

    def matvec_into(self, X: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out = M X``."""
        return self._d_at(X, out) if self.transposed else self._a_d(X, out)

    def rmatvec_into(self, U: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out = Mᵀ U``."""
        return self._a_d(U, out) if self.transposed else self._d_at(U, out)

    def rmatvec_new(self, U: torch.Tensor) -> torch.Tensor:
        """``Mᵀ U`` in a new block (the first product of a run: a callable pair's ``n`` may be learnt here)."""
        if self.transposed:
            return self.base.a_new(U if self.d is None else self._scaled(U))
        V = self.base.at_new(U)
        return V if self.d is None else V.mul_(self.d)


# ---- the Golub–Kahan process ----------------------------------------------------------------------------------------
def _reciprocal(x: torch.Tensor) -> torch.Tensor:
    """``1 / x`` where ``x > 0``, else 0 (a zero vector stays zero instead of becoming NaN)."""
    return torch.where(x > 0, 1.0 / x, torch.zeros_like(x))


def sym_ortho(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Stable Givens rotation, elementwise: ``(c, s, r)`` with :math:`r = \sqrt{a^2 + b^2} \ge 0`,
    :math:`c = a / r`, :math:`s = b / r`, so that :math:`\begin{bmatrix} c & s \\ -s & c \end{bmatrix}
    \begin{bmatrix} a \\ b \end{bmatrix} = \begin{bmatrix} r \\ 0 \end{bmatrix}`; ``(0, 0, 0)`` for ``a = b = 0``.

    ``hypot`` avoids overflow; for ``b = 0`` this is exactly ``(sign a, 0, |a|)``, for ``a = 0`` ``(0, sign b, |b|)``.
    """
    r = torch.hypot(a, b)
    inverse = _reciprocal(r)
    return a * inverse, b * inverse, r


class GolubKahan:
    r"""The Golub–Kahan bidiagonalisation of ``M`` (a :class:`LinearMap`) on a block, in place.

    Start: :math:`\beta u = B - M X_0`, :math:`\alpha v = M^\top u`; each :meth:`step`:
    :math:`\beta u \leftarrow M v - \alpha u`, :math:`\alpha v \leftarrow M^\top u - \beta v`, column by column
    (``alpha``, ``beta`` are ``(k,)``). A zero norm leaves its vector zero (no division by 0).

    With ``track=True`` it also keeps ``W`` (shaped like ``u``) with :math:`v = M^\top w` for the current ``v``: from
    :math:`\alpha_1 v_1 = M^\top u_1`, :math:`w_1 = u_1 / \alpha_1`, and from the recurrence,
    :math:`w \leftarrow (u - \beta w) / \alpha` — a preimage of every ``v`` without another product with ``M``.
    """

    def __init__(self, op: LinearMap, B: torch.Tensor, X0: torch.Tensor | None, track: bool):
        self.op = op
        if X0 is None:
            U = B.clone()
        else:
            U = torch.sub(B, op.matvec_into(X0, torch.empty_like(B)), out=torch.empty_like(B))
        self.passes_u = BlockPasses(U, 1)
        self.beta = self.norm_u(U)
        U.mul_(_reciprocal(self.beta))
        V = op.rmatvec_new(U)
        self.passes_v = BlockPasses(V, 1)
        self.alpha = self.norm_v(V)
        inverse = _reciprocal(self.alpha)
        V.mul_(inverse)
        self.U, self.V = U, V
        self.work_u, self.work_v = torch.empty_like(U), torch.empty_like(V)
        self.W = U * inverse if track else None

    def norm_u(self, U: torch.Tensor) -> torch.Tensor:
        return self.passes_u.dot(U, U).clamp_(min=0).sqrt_()

    def norm_v(self, V: torch.Tensor) -> torch.Tensor:
        return self.passes_v.dot(V, V).clamp_(min=0).sqrt_()

    def step(self) -> None:
        """One step; afterwards ``beta``/``alpha``/``U``/``V`` are the new ones."""
        op = self.op
        # β u = M v − α u (into the spare block, then swapped)
        S = op.matvec_into(self.V, self.work_u)
        S.addcmul_(self.U, self.alpha, value=-1.0)
        self.work_u, self.U = self.U, S
        self.beta = self.norm_u(S)
        S.mul_(_reciprocal(self.beta))
        # α v = Mᵀ u − β v
        T = op.rmatvec_into(S, self.work_v)
        T.addcmul_(self.V, self.beta, value=-1.0)
        self.work_v, self.V = self.V, T
        self.alpha = self.norm_v(T)
        inverse = _reciprocal(self.alpha)
        T.mul_(inverse)
        if self.W is not None:
            # w = (u − β w) / α, the preimage of the new v
            torch.addcmul(S, self.W, self.beta, value=-1.0, out=self.W).mul_(inverse)


# ---- the solver base class ------------------------------------------------------------------------------------------
def _check_real(value: object, name: str, *, positive: bool = False, infinite: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number (int or float), got {type(value).__name__} {value!r}")
    bound = "> 0" if positive else ">= 0"
    if math.isnan(value) or (math.isinf(value) and not infinite) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a {'' if infinite else 'finite '}number {bound}, got {value!r}")


@dataclass
class IterationState:
    """What a method's ``_iterate`` hands back (``(k,)`` tensors on the device)."""

    codes: torch.Tensor  # int64 stop codes
    iterations: torch.Tensor  # int64
    norm_A: torch.Tensor
    cond_A: torch.Tensor
    norm_x: torch.Tensor


@dataclass(frozen=True)
class LeastSquaresSolver:
    """Base class of :class:`~sparseprec.solvers.LSQR` and :class:`~sparseprec.solvers.LSMR` (frozen settings; see
    :class:`~sparseprec.solvers.LSMR` for the parameters)."""

    atol: float = 1e-6
    btol: float = 1e-6
    conlim: float = 1e8
    damp: float = 0.0
    maxiter: int | None = None
    preconditioner: None | str | torch.Tensor = None
    throw: bool = True

    #: SciPy's name of the method, for messages
    method: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for name in ("atol", "btol", "damp"):
            _check_real(getattr(self, name), name)
        _check_real(self.conlim, "conlim", positive=True, infinite=True)
        check_maxiter(self.maxiter)
        p = self.preconditioner
        if isinstance(p, str):
            if p != "columns":
                raise ValueError(f"preconditioner must be None, 'columns' or a tensor of column scales, got {p!r}")
        elif isinstance(p, torch.Tensor):
            check_dense(p, "preconditioner", dims=(1,))
            if p.requires_grad:
                raise ValueError("preconditioner (column scales) must not require grad: it changes no solution")
            if p.numel() and not bool(((p > 0) & torch.isfinite(p)).all()):
                raise ValueError(
                    "preconditioner (column scales d, the diagonal of D in A D) must be finite and > 0, got values in "
                    f"[{float(p.min()):g}, {float(p.max()):g}]"
                )
        elif p is not None:
            raise TypeError(
                "preconditioner must be None, 'columns' (scale A's columns to unit norm) or a 1-D tensor d > 0 of "
                f"column scales, got {type(p).__name__}"
            )
        if p is not None and self.damp > 0:
            raise ValueError(
                f"preconditioner={p if isinstance(p, str) else 'a tensor'!r} with damp={self.damp!r} changes the "
                "problem: the solver iterates on z with x = D z, so damp would penalise ‖z‖ = ‖D⁻¹x‖ instead of ‖x‖. "
                "Use one or the other (or fold the scaling into damp yourself)."
            )
        if not isinstance(self.throw, bool):
            raise TypeError(f"throw must be a bool, got {type(self.throw).__name__}")

    @property
    def name(self) -> str:
        return type(self).__name__

    def default_maxiter(self, m: int, n: int) -> int:
        """SciPy's default iteration limit for this method on an ``m × n`` problem."""
        raise NotImplementedError

    # ---- public API -------------------------------------------------------------------------------------------------
    def __call__(self, A: Any, B: torch.Tensor, x0: torch.Tensor | None = None, **settings: Any) -> torch.Tensor:
        """Solve ``min ‖A x − b‖² + damp² ‖x‖²`` for every column of ``B`` and return ``X`` (``settings`` override
        this solver's fields for this call)."""
        solver = dataclasses.replace(self, **settings) if settings else self
        return solver.solve(A, B, x0=x0).value

    def solve(self, A: Any, B: torch.Tensor, x0: torch.Tensor | None = None) -> LeastSquaresSolution:
        """Solve ``min ‖A x − b‖² + damp² ‖x‖²`` for every column ``b`` of ``B``; return the
        :class:`LeastSquaresSolution` (raise or warn when a column fails, per ``throw``)."""
        op, m, n, k = self._operator(A, B, "B", "m")
        vector = B.dim() == 1
        if x0 is not None:
            check_dense(x0, "x0", dims=(B.dim(),))
            if n is None:
                op.n = n = x0.shape[0]
            expected = (n,) if vector else (n, k)
            if tuple(x0.shape) != expected or x0.dtype != B.dtype or x0.device != B.device:
                raise ValueError(
                    f"x0 must have shape {expected} (A of {m} rows and {n} columns, B of shape {tuple(B.shape)}), "
                    f"dtype {B.dtype} and device {B.device}; got a {describe(x0)}"
                )
            if self.damp > 0:
                raise ValueError(
                    f"x0 with damp={self.damp!r} is not supported: from x0 the recurrences (and SciPy's) damp x − x0, "
                    "not x. Solve for the correction instead: dx = solver(A, b − A x0), x = x0 + dx (damping dx), or "
                    "start from 0."
                )
        d = self._column_scales(op, n, B)
        with torch.no_grad():
            B2 = B.detach().reshape(m, k)
            scale = column_scale(B2)
            B2 = (B2 / scale).contiguous()
            X0 = None
            if x0 is not None:
                X0 = x0.detach().reshape(n, k) / scale
                if d is not None:
                    X0 = X0 / d.reshape(-1, 1)
                X0 = X0.contiguous()
            M = LinearMap(op, d, transposed=False)
            X, _, state, maxiter = self._run(M, B2, X0, track=False, shape=(m, n))
            if d is not None:
                X.mul_(d.reshape(-1, 1))
            # the true residuals of the returned X, in the scaled units
            R = torch.sub(B2, op.a_into(X, torch.empty_like(B2)), out=torch.empty_like(B2))
            N = op.at_new(R)
            if self.damp > 0:
                N.add_(X, alpha=-(self.damp**2))
            X.mul_(scale)
        solution = self._report(X, R, N, state, scale, B, maxiter)
        # a callable pair may capture learnable tensors: put on the graph whenever autograd records (as the Krylov
        # solvers do); the rule returns X unchanged when nothing upstream requires grad
        grad = torch.is_grad_enabled() and (B.requires_grad or not op.is_tensor or A.requires_grad)
        if grad:
            from .lstsq import attach_lstsq_gradient

            solution = dataclasses.replace(solution, value=attach_lstsq_gradient(A, B, solution.value, self))
        self._raise_or_warn(solution)
        return solution

    def _solve_adjoint(self, A: Any, G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, LeastSquaresSolution]:
        r"""The transposed problem with a preimage: ``(Y, H, solution)`` for ``G`` of shape ``(n,)`` or ``(n, k)``.

        Runs this method and its settings on :math:`\min_Y \|A^\top Y - G\|^2 + \lambda^2 \|Y\|^2` from ``Y = 0``
        (the minimum-norm solution of :math:`A^\top Y = G` when :math:`\lambda = 0` and ``A`` has full column rank),
        and returns with it ``H`` such that :math:`Y = A H`, i.e. :math:`H = (A^\top A + \lambda^2 I)^{-1} G`
        (:math:`Y` solves :math:`(A A^\top + \lambda^2 I) Y = A G`, so :math:`Y = A (A^\top A + \lambda^2 I)^{-1} G`).

        ``H`` is tracked along the recurrence: on :math:`M = A^\top` every ``v`` of the Golub–Kahan process is
        :math:`A w` for a ``w`` the :class:`GolubKahan` process keeps, and every update of ``Y`` is linear in the
        ``v`` (LSQR's ``w``, LSMR's ``h``, ``h̄``), so the same updates on the preimages give ``H`` — a few extra
        ``n``-vector updates per iteration, no extra product with ``A``. With column scales ``d`` (``damp = 0``) the
        run is on :math:`((A D)^\top, D G)`, which has the same minimum-norm solution set as :math:`A^\top Y = G`,
        and ``H = D H'``. ``solution`` describes the transposed problem (its ``value`` is ``Y``).

        ``A`` must have full column rank for ``H``: ``Y`` determines ``H`` only up to ``null(A)``, and the tracked
        preimages carry an arbitrary ``null(A)`` component. So for a wide or column-rank-deficient ``A`` (even with
        ``damp > 0``, where ``H`` is unique) ``Y`` is right but ``H`` is not.
        """
        op, n, m, k = self._operator(A, G, "G", "n", transposed=True)
        d = self._column_scales(op, n, G)
        with torch.no_grad():
            G2 = G.detach().reshape(n, k)
            scale = column_scale(G2)
            G2 = (G2 / scale).contiguous()
            if d is not None:
                G2 = G2 * d.reshape(-1, 1)
            M = LinearMap(op, d, transposed=True)
            Y, H, state, maxiter = self._run(M, G2, None, track=True, shape=(n, m))
            if d is not None:
                H.mul_(d.reshape(-1, 1))
                G2 = G2 / d.reshape(-1, 1)
            R = torch.sub(G2, op.at_into(Y, torch.empty_like(G2)), out=torch.empty_like(G2))
            N = op.a_into(R, torch.empty_like(Y))
            if self.damp > 0:
                N.add_(Y, alpha=-(self.damp**2))
            Y.mul_(scale)
            H.mul_(scale)
        solution = self._report(Y, R, N, state, scale, G, maxiter)
        self._raise_or_warn(solution)
        return solution.value, H.reshape(G.shape), solution

    # ---- pieces -----------------------------------------------------------------------------------------------------
    def _operator(
        self, A: Any, B: torch.Tensor, b_name: str, rows: str, transposed: bool = False
    ) -> tuple[LeastSquaresOperator, int, int | None, int]:
        """Validate ``A`` and the right-hand side; return the operator, the right-hand side's rows, the unknown's
        rows (``None``: a callable pair's, not known yet) and ``k``."""
        check_dense(B, b_name, dims=(1, 2))
        k = 1 if B.dim() == 1 else B.shape[1]
        if isinstance(A, torch.Tensor):
            if A.layout == torch.strided:
                check_dense(A, "A", dims=(2,))
            else:
                check_sparse_matrix(A, "A")
                if A.dim() != 2:
                    raise ValueError(
                        f"A must be a single (m, n) matrix, got a batched tensor of shape {tuple(A.shape)}"
                    )
            axis = 1 if transposed else 0
            if A.shape[axis] != B.shape[0]:
                raise ValueError(
                    f"A of shape {tuple(A.shape)} needs {b_name}.shape[0] == A.shape[{axis}] = {A.shape[axis]} "
                    f"({rows}), got {b_name} of shape {tuple(B.shape)}"
                )
            if A.dtype != B.dtype:
                raise TypeError(f"A and {b_name} must have the same dtype, got {A.dtype} and {B.dtype}")
            if A.device != B.device:
                raise ValueError(f"A and {b_name} must be on the same device, got {A.device} and {B.device}")
            if A.layout != torch.strided and A.numel() and B.numel():
                pattern_of(A)  # checks the index data once per pattern
            op = LeastSquaresOperator(A, A.shape[0], A.shape[1], vector=B.dim() == 1)
        elif isinstance(A, (tuple, list)) and len(A) == 2 and all(callable(f) for f in A):
            op = LeastSquaresOperator(tuple(A), B.shape[0] if not transposed else None, None, vector=B.dim() == 1)
            if transposed:
                op.n = B.shape[0]
        elif callable(A):
            raise TypeError(
                "A is a single callable, but least squares needs both A v and Aᵀ u: pass A as a pair "
                "(matvec, rmatvec) of callables"
            )
        else:
            raise TypeError(
                "A must be a sparse COO/CSR tensor, a dense tensor or a pair (matvec, rmatvec) of callables, got "
                f"{type(A).__name__}"
            )
        if transposed:
            return op, op.n, op.m, k
        return op, op.m, op.n, k

    def _column_scales(self, op: LeastSquaresOperator, n: int | None, B: torch.Tensor) -> torch.Tensor | None:
        """``d`` of ``A D`` (``(n,)``) for this solver's preconditioner, or ``None``."""
        p = self.preconditioner
        if p is None:
            return None
        if isinstance(p, str):
            if not op.is_tensor:
                raise TypeError(
                    "preconditioner='columns' needs A's column norms, which a callable pair does not give: pass the "
                    "column scales yourself as a tensor d (preconditioner=d, with d_j ≈ 1/‖A e_j‖)"
                )
            with torch.no_grad():
                norms = op.column_norms()
                return torch.where(norms > 0, 1.0 / norms, torch.ones_like(norms))
        if n is None:
            op.n = n = p.shape[0]
        if p.shape[0] != n or p.dtype != B.dtype or p.device != B.device:
            raise ValueError(
                f"preconditioner (column scales) must have shape ({n},) (A's columns), dtype {B.dtype} and device "
                f"{B.device}; got a {describe(p)}"
            )
        return p.detach()

    def _run(
        self, M: LinearMap, B: torch.Tensor, X0: torch.Tensor | None, track: bool, shape: tuple[int, int | None]
    ) -> tuple[torch.Tensor, torch.Tensor | None, IterationState, int]:
        """Iterate on the scaled block ``B`` (``(m, k)``) with the operator ``M``; return ``X``, the tracked
        preimage (``track``), the per-column state and the iteration limit used."""
        m, k = B.shape
        n = shape[1]
        device = B.device
        normb = torch.linalg.vector_norm(B, dim=0) if m else B.new_zeros(k)
        if X0 is not None:
            X0 = X0 * (normb > 0)  # b = 0: x = 0, whatever x0
        empty = m == 0 or k == 0 or n == 0
        if empty and M.base.is_tensor:
            n = n or 0
            X = B.new_zeros(n, k)
            zeros = B.new_zeros(k)
            state = IterationState(
                codes=torch.zeros(k, dtype=torch.int64, device=device),
                iterations=torch.zeros(k, dtype=torch.int64, device=device),
                norm_A=zeros,
                cond_A=zeros,
                norm_x=zeros,
            )
            return X, (B.new_zeros(m, k) if track else None), state, self._maxiter(m, n)
        gk = GolubKahan(M, B, X0, track)
        n = gk.V.shape[0]
        maxiter = self._maxiter(m, n)
        X = X0.clone() if X0 is not None else B.new_zeros(n, k)
        H = B.new_zeros(m, k) if track else None
        state = self._iterate(gk, X, H, normb, maxiter)
        return X, H, state, maxiter

    def _maxiter(self, m: int, n: int) -> int:
        return self.maxiter if self.maxiter is not None else max(self.default_maxiter(m, n), 1)

    def _iterate(
        self, gk: GolubKahan, X: torch.Tensor, H: torch.Tensor | None, normb: torch.Tensor, maxiter: int
    ) -> IterationState:
        """Run the method from the started process ``gk``, updating ``X`` (and the preimage ``H``) in place."""
        raise NotImplementedError

    # ---- shared helpers for _iterate --------------------------------------------------------------------------------
    @staticmethod
    def check_every(device: torch.device) -> int:
        return 1 if device.type == "cpu" else CUDA_CHECK_EVERY

    def initial_codes(self, gk: GolubKahan, normb: torch.Tensor) -> torch.Tensor:
        """Code 0 where ``b = 0`` or ``x0`` already solves (``β₁ = 0`` or ``α₁ = 0``), else -2 (running)."""
        done = (normb == 0) | (gk.beta == 0) | (gk.alpha == 0)
        return torch.where(done, 0, -2).to(torch.int64)

    def stop_codes(
        self,
        itn: int,
        maxiter: int,
        normr: torch.Tensor,
        normb: torch.Tensor,
        test2: torch.Tensor,
        test3: torch.Tensor,
        normA: torch.Tensor,
        normx: torch.Tensor,
    ) -> torch.Tensor:
        """SciPy's ``istop`` after iteration ``itn`` (-2: keep going; -1: NaN) from the estimates of ``‖r‖``, ``‖Ā‖``
        and ``‖x‖``, and the method's own ``test2`` (normal residual) and ``test3`` (``1 / cond``)."""
        test1 = normr / normb
        ratio = normA * normx / normb
        t1 = test1 / (1 + ratio)
        rtol = self.btol + self.atol * ratio
        ctol = 1.0 / self.conlim
        code = torch.full_like(test1, 7 if itn >= maxiter else -2, dtype=torch.int64)
        code = torch.where(1 + test3 <= 1, 6, code)
        code = torch.where(1 + test2 <= 1, 5, code)
        code = torch.where(1 + t1 <= 1, 4, code)
        code = torch.where(test3 <= ctol, 3, code)
        code = torch.where(test2 <= self.atol, 2, code)
        code = torch.where(test1 <= rtol, 1, code)
        return torch.where(torch.isnan(test1) | torch.isnan(test2), -1, code)

    @staticmethod
    def record(
        active: torch.Tensor,
        step: torch.Tensor,
        codes: torch.Tensor,
        iterations: torch.Tensor,
        report: tuple[torch.Tensor, ...],
        estimates: tuple[torch.Tensor, ...],
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:
        """The running columns take this iteration's stop codes and estimates (``iterations`` counts them, in place);
        returns the codes, the estimates to report and the columns still running."""
        iterations += active
        codes = torch.where(active, step, codes)
        report = tuple(torch.where(active, new, old) for new, old in zip(estimates, report, strict=True))
        return codes, report, codes == -2

    # ---- reporting --------------------------------------------------------------------------------------------------
    def _report(
        self,
        X: torch.Tensor,
        R: torch.Tensor,
        N: torch.Tensor,
        state: IterationState,
        scale: torch.Tensor,
        B: torch.Tensor,
        maxiter: int,
    ) -> LeastSquaresSolution:
        """The :class:`LeastSquaresSolution` for the solution ``X`` (original units), the residual ``R = B − A X`` and
        the normal residual ``N = Aᵀ R − λ² X`` (both in the column-scaled units, ``scale`` to undo)."""
        k = X.shape[1]
        shape = B.shape[1:]
        residual = torch.linalg.vector_norm(R, dim=0) if R.shape[0] else R.new_zeros(k)
        normal = torch.linalg.vector_norm(N, dim=0) if N.shape[0] else N.new_zeros(k)
        bnorm = torch.linalg.vector_norm(B.detach().reshape(B.shape[0], k), dim=0) if B.shape[0] else residual
        codes = state.codes
        finite = torch.isfinite(X).all(0) & torch.isfinite(residual) & torch.isfinite(normal) & (codes != -1)
        converged = finite & torch.isin(codes, torch.tensor(_CONVERGED_CODES, device=codes.device))
        ill = (codes == 3) | (codes == 6)
        status, bad = LeastSquaresStatus.SUCCESS, converged
        if not bool(converged.all()):
            if not bool(finite.all()):
                status, bad = LeastSquaresStatus.NON_FINITE, ~finite
            elif bool(ill.any()):
                status, bad = LeastSquaresStatus.ILL_CONDITIONED, ill
            else:
                status, bad = LeastSquaresStatus.MAX_ITERATIONS, ~converged
        residual = residual * scale
        normal = normal * scale
        relative = residual / torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))
        lsres = normal / torch.where(state.norm_A * residual > 0, state.norm_A * residual, torch.ones_like(residual))
        column = int(torch.nonzero(bad)[0, 0]) if bool(bad.any()) else 0
        if status is LeastSquaresStatus.SUCCESS and k:
            column = int(torch.argmax(relative))
        code = int(codes[column]) if k else 0
        message = status.value.format(
            solver=self.name,
            iterations=int(state.iterations.max()) if k else 0,
            failed=int(bad.sum()),
            k=k,
            column=column,
            code=code,
            reason=STOP_REASONS.get(code, "not stopped"),
            relres=float(relative[column]) if k else 0.0,
            lsres=float(lsres[column]) if k else 0.0,
            cond=float(state.cond_A[column]) if k else 0.0,
            maxiter=maxiter,
            atol=self.atol,
            btol=self.btol,
            conlim=self.conlim,
            dtype=str(B.dtype).removeprefix("torch."),
        )
        vector = B.dim() == 1
        return LeastSquaresSolution(
            value=X.reshape(-1) if vector else X,
            converged=converged.reshape(shape),
            iterations=state.iterations.reshape(shape),
            stop_code=codes.reshape(shape),
            residual_norm=residual.reshape(shape),
            normal_residual_norm=normal.reshape(shape),
            norm_A=state.norm_A.reshape(shape),
            cond_A=state.cond_A.reshape(shape),
            norm_x=(state.norm_x * scale).reshape(shape),
            status=status,
            message=message,
        )

    def _raise_or_warn(self, solution: LeastSquaresSolution) -> None:
        if solution.success:
            return
        if self.throw:
            raise ConvergenceError(solution.message, solution)
        warnings.warn(solution.message, ConvergenceWarning, stacklevel=3)

r"""``sparse_generic_lstsq``: sparse least squares with gradients at the stored entries (Golub & Pereyra).

For a tall sparse ``A`` (:math:`m \times n`, full column rank), a damping :math:`\lambda \ge 0` (0 unless the solver is
a damped :class:`~sparseprec.solvers.LSQR`/:class:`~sparseprec.solvers.LSMR`) and every column of ``B``,

.. math::

    X = \arg\min_X \|A X - B\|_F^2 + \lambda^2 \|X\|_F^2 = N^{-1} A^\top B, \qquad N = A^\top A + \lambda^2 I.

Differentiating :math:`N X = A^\top B` gives :math:`N\,dX = dA^\top R + A^\top (dB - dA\,X)` with the residual
:math:`R = B - A X`. With :math:`G = \partial L/\partial X` and :math:`H = N^{-1} G` (one *normal solve*):

.. math::

    \frac{\partial L}{\partial B} = A H, \qquad
    \frac{\partial L}{\partial A} = R H^\top - (A H) X^\top,

the second read at the stored entries only (two sampled products, O(nnz k)). For :math:`\lambda = 0` this is Golub &
Pereyra's rule (SIAM J. Numer. Anal. 10(2), 1973, eq. 4.12 with :math:`A^+ A = I`): :math:`A H = (A^\top)^+ G` and
:math:`H = A^+ (A^\top)^+ G`.

The normal solve is itself written as an autograd function on the same pattern: :math:`H = N^{-1} C` has
:math:`\partial L/\partial C = N^{-1} G' =: \Lambda` and
:math:`\partial L/\partial A = -(A \Lambda) H^\top - (A H) \Lambda^\top` (from :math:`dN = dA^\top A + A^\top dA`),
again two sampled products. Both backward passes are made of the library's differentiable products
(:mod:`sparseprec.ops._products`) and normal solves, so a sparse ``A``'s least squares is differentiable any number of
times, to the accuracy of the solves. A dense ``A`` or a pair of callables gets the first derivative through the
residual construction of :mod:`sparseprec.solvers._implicit`, here on the normal equations:
:math:`X = X^* + \Phi(A^\top(B - A X^*) - \lambda^2 X^*)` with :math:`\Phi` zero forward and :math:`N^{-1}` backward.

How the normal solve is done:

* a sparseprec least-squares solver (``LSMR``, ``LSQR``): one run of the same method on :math:`A^\top`, which returns
  both :math:`Y = A H` (the minimum-norm solution of :math:`A^\top Y = G`, damped) and :math:`H`, tracked along the
  Golub–Kahan recurrence (``_solve_adjoint``);
* user functions (torchsparsegradutils' convention): :math:`Y = \texttt{transpose\_lstsq}(A, G)` (the minimum-norm
  solution of :math:`A^\top Y = G`) and then :math:`H = \texttt{lstsq}(A, Y)`, two solves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from .._validation import check_dense, check_same_dtype_device, check_sparse_matrix
from ..ops._once import first_derivative_only
from ..ops._products import kernel_mm, sampled_product
from ..ops._values import as_operand, operand_gradient
from ..pattern import SparsePattern, pattern_of
from ._least_squares import LeastSquaresSolver
from .generic import _checked, _transpose
from .lsmr import LSMR

__all__ = ["sparse_generic_lstsq", "attach_lstsq_gradient"]


# ---- the two solves the rule needs -----------------------------------------------------------------------------------
class _LeastSquaresSolves:
    """``solve(B) = argmin ‖A X − B‖² + λ²‖X‖²`` and ``normal_solve(C) = (AᵀA + λ²I)⁻¹ C`` on ``(·, p)`` blocks, without
    autograd. ``first`` is a solution already computed for the block ``given`` (handed out once, not solved again)."""

    damp: float = 0.0
    vector: bool = False  # the right-hand side was 1-D: solvers see 1-D blocks

    def __init__(self, given: torch.Tensor | None = None, first: torch.Tensor | None = None):
        self.given, self.first = given, first

    def _shaped(self, B: torch.Tensor) -> torch.Tensor:
        """A one-column block as the user's 1-D right-hand side when ``vector``."""
        return B.reshape(-1) if self.vector and B.shape[1] == 1 else B

    def solve(self, B: torch.Tensor) -> torch.Tensor:
        if self.first is not None and B is self.given:
            X, self.first, self.given = self.first, None, None  # once: holding it would make a reference cycle
            return X
        return self._solve(B)

    def _solve(self, B: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def normal_solve(self, C: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _SolverSolves(_LeastSquaresSolves):
    """A sparseprec least-squares solver (``LSMR``/``LSQR``) on ``A`` (a detached tensor or a callable pair).

    The solver sees the right-hand side in the user's shape (1-D for a 1-D ``B``): ``vector``.
    """

    def __init__(self, solver: Any, A: Any, vector: bool, given=None, first=None):
        super().__init__(given, first)
        self.solver, self.A, self.vector = solver, A, vector
        self.damp = float(getattr(solver, "damp", 0.0))

    def _solve(self, B: torch.Tensor) -> torch.Tensor:
        X = self.solver.solve(self.A, self._shaped(B)).value
        return X.reshape(-1, B.shape[1])

    def normal_solve(self, C: torch.Tensor) -> torch.Tensor:
        _, H, _ = self.solver._solve_adjoint(self.A, self._shaped(C))
        return H.reshape(C.shape)


class _UserSolves(_LeastSquaresSolves):
    """torchsparsegradutils' pair: ``lstsq(A, B, **kwargs)`` and ``transpose_lstsq(A, G, **kwargs)`` (the minimum-norm
    solution of ``Aᵀ Y = G``; it receives ``A`` itself). A missing ``transpose_lstsq`` is ``lstsq`` on ``Aᵀ`` (built
    once, in ``A``'s layout), which gives the minimum-norm solution when ``lstsq`` does (LSMR, LSQR from 0)."""

    def __init__(self, A, pattern, lstsq, transpose_lstsq, kwargs, vector: bool, given=None, first=None):
        super().__init__(given, first)
        self.A, self.pattern, self.lstsq, self.transpose_lstsq = A, pattern, lstsq, transpose_lstsq
        self.kwargs, self.vector = kwargs, vector
        self._At: torch.Tensor | None = None

    def _call(self, fn: Callable, A: torch.Tensor, B: torch.Tensor, rows: int, who: str) -> torch.Tensor:
        rhs = self._shaped(B)
        like = rhs.new_empty((rows,) if rhs.dim() == 1 else (rows, rhs.shape[1]))
        return _checked(fn(A, rhs, **self.kwargs), like, who).reshape(rows, B.shape[1])

    def _solve(self, B: torch.Tensor) -> torch.Tensor:
        return self._call(self.lstsq, self.A, B, self.A.shape[1], "lstsq")

    def normal_solve(self, C: torch.Tensor) -> torch.Tensor:
        m = self.A.shape[0]
        if self.transpose_lstsq is not None:
            Y = self._call(self.transpose_lstsq, self.A, C, m, "transpose_lstsq")
        else:
            if self._At is None:
                self._At = _transpose(self.A, self.pattern)
            Y = self._call(self.lstsq, self._At, C, m, "lstsq (on Aᵀ, for the gradient)")
        return self._call(self.lstsq, self.A, Y, self.A.shape[1], "lstsq (for the gradient)")


# ---- the rule for a sparse A -----------------------------------------------------------------------------------------
class _NormalSolve(torch.autograd.Function):
    """``H = (AᵀA + λ²I)⁻¹ C``; backward ``Λ = N⁻¹ G``: ``∂C = Λ``, ``∂A = −(AΛ)Hᵀ − (AH)Λᵀ`` at the stored entries."""

    @staticmethod
    def forward(ctx, operand, C, solves: _LeastSquaresSolves, pattern: SparsePattern) -> torch.Tensor:
        H = solves.normal_solve(C)
        ctx.save_for_backward(operand, H)
        ctx.solves, ctx.pattern = solves, pattern
        return H

    @staticmethod
    def backward(ctx, G: torch.Tensor):
        operand, H = ctx.saved_tensors
        pattern = ctx.pattern
        Lam = normal_solve(operand, G.contiguous(), ctx.solves, pattern)
        grad_operand = None
        if ctx.needs_input_grad[0]:
            ALam = kernel_mm(operand, Lam, pattern, transpose=False)
            AH = kernel_mm(operand, H, pattern, transpose=False)
            grad = sampled_product(pattern, ALam, H).add(sampled_product(pattern, AH, Lam)).neg()
            grad_operand = operand_gradient(grad, operand, pattern)
        return grad_operand, (Lam if ctx.needs_input_grad[1] else None), None, None


def normal_solve(operand, C: torch.Tensor, solves: _LeastSquaresSolves, pattern: SparsePattern) -> torch.Tensor:
    r""":math:`(A^\top A + \lambda^2 I)^{-1} C` for an ``(n, p)`` block, differentiable in ``C`` and ``A``'s values."""
    if C.numel() == 0:
        return C.new_zeros(C.shape)
    if not (torch.is_grad_enabled() and (operand.requires_grad or C.requires_grad)):
        return solves.normal_solve(C)
    return _NormalSolve.apply(as_operand(operand, pattern), C, solves, pattern)


class _LeastSquares(torch.autograd.Function):
    """``X = argmin ‖AX − B‖² + λ²‖X‖²``; backward ``H = N⁻¹ G``: ``∂B = AH``, ``∂A = RHᵀ − (AH)Xᵀ``, ``R = B − AX``."""

    @staticmethod
    def forward(ctx, operand, B, solves: _LeastSquaresSolves, pattern: SparsePattern) -> torch.Tensor:
        X = solves.solve(B)
        ctx.save_for_backward(operand, B, X)
        ctx.solves, ctx.pattern = solves, pattern
        return X

    @staticmethod
    def backward(ctx, G: torch.Tensor):
        operand, B, X = ctx.saved_tensors
        pattern = ctx.pattern
        H = normal_solve(operand, G.contiguous(), ctx.solves, pattern)
        AH = kernel_mm(operand, H, pattern, transpose=False)
        grad_operand = None
        if ctx.needs_input_grad[0]:
            R = B - kernel_mm(operand, X, pattern, transpose=False)
            grad = sampled_product(pattern, R, H).sub(sampled_product(pattern, AH, X))
            grad_operand = operand_gradient(grad, operand, pattern)
        return grad_operand, (AH if ctx.needs_input_grad[1] else None), None, None


def _least_squares(A: torch.Tensor, B2: torch.Tensor, solves: _LeastSquaresSolves, pattern: SparsePattern):
    m, n = A.shape
    recorded = torch.is_grad_enabled() and (A.requires_grad or B2.requires_grad)
    if B2.shape[1] == 0 or m == 0 or n == 0:
        # nothing to solve: X = 0 (n × k), on the graph of A and B when they need gradients (which are 0 then: B or X
        # is empty, so the tie below is an empty sum)
        X = B2.new_zeros(n, B2.shape[1])
        if recorded:
            AX = kernel_mm(as_operand(A, pattern), X, pattern, transpose=False)
            X = X + (AX.sum() + B2.sum()) * 0
        return X
    if not recorded:
        return solves.solve(B2)
    return _LeastSquares.apply(as_operand(A, pattern), B2, solves, pattern)


# ---- dense A and callables: the residual construction (first derivative) ---------------------------------------------
class _NormalAdjointOfZero(torch.autograd.Function):
    """``Φ``: zero forward; backward ``G -> (AᵀA + λ²I)⁻¹ G``."""

    @staticmethod
    def forward(ctx, F: torch.Tensor, solves: _LeastSquaresSolves) -> torch.Tensor:
        ctx.solves = solves
        ctx.save_for_backward(F)
        return torch.zeros_like(F)

    @staticmethod
    def backward(ctx, G: torch.Tensor):
        (F,) = ctx.saved_tensors
        with torch.no_grad():
            H = ctx.solves.normal_solve(G.detach().contiguous().reshape(F.shape[0], -1)).reshape(F.shape)
        return first_derivative_only(H, F, "a least-squares gradient through a dense or callable A"), None


def _apply(A: Any, X: torch.Tensor, transpose: bool) -> torch.Tensor:
    """``A X`` (``Aᵀ X``) with autograd for a dense ``A`` or a callable pair ``(matvec, rmatvec)``."""
    if isinstance(A, torch.Tensor):
        return (A.mT if transpose else A) @ X
    Y = A[1 if transpose else 0](X)
    if not isinstance(Y, torch.Tensor):
        raise TypeError(f"the {'rmatvec' if transpose else 'matvec'} of A must return a torch.Tensor")
    return Y


def attach_lstsq_gradient(A: Any, B: torch.Tensor, X: torch.Tensor, solver: Any) -> torch.Tensor:
    """``X``, the solution of a least-squares ``solver`` (``LSMR``/``LSQR``) computed without autograd, put on the
    autograd graph of ``A`` and ``B`` (the rule of this module).

    ``A`` is a sparse tensor (gradient at the stored entries, differentiable again), a dense tensor or a pair
    ``(matvec, rmatvec)`` of callables (first derivative, through the callables' own autograd graphs); ``B`` is
    ``(m,)`` or ``(m, k)`` and ``X`` the matching ``(n,)`` or ``(n, k)``.
    """
    vector = B.dim() == 1
    k = 1 if vector else B.shape[1]
    if isinstance(A, torch.Tensor) and A.layout != torch.strided:
        if A.requires_grad and A.shape[0] < A.shape[1]:
            _wide(A)
        pattern = pattern_of(A)
        B2 = B.reshape(B.shape[0], k)
        solves = _SolverSolves(solver, A.detach(), vector, given=B2, first=X.detach().reshape(-1, k))
        return _least_squares(A, B2, solves, pattern).reshape(X.shape)
    A_detached = A.detach() if isinstance(A, torch.Tensor) else A
    solves = _SolverSolves(solver, A_detached, vector)
    X = X.detach()
    F = _apply(A, B - _apply(A, X, False), True)
    if solves.damp:
        F = F - solves.damp**2 * X
    if not F.requires_grad:
        return X
    return X + _NormalAdjointOfZero.apply(F, solves)


def _wide(A: torch.Tensor) -> None:
    raise ValueError(
        f"A must be tall (m >= n) with full column rank for the least-squares gradient (Golub & Pereyra), got A of "
        f"shape {tuple(A.shape)}. For an underdetermined system solve without gradients w.r.t. A, or add damping "
        "(LSMR(damp=...))."
    )


# ---- the public op ---------------------------------------------------------------------------------------------------
def sparse_generic_lstsq(
    A: torch.Tensor,
    B: torch.Tensor,
    lstsq: Callable[..., torch.Tensor] | None = None,
    transpose_lstsq: Callable[..., torch.Tensor] | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    r"""Sparse least squares :math:`\min \lVert A X - B \rVert` with gradients w.r.t. ``A``'s stored entries and ``B``.

    Forward: :math:`X = \texttt{lstsq}(A, B)`, run without autograd: for ``A`` of shape ``(m, n)``, ``m >= n``, full
    column rank, :math:`X = A^+ B = (A^\top A)^{-1} A^\top B` (with a damped solver, :math:`\lambda` its
    ``damp``: :math:`(A^\top A + \lambda^2 I)^{-1} A^\top B`).

    Backward (Golub & Pereyra), with :math:`G = \partial L/\partial X`, :math:`H = (A^\top A + \lambda^2 I)^{-1} G`
    and the residual :math:`R = B - A X`:

    .. math::

        \frac{\partial L}{\partial B} = A H \;(= (A^\top)^+ G), \qquad
        \frac{\partial L}{\partial A_{ij}} = \sum_k R_{ik} H_{jk} - (A H)_{ik} X_{jk}
        \quad \text{for stored } (i, j) \text{ only,}

    O(nnz k) beyond the solves, no ``m × n`` intermediate; the gradient has ``A``'s layout and pattern. The rule is
    written with differentiable products and solves, so second derivatives (w.r.t. ``A``'s values and ``B``) are
    exact to the accuracy of the solves.

    Parameters
    ----------
    A : torch.Tensor
        Sparse COO or CSR ``(m, n)``, ``m >= n``, float32/float64 (a wide ``A`` is solved, minimum-norm, when no
        gradient w.r.t. ``A`` is asked for).
    B : torch.Tensor
        Dense ``(m,)`` or ``(m, k)``, same dtype and device. A 1-D ``B`` gives a 1-D result.
    lstsq : callable, optional
        ``lstsq(A, B, **kwargs) -> X`` of shape ``(n,)``/``(n, k)``. Default :class:`sparseprec.solvers.LSMR` (all
        ``k`` columns as one block; ``atol = btol = 1e-6`` as SciPy's): pass ``LSMR(atol=1e-10, btol=1e-10)``,
        ``LSQR(...)`` or any function, e.g. a wrapped SciPy ``lsqr``. A sparseprec solver object does the backward's
        normal solve in one run on :math:`A^\top` (which also yields :math:`AH`).
    transpose_lstsq : callable, optional
        ``transpose_lstsq(A, G, **kwargs) -> Y``, the minimum-norm solution of :math:`A^\top Y = G`, ``(m,)``/``(m,
        k)`` — it receives ``A`` itself, as in torchsparsegradutils. Given (or when ``lstsq`` is not a sparseprec
        solver), the backward takes two solves: :math:`Y = (A^\top)^+ G`, then :math:`H = \texttt{lstsq}(A, Y)`.
        Default for a user ``lstsq``: ``lstsq`` applied to :math:`A^\top` (right when it returns minimum-norm
        solutions of wide systems, as LSMR and LSQR do from ``x0 = 0``).
    **kwargs
        Passed to ``lstsq`` and ``transpose_lstsq`` (for a sparseprec solver: settings such as ``atol=1e-10``).

    Returns
    -------
    torch.Tensor
        ``X``, ``(n,)`` or ``(n, k)``.

    Raises
    ------
    TypeError, ValueError
        Invalid ``A``/``B`` (layout, shape, dtype, device; a batched ``A``), a wide ``A`` when a gradient w.r.t.
        ``A`` is required, a solver returning something not shaped like a solution. Solver errors (e.g.
        :class:`sparseprec.ConvergenceError`) propagate.

    Notes
    -----
    The gradient needs ``A`` of full column rank (:math:`A^+ A = I`), with or without damping, as in Golub & Pereyra
    and torchsparsegradutils; it is not checked (that would cost a factorisation). For a rank-deficient ``A`` the
    forward solve is still right (the minimum-norm least-squares solution, or the damped one), but the normal solve
    :math:`H` is determined only up to a component in :math:`A`'s null space: the gradient is then wrong even with
    ``damp > 0``, where the formula itself holds. Differentiate such problems through the stacked full-rank system
    :math:`[A; \lambda I]` instead.

    Examples
    --------
    >>> import torch
    >>> from sparseprec import sparse_generic_lstsq
    >>> from sparseprec.solvers import LSMR
    >>> A = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], dtype=torch.float64).to_sparse_csr().requires_grad_()
    >>> B = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    >>> X = sparse_generic_lstsq(A, B, lstsq=LSMR(atol=1e-12, btol=1e-12))
    >>> torch.round(X.detach(), decimals=4)  # the normal equations [[2, 1], [1, 5]] X = [3, 8]
    tensor([0.7778, 1.4444], dtype=torch.float64)
    >>> X.sum().backward()
    >>> torch.round(A.grad.values(), decimals=4)  # at the four stored entries only
    tensor([-0.2469, -0.5309, -0.8272, -0.3086], dtype=torch.float64)
    """
    check_sparse_matrix(A, "A")
    if A.dim() != 2:
        raise ValueError(f"A must be a single (m, n) matrix, got a batched tensor of shape {tuple(A.shape)}")
    check_dense(B, "B", dims=(1, 2))
    check_same_dtype_device(A, B, "A", "B")
    m, n = A.shape
    if B.shape[0] != m:
        raise ValueError(f"A of shape {tuple(A.shape)} needs B.shape[0] == {m}, got B of shape {tuple(B.shape)}")
    for name, fn in (("lstsq", lstsq), ("transpose_lstsq", transpose_lstsq)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable as {name}(A, B, **kwargs), got {type(fn).__name__}")
    if torch.is_grad_enabled() and A.requires_grad and m < n:
        _wide(A)
    if lstsq is None:
        lstsq = LSMR()
    vector = B.dim() == 1
    k = 1 if vector else B.shape[1]
    B2 = B.reshape(m, k)
    pattern = pattern_of(A)
    if isinstance(lstsq, LeastSquaresSolver) and transpose_lstsq is None:
        solver = dataclasses.replace(lstsq, **kwargs) if kwargs else lstsq
        solves: _LeastSquaresSolves = _SolverSolves(solver, A.detach(), vector)
    else:
        solves = _UserSolves(A.detach(), pattern, lstsq, transpose_lstsq, kwargs, vector)
    X = _least_squares(A, B2, solves, pattern)
    return X.reshape((n,) if vector else (n, k))

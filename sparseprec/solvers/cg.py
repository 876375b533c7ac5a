"""Conjugate gradients for symmetric positive definite systems, many right-hand sides at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._base import NOT_PD, IterationResult, KrylovSolver, Preconditioning, failure_codes
from ._blocks import BlockPasses
from ._operator import Operator

__all__ = ["CG", "cg"]


@dataclass(frozen=True)
class CG(KrylovSolver):
    r"""Preconditioned conjugate gradients (Hestenes–Stiefel) for a symmetric positive definite ``A``.

    Each column ``j`` of ``B`` is its own CG run; all columns share every product with ``A`` (one sparse-times-dense
    block product per iteration). With :math:`r = b - A x`, :math:`z = M r`, :math:`p_0 = z_0`:

    .. math::

        \alpha = \frac{r^\top z}{p^\top A p},\quad x \leftarrow x + \alpha p,\quad r \leftarrow r - \alpha A p,\quad
        \beta = \frac{r_{+}^\top z_{+}}{r^\top z},\quad p \leftarrow z_{+} + \beta p.

    A column stops (its step sizes become 0) once :math:`\|r_j\|_2 \le \max(\text{rtol}\,\|b_j\|_2, \text{atol})`, with
    :math:`r_j` the recursively updated residual. :math:`p^\top A p \le 0` means ``A`` (or ``M``) is not positive
    definite: the column stops with ``Status.NOT_POSITIVE_DEFINITE``.

    The recursive residual drifts from the true one by rounding (a few :math:`\varepsilon\,\kappa(A)\,\|b\|`), and for
    a singular or nearly singular ``A`` it can reach any tolerance while ``x`` blows up. So each column that met its
    tolerance is checked once against its true residual :math:`\|b_j - A x_j\|_2`, recomputed from the returned
    ``x``: above ``TRUE_RESIDUAL_FACTOR = 10`` times the tolerance, or with a non-finite ``x``, the column has not
    converged (``Status.TRUE_RESIDUAL_TOO_LARGE``, ``Status.NON_FINITE``). The other solvers do the same.

    The iteration runs on ``B`` with each column divided by a power of two near its largest entry (exact, and undone
    on ``X``; ``x0`` and ``atol`` are scaled alike), so the test means the same for a tiny or a huge ``b`` as for a
    unit one: no norm underflows to 0 (which would accept ``x = 0``) or overflows.

    Gradients: ``solve(A, B).value`` (and ``CG(...)(A, B)``) is differentiable w.r.t. ``B`` and ``A`` — a sparse
    ``A``'s gradient lives on its stored entries, a callable's captured tensors get theirs through the callable — by
    the implicit function theorem: :math:`\partial L/\partial B = A^{-1} G` (one more CG solve, ``A`` being
    symmetric) and :math:`\partial L/\partial A = -(A^{-1} G) X^\top`. The iterations themselves are never
    differentiated.

    Parameters
    ----------
    rtol, atol : float
        Relative and absolute tolerances: column ``j`` has converged when :math:`\|r_j\| \le \max(\text{rtol}
        \|b_j\|, \text{atol})` (SciPy's convention).
    maxiter : int, optional
        Iteration limit; default ``10 n``.
    preconditioner : callable or Preconditioner class, optional
        SPD :math:`M \approx A^{-1}` applied as ``M(R)`` to tensors shaped like ``B``, or a class such as
        :class:`~sparseprec.solvers.Jacobi` that is built from each ``A`` solved.
    throw : bool
        Raise :class:`~sparseprec.ConvergenceError` when a column fails (default); with ``False``, warn with
        :class:`~sparseprec.ConvergenceWarning` and return the last iterate.

    Notes
    -----
    ``A`` may be a sparse COO/CSR tensor, a dense tensor or a callable ``v -> A v`` (called with tensors shaped like
    ``B``). Tensor ``A`` is checked for symmetry (one O(nnz) pass, repeated only when its values change in place
    or for a new tensor); a callable is assumed symmetric.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.solvers import CG
    >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64).to_sparse_csr()
    >>> solution = CG(rtol=1e-10).solve(A, torch.tensor([[1.0, 0.0], [2.0, 1.0]], dtype=torch.float64))
    >>> solution.value.round(decimals=8)
    tensor([[ 0.0909, -0.0909],
            [ 0.6364,  0.3636]], dtype=torch.float64)
    >>> solution.converged
    tensor([True, True])
    """

    symmetric = True

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
        n, k = B.shape
        tol = self.tolerance(bnorm, atol)
        tol2 = tol * tol
        if k == 1 and B.device.type == "cpu":
            return self._iterate_column(op, M, B, X, maxiter, tol, tol2)
        passes = BlockPasses(B)
        Q = torch.empty_like(B)  # A P, and scratch before the loop
        if X is None:
            X = torch.zeros_like(B)
            R = B.clone()
        else:
            R = torch.sub(B, op.matmul_into(X, Q), out=torch.empty_like(B))
        Z = M.apply_into(R, torch.empty_like(B)) if M else R
        rz, rr = passes.dots(R, Z) if M else (passes.dot(R, R),) * 2
        active = rr > tol2
        iterations = torch.zeros(k, dtype=torch.int64, device=B.device)
        P = Z.clone()
        zero = B.new_zeros(())
        alpha, beta = B.new_empty(k), B.new_empty(k)
        every = self.check_every(B.device)
        for it in range(maxiter):
            if it % every == 0 and not bool(active.any()):
                break
            op.matmul_into(P, Q)
            pq = passes.dot(P, Q)
            # pᵀAp <= 0 (or NaN) stops the column: A or M is not positive definite
            active &= pq > 0
            torch.where(active, rz / pq, zero, out=alpha)
            iterations += active
            # x += α p, r −= α q; without M, ‖r‖² (= rᵀz) in the same pass
            rz_next = passes.step(X, P, R, Q, alpha, square=not M)
            if M:
                M.apply_into(R, Z)
                rz_next, rr = passes.dots(R, Z)
            else:
                rr = rz_next
            active &= rr > tol2  # a NaN residual stops the column too
            torch.where(active, rz_next / rz, zero, out=beta)
            torch.addcmul(Z, P, beta, out=P)
            rz = rz_next
        # A column leaves the loop by meeting its tolerance (rr <= tol2), with a NaN residual (NON_FINITE below) or
        # at pᵀAp <= 0: frozen since (α = 0, so r and rr unchanged) with rr > tol2. So the latter are the columns
        # that are inactive and neither converged nor NaN, found here rather than tracked in the loop.
        stopped = ~active & (rr > tol2)
        codes = failure_codes(stopped, NOT_PD, rr)
        converged = (rr <= tol2) & (codes == 0)
        return IterationResult(X, converged, iterations, codes, tol)

    def _iterate_column(
        self,
        op: Operator,
        M: Preconditioning,
        B: torch.Tensor,
        X: torch.Tensor | None,
        maxiter: int,
        tol: torch.Tensor,
        tol2: torch.Tensor,
    ) -> IterationResult:
        """:meth:`_iterate` for a single column on a CPU: the same recurrence, with its scalars as Python floats.

        The host reads every iteration's inner products anyway (for the exit test), and the dozen tensor operations on
        1-element tensors that the block loop spends on its per-column scalars cost about 10 % of an iteration at
        n = 10⁵. The floats are the tensors' values (float32 ones are exact in a double), so the tests compare the same
        numbers as the block loop's; the step sizes are rounded to ``B``'s dtype where they are applied.
        """
        Q = torch.empty_like(B)
        if X is None:
            X = torch.zeros_like(B)
            R = B.clone()
        else:
            R = torch.sub(B, op.matmul_into(X, Q), out=torch.empty_like(B))
        x, r, q = X.view(-1), R.view(-1), Q.view(-1)
        Z = M.apply_into(R, torch.empty_like(B)) if M else R
        z = Z.view(-1)
        rr = float(torch.dot(r, r))
        rz = float(torch.dot(r, z)) if M else rr
        limit = float(tol2)
        P = Z.clone()
        p = P.view(-1)
        iterations, stopped = 0, False
        active = rr > limit
        while active and iterations < maxiter:
            op.matmul_into(P, Q)
            pq = float(torch.dot(p, q))
            if not pq > 0:  # pᵀAp <= 0 (or NaN): A or M is not positive definite
                stopped = True
                break
            alpha = rz / pq
            iterations += 1
            x.add_(p, alpha=alpha)
            r.add_(q, alpha=-alpha)
            if M:
                M.apply_into(R, Z)
                rz_next, rr = float(torch.dot(r, z)), float(torch.dot(r, r))
            else:
                rz_next = rr = float(torch.dot(r, r))
            active = rr > limit  # a NaN residual stops the column too
            if active:
                torch.add(z, p, alpha=rz_next / rz, out=p)
            rz = rz_next
        rr_t = torch.tensor([rr], dtype=B.dtype)
        codes = failure_codes(torch.tensor([stopped]), NOT_PD, rr_t)
        converged = (rr_t <= tol2) & (codes == 0)
        return IterationResult(X, converged, torch.tensor([iterations]), codes, tol)


def cg(A: Any, B: torch.Tensor, x0: torch.Tensor | None = None, **settings: Any) -> torch.Tensor:
    """Solve the SPD system ``A X = B`` by conjugate gradients; ``settings`` as for :class:`CG`. Returns ``X``.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.solvers import cg
    >>> A = torch.tensor([[2.0, -1.0], [-1.0, 2.0]], dtype=torch.float64).to_sparse()
    >>> cg(A, torch.tensor([1.0, 1.0], dtype=torch.float64), rtol=1e-12).round(decimals=8)
    tensor([1., 1.], dtype=torch.float64)
    """
    return CG(**settings)(A, B, x0=x0)

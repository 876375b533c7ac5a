"""Conjugate gradients for symmetric positive definite systems, many right-hand sides at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._base import NOT_PD, IterationResult, KrylovSolver, Preconditioning, column_dot, failure_codes
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
        SPD ``M ≈ A⁻¹`` applied as ``M(R)`` to tensors shaped like ``B``, or a class such as
        :class:`~sparseprec.solvers.Jacobi` that is built from each ``A`` solved.
    throw : bool
        Raise :class:`~sparseprec.ConvergenceError` when a column fails (default); with ``False``, warn with
        :class:`~sparseprec.ConvergenceWarning` and return the last iterate.

    Notes
    -----
    ``A`` may be a sparse COO/CSR tensor, a dense tensor or a callable ``v -> A v`` (called with tensors shaped like
    ``B``). Tensor ``A`` is checked for symmetry (one O(nnz) pass); a callable is assumed symmetric.

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
        work = torch.empty_like(B)
        tol = self.tolerance(bnorm, atol)
        tol2 = tol * tol
        if X is None:
            X = torch.zeros_like(B)
            R = B.clone()
        else:
            R = B - op.matmul_into(X, work)
        Z = M(R) if M else R
        rz = column_dot(R, Z, work)
        rr = rz if not M else column_dot(R, R, work)
        active = rr > tol2
        stopped = torch.zeros(k, dtype=torch.bool, device=B.device)  # pᵀAp <= 0 or NaN met
        iterations = torch.zeros(k, dtype=torch.int64, device=B.device)
        P = Z.clone()
        Q = torch.empty_like(B)
        zero = B.new_zeros(())
        every = self.check_every(B.device)
        for it in range(maxiter):
            if it % every == 0 and not bool(active.any()):
                break
            op.matmul_into(P, Q)
            pq = column_dot(P, Q, work)
            # pᵀAp <= 0 (or NaN) stops the column: A or M is not positive definite
            positive = pq > 0
            stopped |= active & ~positive
            active &= positive
            alpha = torch.where(active, rz / pq, zero)
            X.addcmul_(P, alpha)
            R.addcmul_(Q, alpha, value=-1.0)
            iterations += active
            Z = M(R) if M else R
            rz_next = column_dot(R, Z, work)
            rr = rz_next if not M else column_dot(R, R, work)
            active &= rr > tol2  # a NaN residual stops the column too
            beta = torch.where(active, rz_next / rz, zero)
            torch.addcmul(Z, P, beta, out=P)
            rz = rz_next
        codes = failure_codes(stopped, NOT_PD, rr)
        converged = (rr <= tol2) & (codes == 0)
        return IterationResult(X, converged, iterations, codes, tol)


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

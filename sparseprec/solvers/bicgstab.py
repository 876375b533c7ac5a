"""BiCGSTAB for general (non-symmetric) systems, many right-hand sides at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._base import BREAKDOWN, IterationResult, KrylovSolver, Preconditioning, column_dot, failure_codes
from ._operator import Operator

__all__ = ["BiCGSTAB", "bicgstab"]


@dataclass(frozen=True)
class BiCGSTAB(KrylovSolver):
    r"""Right-preconditioned BiCGSTAB (van der Vorst, 1992) for a square, possibly non-symmetric ``A``.

    Each column of ``B`` is its own run; all columns share the two products with ``A`` per iteration. With the shadow
    residual :math:`\hat r = r_0`:

    .. math::

        \rho = \hat r^\top r,\ \ p \leftarrow r + \tfrac{\rho}{\rho_{-}} \tfrac{\alpha}{\omega} (p - \omega v),\ \
        v = A M p,\ \ \alpha = \tfrac{\rho}{\hat r^\top v},\ \ s = r - \alpha v,\ \
        t = A M s,\ \ \omega = \tfrac{t^\top s}{t^\top t},

    then :math:`x \leftarrow x + \alpha M p + \omega M s`, :math:`r = s - \omega t`. A column stops when
    :math:`\|r\|_2` (or already :math:`\|s\|_2` at the half step) is at most :math:`\max(\text{rtol}\,\|b\|_2,
    \text{atol})`. A vanishing :math:`\rho`, :math:`\hat r^\top v` or :math:`\omega` stops the column with
    ``Status.BREAKDOWN``. As for :class:`CG`, a column that met its tolerance is checked against its true residual
    ``b − A x`` and refused above 10 times the tolerance (``Status.TRUE_RESIDUAL_TOO_LARGE``).

    Gradients: implicit, as for :class:`CG`, but the backward solve is with :math:`A^\top`: available for tensor ``A``
    (sparse: CSR transpose with cached index data); a callable ``A`` raises when a gradient is requested. A
    preconditioner for the backward solve is the class rebuilt from :math:`A^\top`, or ``M.transpose()`` of a
    :class:`~sparseprec.solvers.Preconditioner` instance.

    Parameters
    ----------
    rtol, atol, maxiter, preconditioner, throw
        As for :class:`CG` (default ``maxiter = 10 n``); the preconditioner need not be symmetric.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.solvers import BiCGSTAB
    >>> A = torch.tensor([[3.0, 1.0], [-1.0, 2.0]], dtype=torch.float64).to_sparse_csr()  # non-symmetric
    >>> BiCGSTAB(rtol=1e-12).solve(A, torch.tensor([4.0, 1.0], dtype=torch.float64)).value.round(decimals=8)
    tensor([1., 1.], dtype=torch.float64)
    """

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
        shadow = R.clone()
        rr = column_dot(R, R, work)
        active = rr > tol2
        stopped = torch.zeros(k, dtype=torch.bool, device=B.device)
        iterations = torch.zeros(k, dtype=torch.int64, device=B.device)
        rho = torch.ones_like(rr)
        alpha = torch.ones_like(rr)
        omega = torch.ones_like(rr)
        P, V, T = torch.zeros_like(B), torch.zeros_like(B), torch.empty_like(B)
        zero = B.new_zeros(())
        every = self.check_every(B.device)
        for it in range(maxiter):
            if it % every == 0 and not bool(active.any()):
                break
            rho_next = column_dot(shadow, R, work)
            broken = rho_next == 0
            stopped |= active & broken
            active &= ~broken
            # P = R + β (P − ω V); frozen columns get β = ω = 0, i.e. P = R
            P.addcmul_(V, torch.where(active, omega, zero), value=-1.0)
            P.mul_(torch.where(active, (rho_next / rho) * (alpha / omega), zero)).add_(R)
            P_hat = M(P) if M else P
            op.matmul_into(P_hat, V)
            shadow_v = column_dot(shadow, V, work)
            broken = shadow_v == 0
            stopped |= active & broken
            active &= ~broken
            alpha = torch.where(active, rho_next / shadow_v, zero)
            X.addcmul_(P_hat, alpha)
            R.addcmul_(V, alpha, value=-1.0)  # R is now s
            iterations += active
            ss = column_dot(R, R, work)
            active &= ss > tol2  # converged at the half step
            S_hat = M(R) if M else R
            op.matmul_into(S_hat, T)
            tt = column_dot(T, T, work)
            omega = torch.where(active, column_dot(T, R, work) / tt, zero)
            broken = active & ~(omega.abs() > 0)  # 0 or NaN (tᵀt = 0)
            stopped |= broken
            active &= ~broken
            omega = torch.where(active, omega, zero)
            X.addcmul_(S_hat, omega)
            R.addcmul_(T, omega, value=-1.0)
            rr = column_dot(R, R, work)
            active &= rr > tol2
            rho = rho_next
        codes = failure_codes(stopped, BREAKDOWN, rr)
        converged = (rr <= tol2) & (codes == 0)
        return IterationResult(X, converged, iterations, codes, tol)


def bicgstab(A: Any, B: torch.Tensor, x0: torch.Tensor | None = None, **settings: Any) -> torch.Tensor:
    """Solve the square system ``A X = B`` by BiCGSTAB; ``settings`` as for :class:`BiCGSTAB`. Returns ``X``.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.solvers import bicgstab
    >>> A = torch.tensor([[2.0, 1.0], [0.0, 1.0]], dtype=torch.float64).to_sparse()
    >>> bicgstab(A, torch.tensor([[3.0], [1.0]], dtype=torch.float64), rtol=1e-12).round(decimals=8)
    tensor([[1.],
            [1.]], dtype=torch.float64)
    """
    return BiCGSTAB(**settings)(A, B, x0=x0)

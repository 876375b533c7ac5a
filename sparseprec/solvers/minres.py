"""MINRES for symmetric (possibly indefinite) systems, many right-hand sides at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._base import PRECONDITIONER_NOT_PD, IterationResult, KrylovSolver, Preconditioning, column_dot, failure_codes
from ._operator import Operator

__all__ = ["MINRES", "minres"]


@dataclass(frozen=True)
class MINRES(KrylovSolver):
    r"""Preconditioned MINRES (Paige & Saunders, 1975) for a symmetric, possibly indefinite ``A``.

    Each column ``j`` of ``B`` is its own run; all columns share every product with ``A``. The Lanczos process builds
    an orthonormal basis :math:`V_m` of the Krylov space (in the :math:`M^{-1}` inner product with a preconditioner)
    and the iterate minimises the residual over it,

    .. math::

        x_m = x_0 + V_m y_m,\qquad y_m = \arg\min_y \|\beta_1 e_1 - \underline{T}_m y\|_2,

    solved incrementally with Givens rotations: each step costs one product with ``A``, one preconditioner
    application and a few vector updates, with a short recurrence for :math:`x`. The stopping test uses the
    recurrence's residual norm :math:`\bar\phi_m`, which equals :math:`\|r_m\|_2` without a preconditioner and
    :math:`\|r_m\|_M = \sqrt{r_m^\top M r_m}` with one; a column stops once
    :math:`\bar\phi_m \le \max(\text{rtol}\,\|b\|, \text{atol})` (:math:`\|b\|` in the same norm). The preconditioner
    must be SPD (:math:`r^\top M r \le 0` stops the column with ``Status.PRECONDITIONER_NOT_POSITIVE_DEFINITE``). As for
    :class:`CG`, a column that met its tolerance is checked against its true residual ``b − A x`` (in the same norm) and
    refused above 10 times the tolerance.

    Gradients: as for :class:`CG` (implicit function theorem, one more MINRES solve with the symmetric ``A``).

    Parameters
    ----------
    rtol, atol, maxiter, preconditioner, throw
        As for :class:`CG` (default ``maxiter = 5 n``).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.solvers import MINRES
    >>> A = torch.tensor([[1.0, 2.0], [2.0, -1.0]], dtype=torch.float64)  # symmetric indefinite
    >>> solution = MINRES(rtol=1e-12).solve(A, torch.tensor([3.0, 1.0], dtype=torch.float64))
    >>> solution.value.round(decimals=8), solution.success
    (tensor([1., 1.], dtype=torch.float64), True)
    """

    symmetric = True
    maxiter_factor = 5

    def _stopping_norm(self, R: torch.Tensor, M: Preconditioning) -> torch.Tensor | None:
        # with a preconditioner the test reads ‖r‖_M = √(rᵀ M r): check the true residual in that norm
        if not M:
            return None
        return column_dot(R, M(R), torch.empty_like(R)).clamp_(min=0).sqrt_()

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
        x0_given = X is not None
        if X is None:
            X = torch.zeros_like(B)
            R1 = B.clone()
        else:
            R1 = B - op.matmul_into(X, work)
        Y = M(R1) if M else R1
        beta_sq = column_dot(R1, Y, work)
        stopped = beta_sq < 0
        beta = beta_sq.clamp(min=0).sqrt()
        # the stopping test's reference ‖b‖ is measured in the norm of the residual estimate (‖·‖_M with M)
        if not x0_given:
            reference = beta_sq.clamp(min=0).sqrt()
        else:
            reference = column_dot(B, M(B), work).clamp(min=0).sqrt() if M else bnorm
        tol = self.tolerance(reference, atol)
        zero = B.new_zeros(())
        tiny = torch.finfo(B.dtype).tiny
        old_beta = torch.zeros_like(beta)
        dbar = torch.zeros_like(beta)
        epsilon = torch.zeros_like(beta)
        phibar = beta.clone()
        cs = torch.full_like(beta, -1.0)
        sn = torch.zeros_like(beta)
        R2 = R1.clone()
        if not M:
            Y = R2
        V, spare = torch.empty_like(B), torch.empty_like(B)
        W, W1, W2 = torch.zeros_like(B), torch.empty_like(B), torch.zeros_like(B)
        iterations = torch.zeros(k, dtype=torch.int64, device=B.device)
        active = (phibar > tol) & ~stopped
        every = self.check_every(B.device)
        for it in range(maxiter):
            if it % every == 0 and not bool(active.any()):
                break
            # Lanczos step: V = Y / β, Y = A V − (β/β_old) R1 − (α/β) R2 (scalars of frozen columns are 0)
            torch.mul(Y, torch.where(active, beta.reciprocal(), zero), out=V)
            Ynew = op.matmul_into(V, spare)
            Ynew.addcmul_(R1, torch.where(active & (old_beta > 0), beta / old_beta, zero), value=-1.0)
            alpha = column_dot(V, Ynew, work)
            Ynew.addcmul_(R2, torch.where(active, alpha / beta, zero), value=-1.0)
            spare, R1, R2 = R1, R2, Ynew
            Y = M(R2) if M else R2
            old_beta = beta
            beta_sq = column_dot(R2, Y, work)
            stopped |= active & (beta_sq < 0)
            active &= beta_sq >= 0
            beta = beta_sq.clamp(min=0).sqrt()
            # Givens rotation of the new column of the tridiagonal matrix
            old_epsilon = epsilon
            delta = cs * dbar + sn * alpha
            gbar = sn * dbar - cs * alpha
            epsilon = sn * beta
            dbar = -cs * beta
            gamma = torch.hypot(gbar, beta).clamp(min=tiny)
            cs = gbar / gamma
            sn = beta / gamma
            phi = cs * phibar
            phibar = sn * phibar
            # search direction W = (V − ε_old W1 − δ W2) / γ with (W1, W2) ← (W2, W); X += φ W
            W1, W2, W = W2, W, W1
            W.copy_(V).addcmul_(W1, old_epsilon, value=-1.0).addcmul_(W2, delta, value=-1.0)
            W.mul_(torch.where(active, gamma.reciprocal(), zero))
            X.addcmul_(W, phi)
            iterations += active
            active &= phibar > tol
        codes = failure_codes(stopped, PRECONDITIONER_NOT_PD, phibar)
        converged = (phibar <= tol) & (codes == 0)
        return IterationResult(X, converged, iterations, codes, tol)


def minres(A: Any, B: torch.Tensor, x0: torch.Tensor | None = None, **settings: Any) -> torch.Tensor:
    """Solve the symmetric system ``A X = B`` by MINRES; ``settings`` as for :class:`MINRES`. Returns ``X``.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.solvers import minres
    >>> A = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64).to_sparse_csr()  # indefinite
    >>> minres(A, torch.tensor([2.0, 3.0], dtype=torch.float64), rtol=1e-12).round(decimals=8)
    tensor([3., 2.], dtype=torch.float64)
    """
    return MINRES(**settings)(A, B, x0=x0)

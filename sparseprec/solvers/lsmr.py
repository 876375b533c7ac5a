"""LSMR (Fong & Saunders, 2011) for sparse least squares, many right-hand sides at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._blocks import BlockPasses
from ._least_squares import GolubKahan, IterationState, LeastSquaresSolver, sym_ortho

__all__ = ["LSMR", "lsmr"]


@dataclass(frozen=True)
class LSMR(LeastSquaresSolver):
    r"""LSMR (Fong & Saunders, 2011): damped sparse least squares by MINRES on the normal equations.

    For each column ``b`` of ``B`` and ``A`` of shape ``(m, n)`` (tall, square or wide),

    .. math::

        x = \arg\min_x \|A x - b\|_2^2 + \lambda^2 \|x\|_2^2 \quad (\lambda = \texttt{damp}),
        \qquad\text{i.e.}\qquad (A^\top A + \lambda^2 I)\, x = A^\top b.

    From the Golub–Kahan bidiagonalisation of ``A`` started at ``b`` (one product with ``A`` and one with :math:`A^\top`
    per iteration), the iterate :math:`x_j \in \operatorname{span}(v_1, \dots, v_j)` minimises the normal residual
    :math:`\|A^\top (b - A x_j) - \lambda^2 x_j\|`, which then decreases monotonically (as does :math:`\|b - A x_j\|`);
    two QR factorisations by Givens rotations give short recurrences for ``x`` (vectors :math:`h, \bar h`) and cheap
    estimates of :math:`\|r\|`, :math:`\|\bar A^\top \bar r\|`, :math:`\|\bar A\|`, :math:`\operatorname{cond}(\bar A)`;
    :math:`\|x\|` is computed. From :math:`x_0 = 0` a consistent wide system gets its minimum-norm solution. The
    recurrences, estimates and stopping rules are those of Fong & Saunders and of SciPy's ``scipy.sparse.linalg.lsmr``
    (same iterates to rounding); the stop codes are listed in :mod:`sparseprec.solvers._least_squares` (1: ``A x = b``
    solved, 2: least-squares solution found, 3: ill conditioned, 7: ``maxiter``, ...).

    All ``k`` columns of ``B`` are iterated together (one sparse-times-dense product per step, scalars as ``(k,)``
    tensors on the device); a column that has stopped is frozen.

    Gradients: ``solve(A, B).value`` is differentiable w.r.t. ``B`` and ``A`` (a sparse ``A``'s gradient lives on its
    stored entries) by the rule of :func:`sparseprec.solvers.lstsq.sparse_generic_lstsq` (Golub & Pereyra; one run
    of LSMR on :math:`A^\top` in the backward pass); the iterations are never differentiated.

    Parameters
    ----------
    atol, btol : float
        Stopping tolerances (SciPy's): stop when :math:`\|r\| \le \texttt{btol}\,\|b\| + \texttt{atol}\,\|\bar
        A\|\,\|x\|` (a consistent system) or :math:`\|\bar A^\top \bar r\| \le \texttt{atol}\,\|\bar A\|\,\|r\|` (a
        least-squares solution). About ``-log10(atol)`` correct digits when ``A``'s entries are that accurate.
    conlim : float
        Stop (code 3, a failure) when the estimate of :math:`\operatorname{cond}(\bar A)` exceeds it; ``inf``: never.
    damp : float
        :math:`\lambda \ge 0`, the Tikhonov damping above.
    maxiter : int, optional
        Iteration limit; default ``2 min(m, n)``. SciPy's LSMR stops at ``min(m, n)``, the Krylov bound in exact
        arithmetic; in floating point tight tolerances on small problems need a few more steps (a well-conditioned
        7 × 4 problem at ``atol = btol = 1e-12`` took 5 to 7 in 25 of 255 draws), so the limit is SciPy's LSQR rule
        applied to ``min(m, n)``.
    preconditioner : None, ``"columns"`` or torch.Tensor
        Column scaling: iterate on :math:`A D` and return :math:`x = D z`. ``"columns"``:
        :math:`D = \operatorname{diag}(1 / \|A_{:,j}\|)` (1 for an empty column); a tensor ``d`` of shape ``(n,)``,
        ``d > 0``: :math:`D = \operatorname{diag}(d)`. The solution set is unchanged (only the minimum-norm choice of a
        rank-deficient or wide problem is taken in the scaled norm), and the estimates ``norm_A``, ``cond_A``,
        ``norm_x`` and the stopping tests refer to :math:`A D` and ``z``. Not with ``damp > 0`` (it would damp ``z``).
    throw : bool
        Raise :class:`~sparseprec.ConvergenceError` when a column fails (stop code 3, 6, 7 or NaN); with ``False``
        warn with :class:`~sparseprec.ConvergenceWarning` and return the last iterate.

    Notes
    -----
    ``A``: a sparse COO/CSR ``(m, n)`` tensor (products through the pattern's cached CSR kernels), a dense tensor, or
    a pair ``(matvec, rmatvec)`` of callables mapping ``(n, k) -> (m, k)`` and ``(m, k) -> (n, k)`` blocks (1-D
    tensors when ``B`` is 1-D). ``B``: ``(m,)`` or ``(m, k)``, float32/float64, on ``A``'s device. ``x0``: a
    starting point shaped like the solution (not with ``damp > 0``: from ``x0`` the recurrence damps
    :math:`x - x_0`); a column with ``b = 0`` returns 0.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.solvers import LSMR
    >>> A = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], dtype=torch.float64).to_sparse_csr()
    >>> solution = LSMR(atol=1e-12, btol=1e-12).solve(A, torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64))
    >>> solution.value.round(decimals=8)  # the normal equations [[2, 1], [1, 5]] x = [3, 6]
    tensor([1., 1.], dtype=torch.float64)
    >>> int(solution.stop_code), bool(solution.converged)  # 1: A x = b solved (the system is consistent)
    (1, True)
    """

    method = "lsmr"

    def default_maxiter(self, m: int, n: int) -> int:
        return 2 * min(m, n)

    def _iterate(
        self, gk: GolubKahan, X: torch.Tensor, H: torch.Tensor | None, normb: torch.Tensor, maxiter: int
    ) -> IterationState:
        alpha, beta = gk.alpha, gk.beta
        zeros, ones = torch.zeros_like(alpha), torch.ones_like(alpha)
        damp = torch.full_like(alpha, self.damp)
        codes = self.initial_codes(gk, normb)
        active = codes == -2
        iterations = torch.zeros_like(codes)
        # the (k,) scalars of Fong & Saunders' Algorithm 1 (names as theirs and SciPy's)
        zetabar, alphabar = alpha * beta, alpha
        rho, rhobar, cbar, sbar = ones, ones, ones, zeros
        betadd, betad, rhodold, tautildeold, thetatilde, zeta, dsum = beta, zeros, ones, zeros, zeros, zeros, zeros
        normA2 = alpha * alpha
        maxrbar, minrbar = zeros, torch.full_like(alpha, torch.inf)  # (SciPy: 1e100)
        normA, condA, normx = normA2.sqrt(), ones, zeros
        report = (normA, condA, normx)
        # x = Σ ζ/(ρ ρ̄) h̄, h̄ ← h − (θ̄ ρ / (ρ_old ρ̄_old)) h̄, h ← v − (θ/ρ) h; the preimages alongside when tracked
        h, hbar = gk.V.clone(), torch.zeros_like(gk.V)
        hw = gk.W.clone() if H is not None else None
        hwbar = torch.zeros_like(hw) if H is not None else None
        passes = BlockPasses(X, 1)
        every = self.check_every(X.device)
        for itn in range(1, maxiter + 1):
            if (itn - 1) % every == 0 and not bool(active.any()):
                break
            gk.step()
            alpha, beta = gk.alpha, gk.beta
            # eliminate the damping, then the subdiagonal β (first QR), then θ (second QR)
            chat, shat, alphahat = sym_ortho(alphabar, damp)
            rhoold = rho
            c, s, rho = sym_ortho(alphahat, beta)
            thetanew = s * alpha
            alphabar = c * alpha
            rhobarold, zetaold = rhobar, zeta
            thetabar = sbar * rho
            rhotemp = cbar * rho
            cbar, sbar, rhobar = sym_ortho(cbar * rho, thetanew)
            zeta = cbar * zetabar
            zetabar = -sbar * zetabar
            # the vector updates; a stopped column's coefficients are 0 (x frozen, h and h̄ stay finite)
            f_hbar = torch.where(active, -(thetabar * rho / (rhoold * rhobarold)), zeros)
            f_x = torch.where(active, zeta / (rho * rhobar), zeros)
            f_h = torch.where(active, -(thetanew / rho), zeros)
            torch.addcmul(h, hbar, f_hbar, out=hbar)
            X.addcmul_(hbar, f_x)
            torch.addcmul(gk.V, h, f_h, out=h)
            if H is not None:
                torch.addcmul(hw, hwbar, f_hbar, out=hwbar)
                H.addcmul_(hwbar, f_x)
                torch.addcmul(gk.W, hw, f_h, out=hw)
            # the estimate of ‖r‖ (a third rotation, on the right-hand side)
            betaacute = chat * betadd
            betacheck = -shat * betadd
            betahat = c * betaacute
            betadd = -s * betaacute
            thetatildeold = thetatilde
            ctildeold, stildeold, rhotildeold = sym_ortho(rhodold, thetabar)
            thetatilde = stildeold * rhobar
            rhodold = ctildeold * rhobar
            betad = -stildeold * betad + ctildeold * betahat
            tautildeold = (zetaold - thetatildeold * tautildeold) / rhotildeold
            taud = (zeta - thetatilde * tautildeold) / rhodold
            dsum = dsum + betacheck * betacheck
            normr = (dsum + (betad - taud).square() + betadd * betadd).sqrt()
            # ‖Ā‖ (Frobenius, of the bidiagonal so far), cond(Ā) from the extreme diagonals of R̄, ‖Āᵀr̄‖, ‖x‖
            normA2 = normA2 + beta * beta
            normA = normA2.sqrt()
            normA2 = normA2 + alpha * alpha
            maxrbar = torch.maximum(maxrbar, rhobarold)
            if itn > 1:
                minrbar = torch.minimum(minrbar, rhobarold)
            condA = torch.maximum(maxrbar, rhotemp) / torch.minimum(minrbar, rhotemp)
            normar = zetabar.abs()
            normx = passes.dot(X, X).sqrt_()
            # the tests
            product = normA * normr
            test2 = torch.where(product != 0, normar / product, torch.full_like(product, torch.inf))
            step = self.stop_codes(itn, maxiter, normr, normb, test2, 1.0 / condA, normA, normx)
            codes, report, active = self.record(active, step, codes, iterations, report, (normA, condA, normx))
        return IterationState(codes, iterations, *report)


def lsmr(A: Any, B: torch.Tensor, x0: torch.Tensor | None = None, **settings: Any) -> torch.Tensor:
    r"""Solve :math:`\min_x \|A x - b\|^2 + \lambda^2 \|x\|^2` for every column of ``B`` by LSMR; ``settings`` as
    for :class:`LSMR`. Returns ``X`` (``(n,)`` or ``(n, k)``).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.solvers import lsmr
    >>> A = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64).to_sparse()  # wide
    >>> lsmr(A, torch.tensor([2.0, 2.0], dtype=torch.float64), atol=1e-12, btol=1e-12).round(decimals=6)
    tensor([0.6667, 1.3333, 0.6667], dtype=torch.float64)
    """
    return LSMR(**settings)(A, B, x0=x0)

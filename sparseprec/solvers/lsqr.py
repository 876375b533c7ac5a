"""LSQR (Paige & Saunders, 1982) for sparse least squares, many right-hand sides at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._least_squares import GolubKahan, IterationState, LeastSquaresSolver, sym_ortho

__all__ = ["LSQR", "lsqr"]


@dataclass(frozen=True)
class LSQR(LeastSquaresSolver):
    r"""LSQR (Paige & Saunders, 1982): damped sparse least squares by conjugate gradients on the normal equations.

    For each column ``b`` of ``B`` and ``A`` of shape ``(m, n)`` (tall, square or wide),

    .. math::

        x = \arg\min_x \|A x - b\|_2^2 + \lambda^2 \|x\|_2^2 \quad (\lambda = \texttt{damp}),
        \qquad\text{i.e.}\qquad (A^\top A + \lambda^2 I)\, x = A^\top b.

    From the Golub–Kahan bidiagonalisation of ``A`` started at ``b`` (one product with ``A`` and one with :math:`A^\top`
    per iteration), the iterate :math:`x_j \in \operatorname{span}(v_1, \dots, v_j)` minimises :math:`\|\bar b - \bar A
    x_j\|` (with :math:`\bar A = [A; \lambda I]`, :math:`\bar b = [b; 0]`): in exact arithmetic the same iterates as CG
    on the normal equations, computed more stably. A QR factorisation of the bidiagonal by Givens rotations gives the
    update :math:`x \leftarrow x + (\phi/\rho)\, w`, :math:`w \leftarrow v - (\theta/\rho)\, w`, and estimates of
    :math:`\|\bar r\|`, :math:`\|\bar A^\top \bar r\|`, :math:`\|\bar A\|_F`, :math:`\operatorname{cond}(\bar A)` and
    :math:`\|x\|` (recurrences, no extra products). From :math:`x_0 = 0` a consistent wide system gets its minimum-norm
    solution. The recurrences, estimates and stopping rules are those of Paige & Saunders and of SciPy's
    ``scipy.sparse.linalg.lsqr`` (same iterates to rounding); the stop codes are listed in
    :mod:`sparseprec.solvers._least_squares`.

    All ``k`` columns of ``B`` are iterated together (one sparse-times-dense product per step, scalars as ``(k,)``
    tensors on the device); a column that has stopped is frozen. :class:`LSMR` is usually the better choice (its
    normal residual decreases monotonically, so it can stop earlier on inconsistent problems).

    Gradients: as for :class:`LSMR` (the backward pass runs LSQR on :math:`A^\top`).

    Parameters
    ----------
    atol, btol, conlim, damp, preconditioner, throw
        As for :class:`LSMR`.
    maxiter : int, optional
        Iteration limit; default ``2 n`` (SciPy's).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.solvers import LSQR
    >>> A = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    >>> B = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)  # two inconsistent columns
    >>> solution = LSQR(atol=1e-12, btol=1e-12).solve(A, B)
    >>> solution.value.round(decimals=8)  # (AᵀA)⁻¹ Aᵀ B with AᵀA = [[2, 1], [1, 2]]
    tensor([[0.3333, 1.0000],
            [0.3333, 1.0000]], dtype=torch.float64)
    >>> solution.stop_code.tolist(), solution.converged.tolist()  # 2: a least-squares solution
    ([2, 2], [True, True])
    """

    method = "lsqr"

    def default_maxiter(self, m: int, n: int) -> int:
        return 2 * n

    def _iterate(
        self, gk: GolubKahan, X: torch.Tensor, H: torch.Tensor | None, normb: torch.Tensor, maxiter: int
    ) -> IterationState:
        alfa, beta = gk.alpha, gk.beta
        zeros, ones = torch.zeros_like(alfa), torch.ones_like(alfa)
        damped = self.damp > 0
        dampsq = self.damp**2
        eps = torch.finfo(X.dtype).eps
        codes = self.initial_codes(gk, normb)
        active = codes == -2
        iterations = torch.zeros_like(codes)
        # the (k,) scalars of Paige & Saunders (names as theirs and SciPy's)
        rhobar, phibar = alfa, beta
        anorm, acond, ddnorm, res2, xnorm, xxnorm, z, cs2, sn2 = (
            zeros,
            zeros,
            zeros,
            zeros,
            zeros,
            zeros,
            zeros,
            -ones,
            zeros,
        )
        report = (anorm, acond, xnorm)
        w = gk.V.clone()
        ww = gk.W.clone() if H is not None else None  # its preimage, when tracked
        passes = gk.passes_v
        every = self.check_every(X.device)
        for itn in range(1, maxiter + 1):
            if (itn - 1) % every == 0 and not bool(active.any()):
                break
            alfa_old = alfa
            gk.step()
            alfa, beta = gk.alpha, gk.beta
            anorm = torch.where(beta > 0, (anorm.square() + alfa_old.square() + beta.square() + dampsq).sqrt(), anorm)
            # eliminate the damping (a rotation of [ρ̄; λ]), then the subdiagonal β
            if damped:
                rhobar1 = (rhobar.square() + dampsq).sqrt()
                cs1, sn1 = rhobar / rhobar1, self.damp / rhobar1
                psi = sn1 * phibar
                phibar = cs1 * phibar
            else:
                rhobar1, psi = rhobar, zeros
            cs, sn, rho = sym_ortho(rhobar1, beta)
            theta = sn * alfa
            rhobar = -cs * alfa
            phi = cs * phibar
            phibar = sn * phibar
            tau = sn * phi
            # x += (φ/ρ) w, w ← v − (θ/ρ) w (a stopped column's coefficients are 0); ‖w/ρ‖² for cond(Ā)
            ddnorm = ddnorm + passes.dot(w, w) / rho.square()
            f_x = torch.where(active, phi / rho, zeros)
            f_w = torch.where(active, -theta / rho, zeros)
            X.addcmul_(w, f_x)
            torch.addcmul(gk.V, w, f_w, out=w)
            if H is not None:
                H.addcmul_(ww, f_x)
                torch.addcmul(gk.W, ww, f_w, out=ww)
            # ‖x‖ by a second rotation (no pass over x)
            delta = sn2 * rho
            gambar = -cs2 * rho
            rhs = phi - delta * z
            zbar = rhs / gambar
            xnorm = (xxnorm + zbar.square()).sqrt()
            gamma = (gambar.square() + theta.square()).sqrt()
            cs2, sn2 = gambar / gamma, theta / gamma
            z = rhs / gamma
            xxnorm = xxnorm + z.square()
            # cond(Ā) ≈ ‖Ā‖_F ‖D‖_F, ‖r̄‖, ‖Āᵀ r̄‖, and the tests
            acond = anorm * ddnorm.sqrt()
            res2 = res2 + psi.square()
            rnorm = (phibar.square() + res2).sqrt()
            arnorm = alfa * tau.abs()
            test2 = arnorm / (anorm * rnorm + eps)
            step = self.stop_codes(itn, maxiter, rnorm, normb, test2, 1.0 / (acond + eps), anorm, xnorm)
            codes, report, active = self.record(active, step, codes, iterations, report, (anorm, acond, xnorm))
        return IterationState(codes, iterations, *report)


def lsqr(A: Any, B: torch.Tensor, x0: torch.Tensor | None = None, **settings: Any) -> torch.Tensor:
    r"""Solve :math:`\min_x \|A x - b\|^2 + \lambda^2 \|x\|^2` for every column of ``B`` by LSQR; ``settings`` as
    for :class:`LSQR`. Returns ``X`` (``(n,)`` or ``(n, k)``).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.solvers import lsqr
    >>> A = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64).to_sparse_csr()
    >>> lsqr(A, torch.tensor([2.0, 3.0, 1.0], dtype=torch.float64), atol=1e-12, btol=1e-12).round(decimals=8)
    tensor([1., 3.], dtype=torch.float64)
    """
    return LSQR(**settings)(A, B, x0=x0)

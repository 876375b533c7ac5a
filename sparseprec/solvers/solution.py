"""What a Krylov solve returns: the solution block and an honest account of how it was reached."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch

__all__ = ["Status", "Solution"]


class Status(enum.Enum):
    """Outcome of a solve. Each member's value is the message shown to users (formatted with the details)."""

    SUCCESS = "{solver} converged in {iterations} iterations (largest relative residual {worst:.3g})."
    MAX_ITERATIONS = (
        "{solver} did not converge within maxiter={maxiter} iterations: {failed} of {k} right-hand-side columns "
        "(e.g. column {column}) reached relative residual {worst:.3g}, above rtol={rtol:g} (atol={atol:g}). "
        "Try increasing `maxiter`, adding a `preconditioner` (e.g. `sparseprec.solvers.Jacobi` or `SSOR`), "
        "or loosening `rtol`/`atol`."
    )
    NOT_POSITIVE_DEFINITE = (
        "{solver} found a search direction p with pᵀAp <= 0 in {failed} of {k} columns (e.g. column {column}): "
        "A is not positive definite. Use `MINRES` for a symmetric indefinite A, `BiCGSTAB` for a non-symmetric one."
    )
    PRECONDITIONER_NOT_POSITIVE_DEFINITE = (
        "{solver} found rᵀ M r <= 0 for the preconditioner M in {failed} of {k} columns (e.g. column {column}): "
        "{solver} needs a symmetric positive definite preconditioner. Check its sign, or drop it."
    )
    BREAKDOWN = (
        "{solver} broke down (a recurrence coefficient vanished) in {failed} of {k} columns (e.g. column {column}) "
        "at relative residual {worst:.3g}. Try another `x0`, a `preconditioner`, or `MINRES` if A is symmetric."
    )
    TRUE_RESIDUAL_TOO_LARGE = (
        "{solver}'s recurrence met the tolerance but the returned x does not: its true residual is ‖b − A x‖ = "
        "{worst:.3g} ‖b‖ in {failed} of {k} columns (e.g. column {column}), {excess:.3g} times the tolerance "
        "max(rtol ‖b‖, atol) where at most {factor:g} times is accepted. A is singular, or too ill-conditioned for "
        "rtol={rtol:g} (atol={atol:g}) in {dtype}, whose attainable relative residual is about κ(A) × {eps:.2g}. "
        "Check A for a null space (e.g. an intrinsic model without its constraint, or a precision parameter of 0), "
        "loosen `rtol`, or solve in float64 if B is float32."
    )
    NON_FINITE = (
        "{solver} produced NaN or Inf in {failed} of {k} columns (e.g. column {column}). Check A, B, x0 and the "
        "preconditioner for NaN/Inf values or values so large that their squares overflow {dtype} (rescale them), "
        "and A for singularity."
    )


# Per-column failure codes (0: none; held on the device during the iteration, TRUE_RESIDUAL set when reporting);
# their Status, worst first.
CODE_STATUS = {
    5: Status.NON_FINITE,
    4: Status.TRUE_RESIDUAL_TOO_LARGE,
    3: Status.NOT_POSITIVE_DEFINITE,
    2: Status.PRECONDITIONER_NOT_POSITIVE_DEFINITE,
    1: Status.BREAKDOWN,
}


@dataclass(frozen=True)
class Solution:
    r"""Result of ``solver.solve(A, B)``.

    Attributes
    ----------
    value : torch.Tensor
        The solution ``X``, shaped like ``B``; differentiable w.r.t. ``B`` and ``A`` (see the solver's docs).
    converged : torch.Tensor
        Bool, shape ``B.shape[1:]`` (a 0-d tensor for a 1-D ``B``): whether each column met its tolerance. The
        recurrence's stopping test decides, and is then checked against the true residual: a column whose
        ``residual_norm`` exceeds ``TRUE_RESIDUAL_FACTOR = 10`` times its ``tolerance`` (in the stopping test's
        norm), or whose ``X`` is not finite, has not converged (``Status.TRUE_RESIDUAL_TOO_LARGE``,
        ``Status.NON_FINITE``).
    iterations : torch.Tensor
        int64, shape ``B.shape[1:]``: iterations each column took (a column stops when it converges).
    residual_norm : torch.Tensor
        Shape ``B.shape[1:]``: :math:`\lVert B_j - A X_j \rVert_2` recomputed from the returned ``X`` (not the recursive
        estimate the stopping test used).
    tolerance : torch.Tensor
        Shape ``B.shape[1:]``: the absolute tolerance of each column, :math:`\max(\mathrm{rtol}\, \lVert B_j \rVert,
        \mathrm{atol})` (MINRES with a preconditioner: in the preconditioner's norm, see :class:`MINRES`).
    status : Status
        ``Status.SUCCESS`` or the worst failure among the columns (worst first: ``NON_FINITE``,
        ``TRUE_RESIDUAL_TOO_LARGE``, ``NOT_POSITIVE_DEFINITE``, ``PRECONDITIONER_NOT_POSITIVE_DEFINITE``, ``BREAKDOWN``,
        ``MAX_ITERATIONS``).
    message : str
        ``status`` spelled out, with what to try.
    """

    value: torch.Tensor
    converged: torch.Tensor
    iterations: torch.Tensor
    residual_norm: torch.Tensor
    tolerance: torch.Tensor
    status: Status
    message: str

    @property
    def success(self) -> bool:
        """``True`` when every column converged."""
        return self.status is Status.SUCCESS

r"""Layer 2: Krylov solvers in pure torch — CG, MINRES, BiCGSTAB — with preconditioners and convergence reports.

A solver is a frozen settings object: ``CG(rtol=1e-6, atol=0.0, maxiter=None, preconditioner=None, throw=True)``.
``solver.solve(A, B, x0=None)`` returns a :class:`Solution`; ``solver(A, B)`` returns just the tensor, so a solver is a
valid ``solve=`` for :func:`sparse_generic_solve` (here, and re-exported as ``sparseprec.sparse_generic_solve``).
``cg``, ``minres`` and ``bicgstab`` take the same settings as keywords and return the tensor. ``A`` is a sparse COO/CSR
tensor, a dense tensor or a callable ``v -> A v``; ``B`` is ``(n,)`` or ``(n, k)``, all ``k`` columns iterated
together.

``LSQR`` and ``LSMR`` (thin functions ``lsqr``, ``lsmr``) solve damped least squares
:math:`\min_x \lVert A x - b \rVert^2 + \mathrm{damp}^2 \lVert x \rVert^2`
for a rectangular ``A`` (sparse, dense, or a pair ``(matvec, rmatvec)``), with SciPy's recurrences, stopping rules and
stop codes, all columns of ``B`` as one block, and return a :class:`LeastSquaresSolution`; they are the default
``lstsq`` of :func:`sparse_generic_lstsq` (least squares with gradients at ``A``'s stored entries, also re-exported as
``sparseprec.sparse_generic_lstsq``).
"""

from ..errors import ConvergenceError, ConvergenceWarning
from ._least_squares import LeastSquaresSolution, LeastSquaresStatus
from .bicgstab import BiCGSTAB, bicgstab
from .cg import CG, cg
from .generic import sparse_generic_solve
from .lsmr import LSMR, lsmr
from .lsqr import LSQR, lsqr
from .lstsq import sparse_generic_lstsq
from .minres import MINRES, minres
from .preconditioners import SSOR, Jacobi, Preconditioner
from .solution import Solution, Status

__all__ = [
    "CG",
    "MINRES",
    "BiCGSTAB",
    "cg",
    "minres",
    "bicgstab",
    "sparse_generic_solve",
    "sparse_generic_lstsq",
    "LSQR",
    "LSMR",
    "lsqr",
    "lsmr",
    "LeastSquaresSolution",
    "LeastSquaresStatus",
    "Solution",
    "Status",
    "Preconditioner",
    "Jacobi",
    "SSOR",
    "ConvergenceError",
    "ConvergenceWarning",
]

"""Layer 2: Krylov solvers in pure torch — CG, MINRES, BiCGSTAB — with preconditioners and convergence reports.

A solver is a frozen settings object: ``CG(rtol=1e-6, atol=0.0, maxiter=None, preconditioner=None, throw=True)``.
``solver.solve(A, B, x0=None)`` returns a :class:`Solution`; ``solver(A, B)`` returns just the tensor, so a solver is a
valid ``solve=`` for :func:`sparse_generic_solve` (here, and re-exported as ``sparseprec.sparse_generic_solve``).
``cg``, ``minres`` and ``bicgstab`` take the same settings as keywords and return the tensor. ``A`` is a sparse COO/CSR
tensor, a dense tensor or a callable ``v -> A v``; ``B`` is ``(n,)`` or ``(n, k)``, all ``k`` columns iterated
together.
"""

from ..errors import ConvergenceError, ConvergenceWarning
from .bicgstab import BiCGSTAB, bicgstab
from .cg import CG, cg
from .generic import sparse_generic_solve
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
    "Solution",
    "Status",
    "Preconditioner",
    "Jacobi",
    "SSOR",
    "ConvergenceError",
    "ConvergenceWarning",
]

"""Exceptions and warnings raised by sparseprec (shared by every layer)."""

from __future__ import annotations

from typing import Any

__all__ = ["ConvergenceError", "ConvergenceWarning"]


class ConvergenceError(RuntimeError):
    """An iterative method stopped before meeting its tolerance.

    The message says how far it got and what to try. ``solution`` holds the full result of the failed solve (a
    :class:`sparseprec.solvers.Solution`, with the last iterate and per-column diagnostics) for inspection.
    """

    def __init__(self, message: str, solution: Any = None):
        super().__init__(message)
        self.solution = solution


class ConvergenceWarning(UserWarning):
    """Warning counterpart of :class:`ConvergenceError`, issued by solvers built with ``throw=False``."""

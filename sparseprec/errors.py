"""Exceptions and warnings raised by sparseprec (shared by every layer)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ConvergenceError", "ConvergenceWarning", "NotPositiveDefiniteError", "NotTwiceDifferentiableError"]


class ConvergenceError(RuntimeError):
    """An iterative method stopped before meeting its tolerance.

    The message says how far it got and what to try. ``solution`` holds the full result of the failed solve (a
    :class:`sparseprec.solvers.Solution`, or a :class:`sparseprec.solvers.LeastSquaresSolution` from LSQR/LSMR, with the
    last iterate and per-column diagnostics) for inspection.
    """

    def __init__(self, message: str, solution: Any = None):
        super().__init__(message)
        self.solution = solution


class ConvergenceWarning(UserWarning):
    """Warning counterpart of :class:`ConvergenceError`, issued by solvers built with ``throw=False``."""


class NotPositiveDefiniteError(torch.linalg.LinAlgError):
    """A Cholesky factorisation met a non-positive pivot, or one below the singularity threshold documented in
    :func:`sparseprec.cholesky.cholesky`: the matrix is indefinite or numerically singular.

    Subclasses ``torch.linalg.LinAlgError`` (what ``torch.linalg.cholesky`` raises), so code catching torch's error
    catches this one. ``column`` is the column of the input matrix in its original ordering (the elimination step
    mapped back through the fill-reducing permutation) where the factorisation broke down; the message names it, the
    elimination step, the pivot and the threshold. Every backend raises this type (its own error chained as
    ``__cause__``).
    """

    def __init__(self, message: str, column: int | None = None):
        super().__init__(message)
        self.column = column


class NotTwiceDifferentiableError(RuntimeError):
    """A second derivative was asked of a function whose derivative is implemented once only.

    Raised in the backward pass, when a derivative computed with ``create_graph=True`` (a Hessian, a Hessian-vector
    product, ``gradgradcheck``) is differentiated again through such a function, e.g. the selected-inverse gradient of
    :func:`sparseprec.cholesky.sparse_logdet` w.r.t. the precision's values. Never a silently missing term.
    docs/reliability.md lists which functions are twice differentiable w.r.t. which arguments.

    Examples
    --------
    >>> import torch
    >>> from sparseprec import NotTwiceDifferentiableError, sparse_csr_tensor
    >>> from sparseprec.cholesky import sparse_logdet
    >>> v = torch.tensor([2.0, -1.0, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    >>> Q = sparse_csr_tensor(torch.tensor([0, 2, 4]), torch.tensor([0, 1, 0, 1]), v, (2, 2))
    >>> (g,) = torch.autograd.grad(sparse_logdet(Q), v, create_graph=True)  # the first derivative: (Q⁻¹)_ij
    >>> g.detach()
    tensor([0.6667, 0.3333, 0.3333, 0.6667], dtype=torch.float64)
    >>> try:
    ...     torch.autograd.grad(g.sum(), v)
    ... except NotTwiceDifferentiableError:
    ...     print("raised")
    raised
    """

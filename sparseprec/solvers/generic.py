"""``sparse_generic_solve``: any solver, exact gradients at the stored entries by the implicit function theorem.

It lives with the solvers (layer 2) because its default solver is :class:`~sparseprec.solvers.MINRES`; the derivative
is the library's one solve rule (:mod:`sparseprec.ops._solve_rule`, layer 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._validation import describe
from ..ops._operands import operands
from ..ops._products import check_symmetric
from ..ops._solve_rule import linear_solve
from ..pattern import SparsePattern, pattern_of
from .minres import MINRES

__all__ = ["sparse_generic_solve"]


def _checked(X: object, like: torch.Tensor, who: str) -> torch.Tensor:
    """``X`` returned by a user solver, reshaped to ``like``'s shape; a clear error if it is not a solution's shape."""
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{who} must return a torch.Tensor, got {type(X).__name__}")
    if X.numel() != like.numel() or X.layout != torch.strided or X.dtype != like.dtype or X.device != like.device:
        raise ValueError(
            f"{who} must return a dense tensor like its right-hand side ({describe(like)}), got a {describe(X)}"
        )
    return X.reshape(like.shape)


def _transpose(A: torch.Tensor, pattern: SparsePattern) -> torch.Tensor:
    """``Aᵀ`` in ``A``'s layout, from the pattern's cached transposed index data."""
    At = pattern.transposed_kernel_matrix(pattern.kernel_values(A))
    return At if A.layout == torch.sparse_csr else At.to_sparse_coo()


def _check_storage(pattern: SparsePattern, symmetric: object) -> None:
    """``symmetric`` is ``None`` or a storage of :data:`~sparseprec.ops._products.SYMMETRIC_STORAGES` that ``A``'s
    pattern has: both triangles (every stored ``(i, j)`` with its ``(j, i)``) for ``"full"``, one triangle otherwise."""
    if check_symmetric(symmetric) is None:
        return
    row, col = pattern.row, pattern.col
    if symmetric == "full":

        def symmetric_pattern() -> bool:
            At = pattern.transposed_kernel_matrix(torch.zeros(pattern.nnz, device=col.device))  # cached index data
            return torch.equal(At.crow_indices(), pattern.crow) and torch.equal(At.col_indices(), col)

        if not pattern.derived("symmetric_pattern", symmetric_pattern):  # checked once per pattern
            raise ValueError(
                'A was declared symmetric="full" (both triangles stored) but its pattern is not symmetric: some stored '
                "(i, j) has no stored (j, i). Store both triangles, or declare the one stored with "
                'symmetric="lower"/"upper"'
            )
        return
    wrong = row < col if symmetric == "lower" else row > col
    if bool(wrong.any()):
        k = int(torch.nonzero(wrong)[0, 0])
        side = "above" if symmetric == "lower" else "below"
        raise ValueError(
            f'A was declared symmetric="{symmetric}" (one triangle stored) but stores an entry {side} the diagonal, at '
            f'({int(row[k])}, {int(col[k])}); use symmetric="full" for a matrix with both triangles stored'
        )


class _UserSolver:
    """A user's ``solve``/``transpose_solve`` pair as a solver for :func:`~sparseprec.ops._solve_rule.linear_solve`.

    The functions receive ``A`` (without autograd history) and the right-hand side in the user's shape (1-D for a 1-D
    ``B``); ``Aᵀ`` for a missing ``transpose_solve`` is built once, on first use, unless ``A`` is declared symmetric
    (then the transposed solve is ``solve`` on ``A`` itself).
    """

    def __init__(
        self, A: torch.Tensor, pattern: SparsePattern, solve, transpose_solve, kwargs, vector: bool, symmetric: bool
    ):
        self.A, self.pattern, self.kwargs, self.vector = A.detach(), pattern, kwargs, vector
        self.solve_fn, self.transpose_solve_fn, self.symmetric = solve, transpose_solve, symmetric
        self._At: torch.Tensor | None = None

    def solve(self, B: torch.Tensor, transpose: bool) -> torch.Tensor:
        rhs = B.reshape(-1) if self.vector else B
        if not transpose:
            X, who = self.solve_fn(self.A, rhs, **self.kwargs), "solve"
        elif self.transpose_solve_fn is not None:
            X, who = self.transpose_solve_fn(self.A, rhs, **self.kwargs), "transpose_solve"
        elif self.symmetric:
            X, who = self.solve_fn(self.A, rhs, **self.kwargs), "solve (Aᵀ = A, for the gradient)"
        else:
            if self._At is None:
                self._At = _transpose(self.A, self.pattern)
            X, who = self.solve_fn(self._At, rhs, **self.kwargs), "solve (on Aᵀ, for the gradient)"
        return _checked(X, rhs, who).reshape(B.shape)


def sparse_generic_solve(
    A: torch.Tensor,
    B: torch.Tensor,
    solve: Callable[..., torch.Tensor] | None = None,
    transpose_solve: Callable[..., torch.Tensor] | None = None,
    *,
    symmetric: str | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    r"""Solve ``A X = B`` with any solver; exact gradients w.r.t. ``A``'s stored entries and ``B``.

    Forward: :math:`X = \texttt{solve}(A, B, \ast\ast\texttt{kwargs})`, run without autograd — the solver need not be
    differentiable (a SciPy call wrapped to torch works).

    Backward (implicit function theorem on :math:`A X = B`), with :math:`G = \partial L / \partial X`:

    .. math::

        \frac{\partial L}{\partial B} = A^{-\top} G =: \Lambda, \qquad
        \frac{\partial L}{\partial A_{ij}} = -\sum_k \Lambda_{ik} X_{jk} \quad \text{for stored } (i, j) \text{ only,}

    one transposed solve and a sampled product on the stored pattern (O(nnz k) time, no ``n × n`` intermediate):
    every stored value is an independent entry. Declaring ``A`` symmetric (``symmetric="full"``, or
    ``"lower"``/``"upper"`` for one stored triangle that a solver reads as the whole matrix) gives the symmetric
    convention instead, the one of every Cholesky path and of the GPyTorch operators
    (:ref:`symmetric-gradients`). The gradients are exact to the accuracy of
    the two solves. Under ``create_graph=True`` the backward's solve and product are recorded as well, so second
    derivatives (w.r.t. ``A``'s stored values and ``B``) are exact to the accuracy of the solves, with any solver.

    Parameters
    ----------
    A : torch.Tensor
        Sparse COO or CSR matrix ``(n, n)``; float32 or float64.
    B : torch.Tensor
        Dense ``(n,)`` or ``(n, k)``, same dtype and device. A 1-D ``B`` gives a 1-D result.
    solve : callable, optional
        ``solve(A, B, **kwargs) -> X``. Default :class:`sparseprec.solvers.MINRES` (symmetric ``A``); any
        ``sparseprec.solvers`` solver object (``CG(rtol=1e-8)``), thin function (``cg``) or user function works. It
        may return ``(n, 1)`` for a 1-D ``B``; it must return ``B``'s dtype and device.
    transpose_solve : callable, optional
        ``transpose_solve(A, G, **kwargs) -> Y`` with :math:`A^\top Y = G` — it receives ``A`` itself, as in
        torchsparsegradutils. Default: ``solve`` applied to :math:`A^\top` (built once per pattern, in ``A``'s layout),
        which is right for non-symmetric ``A`` as well; ``solve`` applied to ``A`` when ``A`` is declared symmetric.
    symmetric : {None, "full", "lower", "upper"}, optional
        Keyword only. ``None`` (default): ``A``'s stored values are independent entries. Otherwise ``A`` is declared
        symmetric, with both triangles stored (``"full"``) or one (``"lower"``/``"upper"``); the pattern is checked
        to be of that kind, the values are not (the solver sees ``A``).
    **kwargs
        Passed to both solves (e.g. ``rtol=1e-10`` for the sparseprec solvers).

    Returns
    -------
    torch.Tensor
        ``X``, shaped like ``B``.

    Raises
    ------
    TypeError, ValueError
        Invalid ``A``/``B`` (layout, shape, dtype, device), a ``symmetric`` that is not one of the four values or
        that ``A``'s pattern does not fit, or a solver returning something that is not a solution of ``B``'s shape,
        dtype and device. Solver errors (e.g. :class:`sparseprec.ConvergenceError`) propagate.

    Examples
    --------
    >>> import torch
    >>> from sparseprec import sparse_generic_solve
    >>> from sparseprec.solvers import CG
    >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64).to_sparse_csr().requires_grad_()
    >>> B = torch.tensor([1.0, 2.0], dtype=torch.float64)
    >>> X = sparse_generic_solve(A, B, solve=CG(rtol=1e-12))
    >>> X.detach()
    tensor([0.0909, 0.6364], dtype=torch.float64)
    >>> X.sum().backward()
    >>> A.grad.values()  # −(A⁻ᵀ 1)_i X_j at the stored (i, j)
    tensor([-0.0165, -0.1157, -0.0248, -0.1736], dtype=torch.float64)
    >>> A.grad = None
    >>> sparse_generic_solve(A, B, solve=CG(rtol=1e-12), symmetric="full").sum().backward()
    >>> A.grad.values()  # the symmetric convention: the mean of the (i, j) and (j, i) values above
    tensor([-0.0165, -0.0702, -0.0702, -0.1736], dtype=torch.float64)
    """
    ops = operands(A, B, square=True, allow_vector=True)
    if A.dim() != 2:
        raise ValueError(f"A must be a single (n, n) matrix, got a batched tensor of shape {tuple(A.shape)}")
    if solve is None:
        solve = MINRES()
    for name, fn in (("solve", solve), ("transpose_solve", transpose_solve)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable as {name}(A, B, **kwargs), got {type(fn).__name__}")
    pattern = pattern_of(A)
    _check_storage(pattern, symmetric)
    solver = _UserSolver(A, pattern, solve, transpose_solve, kwargs, B.dim() == 1, symmetric is not None)
    X = linear_solve(A, ops.B2, solver, pattern, symmetric=symmetric)
    return X.reshape(ops.out_shape)

r"""Preconditioners: cheap approximations :math:`M \approx A^{-1}` that cut the iterations of a Krylov solver.

A preconditioner is any callable ``R -> M R`` applied to a tensor shaped like the right-hand side (``(n,)`` or
``(n, k)``); CG and MINRES need ``M`` symmetric positive definite. The classes here are built from ``A`` —
``Jacobi(A)`` — or given to a solver as the class itself, ``CG(preconditioner=Jacobi)``, in which case the solver builds
one for every matrix it solves with (what you want inside :func:`sparseprec.sparse_generic_solve`, where ``A``
changes between steps, and for the transposed solve of a gradient).
"""

from __future__ import annotations

import numbers

import torch

from .._validation import check_dense, check_sparse_matrix, check_tensor
from ..pattern import crow_from_rows, pattern_of

__all__ = ["Preconditioner", "Jacobi", "SSOR"]


class Preconditioner:
    r"""Base class of preconditioners built from a matrix ``A``: :math:`M(R) \approx A^{-1} R` and ``M.transpose()``
    (for :math:`A^\top`).

    A subclass records the size ``n``, ``dtype`` and ``device`` of the matrix it was built from (``None``: unknown, not
    checked); a solver calls :meth:`check_system` once per solve to refuse a preconditioner built for another system.
    """

    n: int | None = None
    dtype: torch.dtype | None = None
    device: torch.device | None = None

    def _record_system(self, A: torch.Tensor) -> None:
        self.n, self.dtype, self.device = A.shape[0], A.dtype, A.device

    def check_system(self, n: int, dtype: torch.dtype, device: torch.device) -> None:
        """Raise unless this preconditioner was built from an ``(n, n)`` matrix of this ``dtype`` on this ``device``.

        Raises
        ------
        ValueError
            The size or the device differ.
        TypeError
            The dtype differs.
        """
        who = f"the preconditioner ({type(self).__name__})"
        if self.n is not None and self.n != n:
            raise ValueError(
                f"{who} was built from a {self.n} x {self.n} matrix, but the system is {n} x {n}; build it from "
                f"the system's A"
            )
        if self.dtype is not None and self.dtype != dtype:
            raise TypeError(
                f"{who} was built from a {self.dtype} matrix, but the system (A and B) is {dtype}; build it from "
                f"A.to({dtype})"
            )
        if self.device is not None and torch.device(self.device) != torch.device(device):
            raise ValueError(
                f"{who} was built from a matrix on device {self.device}, but the system (A and B) is on device "
                f"{device}; build it from A.to({str(device)!r})"
            )

    def __call__(self, R: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def apply_into(self, R: torch.Tensor, out: torch.Tensor) -> torch.Tensor | None:
        """``M R`` written into ``out`` (both ``(n, k)``, ``out`` not ``R``) and returned, or ``None`` where this
        preconditioner has no in-place form (the solvers then call it and copy). Used by the solvers' loops."""
        return None

    def transpose(self) -> Preconditioner:
        r"""The preconditioner :math:`M^\top` of :math:`A^\top` (used by the gradient of non-symmetric solves)."""
        raise NotImplementedError


def _square_matrix(A: object, name: str) -> torch.Tensor:
    check_tensor(A, name)
    if A.layout == torch.strided:
        check_dense(A, name, dims=(2,))
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"{name} must be square, got shape {tuple(A.shape)}")
    else:
        check_sparse_matrix(A, name, square=True)
        if A.dim() != 2:
            raise ValueError(f"{name} must be a single (n, n) matrix, got shape {tuple(A.shape)}")
    return A.detach()


def _diagonal(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The diagonal of ``A`` (dense ``(n,)``) and a bool mask of the rows that store a diagonal entry."""
    if A.layout == torch.strided:
        d = A.diagonal().clone()
        return d, torch.ones_like(d, dtype=torch.bool)
    p = pattern_of(A)
    values = p.kernel_values(A)
    on = p.row == p.col
    rows = p.row[on].long()
    d = values.new_zeros(A.shape[0]).index_add_(0, rows, values[on])
    stored = torch.zeros(A.shape[0], dtype=torch.bool, device=A.device)
    stored[rows] = True
    return d, stored


def _require_nonzero_diagonal(d: torch.Tensor, stored: torch.Tensor, who: str) -> None:
    bad = torch.nonzero(~stored | (d == 0) | ~torch.isfinite(d))
    if bad.numel():
        r = int(bad[0, 0])
        what = "no stored diagonal entry" if not bool(stored[r]) else f"diagonal value {float(d[r]):g}"
        raise ValueError(f"{who} needs a nonzero finite diagonal, but A has {what} in row {r}")


def _as_columns(R: torch.Tensor) -> torch.Tensor:
    return R.unsqueeze(-1) if R.dim() == 1 else R


class Jacobi(Preconditioner):
    r"""Diagonal (Jacobi) preconditioner :math:`M = \mathrm{diag}(A)^{-1}`.

    Cheap (one scaling per iteration) and effective when the diagonal of ``A`` varies over orders of magnitude
    (heterogeneous coefficients, badly scaled variables); it does nothing for a constant diagonal. SPD whenever the
    diagonal is positive, as for any SPD ``A``.

    Parameters
    ----------
    A : torch.Tensor
        Square sparse (COO/CSR) or dense matrix with a nonzero diagonal.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.solvers import CG, Jacobi
    >>> A = torch.tensor([[100.0, 1.0], [1.0, 0.1]], dtype=torch.float64).to_sparse_csr()  # badly scaled, det 9
    >>> B = torch.tensor([1.0, 1.0], dtype=torch.float64)
    >>> solution = CG(rtol=1e-10, preconditioner=Jacobi).solve(A, B)
    >>> solution.success, torch.allclose(solution.value, torch.linalg.solve(A.to_dense(), B))
    (True, True)
    """

    def __init__(self, A: torch.Tensor):
        A = _square_matrix(A, "A")
        d, stored = _diagonal(A)
        _require_nonzero_diagonal(d, stored, "Jacobi")
        self._record_system(A)
        self.inverse_diagonal = d.reciprocal()

    def __call__(self, R: torch.Tensor) -> torch.Tensor:
        return R * (self.inverse_diagonal if R.dim() == 1 else self.inverse_diagonal.unsqueeze(-1))

    def apply_into(self, R: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return torch.mul(R, self.inverse_diagonal.unsqueeze(-1), out=out)

    def transpose(self) -> Jacobi:
        return self


class SSOR(Preconditioner):
    r"""Symmetric successive over-relaxation (SSOR) preconditioner; ``omega = 1`` is symmetric Gauss–Seidel.

    With :math:`A = L + D + U` (strictly lower, diagonal, strictly upper parts),

    .. math::

        M^{-1} = \frac{1}{\omega (2 - \omega)} (D + \omega L) D^{-1} (D + \omega U) \approx A,

    applied as two sparse triangular solves per iteration. For symmetric ``A`` with a positive diagonal and
    :math:`0 < \omega < 2`, ``M`` is SPD (usable with CG and MINRES). On a grid Laplacian it roughly halves CG's
    iterations (``omega = 1``) where Jacobi does nothing; each iteration costs two sequential triangular sweeps.

    Parameters
    ----------
    A : torch.Tensor
        Square sparse (COO/CSR) or dense matrix with a nonzero diagonal.
    omega : float
        Relaxation parameter in ``(0, 2)``.

    Raises
    ------
    TypeError
        ``omega`` is not a real number (a string, a bool); ``A`` is not a floating-point tensor.
    ValueError
        ``omega`` outside ``(0, 2)``; ``A`` not square, or with a zero or missing diagonal entry.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.solvers import CG, SSOR
    >>> A = torch.tensor([[4.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 4.0]], dtype=torch.float64).to_sparse_csr()
    >>> CG(rtol=1e-10, preconditioner=SSOR(A)).solve(A, torch.ones(3, dtype=torch.float64)).value.round(decimals=8)
    tensor([0.3571, 0.4286, 0.3571], dtype=torch.float64)
    """

    def __init__(self, A: torch.Tensor, omega: float = 1.0):
        if isinstance(omega, bool) or not isinstance(omega, numbers.Real):
            raise TypeError(f"omega must be a real number in (0, 2), got {type(omega).__name__} {omega!r}")
        if not 0.0 < float(omega) < 2.0:
            raise ValueError(f"omega must lie in (0, 2), got {omega}")
        A = _square_matrix(A, "A")
        self._record_system(A)
        self.omega = float(omega)
        d, stored = _diagonal(A)
        _require_nonzero_diagonal(d, stored, "SSOR")
        self.diagonal = d
        self._transposed = False
        w = self.omega
        if A.layout == torch.strided:
            self.lower = A.tril(-1) * w + torch.diag(d)
            self.upper = A.triu(1) * w + torch.diag(d)
            return
        p = pattern_of(A)
        values = p.kernel_values(A)
        scaled = torch.where(p.row == p.col, values, values * w)
        self.lower = self._part(p.row, p.col, scaled, p.row >= p.col, A.shape[0])
        self.upper = self._part(p.row, p.col, scaled, p.row <= p.col, A.shape[0])

    @staticmethod
    def _part(row: torch.Tensor, col: torch.Tensor, values: torch.Tensor, keep: torch.Tensor, n: int) -> torch.Tensor:
        # The kernel's entries are sorted by row, then column: any subset of them is a valid CSR order.
        r = row[keep]
        crow = crow_from_rows(r, n)
        return torch.sparse_csr_tensor(crow.to(col.dtype), col[keep], values[keep], (n, n), check_invariants=False)

    def _solve(self, T: torch.Tensor, R: torch.Tensor, upper: bool) -> torch.Tensor:
        # solves T X = R, or Tᵀ X = R for the transposed preconditioner (Tᵀ is triangular on the other side)
        if T.layout == torch.strided:
            M = T.mT if self._transposed else T
            return torch.linalg.solve_triangular(M, R, upper=upper != self._transposed)
        return torch.triangular_solve(R, T, upper=upper, transpose=self._transposed).solution

    def __call__(self, R: torch.Tensor) -> torch.Tensor:
        R2 = _as_columns(R)
        # M R = ω(2−ω) (D + ωU)⁻¹ D (D + ωL)⁻¹ R;  Mᵀ R = ω(2−ω) (D + ωL)⁻ᵀ D (D + ωU)⁻ᵀ R
        first, second = (self.upper, self.lower) if self._transposed else (self.lower, self.upper)
        Y = self._solve(first, R2, upper=self._transposed)
        Y = Y * self.diagonal.unsqueeze(-1)
        Z = self._solve(second, Y, upper=not self._transposed)
        Z = Z * (self.omega * (2.0 - self.omega))
        return Z.reshape(R.shape)

    def transpose(self) -> SSOR:
        other = SSOR.__new__(SSOR)
        other.__dict__.update(self.__dict__)
        other._transposed = not self._transposed
        return other

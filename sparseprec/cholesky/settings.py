"""Settings objects of the Cholesky layer: the direct solver ``SparseCholesky`` and the log-determinant estimators.

They follow the solvers' protocol (:class:`sparseprec.solvers.CG`): small frozen objects, validated on construction,
with ``solve(A, B) -> Solution`` and ``__call__(A, B) -> Tensor``; a distribution or a conditioning step takes one of
them instead of strings plus option dictionaries, so the choice of algorithm is one value that can be passed on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .._validation import check_dense, check_sparse_matrix
from ..ops import sparse_mm
from ..solvers.solution import Solution, Status
from .backends import get_backend
from .factor import CholeskyFactor, cholesky
from .inverse import sparse_logdet
from .slq import check_slq_options, slq_logdet
from .solve import sparse_cholesky_solve

__all__ = ["SparseCholesky", "ExactLogDet", "SLQLogDet"]


@dataclass(frozen=True)
class SparseCholesky:
    r"""The sparse Cholesky method as a settings object: :math:`Q_{pp} = L L^\top` with a fill-reducing ordering.

    ``SparseCholesky(backend, ordering).solve(Q, B)`` returns a :class:`~sparseprec.solvers.Solution` like
    :class:`~sparseprec.solvers.CG` does, and ``SparseCholesky()(Q, B)`` the tensor :math:`Q^{-1} B`, so it is accepted
    wherever a Krylov solver is (``GMRF.condition(..., solver=SparseCholesky())``,
    :func:`sparseprec.sparse_generic_solve`'s ``solve=``). Gradients are exact, at ``Q``'s stored entries with the
    symmetric convention of :doc:`/concepts` (:func:`sparse_cholesky_solve`). The symbolic analysis is cached with
    ``Q``'s pattern (:mod:`sparseprec.pattern`).

    Parameters
    ----------
    backend : str
        ``"auto"`` (CHOLMOD where scikit-sparse is installed, else SciPy), ``"cholmod"`` or ``"scipy"``.
    ordering : str, optional
        Fill-reducing ordering of the backend (``None``: its default; see
        :func:`sparseprec.cholesky.cholesky`).

    Raises
    ------
    TypeError
        ``backend`` or ``ordering`` not a string.
    ValueError
        An unknown backend, or an ordering the backend does not offer.
    ImportError
        ``backend="cholmod"`` without scikit-sparse.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.cholesky import SparseCholesky
    >>> Q = torch.tensor([[2.0, -1.0], [-1.0, 2.0]], dtype=torch.float64).to_sparse_csr()
    >>> solution = SparseCholesky(backend="scipy").solve(Q, torch.ones(2, dtype=torch.float64))
    >>> solution.value.round(decimals=8), solution.success  # Q 1 = 1: x = (1, 1) up to rounding
    (tensor([1., 1.], dtype=torch.float64), True)
    """

    backend: str = "auto"
    ordering: str | None = None

    def __post_init__(self):
        if not isinstance(self.backend, str):
            raise TypeError(f"backend must be a string, got {type(self.backend).__name__} {self.backend!r}")
        if self.ordering is not None and not isinstance(self.ordering, str):
            raise TypeError(f"ordering must be a string or None, got {type(self.ordering).__name__} {self.ordering!r}")
        chosen = get_backend(self.backend)
        if self.ordering is not None and self.ordering not in chosen.orderings:
            raise ValueError(
                f"ordering must be one of {chosen.orderings} for backend {chosen.name!r}, got {self.ordering!r}"
            )

    def factor(self, Q: torch.Tensor, triangle: str = "full") -> CholeskyFactor:
        """The factor of a sparse SPD ``Q`` (:func:`sparseprec.cholesky.cholesky` with these settings)."""
        return cholesky(Q, backend=self.backend, ordering=self.ordering, triangle=triangle)

    def solve(self, A: torch.Tensor, B: torch.Tensor, *, factor: CholeskyFactor | None = None) -> Solution:
        r""":math:`X = A^{-1} B` for a sparse SPD ``A`` (both triangles stored) and dense ``B`` ``(n,)`` or ``(n, k)``.

        The :class:`~sparseprec.solvers.Solution` reports every column as converged with ``iterations`` 0 and
        ``residual_norm`` :math:`\|B_j - A X_j\|_2` recomputed from ``X`` (one sparse product); ``tolerance`` is NaN
        (a direct method has none). A matrix that is not positive definite raises
        :class:`sparseprec.NotPositiveDefiniteError` naming the failing column, as :func:`cholesky` does.
        ``factor``: a factor of this very ``A``, reused.
        """
        A = check_sparse_matrix(A, "A", square=True)
        B = check_dense(B, "B", dims=(1, 2))
        X = sparse_cholesky_solve(A, B, backend=self.backend, ordering=self.ordering, factor=factor)
        with torch.no_grad():
            X2, B2 = X.reshape(A.shape[0], -1), B.reshape(A.shape[0], -1)
            residual = torch.linalg.vector_norm(B2 - sparse_mm(A.detach(), X2), dim=0)
            relative = residual / torch.linalg.vector_norm(B2, dim=0).clamp_min(torch.finfo(B.dtype).tiny)
        columns = B.shape[1:]
        worst = float(relative.max()) if relative.numel() else 0.0
        return Solution(
            value=X,
            converged=torch.ones(columns, dtype=torch.bool, device=B.device),
            iterations=torch.zeros(columns, dtype=torch.int64, device=B.device),
            residual_norm=residual.reshape(columns),
            tolerance=torch.full(columns, math.nan, dtype=B.dtype, device=B.device),
            status=Status.SUCCESS,
            message=f"SparseCholesky solved directly (largest relative residual {worst:.3g}).",
        )

    def __call__(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """``self.solve(A, B).value``."""
        return self.solve(A, B).value


@dataclass(frozen=True)
class ExactLogDet:
    r"""The exact :math:`\log\det Q` of a sparse SPD ``Q`` by sparse Cholesky, :math:`2 \sum_i \log L_{ii}`, with the
    exact gradient :math:`(Q^{-1})_{ij}` at the stored entries by selected inversion
    (:func:`sparseprec.cholesky.sparse_logdet`).

    Parameters
    ----------
    cholesky : SparseCholesky
        The factorisation's settings.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.cholesky import ExactLogDet
    >>> Q = torch.tensor([[2.0, -1.0], [-1.0, 2.0]], dtype=torch.float64).to_sparse_csr()
    >>> ExactLogDet()(Q)
    tensor(1.0986, dtype=torch.float64)
    """

    cholesky: SparseCholesky = field(default_factory=SparseCholesky)

    def __post_init__(self):
        if not isinstance(self.cholesky, SparseCholesky):
            raise TypeError(f"cholesky must be a SparseCholesky, got {type(self.cholesky).__name__}")

    exact = True
    """Whether the estimate is exact (the value of :math:`\\log\\det Q` up to rounding)."""

    def __call__(self, Q: torch.Tensor, *, factor: CholeskyFactor | None = None) -> torch.Tensor:
        """:math:`\\log\\det Q`, 0-d, differentiable once w.r.t. ``Q``'s stored values; ``factor``: of this ``Q``."""
        return sparse_logdet(Q, backend=self.cholesky.backend, ordering=self.cholesky.ordering, factor=factor)


@dataclass(frozen=True, eq=False)
class SLQLogDet:
    r"""Stochastic Lanczos quadrature estimate of :math:`\log\det Q` (Ubaru, Chen & Saad 2017), for problems too
    large to factorise or on a GPU: sparse products only, unbiased up to the Lanczos error
    (:func:`sparseprec.cholesky.slq_logdet`, whose docstring gives the maths and the gradient).

    Parameters
    ----------
    num_probes : int
        Rademacher probe vectors (the standard error falls as ``num_probes ** -0.5``).
    lanczos_steps : int
        Lanczos steps per probe (capped at ``n``).
    generator : torch.Generator, optional
        Source of the probes (on ``Q``'s device); fixed for a reproducible estimate.
    cg_rtol : float
        Relative tolerance of the CG solves of the gradient.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.cholesky import SLQLogDet
    >>> Q = (3.0 * torch.eye(50, dtype=torch.float64)).to_sparse_csr()
    >>> SLQLogDet(num_probes=4, lanczos_steps=5)(Q)  # exact here: every probe sees the one eigenvalue 3
    tensor(54.9306, dtype=torch.float64)
    """

    num_probes: int = 64
    lanczos_steps: int = 40
    generator: torch.Generator | None = None
    cg_rtol: float = 1e-6

    exact = False

    def __post_init__(self):
        check_slq_options(self.num_probes, self.lanczos_steps, self.generator, self.cg_rtol)

    def __call__(self, Q: torch.Tensor, *, factor: CholeskyFactor | None = None) -> torch.Tensor:
        """The estimate of :math:`\\log\\det Q`, 0-d, differentiable w.r.t. ``Q``'s stored values (``factor`` is
        ignored: SLQ does not factorise)."""
        return slq_logdet(
            Q, num_probes=self.num_probes, lanczos_steps=self.lanczos_steps, generator=self.generator,
            cg_rtol=self.cg_rtol,
        )  # fmt: skip

"""``cholesky(Q)``: a sparse Cholesky factor of an SPD ``Q``, with the symbolic analysis cached per pattern."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .._validation import check_dense, describe
from ..pattern import SparsePattern, note_symbolic_analysis
from ._structure import check_symmetric_input, lower_structure, lower_values
from .backends import Numeric, get_backend
from .takahashi import SupernodalStructure, takahashi

__all__ = ["CholeskyFactor", "cholesky", "check_factor"]


class CholeskyFactor:
    r"""Sparse Cholesky factor of an SPD matrix: :math:`Q_{pp} = L L^\top` with ``p = perm`` (``Q[perm][:, perm]``).

    Made by :func:`cholesky`. The numeric factor lives with the backend (CPU, float64); results come back in ``Q``'s
    dtype and device.

    Attributes
    ----------
    n : int
    backend, ordering : str
        What factorised ``Q`` and with which fill-reducing ordering.
    perm : torch.Tensor
        int64 ``(n,)``: the permutation.
    """

    def __init__(self, numeric: Numeric, n: int, dtype: torch.dtype, device: torch.device, backend: str, ordering: str):
        self.numeric, self.n, self.dtype, self.device = numeric, n, dtype, device
        self.backend, self.ordering = backend, ordering
        self.perm = torch.from_numpy(np.asarray(numeric.perm, dtype=np.int64)).to(device)
        self._L: torch.Tensor | None = None
        self._pattern_cache: tuple[SparsePattern, tuple] | None = None  # Q's pattern and this factor's analysis key
        self._inverse: tuple[SupernodalStructure, np.ndarray] | None = None

    def selected_inverse_blocks(self) -> tuple[SupernodalStructure, np.ndarray]:
        """The selected inverse in supernodal block form (permuted ordering), computed once per factor; its
        pattern-only structure is cached with the symbolic analysis."""
        if self._inverse is None:
            L = sp.csc_matrix(self.numeric.L())
            L.sort_indices()
            structure = self.pattern_derived("selected_inverse", lambda: SupernodalStructure(L))
            if structure.nnz != L.nnz:  # not the structure of this factor's L: build this one's, uncached
                structure = SupernodalStructure(L)
            self._inverse = (structure, takahashi(structure, L.data))
        return self._inverse

    def pattern_derived(self, kind: str, build):
        """Data that depends only on ``Q``'s pattern and this factor's analysis, kept with ``Q``'s pattern
        (:meth:`sparseprec.pattern.SparsePattern.derived`); built uncached for a factor made without a pattern."""
        if self._pattern_cache is None:
            return build()
        pattern, key = self._pattern_cache
        return pattern.derived((kind,) + key, build)

    def __repr__(self) -> str:
        return f"CholeskyFactor(n={self.n}, backend={self.backend!r}, ordering={self.ordering!r}, dtype={self.dtype})"

    def logdet(self) -> torch.Tensor:
        r""":math:`\log\det Q = 2 \sum_i \log L_{ii}` as a 0-d tensor (no gradient; see ``sparse_logdet``)."""
        return torch.tensor(self.numeric.logdet, dtype=self.dtype, device=self.device)

    def _rhs(self, B: object) -> torch.Tensor:
        B = check_dense(B, "B", dims=(1, 2))
        if B.shape[0] != self.n:
            raise ValueError(f"B must have {self.n} rows (the size of Q), got shape {tuple(B.shape)}")
        if B.dtype != self.dtype or B.device != self.device:
            raise ValueError(
                f"B must have Q's dtype {self.dtype} and device {self.device}, got {B.dtype} and {B.device}"
            )
        return B

    def _apply(self, kind: str, B: torch.Tensor) -> torch.Tensor:
        """One of the factor's linear maps, differentiable w.r.t. ``B`` when it requires grad (see ``_FactorMap``)."""
        B = self._rhs(B)
        if torch.is_grad_enabled() and B.requires_grad:
            return _FactorMap.apply(B, self, kind)
        return self._raw(kind, B)

    def _raw(self, kind: str, B: torch.Tensor) -> torch.Tensor:
        return self._solve(B) if kind == "solve" else self._triangular(B, transpose=kind == "Lt")

    def solve(self, B: torch.Tensor) -> torch.Tensor:
        r""":math:`Q^{-1} B` for dense ``B`` of shape ``(n,)`` or ``(n, k)`` (original ordering).

        Differentiable w.r.t. ``B`` (any order: the backward is :math:`Q^{-1} G`); the factor is a constant, so there
        is no gradient w.r.t. ``Q`` — use :func:`sparseprec.cholesky.sparse_cholesky_solve` for that."""
        return self._apply("solve", B)

    def _solve(self, B: torch.Tensor) -> torch.Tensor:
        b = B.detach().to(device="cpu", dtype=torch.float64).numpy()
        x = self.numeric.solve(b)
        return torch.from_numpy(np.ascontiguousarray(x)).to(dtype=self.dtype, device=self.device)

    @property
    def L(self) -> torch.Tensor:
        """The lower-triangular factor as a torch CSR tensor (permuted ordering; diagonal stored)."""
        if self._L is None:
            L = sp.csr_matrix(self.numeric.L())
            L.sort_indices()
            self._L = torch.sparse_csr_tensor(
                torch.from_numpy(L.indptr.astype(np.int64)),
                torch.from_numpy(L.indices.astype(np.int64)),
                torch.from_numpy(L.data),
                (self.n, self.n),
            ).to(dtype=self.dtype, device=self.device)
        return self._L

    def diagonal(self) -> torch.Tensor:
        r"""The pivots :math:`L_{ii}` (permuted ordering: pivot ``i`` belongs to node ``perm[i]``), ``(n,)``; no
        gradient. :math:`\log\det Q = 2 \sum_i \log L_{ii}`."""
        L = self.L
        return L.values()[L.crow_indices()[1:] - 1]  # the diagonal is the last stored entry of each row of lower L

    def _triangular(self, B: torch.Tensor, transpose: bool) -> torch.Tensor:
        B2 = B.detach().reshape(self.n, B.shape[1] if B.dim() == 2 else 1)
        X = torch.triangular_solve(B2, self.L, upper=False, transpose=transpose).solution
        return X.reshape(B.shape)

    def solve_L(self, B: torch.Tensor) -> torch.Tensor:
        r""":math:`L^{-1} B` (``B`` in the permuted ordering: ``B = C[perm]`` for a ``C`` in the original one);
        differentiable w.r.t. ``B`` (backward :math:`L^{-\top} G`), not w.r.t. ``Q``."""
        return self._apply("L", B)

    def solve_Lt(self, B: torch.Tensor) -> torch.Tensor:
        r""":math:`L^{-\top} B` (result in the permuted ordering: scatter it back with ``X[perm] = result``);
        differentiable w.r.t. ``B`` (backward :math:`L^{-1} G`), not w.r.t. ``Q``."""
        return self._apply("Lt", B)


class _FactorMap(torch.autograd.Function):
    """``B -> M B`` for one of a factor's fixed linear maps ``M`` (``Q⁻¹``, ``L⁻¹``, ``L⁻ᵀ``); the backward is
    ``Mᵀ G`` through this same function, so the map is differentiable any number of times w.r.t. ``B``."""

    _ADJOINT = {"solve": "solve", "L": "Lt", "Lt": "L"}

    @staticmethod
    def forward(ctx, B: torch.Tensor, factor: CholeskyFactor, kind: str) -> torch.Tensor:
        ctx.factor, ctx.kind = factor, kind
        return factor._raw(kind, B)

    @staticmethod
    def backward(ctx, G: torch.Tensor):
        return ctx.factor._apply(_FactorMap._ADJOINT[ctx.kind], G.contiguous()), None, None


def check_factor(factor: object, name: str, usage: str) -> CholeskyFactor:
    """Raise ``TypeError`` unless ``factor`` is a :class:`CholeskyFactor`; ``usage`` shows the call to make instead
    (e.g. ``"selected_inverse(cholesky(Q))"``)."""
    if not isinstance(factor, CholeskyFactor):
        got = f"a {describe(factor)}" if isinstance(factor, torch.Tensor) else type(factor).__name__
        raise TypeError(
            f"{name} must be a CholeskyFactor made by sparseprec.cholesky.cholesky (e.g. {usage} for a sparse SPD "
            f"Q), got {got}"
        )
    return factor


def cholesky(
    Q: torch.Tensor, backend: str = "auto", ordering: str | None = None, triangle: str = "full"
) -> CholeskyFactor:
    r"""Sparse Cholesky factorisation of a symmetric positive definite ``Q``: :math:`Q_{pp} = L L^\top`.

    The symbolic analysis (fill-reducing ordering; for CHOLMOD also the elimination tree and column counts) depends
    only on ``Q``'s sparsity pattern and is cached with it: a loop that changes only the values of a fixed pattern
    refactorises numerically (``sparseprec.cache_info().symbolic_analyses`` counts analyses). Tensors on another
    device are factorised on the CPU in float64; results return to ``Q``'s device and dtype.

    Parameters
    ----------
    Q : torch.Tensor
        Sparse COO or CSR ``(n, n)``, float32 or float64, positive definite, with every diagonal entry stored.
    backend : {"auto", "cholmod", "scipy"}
        ``"cholmod"`` (scikit-sparse, the ``cholmod`` extra), ``"scipy"`` (SuperLU in symmetric mode without
        pivoting; no extra install), or ``"auto"``: CHOLMOD where installed.
    ordering : str, optional
        Fill-reducing ordering: CHOLMOD ``"amd"`` (default), ``"metis"``, ``"nesdis"``, ``"natural"``, ``"best"``;
        SciPy ``"mmd"`` (minimum degree, default), ``"rcm"``, ``"natural"``.
    triangle : {"full", "lower", "upper"}
        What ``Q`` stores: both triangles (default; checked for symmetry, values to :math:`1000\, \varepsilon \max\lvert
        Q \rvert`), or only its lower or upper triangle (each stored off-diagonal value then stands for both ``Q_ij``
        and ``Q_ji``).

    Returns
    -------
    CholeskyFactor

    Raises
    ------
    sparseprec.NotPositiveDefiniteError
        ``Q`` is indefinite or numerically singular (see Notes), from either backend and every path (a first
        factorisation or a refactorisation reusing a cached analysis); ``.column`` is the column of ``Q`` in its
        original ordering (the elimination step mapped back through ``perm``) where the factorisation broke down.
    ValueError
        Non-square, batched or empty ``Q``; a non-symmetric ``Q`` (``triangle="full"``) or entries on the wrong side
        (``"lower"``/``"upper"``); a missing diagonal entry; NaN/Inf values; an unknown ordering.
    TypeError
        Dense or non-floating ``Q``.

    Notes
    -----
    Positive definiteness is decided on the pivots :math:`d_j` (:math:`L_{jj}^2`, or :math:`D_{jj}` of an
    :math:`L D L^\top`), in elimination order. The first pivot with

    .. math:: d_j \le (c\, n\, \varepsilon_{64} + \varepsilon)\, S_j, \qquad c = 10,

    is singular, where :math:`\varepsilon_{64}` is float64's machine epsilon (the factorisation runs in float64),
    :math:`\varepsilon` that of ``Q``'s dtype, and :math:`S_j` the largest diagonal entry of ``Q`` over column
    :math:`j`'s subtree of the elimination tree (the rows and columns :math:`d_j` is computed from; at most
    :math:`\max_i Q_{ii}`). The first term is the rounding of the factorisation: the computed factor is exact for
    some :math:`Q + \Delta Q` with :math:`|\Delta Q_{ik}| \lesssim n \varepsilon_{64} \sqrt{Q_{ii} Q_{kk}}`, so a
    singular ``Q`` leaves a pivot of that order instead of zero (measured below :math:`2 n \varepsilon_{64} S_j` on
    singular graph Laplacians, grids, RW1/RW2 and random weighted graphs, both backends, several orderings; :math:`c`
    is the margin). The second is the rounding of ``Q``'s values to its dtype, which moves a pivot by about
    :math:`\varepsilon S_j`: a float32 ``Q`` singular to float32 precision is refused. Every refused ``Q`` is
    numerically singular, as :math:`\lambda_{\min}(Q) \le d_j` and :math:`S_j \le \lambda_{\max}(Q)` give
    :math:`\kappa_2(Q) \ge 1 / (c n \varepsilon_{64} + \varepsilon)`; conversely a ``Q`` with a smaller condition
    number is never refused. For a GMRF precision :math:`d_j = 1 / \mathrm{Var}(x_j \mid \text{later } x)`, so a
    refusal needs a marginal variance :math:`\mathrm{Var}(x_i) \ge 1 / ((c n \varepsilon_{64} + \varepsilon) S_j)`.
    Scaling by :math:`S_j` instead of :math:`Q_{jj}` matters: rounding noise reaches the last pivot of a component from
    all of its nodes.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.cholesky import cholesky
    >>> Q = torch.tensor([[4.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 4.0]], dtype=torch.float64)
    >>> factor = cholesky(Q.to_sparse_csr())
    >>> factor.logdet(), torch.logdet(Q)
    (tensor(4.0254, dtype=torch.float64), tensor(4.0254, dtype=torch.float64))
    >>> factor.solve(torch.ones(3, dtype=torch.float64))
    tensor([0.3571, 0.4286, 0.3571], dtype=torch.float64)
    """
    Q = check_symmetric_input(Q, triangle)
    chosen = get_backend(backend)
    ordering = chosen.default_ordering if ordering is None else ordering
    if ordering not in chosen.orderings:
        raise ValueError(f"ordering must be one of {chosen.orderings} for backend {chosen.name!r}, got {ordering!r}")
    pattern, structure = lower_structure(Q, triangle)
    values = lower_values(Q, pattern, structure)
    key = (chosen.name, ordering, triangle)

    def analyze():
        note_symbolic_analysis()
        return chosen.analyze(structure, ordering)

    symbolic = pattern.derived(("cholesky_symbolic",) + key, analyze)
    numeric = chosen.factorize(symbolic, structure, values, float(torch.finfo(Q.dtype).eps))
    factor = CholeskyFactor(numeric, Q.shape[0], Q.dtype, Q.device, chosen.name, ordering)
    factor._pattern_cache = (pattern, key)
    return factor

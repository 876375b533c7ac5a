r"""The one internal object of :class:`~sparseprec.distributions.SparseMultivariateNormal`: its whitener.

Every parameterisation has a sparse triangular *root* :math:`R = \tilde L D^{1/2}` (:math:`\tilde L = L` with its
stored diagonal, or :math:`I + L` in the LDLᵀ forms; :math:`D = \mathrm{diag}(d)`, :math:`D = I` without ``diagonal``)
and one sparse product :math:`M = R R^\top = \tilde L D \tilde L^\top`, which is :math:`\Sigma` (scale forms) or
:math:`Q = \Sigma^{-1}` (precision forms). A whitener is the pair of inverse linear maps

.. math::

    \text{whiten}: r \mapsto W r, \qquad \text{color}: z \mapsto W^{-1} z, \qquad W^\top W = \Sigma^{-1},

so :math:`z = W r \sim N(0, I)` when :math:`r \sim N(0, \Sigma)` and :math:`W^{-1} z \sim N(0, \Sigma)` when
:math:`z \sim N(0, I)`:

=================  =======================================  ========================================  ===============
whitener           whiten :math:`W r`                       color :math:`W^{-1} z`                     sparse matrix
=================  =======================================  ========================================  ===============
``ScaleWhitener``  :math:`D^{-1/2} \tilde L^{-1} r` (solve)  :math:`\tilde L D^{1/2} z` (product)       :math:`\Sigma`
``PrecisionW...``  :math:`D^{1/2} \tilde L^\top r` (product) :math:`\tilde L^{-\top} D^{-1/2} z` (solve) :math:`Q`
=================  =======================================  ========================================  ===============

with :math:`\tfrac12 \log\det\Sigma = \pm(\sum_i \log|\tilde L_{ii}| + \tfrac12 \sum_i \log d_i)` (``+`` scale,
``−`` precision). The distribution chooses its whitener once, in ``__init__``, and writes ``log_prob``, ``rsample``,
``entropy``, the moments and the KL divergences once over it; what differs between the forms lives here.

Shapes: a whitener's own batch shape is the broadcast of the factor's (``()`` or ``(b,)``) and ``d``'s; the maps take
any ``(..., [b,] n)`` operand (its leading dimensions become columns of one sparse kernel call, see
:class:`~sparseprec.distributions._factor.TriangularFactor`) broadcast against ``d``.
"""

from __future__ import annotations

import itertools
import math
import warnings

import torch
from torch.distributions import constraints
from torch.distributions.transforms import Transform

from .._validation import broadcast_shapes
from ..cholesky import diag_inverse
from ..ops import sparse_coo_tensor, sparse_csr_tensor
from ..pattern import crow_from_rows
from ._factor import TriangularFactor

__all__ = ["Whitener", "ScaleWhitener", "PrecisionWhitener", "whitener_for", "ColoringTransform"]


class Whitener:
    r"""The root :math:`R = \tilde L D^{1/2}` of :math:`M = \tilde L D \tilde L^\top` and the maps built on it.

    Subclasses say which of :math:`\Sigma`, :math:`Q` the product :math:`M` is (see the module).

    Parameters
    ----------
    factor : TriangularFactor
        :math:`\tilde L` (``unit=True`` in the LDLᵀ forms).
    diagonal : torch.Tensor or None
        ``d > 0``, shape ``(..., n)``; ``None`` for :math:`D = I`.
    """

    #: which of ``"scale"``, ``"precision"`` the factor parameterises (the argument is ``f"{kind}_tril"``)
    kind: str
    #: :math:`\Sigma` (``sparse_covariance``) or :math:`Q` (``sparse_precision``) is the sparse product :math:`M`
    sparse_covariance: bool = False
    sparse_precision: bool = False

    def __init__(self, factor: TriangularFactor, diagonal: torch.Tensor | None):
        self.factor = factor
        self.diagonal = diagonal
        d_batch = () if diagonal is None else diagonal.shape[:-1]
        self.batch_shape = broadcast_shapes(d_batch, factor.batch_shape)

    @property
    def n(self) -> int:
        return self.factor.n

    @property
    def parameterization(self) -> str:
        """``"scale_tril"``, ``"precision_tril"``, ``"scale_ldl"`` or ``"precision_ldl"``."""
        return f"{self.kind}_{'tril' if self.diagonal is None else 'ldl'}"

    # ---- the maps: to be given by the subclasses --------------------------------------------------------------------
    def whiten(self, r: torch.Tensor) -> torch.Tensor:
        r""":math:`W r`, ``r`` of shape ``(..., [b,] n)``: standard normal when ``r`` is :math:`N(0, \Sigma)`."""
        raise NotImplementedError

    def color(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`W^{-1} z`, ``z`` of shape ``(..., [b,] n)``: :math:`N(0, \Sigma)` when ``z`` is standard normal."""
        raise NotImplementedError

    def half_logdet(self) -> torch.Tensor:
        r""":math:`\tfrac12 \log\det\Sigma`, shape ``batch_shape``."""
        raise NotImplementedError

    def variance(self) -> torch.Tensor:
        r""":math:`\mathrm{diag}(\Sigma)`, shape ``batch_shape + (n,)``."""
        raise NotImplementedError

    def precision_diagonal(self) -> torch.Tensor:
        r""":math:`\mathrm{diag}(Q)`, shape ``batch_shape + (n,)``, where it is exact and differentiable."""
        raise NotImplementedError(f"diag(Q) of a {self.kind} form has no sparse formula")

    def precision_matrix(self, batch_shape: torch.Size) -> torch.Tensor:
        """:math:`Q`: sparse where it is (``sparse_precision``), else dense ``batch_shape + (n, n)``."""
        raise NotImplementedError

    def covariance_matrix(self, batch_shape: torch.Size) -> torch.Tensor:
        r"""The dense :math:`\Sigma`, ``batch_shape + (n, n)``."""
        raise NotImplementedError

    def covariance_sparse(self) -> torch.Tensor:
        r"""The sparse :math:`\Sigma` (scale forms only)."""
        raise ValueError("covariance_sparse() needs a scale form: the covariance of a precision form is dense")

    # ---- the root R = L̃ D^{1/2} -------------------------------------------------------------------------------------
    def _root(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\tilde L D^{1/2} z`."""
        if self.diagonal is not None:
            z = z * self.diagonal.sqrt()
        return self.factor.matmul(z) if self.n else z

    def _root_inverse(self, r: torch.Tensor) -> torch.Tensor:
        r""":math:`D^{-1/2} \tilde L^{-1} r`."""
        z = self.factor.solve(r) if self.n else r
        return z if self.diagonal is None else z * self.diagonal.rsqrt()

    def _root_transpose(self, r: torch.Tensor) -> torch.Tensor:
        r""":math:`D^{1/2} \tilde L^\top r`."""
        z = self.factor.matmul(r, transpose=True) if self.n else r
        return z if self.diagonal is None else z * self.diagonal.sqrt()

    def _root_inverse_transpose(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\tilde L^{-\top} D^{-1/2} z`."""
        if self.diagonal is not None:
            z = z * self.diagonal.rsqrt()
        return self.factor.solve(z, transpose=True) if self.n else z

    def _half_logdet_product(self) -> torch.Tensor:
        r""":math:`\tfrac12 \log\det M = \sum_i \log|\tilde L_{ii}| + \tfrac12 \sum_i \log d_i`, ``batch_shape``."""
        half = self.factor.log_abs_diagonal().sum(-1)
        if self.diagonal is not None:
            half = half + 0.5 * self.diagonal.log().sum(-1)
        return half.expand(self.batch_shape)

    def _d(self, batch_shape: torch.Size | None = None, detach: bool = False) -> torch.Tensor:
        """``d`` broadcast to ``batch_shape + (n,)`` (default: the whitener's; ones without ``diagonal``)."""
        shape = (self.batch_shape if batch_shape is None else batch_shape) + (self.n,)
        if self.diagonal is None:
            return self.factor.values.new_ones(self.n).expand(shape)
        return (self.diagonal.detach() if detach else self.diagonal).expand(shape)

    # ---- the product M = L̃ D L̃ᵀ -------------------------------------------------------------------------------------
    def _product_diagonal(self) -> torch.Tensor:
        r""":math:`\mathrm{diag}(M)_i = \sum_j \tilde L_{ij}^2 d_j`, exact, differentiable, ``batch_shape + (n,)``."""
        if self.n == 0:
            return self.factor.values.new_zeros(self.batch_shape + (0,))
        return self.factor.squared_matmul(self._d())

    def _product_entries(self, batch_shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """``(keys, values)`` of :math:`M` on its pattern (:meth:`TriangularFactor.product`): ``values`` is ``(m, P)``,
        its columns running over ``batch_shape`` (row-major; it must broadcast the whitener's batch shape)."""
        return self.factor.product(self._d(batch_shape))

    def _inverse_product_diagonal(self) -> torch.Tensor:
        r""":math:`\mathrm{diag}(M^{-1})` by the selected inverse of :math:`M` (CPU, float64; no gradient)."""
        shape = self.batch_shape + (self.n,)
        if self.n == 0:
            return self.factor.values.new_zeros(shape)
        M = self._product_sparse(detach=True)
        if not self.batch_shape:
            return diag_inverse(M)
        out = []
        for index in itertools.product(*(range(size) for size in self.batch_shape)):
            Mi = M
            for i in index:
                Mi = Mi.select(0, i)
            out.append(diag_inverse(Mi.coalesce()))
        return torch.stack(out).reshape(shape)

    def _product_sparse(self, detach: bool = False) -> torch.Tensor:
        r"""Sparse :math:`M`: the factor's layout if ``batch_shape`` is ``()``, else COO ``(*batch_shape, n, n)`` (any
        number of batch dimensions)."""
        factor, batch, n = self.factor, self.batch_shape, self.n
        if n == 0:
            return self._empty_sparse()
        keys, values = factor.product(self._d(detach=detach))  # values: (m, P)
        if detach:
            values = values.detach()
        N = factor.N
        rows, cols = keys // N, keys % N
        if not batch:
            if factor.tensor.layout == torch.sparse_csr:
                return sparse_csr_tensor(crow_from_rows(rows, n), cols, values[:, 0], (n, n))
            return sparse_coo_tensor(torch.stack([rows, cols]), values[:, 0], (n, n), is_coalesced=True)
        # columns of `values` run over the batch dims before the factor's own (row-major), see TriangularFactor
        P, m = values.shape[1], keys.numel()
        outer = batch[: len(batch) - len(factor.batch_shape)]
        parts = []
        if outer:
            lead = torch.arange(P, device=keys.device).repeat_interleave(m)
            for i, size in enumerate(outer):
                parts.append(lead // math.prod(outer[i + 1 :]) % size)
        if factor.batch is not None:
            parts.append((rows // n).repeat(P))
        parts += [(rows % n).repeat(P), (cols % n).repeat(P)]
        flat = values.transpose(0, 1).reshape(-1)
        if len(batch) > 1:  # beyond the ops' (b, n, m): torch's constructor (its backward is sparse, pattern-matched)
            return torch.sparse_coo_tensor(torch.stack(parts), flat, batch + (n, n), is_coalesced=True)
        return sparse_coo_tensor(torch.stack(parts), flat, batch + (n, n), is_coalesced=True)

    def _empty_sparse(self) -> torch.Tensor:
        """The ``n = 0`` case of :meth:`_product_sparse`: an empty sparse ``(*batch, 0, 0)`` matrix of that kind."""
        values = self.factor.values.new_zeros(0)
        if not self.batch_shape and self.factor.tensor.layout == torch.sparse_csr:
            index = torch.zeros(1, dtype=torch.int64, device=values.device)
            return torch.sparse_csr_tensor(index, index[:0], values, (0, 0))
        index = torch.zeros(len(self.batch_shape) + 2, 0, dtype=torch.int64, device=values.device)
        return torch.sparse_coo_tensor(index, values, self.batch_shape + (0, 0), is_coalesced=True)

    def _product_dense(self) -> torch.Tensor:
        r"""Dense :math:`M = \tilde L D \tilde L^\top`, ``batch_shape + (n, n)`` (differentiable; small ``n``)."""
        L = self.factor.dense()
        return (L * self._d().unsqueeze(-2)) @ L.transpose(-1, -2)

    def _inverse_product_dense(self) -> torch.Tensor:
        r"""Dense :math:`M^{-1} = \tilde L^{-\top} D^{-1} \tilde L^{-1}` (differentiable; small ``n``)."""
        inverse = self.factor.dense_inverse()
        return inverse.transpose(-1, -2) @ (inverse / self._d().unsqueeze(-1))

    def _dense(self, build, batch_shape: torch.Size) -> torch.Tensor:
        """A dense ``batch_shape + (n, n)`` matrix from ``build()`` (not called when ``n = 0``)."""
        n = self.n
        if n == 0:
            return self.factor.values.new_zeros(batch_shape + (0, 0))
        return build().expand(batch_shape + (n, n))


class ScaleWhitener(Whitener):
    r""":math:`\Sigma = \tilde L D \tilde L^\top`: whiten by one triangular solve, color by one sparse product.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions._factor import TriangularFactor
    >>> L = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    >>> w = ScaleWhitener(TriangularFactor(L.to_sparse_csr(), "scale_tril", unit=False), None)
    >>> r = torch.tensor([1.0, 2.0], dtype=torch.float64)
    >>> torch.allclose(w.whiten(r), torch.linalg.solve(L, r)), torch.allclose(w.color(w.whiten(r)), r)
    (True, True)
    """

    kind = "scale"
    sparse_covariance = True

    def whiten(self, r: torch.Tensor) -> torch.Tensor:
        return self._root_inverse(r)

    def color(self, z: torch.Tensor) -> torch.Tensor:
        return self._root(z)

    def half_logdet(self) -> torch.Tensor:
        return self._half_logdet_product()

    def variance(self) -> torch.Tensor:
        return self._product_diagonal()

    def covariance_entries(self, batch_shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        r"""``(keys, values)`` of the sparse :math:`\Sigma` for ``batch_shape`` (see :meth:`_product_entries`)."""
        return self._product_entries(batch_shape)

    def covariance_sparse(self) -> torch.Tensor:
        return self._product_sparse()

    def precision_matrix(self, batch_shape: torch.Size) -> torch.Tensor:
        return self._dense(self._inverse_product_dense, batch_shape)

    def covariance_matrix(self, batch_shape: torch.Size) -> torch.Tensor:
        return self._dense(self._product_dense, batch_shape)


class PrecisionWhitener(Whitener):
    r""":math:`Q = \tilde L D \tilde L^\top`: whiten by one sparse product, color by one triangular solve.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions._factor import TriangularFactor
    >>> L = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    >>> w = PrecisionWhitener(TriangularFactor(L.to_sparse_csr(), "precision_tril", unit=False), None)
    >>> r = torch.tensor([1.0, 2.0], dtype=torch.float64)
    >>> torch.allclose(w.whiten(r), L.T @ r), torch.allclose(w.color(w.whiten(r)), r)
    (True, True)
    """

    kind = "precision"
    sparse_precision = True

    def whiten(self, r: torch.Tensor) -> torch.Tensor:
        return self._root_transpose(r)

    def color(self, z: torch.Tensor) -> torch.Tensor:
        return self._root_inverse_transpose(z)

    def half_logdet(self) -> torch.Tensor:
        return -self._half_logdet_product()

    def variance(self) -> torch.Tensor:
        r""":math:`(Q^{-1})_{ii}` by the selected inverse of :math:`Q` (:func:`sparseprec.cholesky.diag_inverse`: a
        sparse Cholesky factorisation in float64 on the CPU), detached: it warns when a parameter requires grad."""
        parameters = [self.factor.values] + ([] if self.diagonal is None else [self.diagonal])
        if torch.is_grad_enabled() and any(t.requires_grad for t in parameters):
            warnings.warn(
                "SparseMultivariateNormal.variance of a precision form carries no gradient w.r.t. the factor or "
                "diagonal (it would need the dense inverse); the result is detached",
                stacklevel=3,  # the user's line: warn <- variance <- the distribution's property
            )
        return self._inverse_product_diagonal()

    def precision_diagonal(self) -> torch.Tensor:
        return self._product_diagonal()

    def precision_entries(self, batch_shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """``(keys, values)`` of the sparse :math:`Q` for ``batch_shape`` (see :meth:`_product_entries`)."""
        return self._product_entries(batch_shape)

    def precision_matrix(self, batch_shape: torch.Size) -> torch.Tensor:
        return self._product_sparse()

    def covariance_matrix(self, batch_shape: torch.Size) -> torch.Tensor:
        return self._dense(self._inverse_product_dense, batch_shape)


def whitener_for(
    *,
    scale_tril: torch.Tensor | None = None,
    precision_tril: torch.Tensor | None = None,
    diagonal: torch.Tensor | None = None,
) -> Whitener:
    """The whitener of the given parameterisation (exactly one of ``scale_tril``, ``precision_tril``; the factor's
    pattern is checked to be lower triangular, strictly so when ``diagonal`` is given)."""
    if (scale_tril is None) == (precision_tril is None):
        raise ValueError("give exactly one of scale_tril and precision_tril")
    cls, tril = (ScaleWhitener, scale_tril) if scale_tril is not None else (PrecisionWhitener, precision_tril)
    return cls(TriangularFactor(tril, f"{cls.kind}_tril", unit=diagonal is not None), diagonal)


class ColoringTransform(Transform):
    r"""The bijection :math:`\varepsilon \mapsto \mu + W^{-1} \varepsilon` carrying :math:`N(0, I)` to
    :math:`N(\mu, \Sigma)`: ``color`` forward, ``whiten`` inverse, :math:`\log|\det J| = \tfrac12 \log\det\Sigma`.

    Built by :meth:`SparseMultivariateNormal.coloring_transform`; ``loc`` is ``(..., n)``, the whitener's batch is
    broadcast against the operand's.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, loc: torch.Tensor, whitener: Whitener, cache_size: int = 0):
        super().__init__(cache_size=cache_size)
        self.loc, self.whitener = loc, whitener

    def with_cache(self, cache_size: int = 1) -> ColoringTransform:
        return self if self._cache_size == cache_size else ColoringTransform(self.loc, self.whitener, cache_size)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return self.loc + self.whitener.color(x)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.whitener.whiten(y - self.loc)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        half = self.whitener.half_logdet()
        return half.expand(broadcast_shapes(x.shape[:-1], half.shape))

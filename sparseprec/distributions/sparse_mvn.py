r"""``SparseMultivariateNormal``: a multivariate normal given by a sparse Cholesky or :math:`LDL^\top` factor."""

from __future__ import annotations

import math
import warnings

import torch
from torch.distributions import Distribution, constraints
from torch.distributions.transforms import Transform
from torch.distributions.utils import _standard_normal

from .._validation import broadcast_shapes, check_tensor
from ._checks import check_like as _check_like
from ._checks import check_vector as _check_vector
from ._copy import SparseDeepCopy
from ._factor import TriangularFactor
from ._whitener import ColoringTransform, PrecisionWhitener, ScaleWhitener, whitener_for
from .constraints import sparse_lower_cholesky, sparse_strictly_lower

__all__ = ["SparseMultivariateNormal", "DENSE_WARNING_SIZE"]

#: ``covariance_matrix`` (and a scale form's ``precision_matrix``) warn above this event size: they are dense n x n.
DENSE_WARNING_SIZE = 4096

_LOG_2PI = math.log(2 * math.pi)


def _standard_normal_matrix(rows: int, columns: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    r"""A contiguous ``(rows, columns)`` matrix of independent :math:`N(0, 1)` draws from torch's generator.

    float64 on the CPU by the Box–Muller transform of torch's uniforms: with :math:`u, v \sim U[0, 1)`,
    :math:`\sqrt{-2 \log(1 - u)}\,(\cos 2\pi v, \sin 2\pi v)` are two independent standard normals (exactly, for
    exact uniforms; :math:`1 - u \in (0, 1]` keeps the logarithm finite), in whole-tensor vectorised operations.
    torch's float64 ``normal_`` on the CPU transforms its uniforms in a scalar loop and is 1.5-2x slower: in a
    16-sample ``rsample`` it cost about as much as the triangular solve. Elsewhere (float32, CUDA) torch's ``normal_``.
    """
    if dtype != torch.float64 or torch.device(device).type != "cpu":
        return _standard_normal((rows, columns), dtype=dtype, device=device)
    numel = rows * columns
    half = (numel + 1) // 2
    u = torch.empty(2, half, dtype=dtype, device=device).uniform_()
    radius = u[0].neg_().log1p_().mul_(-2.0).sqrt_()
    angle = u[1].mul_(2 * math.pi)
    out = torch.empty(2, half, dtype=dtype, device=device)
    torch.cos(angle, out=out[0]).mul_(radius)
    torch.sin(angle, out=out[1]).mul_(radius)
    return out.reshape(-1)[:numel].reshape(rows, columns)


class SparseMultivariateNormal(SparseDeepCopy, Distribution):
    r"""Multivariate normal whose covariance or precision is given by a sparse triangular factor.

    Four parameterisations, with ``L`` sparse lower triangular (COO or CSR, ``(n, n)`` or ``(b, n, n)``):

    ========================================  ======================================================================
    arguments                                 distribution
    ========================================  ======================================================================
    ``scale_tril=L``                          :math:`\Sigma = L L^\top` (``L`` stores its positive diagonal)
    ``precision_tril=L``                      :math:`Q = \Sigma^{-1} = L L^\top`
    ``scale_tril=L, diagonal=d``              :math:`\Sigma = (I + L) D (I + L)^\top`, :math:`D = \mathrm{diag}(d)`
    ``precision_tril=L, diagonal=d``          :math:`Q = (I + L) D (I + L)^\top`
    ========================================  ======================================================================

    In the :math:`LDL^\top` forms (``diagonal`` given) ``L`` stores only entries strictly below the diagonal; the unit
    diagonal is implied (write :math:`\tilde L = I + L`; in the Cholesky forms :math:`\tilde L = L`, :math:`D = I`).

    Sampling (reparameterised, :math:`\varepsilon \sim N(0, I)`):
    :math:`x = \mu + \tilde L D^{1/2} \varepsilon` (scale forms, one sparse product) or
    :math:`x = \mu + \tilde L^{-\top} D^{-1/2} \varepsilon` (precision forms, one sparse triangular solve).

    Log-density, exact: :math:`\log p(x) = -\tfrac12 \lVert z \rVert^2 - \tfrac12 \log\det\Sigma - \tfrac n2 \log 2\pi`
    with :math:`\lVert z \rVert^2 = (x-\mu)^\top \Sigma^{-1} (x-\mu)` computed as
    :math:`\lVert D^{-1/2} \tilde L^{-1}(x-\mu) \rVert^2` (scale forms, one triangular solve) or
    :math:`\lVert D^{1/2} \tilde L^\top (x-\mu) \rVert^2` (precision forms, one sparse product), and
    :math:`\log\det\Sigma = \pm(2 \sum_i \log|\tilde L_{ii}| + \sum_i \log d_i)` (``+`` scale, ``−`` precision).
    Gradients flow to ``loc``, ``value``, ``diagonal`` and ``L``'s stored values; the gradient w.r.t. ``L`` is a
    sparse tensor with ``L``'s layout and pattern (:mod:`sparseprec.ops`), nothing ``n x n`` is formed.

    Parameters
    ----------
    loc : torch.Tensor
        Mean, shape ``(..., n)``: any batch shape, broadcast against the factor's and ``diagonal``'s.
    scale_tril, precision_tril : torch.Tensor
        The sparse factor ``L`` (exactly one of them). A batched ``(b, n, n)`` factor supplies the *last* batch
        dimension (it broadcasts with the others like a tensor of batch shape ``(b,)``).
    diagonal : torch.Tensor, optional
        Positive ``d``, shape ``(..., n)`` (any batch shape): selects the :math:`LDL^\top` forms.
    validate_args : bool, optional
        As in :class:`torch.distributions.Distribution`: check the constraints (positive stored diagonal of ``L``,
        positive ``d``, finite values) and the ``value`` passed to :meth:`log_prob`. The triangular pattern is always
        checked (once per pattern).

    Raises
    ------
    TypeError
        A factor that is not sparse COO/CSR, tensors of different dtypes, a non-floating dtype.
    ValueError
        None or both of ``scale_tril``/``precision_tril``; entries above the diagonal; a missing diagonal entry
        (Cholesky forms) or a stored diagonal entry (:math:`LDL^\top` forms); mismatched ``n``; shapes that do not
        broadcast; devices that differ; and, with validation, constraint violations.

    Notes
    -----
    ``variance``: scale forms use the row sums :math:`\sum_j \tilde L_{ij}^2 d_j` (exact, differentiable); precision
    forms need :math:`\mathrm{diag}(Q^{-1})`, which :mod:`sparseprec.cholesky` computes exactly by selected inversion
    of :math:`Q` (CPU, float64) — without a gradient w.r.t. the factor, which would need the dense inverse.
    ``precision_matrix`` is sparse in the precision forms; ``covariance_matrix`` is dense (torch's convention; it
    warns above :data:`DENSE_WARNING_SIZE`), and :meth:`covariance_sparse` gives a scale form's sparse covariance.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions import SparseMultivariateNormal
    >>> L = torch.tensor([[2.0, 0.0, 0.0], [-1.0, 2.0, 0.0], [0.0, -1.0, 2.0]], dtype=torch.float64)
    >>> d = SparseMultivariateNormal(torch.zeros(3, dtype=torch.float64), precision_tril=L.to_sparse_csr())
    >>> x = d.rsample((5,))
    >>> x.shape, d.log_prob(x).shape
    (torch.Size([5, 3]), torch.Size([5]))
    >>> dense = torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64), precision_matrix=L @ L.T)
    >>> torch.allclose(d.log_prob(x), dense.log_prob(x))
    True
    """

    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        *,
        scale_tril: torch.Tensor | None = None,
        precision_tril: torch.Tensor | None = None,
        diagonal: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ):
        if (scale_tril is None) == (precision_tril is None):
            raise ValueError("give exactly one of scale_tril and precision_tril")
        whitener = ScaleWhitener if scale_tril is not None else PrecisionWhitener  # the one choice of form
        name = f"{whitener.kind}_tril"
        tril = scale_tril if scale_tril is not None else precision_tril
        loc = _check_vector(loc, "loc")
        check_tensor(tril, name)
        factor = TriangularFactor(tril, name, unit=diagonal is not None)
        n = factor.n
        _check_like(loc, "loc", tril, name, n)
        if diagonal is not None:
            diagonal = _check_vector(diagonal, "diagonal")
            _check_like(diagonal, "diagonal", tril, name, n)
        shapes = [loc.shape[:-1], factor.batch_shape] + ([diagonal.shape[:-1]] if diagonal is not None else [])
        try:
            batch_shape = broadcast_shapes(*shapes)
        except RuntimeError as error:
            raise ValueError(
                f"loc (batch shape {tuple(loc.shape[:-1])}), {name} (batch shape {tuple(factor.batch_shape)})"
                + ("" if diagonal is None else f" and diagonal (batch shape {tuple(diagonal.shape[:-1])})")
                + " must have broadcastable batch shapes"
            ) from error
        self._whitener = whitener(factor, diagonal)
        self._check_factor_batch(batch_shape)
        self.loc = loc.expand(batch_shape + (n,))
        setattr(self, name, tril)
        self.diagonal = diagonal
        super().__init__(batch_shape, torch.Size((n,)), validate_args=validate_args)

    def _check_factor_batch(self, batch_shape: torch.Size) -> None:
        factor = self._whitener.factor
        if factor.batch is not None and batch_shape[-1] != factor.batch:
            raise ValueError(
                f"a batched {factor.name} of batch size {factor.batch} must match the last batch dimension, got batch "
                f"shape {tuple(batch_shape)} (a factor is not broadcast: pass an unbatched (n, n) factor to share it)"
            )

    # ---- declared structure -----------------------------------------------------------------------------------------
    @property
    def arg_constraints(self) -> dict[str, constraints.Constraint]:
        unit = self.diagonal is not None
        out = {
            "loc": constraints.real_vector,
            self._whitener.factor.name: sparse_strictly_lower if unit else sparse_lower_cholesky,
        }
        if unit:
            out["diagonal"] = constraints.independent(constraints.positive, 1)
        return out

    @property
    def parameterization(self) -> str:
        """``"scale_tril"``, ``"precision_tril"``, ``"scale_ldl"`` or ``"precision_ldl"``."""
        return self._whitener.parameterization

    @property
    def factor(self) -> torch.Tensor:
        """The sparse factor ``L`` as given."""
        return self._whitener.factor.tensor

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(SparseMultivariateNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        factor = self._whitener.factor
        if factor.batch is not None:
            if not batch_shape:
                raise ValueError(f"cannot expand to batch shape () a distribution with a batched {factor.name}")
            self._check_factor_batch(batch_shape)
        new._whitener, new.diagonal = self._whitener, self.diagonal
        setattr(new, factor.name, factor.tensor)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        super(SparseMultivariateNormal, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # ---- helpers ----------------------------------------------------------------------------------------------------
    def _half_log_det_covariance(self) -> torch.Tensor:
        """``½ log det Σ``, shape ``batch_shape``."""
        return self._whitener.half_logdet().expand(self.batch_shape)

    def _mahalanobis(self, value: torch.Tensor) -> torch.Tensor:
        """``(x − μ)ᵀ Σ⁻¹ (x − μ) = ‖W (x − μ)‖²`` for ``value`` of shape ``(..., *batch_shape, n)`` or broadcastable
        to it."""
        r = value - self.loc
        r = r.expand(broadcast_shapes(r.shape, self.batch_shape + self.event_shape))
        return self._whitener.whiten(r).square().sum(-1)

    # ---- torch.distributions API ------------------------------------------------------------------------------------
    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def mode(self) -> torch.Tensor:
        return self.loc

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        # ε is drawn in the factor's column layout, (N, P) contiguous with P samples as columns, and viewed in the
        # sample shape: the one sparse kernel call of color() then reads it without a transposing copy.
        factor = self._whitener.factor
        columns = math.prod(shape[:-1]) // (factor.batch or 1)
        eps = _standard_normal_matrix(factor.N, columns, self.loc.dtype, self.loc.device)
        return self.loc + self._whitener.color(factor.from_columns(eps, shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        n = self._whitener.n
        return -0.5 * (n * _LOG_2PI + self._mahalanobis(value)) - self._half_log_det_covariance()

    def entropy(self) -> torch.Tensor:
        n = self._whitener.n
        return 0.5 * n * (1.0 + _LOG_2PI) + self._half_log_det_covariance()

    @property
    def variance(self) -> torch.Tensor:
        r"""Marginal variances :math:`\Sigma_{ii}`, shape ``batch_shape + (n,)``.

        Scale forms: :math:`\sum_j \tilde L_{ij}^2 d_j`, differentiable. Precision forms: :math:`(Q^{-1})_{ii}` by the
        selected inverse of :math:`Q = \tilde L D \tilde L^\top` (:func:`sparseprec.cholesky.diag_inverse`: a sparse
        Cholesky factorisation of ``Q`` in float64 on the CPU), with no gradient w.r.t. the factor or ``d``.
        """
        return self._whitener.variance().expand(self.batch_shape + self.event_shape)

    @property
    def stddev(self) -> torch.Tensor:
        return self.variance.sqrt()

    @property
    def precision_matrix(self) -> torch.Tensor:
        r"""The precision :math:`Q`.

        Precision forms: the sparse :math:`\tilde L D \tilde L^\top` (both triangles stored), differentiable, with
        the factor's layout when unbatched and sparse COO of shape ``(*batch, n, n)`` when the factor or ``d`` is
        batched (the batch dims of ``loc`` are not expanded into it). Scale forms: :math:`Q = \Sigma^{-1}` is dense in
        general: a dense ``batch_shape + (n, n)`` tensor (warns above :data:`DENSE_WARNING_SIZE`).
        """
        if not self._whitener.sparse_precision:
            self._warn_dense("precision_matrix")
        return self._whitener.precision_matrix(self.batch_shape)

    @property
    def covariance_matrix(self) -> torch.Tensor:
        r"""The dense covariance :math:`\Sigma`, shape ``batch_shape + (n, n)`` (warns above
        :data:`DENSE_WARNING_SIZE`; differentiable). For the sparse :math:`\tilde L D \tilde L^\top` of a scale form
        use :meth:`covariance_sparse`."""
        self._warn_dense("covariance_matrix")
        return self._whitener.covariance_matrix(self.batch_shape)

    def covariance_sparse(self) -> torch.Tensor:
        r"""Scale forms only: the sparse covariance :math:`\tilde L D \tilde L^\top` (as :attr:`precision_matrix`)."""
        return self._whitener.covariance_sparse()

    def coloring_transform(self) -> Transform:
        r"""The affine bijection :math:`\varepsilon \mapsto \mu + C \varepsilon` that carries :math:`N(0, I)` to this
        distribution (the map of :meth:`rsample`).

        :math:`C = \tilde L D^{1/2}` (scale forms, one sparse product) or :math:`C = \tilde L^{-\top} D^{-1/2}`
        (precision forms, one triangular solve), :math:`C C^\top = \Sigma`; the inverse whitens,
        :math:`x \mapsto C^{-1}(x - \mu)` (the other of the two operations), and
        :math:`\log|\det C| = \tfrac12 \log\det\Sigma`. Differentiable w.r.t. every parameter; for Pyro's
        reparameterisers (e.g. ``NeuTraReparam`` through an autoguide's ``get_transform``).

        Examples
        --------
        >>> import torch
        >>> from sparseprec.distributions import SparseMultivariateNormal
        >>> L = torch.tensor([[2.0, 0.0], [-1.0, 2.0]], dtype=torch.float64).to_sparse_csr()
        >>> d = SparseMultivariateNormal(torch.ones(2, dtype=torch.float64), precision_tril=L)
        >>> t = d.coloring_transform()
        >>> x = t(torch.tensor([0.5, -1.0], dtype=torch.float64))
        >>> t.inv(x)
        tensor([ 0.5000, -1.0000], dtype=torch.float64)
        """
        return ColoringTransform(self.loc, self._whitener)

    def _warn_dense(self, what: str) -> None:
        n = self._whitener.n
        if n > DENSE_WARNING_SIZE:
            warnings.warn(
                f"{what} of a SparseMultivariateNormal with n = {n} builds a dense {n} x {n} matrix per batch element",
                stacklevel=3,
            )

    def __repr__(self) -> str:
        factor = self._whitener.factor
        return (
            f"SparseMultivariateNormal(loc: {tuple(self.loc.shape)}, {factor.name}: "
            f"{tuple(factor.tensor.shape)} with {factor.pattern.nnz} stored entries"
            + ("" if self.diagonal is None else f", diagonal: {tuple(self.diagonal.shape)}")
            + ")"
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_whitener")  # index data cached with the pattern: rebuilt from the factor as given
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._whitener = whitener_for(
            scale_tril=state.get("scale_tril"), precision_tril=state.get("precision_tril"), diagonal=self.diagonal
        )

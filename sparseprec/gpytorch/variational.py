r"""``SparseCholeskyVariationalDistribution``: q(u) = N(m, S) with a sparse Cholesky factor on a given pattern.

Two parameterisations, both with a lower-triangular ``L`` whose stored values (diagonal included) are the
parameters, on a fixed pattern (e.g. each inducing point's nearest neighbours — a Vecchia-type pattern):

- ``"precision"`` (default): :math:`S^{-1} = L L^\top`. ``S x = L^{-\top} L^{-1} x`` (two sparse triangular solves),
  ``S^{-1} x = L (L^\top x)``, :math:`\log\det S = -2\sum_i \log|L_{ii}|`, root :math:`L^{-\top}`;
- ``"scale"``: :math:`S = L L^\top` (GPyTorch's ``CholeskyVariationalDistribution`` with a sparse factor):
  ``S x = L (L^\top x)``, ``S^{-1} x`` by two triangular solves, :math:`\log\det S = 2\sum_i \log|L_{ii}|`, root ``L``.

With the default pattern (the diagonal only) it is ``MeanFieldVariationalDistribution``; with the full lower triangle
it is ``CholeskyVariationalDistribution`` (``"scale"``). Memory O(nnz) per batch element: no ``m × m`` parameter.
Gradients reach the factor values at their stored entries (sparseprec's ops).

Cost inside GPyTorch's strategies (m inducing points, a minibatch of b points). ``forward()`` gives a
``MultivariateNormal`` whose covariance is a ``RootLinearOperator`` over the sparse root, so the strategy's products
``S K`` cost O(nnz · b), its ``root_decomposition`` is the sparse root itself and ``logdet`` reads ``L``'s diagonal.
With the ``"scale"`` form in the whitened ``VariationalStrategy`` the KL against ``N(0, I)`` is
:math:`\tfrac12(\|L\|_F^2 + \|\mu\|^2 - m - 2\sum_i \log|L_{ii}|)` (μ the mean), O(nnz), and ``variance`` is
the row sums of ``L ∘ L``: nothing of q(u) is m × m when b < m. What remains is GPyTorch's: the dense ``K_uu`` and
its Cholesky (O(m³) time, O(m²) memory), the solve ``K_uu^{-1/2} K_uf`` (O(m² b)); when b > m the strategy also
densifies ``S − I`` (here O(nnz · m), never an m × m × m product). The ``"precision"`` form's KL needs
:math:`\operatorname{tr} S = \|L^{-1}\|_F^2`, which has no O(nnz) form: it goes through GPyTorch's ``kl_mvn_mvn`` on
the densified root :math:`L^{-\top}` (m sparse triangular solves, O(m · nnz) time, O(m²) memory).
``UnwhitenedVariationalStrategy`` densifies the root of ``S`` itself and solves with ``K_uu`` against it (O(m³)); it
works with both forms, exactly.

The state dict carries the pattern (buffer ``factor_pattern``) and the parameterisation (extra state), because
``factor_values`` mean nothing without them: loading a state dict saved with another pattern or parameterisation is
refused (``load_state_dict`` raises ``RuntimeError`` naming them, also with ``strict=False``) rather than giving another
covariance. A state dict saved before the pattern was stored (``factor_values`` without ``factor_pattern``) is refused
too, since its pattern is unknown; to load one known to come from a distribution with the same pattern and
parameterisation, first add this distribution's ``factor_pattern`` and ``_extra_state`` entries to it (stating that
the patterns agree).
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.distributions.multivariate_normal import kl_mvn_mvn
from gpytorch.variational._variational_distribution import _VariationalDistribution
from linear_operator.operators import DiagLinearOperator, LinearOperator, RootLinearOperator
from torch.distributions import register_kl

from .._validation import broadcast_shapes, lower_pattern_pairs
from ..ops import sparse_csr_tensor, sparse_mm, sparse_triangular_solve
from ..pattern import Assembly, rows_from_crow
from ._pattern_state import pattern_state_problems, refuse_state

__all__ = ["SparseCholeskyVariationalDistribution"]


class _SparseTriangular(LinearOperator):
    """``L`` (``inverse=False``) or ``L⁻ᵀ`` (``inverse=True``) for a batched lower CSR factor given by its values;
    ``transposed`` flips to ``Lᵀ`` / ``L⁻¹``."""

    def __init__(self, values, *, crow, col, n, inverse=False, transposed=False):
        crow, col = (t.tensor if isinstance(t, _Index) else t for t in (crow, col))  # rebuilt by linear_operator
        super().__init__(values, crow=_Index(crow), col=_Index(col), n=n, inverse=inverse, transposed=transposed)
        self.values, self.crow, self.col, self.n = values, crow, col, n
        self.inverse, self.transposed = inverse, transposed

    def _matrix(self, batch: torch.Size) -> torch.Tensor:
        values = self.values.expand(*batch, self.values.shape[-1]).reshape(-1, self.values.shape[-1])
        b = values.shape[0]
        crow = self.crow.to(values.device).expand(b, -1)
        col = self.col.to(values.device).expand(b, -1)
        return sparse_csr_tensor(crow.contiguous(), col.contiguous(), values, (b, self.n, self.n))

    def _size(self) -> torch.Size:
        return self.values.shape[:-1] + (self.n, self.n)

    def _transpose_nonbatch(self) -> LinearOperator:
        return _SparseTriangular(self.values, crow=self.crow, col=self.col, n=self.n, inverse=self.inverse,
                                 transposed=not self.transposed)  # fmt: skip

    def _matmul(self, rhs: torch.Tensor) -> torch.Tensor:
        vector = rhs.dim() == 1
        rhs = rhs.unsqueeze(-1) if vector else rhs
        batch = broadcast_shapes(self.batch_shape, rhs.shape[:-2])
        L = self._matrix(batch)
        x = rhs.expand(*batch, *rhs.shape[-2:]).reshape(-1, *rhs.shape[-2:])
        if self.inverse:  # L⁻ᵀ x (or L⁻¹ x transposed)
            out = sparse_triangular_solve(L, x, upper=False, transpose=not self.transposed)
        else:  # L x (or Lᵀ x)
            out = sparse_mm(L, x, transpose=self.transposed)
        out = out.reshape(*batch, *out.shape[-2:])
        return out.squeeze(-1) if vector else out

    def _expand_batch(self, batch_shape: torch.Size) -> LinearOperator:
        return _SparseTriangular(self.values.expand(*batch_shape, self.values.shape[-1]), crow=self.crow, col=self.col,
                                 n=self.n, inverse=self.inverse, transposed=self.transposed)  # fmt: skip

    def rows(self) -> torch.Tensor:
        """The row of each stored value (``(nnz,)``, on the values' device)."""
        return rows_from_crow(self.crow.to(self.values.device), self.values.shape[-1])

    def to_dense(self) -> torch.Tensor:
        if not self.inverse:  # L (or Lᵀ): its values scattered, O(n²) memory for the result only
            rows, cols = self.rows(), self.col.to(self.values.device)
            if self.transposed:
                rows, cols = cols, rows
            dense = self.values.new_zeros(*self.batch_shape, self.n, self.n)
            dense[..., rows, cols] = self.values.expand(*self.batch_shape, self.values.shape[-1])
            return dense
        eye = torch.eye(self.n, dtype=self.dtype, device=self.device)
        return self._matmul(eye.expand(*self.batch_shape, self.n, self.n))


class _Index:
    """Holds an index tensor as non-tensor LinearOperator state (so batching machinery leaves it alone)."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


class _SparseCholeskyCovariance(RootLinearOperator):
    """``S = R Rᵀ`` with ``R`` a :class:`_SparseTriangular` (``L`` or ``L⁻ᵀ``); exact logdet, solves and roots."""

    def __init__(self, root: _SparseTriangular):
        super().__init__(root)

    def _log_abs_diagonal(self) -> torch.Tensor:
        root = self.root
        positions = root.crow[1:].to(root.values.device) - 1  # the diagonal is each row's last entry
        return root.values[..., positions].abs().log().sum(-1)

    def _inverse_root(self) -> _SparseTriangular:
        """``R⁻¹``: ``Lᵀ`` when ``R = L⁻ᵀ`` (precision form), ``L⁻¹`` when ``R = L`` (scale form)."""
        root = self.root
        return _SparseTriangular(root.values, crow=root.crow, col=root.col, n=root.n, inverse=not root.inverse,
                                 transposed=True)  # fmt: skip

    def _diagonal(self) -> torch.Tensor:
        root = self.root
        if root.inverse:  # diag((L Lᵀ)⁻¹) has no O(nnz) form: GPyTorch's generic route
            return super()._diagonal()
        # diag(L Lᵀ)_i = Σ_j L_ij²: the squared values summed by row, O(nnz)
        squares = root.values.expand(*self.batch_shape, root.values.shape[-1]).square()
        return squares.new_zeros(*self.batch_shape, root.n).index_add(-1, root.rows(), squares)

    def to_dense(self) -> torch.Tensor:
        # R (Rᵀ dense): sparse products or solves against n columns, O(n · nnz) — never a dense n × n × n product
        return self.root._matmul(self.root._transpose_nonbatch().to_dense())

    def logdet(self) -> torch.Tensor:
        sign = -2.0 if self.root.inverse else 2.0
        return sign * self._log_abs_diagonal()

    def solve(self, right_tensor: torch.Tensor, left_tensor: torch.Tensor | None = None) -> torch.Tensor:
        inverse_root = self._inverse_root()
        out = inverse_root._transpose_nonbatch()._matmul(inverse_root._matmul(right_tensor))  # S⁻¹ = R⁻ᵀ R⁻¹
        return out if left_tensor is None else left_tensor @ out

    def inv_quad_logdet(self, inv_quad_rhs=None, logdet=False, reduce_inv_quad=True):
        empty = torch.zeros([], dtype=self.dtype, device=self.device)
        inv_quad = empty
        if inv_quad_rhs is not None:
            inverse_root = self._inverse_root()
            rhs = inv_quad_rhs.unsqueeze(-1) if inv_quad_rhs.dim() == 1 else inv_quad_rhs
            inv_quad = inverse_root._matmul(rhs).square().sum(-2)
            if reduce_inv_quad:
                inv_quad = inv_quad.sum(-1)
        return inv_quad, (self.logdet() if logdet else empty)

    def root_decomposition(self, method: str | None = None) -> RootLinearOperator:
        return self


class _SparseCholeskyNormal(MultivariateNormal):
    """GPyTorch's ``MultivariateNormal`` over a :class:`_SparseCholeskyCovariance`: its own type so that
    ``kl_divergence`` against a diagonal prior (the whitened strategy's ``N(0, I)``) takes the O(nnz) route below."""


@register_kl(_SparseCholeskyNormal, MultivariateNormal)
def _kl_sparse_cholesky_normal(q: MultivariateNormal, p: MultivariateNormal) -> torch.Tensor:
    r"""KL(q ‖ p). Scale form (:math:`S = L L^\top`) against a diagonal prior :math:`p = N(\mu_p, D)`:

    .. math::

        \mathrm{KL} = \tfrac12 \Big[\sum_i \frac{S_{ii}}{D_{ii}} + \sum_i \frac{(\mu_{p,i} - \mu_{q,i})^2}{D_{ii}}
        - m + \sum_i \log D_{ii} - 2 \sum_i \log |L_{ii}|\Big], \qquad S_{ii} = \sum_j L_{ij}^2,

    O(nnz(L)) time and memory (GPyTorch's generic formula densifies the root of ``S``). Anything else (the precision
    form, whose :math:`\operatorname{tr} S` needs :math:`L^{-1}`; a dense prior as in the unwhitened strategy) goes
    through GPyTorch's own ``kl_mvn_mvn``.
    """
    covariance, prior_covariance = q.lazy_covariance_matrix, p.lazy_covariance_matrix
    if (
        not isinstance(covariance, _SparseCholeskyCovariance)
        or covariance.root.inverse
        or not isinstance(prior_covariance, DiagLinearOperator)
    ):
        return kl_mvn_mvn(q, p)
    d = prior_covariance.diagonal()
    difference = p.loc - q.loc
    terms = covariance.diagonal() / d + difference.square() / d + d.log()
    return 0.5 * (terms.sum(-1) - covariance.logdet() - q.loc.shape[-1])


class SparseCholeskyVariationalDistribution(_VariationalDistribution):
    """Variational q(u) = N(m, S) with a sparse Cholesky factor (see the module).

    Parameters
    ----------
    num_inducing_points : int
        ``m``.
    pattern : torch.Tensor, optional
        ``(2, k)`` int index of the strictly-lower (or mirrored upper) entries of ``L`` besides the diagonal, or a
        sparse ``(m, m)`` tensor whose pattern is used; default: none (diagonal ``L``: mean field).
    batch_shape : torch.Size
        Independent variational distributions (values per batch element, one shared pattern).
    mean_init_std : float
        Noise added to the mean at initialisation (as GPyTorch's distributions).
    parameterization : str
        ``"precision"`` (``S⁻¹ = L Lᵀ``, default) or ``"scale"`` (``S = L Lᵀ``).

    Attributes
    ----------
    factor_values : torch.nn.Parameter
        ``(*batch_shape, nnz)``: the stored values of ``L`` (diagonal included).
    factor_pattern : torch.Tensor
        ``(2, nnz)`` int64 buffer: ``(row, column)`` of ``L``'s entry held by each element of ``factor_values``
        (rows ascending, columns ascending within a row). Part of the state dict.

    Raises
    ------
    TypeError
        ``num_inducing_points`` not an int (a ``bool`` or a float is refused, not truncated).
    ValueError
        ``num_inducing_points`` below 1, or an unknown ``parameterization``.
    RuntimeError
        From ``load_state_dict`` (with ``strict=True`` or ``False``), when the state dict was saved with another
        pattern, size or parameterisation, or holds ``factor_values`` without a pattern; see the module.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.gpytorch import SparseCholeskyVariationalDistribution
    >>> q = SparseCholeskyVariationalDistribution(100, pattern=torch.stack([torch.arange(1, 100), torch.arange(99)]))
    >>> q.factor_values.shape, q().event_shape  # 100 diagonal + 99 sub-diagonal entries: no 100 × 100 parameter
    (torch.Size([199]), torch.Size([100]))

    The pattern travels with the state dict; another pattern of the same size is refused:

    >>> skip_one = torch.stack([torch.arange(2, 100), torch.arange(98)])  # (i + 2, i) instead of (i + 1, i)
    >>> other = SparseCholeskyVariationalDistribution(100, pattern=skip_one)
    >>> try:
    ...     other.load_state_dict(q.state_dict())
    ... except RuntimeError as error:
    ...     print("factor_pattern" in str(error))
    True
    """

    def __init__(
        self,
        num_inducing_points: int,
        pattern: torch.Tensor | None = None,
        batch_shape: torch.Size = torch.Size([]),  # noqa: B008 - GPyTorch's signature
        mean_init_std: float = 1e-3,
        parameterization: str = "precision",
        **kwargs,
    ):
        if isinstance(num_inducing_points, bool) or not isinstance(num_inducing_points, numbers.Integral):
            raise TypeError(
                f"num_inducing_points must be an int (the number of inducing points m), got "
                f"{type(num_inducing_points).__name__} {num_inducing_points!r}"
            )
        if num_inducing_points < 1:
            raise ValueError(f"num_inducing_points must be a positive int, got {num_inducing_points}")
        num_inducing_points = int(num_inducing_points)
        super().__init__(num_inducing_points=num_inducing_points, batch_shape=batch_shape, mean_init_std=mean_init_std)
        if parameterization not in ("precision", "scale"):
            raise ValueError(f"parameterization must be 'precision' or 'scale', got {parameterization!r}")
        self.parameterization = parameterization
        m = int(num_inducing_points)
        if pattern is None:  # mean field
            rows = cols = np.zeros(0, dtype=np.int64)
        else:
            rows, cols = lower_pattern_pairs(pattern, m, "num_inducing_points")
        merged = Assembly(np.concatenate([rows, np.arange(m)]), np.concatenate([cols, np.arange(m)]), m, m)
        r, c = merged.row.numpy(), merged.col.numpy()
        # index data used by the computations (CPU; moved per call); the buffer is the pattern as saved and loaded
        self._crow = merged.crow
        self._col = merged.col
        self._diagonal_positions = torch.from_numpy(np.flatnonzero(r == c).astype(np.int64))
        self.register_buffer("factor_pattern", torch.from_numpy(np.stack([r, c]).astype(np.int64)))
        values = torch.zeros(*batch_shape, merged.nnz)
        values[..., self._diagonal_positions] = 1.0
        self.register_parameter("variational_mean", torch.nn.Parameter(torch.zeros(*batch_shape, m)))
        self.register_parameter("factor_values", torch.nn.Parameter(values))

    def get_extra_state(self) -> dict:
        """The parameterisation, saved in the state dict (``factor_values`` mean ``L`` of ``S⁻¹`` or of ``S``)."""
        return {"parameterization": self.parameterization}

    def set_extra_state(self, state: object) -> None:
        """Accept a saved parameterisation only if it is this distribution's (it cannot be changed by loading)."""
        saved = state.get("parameterization") if isinstance(state, dict) else state
        if saved != self.parameterization:
            raise ValueError(
                f"state_dict: parameterization must be {self.parameterization!r} (this distribution's), got {saved!r}"
            )

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        # factor_values are positions on a pattern: loaded onto another pattern they give another covariance. A
        # mismatch is an error (see _pattern_state) and nothing here is loaded.
        problems = pattern_state_problems(
            state_dict,
            prefix,
            self.factor_pattern,
            pattern_name="factor_pattern",
            values_name="factor_values",
            owner="distribution",
            matrix="L",
            size=f"{self.factor_pattern.shape[1]} entries of L for {self.num_inducing_points} inducing points",
            consequence="the factor values would give another covariance",
            restore=" and parameterization, add this distribution's 'factor_pattern' and '_extra_state' entries of "
            "state_dict() to it under the same prefix",
        )
        problems += self._parameterization_mismatches(state_dict, prefix)
        if refuse_state(error_msgs, "SparseCholeskyVariationalDistribution", problems):
            return
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _parameterization_mismatches(self, state_dict, prefix: str) -> list[str]:
        """The saved parameterisation (extra state under ``prefix``), if it is not this distribution's."""
        key = prefix + "_extra_state"  # torch's key for get_extra_state
        if key not in state_dict:
            return []
        state = state_dict[key]
        saved = state.get("parameterization") if isinstance(state, dict) else state
        if saved == self.parameterization:
            return []
        return [
            f"parameterization must be {self.parameterization!r} (this distribution's), got {saved!r} in {key!r}; "
            f"build the distribution with parameterization={saved!r} before loading"
        ]

    def _root(self) -> _SparseTriangular:
        return _SparseTriangular(self.factor_values, crow=self._crow, col=self._col, n=self.num_inducing_points,
                                 inverse=self.parameterization == "precision")  # fmt: skip

    def forward(self) -> MultivariateNormal:
        return _SparseCholeskyNormal(self.variational_mean, _SparseCholeskyCovariance(self._root()))

    def initialize_variational_distribution(self, prior_dist: MultivariateNormal) -> None:
        r"""Start at the prior, as GPyTorch's ``CholeskyVariationalDistribution`` does, within the pattern.

        Mean: the prior's (plus noise of s.d. ``mean_init_std``). Factor, ``"precision"`` form: the sparse factor of
        the prior's precision that the pattern allows (Vecchia 1988): with :math:`N_j = \{i > j : (i, j) \text{
        stored}\}` and the prior covariance :math:`K`,

        .. math::

            b_j = K_{N_j N_j}^{-1} K_{N_j j}, \quad d_j = K_{jj} - K_{j N_j} b_j, \quad
            L_{jj} = d_j^{-1/2}, \quad L_{N_j j} = -b_j\, d_j^{-1/2},

        i.e. :math:`u_j \mid u_{N_j}` of the prior for every :math:`j`; :math:`L L^\top = K^{-1}` exactly when each
        :math:`N_j` holds the Markov blanket of :math:`u_j` among the later points (the full lower triangle always;
        the next point for a Matérn-1/2 kernel on sorted 1-D inputs). Starting there matters: the conditional
        precisions of nearby inducing points are orders of magnitude above the marginal ones, which additive
        optimiser steps on the factor values would take thousands of steps to reach. ``"scale"`` form: diagonal with
        the prior's marginal standard deviations (the covariance itself has no sparse factor to start from on a
        partial pattern).
        """
        self.variational_mean.data.copy_(prior_dist.mean)
        self.variational_mean.data.add_(torch.randn_like(prior_dist.mean), alpha=self.mean_init_std)
        self.factor_values.data.zero_()
        prior_covariance = prior_dist.lazy_covariance_matrix
        if self.parameterization == "precision" and isinstance(prior_covariance, DiagLinearOperator):
            # the whitened strategy's N(0, I): L = D^{-1/2}, without forming the m × m identity
            d = prior_covariance.diagonal().detach().expand(self.variational_mean.shape)
            self.factor_values.data[..., self._diagonal_positions] = d.rsqrt().to(self.factor_values.dtype)
            return
        if self.parameterization == "precision":
            K = prior_dist.covariance_matrix.detach()
            K = K.expand(*self.variational_mean.shape[:-1], *K.shape[-2:])
            values = _conditional_precision_factor(K, self.factor_pattern.cpu(), self._diagonal_positions)
            self.factor_values.data.copy_(values.to(self.factor_values))
            return
        sd = prior_dist.variance.detach().clamp_min(1e-12).sqrt().expand(self.variational_mean.shape)
        self.factor_values.data[..., self._diagonal_positions] = sd.to(self.factor_values.dtype)


def _conditional_precision_factor(K: torch.Tensor, pattern: torch.Tensor, diagonal: torch.Tensor) -> torch.Tensor:
    """Stored values of the lower ``L`` (``pattern``: ``(2, nnz)`` row and column of each value; ``diagonal``: the
    positions of the diagonal entries) with ``L Lᵀ`` the precision of the DAG model ``u_j | u_{N_j}`` of ``N(0, K)``
    (see ``initialize_variational_distribution``)."""
    m = K.shape[-1]
    device = K.device
    rows, col = pattern
    off = torch.nonzero(rows != col).squeeze(-1)
    r, c = rows[off], col[off]
    order = torch.argsort(c * m + r)  # off-diagonal entries grouped by column
    r, c, off = r[order], c[order], off[order]
    counts = torch.bincount(c, minlength=m)
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    slot = torch.arange(r.numel()) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    neighbours = torch.zeros(m, width, dtype=torch.long)
    present = torch.zeros(m, width, dtype=torch.bool)
    neighbours[c, slot], present[c, slot] = r, True
    neighbours, present = neighbours.to(device), present.to(device)
    K_nn = K[..., neighbours.unsqueeze(-1), neighbours.unsqueeze(-2)]  # (..., m, width, width)
    eye = torch.eye(width, dtype=K.dtype, device=device)
    K_nn = torch.where(present.unsqueeze(-1) & present.unsqueeze(-2), K_nn, eye)
    K_nj = torch.where(present, K[..., neighbours, torch.arange(m, device=device).unsqueeze(-1)], 0.0)
    b = torch.linalg.solve(K_nn, K_nj.unsqueeze(-1)).squeeze(-1)
    d = torch.diagonal(K, dim1=-2, dim2=-1) - (K_nj * b).sum(-1)
    if not bool((d > 0).all()):
        flat = int(torch.nonzero((d <= 0).reshape(-1))[0])
        raise ValueError(
            "initialize_variational_distribution: the prior covariance is not positive definite on the pattern "
            f"(conditional variance of inducing point {flat % m} given its pattern neighbours is "
            f"{float(d.reshape(-1)[flat]):.3g}); "
            "add jitter to the prior or check for repeated inducing points"
        )
    scale = d.rsqrt()
    values = torch.zeros(*K.shape[:-2], col.numel(), dtype=K.dtype, device=device)
    values[..., diagonal.to(device)] = scale
    values[..., off.to(device)] = -(b * scale.unsqueeze(-1))[..., c.to(device), slot.to(device)]
    return values

r"""KL divergences involving :class:`SparseMultivariateNormal`, registered with ``torch.distributions.kl``.

For Gaussians :math:`p = N(\mu_p, \Sigma_p)` and :math:`q = N(\mu_q, \Sigma_q)` of dimension :math:`n`,

.. math::

    \mathrm{KL}(p \,\|\, q) = \tfrac12 \bigl[\mathrm{tr}(\Sigma_q^{-1} \Sigma_p)
        + (\mu_q - \mu_p)^\top \Sigma_q^{-1} (\mu_q - \mu_p) - n + \log\det\Sigma_q - \log\det\Sigma_p\bigr].

The log-determinants and the Mahalanobis term are always cheap here; the trace decides what is affordable:

* ``Independent(Normal, 1)`` :math:`\Vert` SparseMVN (precision form): :math:`\sum_i Q_{ii} \sigma_i^2` with
  :math:`Q_{ii} = \sum_k \tilde L_{ik}^2 d_k`, :math:`O(\mathrm{nnz})` — the mean-field guide against a GMRF prior.
* ``Independent(Normal, 1)`` :math:`\Vert` ``GMRF``: the same with :math:`Q_{ii}` read from the stored diagonal of
  ``Q``, :math:`O(\mathrm{nnz})` plus the GMRF's log-determinant.
* SparseMVN (scale form) :math:`\Vert` SparseMVN (precision form), factors equally batched:
  :math:`\sum_{ij} (Q_q)_{ij} (\Sigma_p)_{ij}` over the common pattern of the two sparse products
  :math:`\tilde L D \tilde L^\top`, :math:`O(\sum_k c_k^2)` for the factors' column counts
  :math:`c_k`.
* torch ``MultivariateNormal`` :math:`\Vert` SparseMVN (either form):
  :math:`\lVert D^{1/2} \tilde L^\top S_p \rVert_F^2` (precision form) or
  :math:`\lVert D^{-1/2} \tilde L^{-1} S_p \rVert_F^2` (scale form) with ``p``'s dense ``scale_tril`` :math:`S_p`:
  :math:`O(n \cdot \mathrm{nnz})`, for the small ``n`` a dense ``p`` implies.

Every other pair raises ``NotImplementedError`` saying why: e.g. ``Independent(Normal)`` against a scale form needs
:math:`\mathrm{diag}(\Sigma_q^{-1})`, and a precision form ``p`` needs :math:`\Sigma_p = Q_p^{-1}` beyond any sparse
pattern (Pyro's ``TraceMeanField_ELBO`` then falls back to a Monte-Carlo estimate). All registered KLs are
differentiable w.r.t. every parameter of both distributions.
"""

from __future__ import annotations

import torch
from torch.distributions import Independent, MultivariateNormal, Normal, register_kl

from .._validation import broadcast_shapes
from .gmrf import GMRF
from .sparse_mvn import SparseMultivariateNormal

__all__ = ["kl_sparse_sparse", "kl_independent_normal_sparse", "kl_mvn_sparse", "kl_independent_normal_gmrf"]


def _assemble(trace: torch.Tensor, mahalanobis: torch.Tensor, half_logdet_q, half_logdet_p, n: int) -> torch.Tensor:
    return 0.5 * (trace + mahalanobis - n) + half_logdet_q - half_logdet_p


def _check_event_shapes(p, q) -> None:
    if p.event_shape != q.event_shape:
        raise ValueError(
            f"p and q must have the same event shape, got {tuple(p.event_shape)} and {tuple(q.event_shape)}"
        )


def _check_diagonal_normal(p: Independent, q_name: str) -> None:
    if not isinstance(p.base_dist, Normal) or p.reinterpreted_batch_ndims != 1:
        raise NotImplementedError(
            f"KL(Independent || {q_name}) is implemented for Independent(Normal, 1) only, got "
            f"Independent({type(p.base_dist).__name__}, {p.reinterpreted_batch_ndims})"
        )


def _kl_diagonal_normal(p: Independent, diagonal_q: torch.Tensor, mahalanobis, half_logdet_q) -> torch.Tensor:
    """KL(N(m, diag(s²)) ‖ q) from ``diag(Σ_q⁻¹)``, the Mahalanobis term of ``m`` under ``q`` and ``½ log det Σ_q``."""
    scale = p.base_dist.scale
    trace = (diagonal_q * scale.square()).sum(-1)
    half_logdet_p = scale.log().expand(p.batch_shape + p.event_shape).sum(-1)
    return _assemble(trace, mahalanobis, half_logdet_q, half_logdet_p, p.event_shape[0])


@register_kl(SparseMultivariateNormal, SparseMultivariateNormal)
def kl_sparse_sparse(p: SparseMultivariateNormal, q: SparseMultivariateNormal) -> torch.Tensor:
    r""":math:`\mathrm{KL}(p \Vert q)` for a scale-form ``p`` and a precision-form ``q``, equally batched (exact).

    Raises ``NotImplementedError`` for other form pairs or differently batched factors, ``ValueError`` for different
    event shapes.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import kl_divergence
    >>> from sparseprec.distributions import SparseMultivariateNormal
    >>> L = torch.tensor([[1.0, 0.0], [0.5, 2.0]], dtype=torch.float64).to_sparse_csr()
    >>> p = SparseMultivariateNormal(torch.zeros(2, dtype=torch.float64), scale_tril=L)
    >>> Q = torch.linalg.cholesky(torch.linalg.inv(L.to_dense() @ L.to_dense().T)).to_sparse_csr()
    >>> q = SparseMultivariateNormal(torch.zeros(2, dtype=torch.float64), precision_tril=Q)
    >>> float(kl_divergence(p, q)) < 1e-12  # the same distribution
    True
    """
    _check_event_shapes(p, q)
    wp, wq = p._whitener, q._whitener
    if not (wp.sparse_covariance and wq.sparse_precision):
        raise NotImplementedError(
            f"KL(SparseMultivariateNormal[{p.parameterization}] || SparseMultivariateNormal[{q.parameterization}]) has "
            "no exact sparse formula: it needs p in a scale form and q in a precision form (otherwise the trace term "
            "involves a dense inverse); use a Monte-Carlo estimate"
        )
    fp, fq = wp.factor, wq.factor
    if fp.batch != fq.batch:
        raise NotImplementedError(
            "KL between SparseMultivariateNormals needs factors with the same batch size, got "
            f"{fp.batch} and {fq.batch}"
        )
    n, N = fp.n, fp.N
    batch = broadcast_shapes(wp.batch_shape, wq.batch_shape)
    keys_p, values_p = wp.covariance_entries(batch)
    keys_q, values_q = wq.precision_entries(batch)
    position = torch.searchsorted(keys_p, keys_q).clamp_(max=max(keys_p.numel() - 1, 0))
    match = keys_p[position] == keys_q
    terms = values_q[match] * values_p[position[match]]  # (k, P)
    block = keys_q[match] // N // n
    blocks = 1 if fp.batch is None else fp.batch
    trace = terms.new_zeros(blocks, terms.shape[1]).index_add_(0, block, terms)  # (b, P)
    trace = trace.transpose(0, 1).reshape(batch)
    return _assemble(trace, q._mahalanobis(p.loc), q._half_log_det_covariance(), p._half_log_det_covariance(), n)


@register_kl(Independent, SparseMultivariateNormal)
def kl_independent_normal_sparse(p: Independent, q: SparseMultivariateNormal) -> torch.Tensor:
    r""":math:`\mathrm{KL}(p \Vert q)` for ``p = Independent(Normal(m, s), 1)`` and a precision-form ``q`` (exact).

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Independent, Normal, kl_divergence
    >>> from sparseprec.distributions import SparseMultivariateNormal
    >>> L = torch.eye(3, dtype=torch.float64).to_sparse_csr()
    >>> q = SparseMultivariateNormal(torch.zeros(3, dtype=torch.float64), precision_tril=L)
    >>> kl_divergence(Independent(Normal(torch.zeros(3, dtype=torch.float64), 1.0), 1), q)
    tensor(0., dtype=torch.float64)
    """
    _check_diagonal_normal(p, "SparseMultivariateNormal")
    _check_event_shapes(p, q)
    if not q._whitener.sparse_precision:
        raise NotImplementedError(
            "KL(Independent(Normal) || SparseMultivariateNormal) needs q in a precision form (precision_tril): a scale "
            "form would need diag(Σ_q⁻¹), which has no sparse formula"
        )
    diagonal_q = q._whitener.precision_diagonal()
    return _kl_diagonal_normal(p, diagonal_q, q._mahalanobis(p.base_dist.loc), q._half_log_det_covariance())


@register_kl(MultivariateNormal, SparseMultivariateNormal)
def kl_mvn_sparse(p: MultivariateNormal, q: SparseMultivariateNormal) -> torch.Tensor:
    r""":math:`\mathrm{KL}(p \Vert q)`: ``p`` a dense torch ``MultivariateNormal`` (small ``n``), ``q`` any form.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import MultivariateNormal, kl_divergence
    >>> from sparseprec.distributions import SparseMultivariateNormal
    >>> eye = torch.eye(2, dtype=torch.float64)
    >>> q = SparseMultivariateNormal(torch.zeros(2, dtype=torch.float64), scale_tril=(2 * eye).to_sparse_csr())
    >>> kl_divergence(MultivariateNormal(torch.zeros(2, dtype=torch.float64), eye), q)  # 2 (1/8 - 1/2 + log 2)
    tensor(0.6363, dtype=torch.float64)
    """
    _check_event_shapes(p, q)
    whitener = q._whitener
    S = p._unbroadcasted_scale_tril
    batch = broadcast_shapes(S.shape[:-2], whitener.factor.batch_shape)
    columns = S.expand(batch + S.shape[-2:]).transpose(-1, -2).movedim(-2, 0)  # (n, *batch, n): columns of S_p
    trace = whitener.whiten(columns).square().sum(-1).sum(0)  # ‖W S_p‖²_F = tr(Σ_q⁻¹ S_p S_pᵀ)
    half_logdet_p = S.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return _assemble(trace, q._mahalanobis(p.loc), q._half_log_det_covariance(), half_logdet_p, whitener.n)


@register_kl(Independent, GMRF)
def kl_independent_normal_gmrf(p: Independent, q: GMRF) -> torch.Tensor:
    r""":math:`\mathrm{KL}(p \Vert q)` for ``p = Independent(Normal(m, s), 1)`` and a ``GMRF`` ``q`` (exact).

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Independent, Normal, kl_divergence
    >>> from sparseprec.distributions import GMRF
    >>> q = GMRF(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64).to_sparse_csr())
    >>> kl_divergence(Independent(Normal(torch.ones(2, dtype=torch.float64), 1.0), 1), q)  # ½ |m|²
    tensor(1., dtype=torch.float64)
    """
    _check_diagonal_normal(p, "GMRF")
    _check_event_shapes(p, q)
    diagonal_q = q._precision_diagonal()  # pbatch + (n,): one diagonal per precision element
    return _kl_diagonal_normal(p, diagonal_q, q._quadratic(p.base_dist.loc), -0.5 * q._log_det_precision())

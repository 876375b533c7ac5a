r"""``SparsePrecisionGaussianLikelihood``: Gaussian observation noise with a sparse precision (correlated noise).

:math:`y = f + \varepsilon`, :math:`\varepsilon \sim N(0, Q^{-1})`, ``Q`` from a :class:`SparsePrecisionNoise` (e.g.
:math:`\tau(\kappa^2 I + \text{Laplacian})` on an image grid). A subclass of GPyTorch's ``_GaussianLikelihoodBase``, so
``ExactGP`` + ``ExactMarginalLogLikelihood`` accept it, with every method using the whole noise precision:

- ``marginal(N(μ, K))`` = ``N(μ, K + Q⁻¹)`` with the covariance :class:`KernelPlusPrecisionInverse` (exact log-det and
  solves, see there): ``ExactMarginalLogLikelihood`` is the exact :math:`\log N(y; \mu, K + Q^{-1}) / n`;
- ``forward(f)`` = the conditional :math:`p(y \mid f)` as a :class:`CorrelatedNoiseNormal`: joint (correlated)
  samples; its ``log_prob`` returns per-point terms (GPyTorch's likelihood contract) whose sum is the exact joint
  :math:`\log N(y; f, Q^{-1})`;
- ``expected_log_prob(y, N(μ, K))``: per-point terms summing to the exact
  :math:`E_q[\log N(y; f, Q^{-1})] = \tfrac12\log\det Q - \tfrac n2\log 2\pi - \tfrac12 (y-\mu)^\top Q (y-\mu)
  - \tfrac12 \mathrm{tr}(Q K)`; the trace reads ``K`` only at ``Q``'s stored entries (all of ``Q``'s pattern, not
  only its diagonal). Point ``i`` gets :math:`-\tfrac12[\log 2\pi - \ell_i + r_i (Q r)_i + (Q K)_{ii}]` with
  :math:`\ell_i` the log of the squared Cholesky pivot of ``Q`` at node ``i``;
- ``log_marginal(y, N(μ, K))``: per-point marginal densities :math:`\log N(y_i; \mu_i, K_{ii} + (Q^{-1})_{ii})`
  (GPyTorch's meaning of ``log_marginal``; the noise variances come from the selected inverse, with their exact
  gradient w.r.t. ``Q``: O(n nnz(L)) in the backward, see :class:`PrecisionInverseLinearOperator`).

The noise's state dict entries (``noise_covar.*``) carry the pattern of ``G`` (see :class:`SparsePrecisionNoise`): a
state dict saved with another pattern is refused by ``load_state_dict``. ``tau`` and ``kappa2`` must be positive
finite scalars (``TypeError``/``ValueError`` otherwise, at construction and when set).

The noise exists only on the points its precision was built for: asking the likelihood for other points (e.g. test
inputs) raises; predict the latent function there with ``model(test_x)``.
"""

from __future__ import annotations

import math

import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.likelihoods.gaussian_likelihood import _GaussianLikelihoodBase
from torch.distributions import Distribution, constraints

from .kernel_plus_noise import KernelPlusPrecisionInverse
from .noise import SparsePrecisionNoise
from .precision_inverse import PrecisionInverseLinearOperator

__all__ = ["SparsePrecisionGaussianLikelihood", "CorrelatedNoiseNormal"]

_LOG_2PI = math.log(2 * math.pi)


def _pivot_logs(noise: PrecisionInverseLinearOperator) -> torch.Tensor:
    """``ℓ_i``: log of the squared Cholesky pivot of ``Q`` at node ``i`` (Σ ℓ_i = log det Q), ``(*batch, n)``."""
    out = []
    for b in range(noise._flat_values().shape[0]):
        factor = noise._factor(b)
        pivots = factor.diagonal()
        logs = torch.empty_like(pivots)
        logs[factor.perm.to(pivots.device)] = 2 * pivots.log()
        out.append(logs)
    return torch.stack(out).reshape(noise.batch_shape + (noise.shape[-1],))


def _pointwise_quadratic(noise: PrecisionInverseLinearOperator, r: torch.Tensor) -> torch.Tensor:
    """``r_i (Q r)_i`` per point (``r``: ``(..., n)``), differentiable in ``r`` and ``Q``'s values."""
    Qr = noise.solve(r.unsqueeze(-1)).squeeze(-1)
    return r * Qr


def _logdet_terms(noise: PrecisionInverseLinearOperator) -> torch.Tensor:
    """Per-point pieces of ``log det Q`` with the exact gradient of the sum: ``ℓ_i`` shifted so they sum to the
    differentiable ``log det Q`` (= −noise.logdet())."""
    pivots = _pivot_logs(noise).detach()
    total = -noise.logdet()
    return pivots + ((total - pivots.sum(-1)) / pivots.shape[-1]).unsqueeze(-1)


class CorrelatedNoiseNormal(Distribution):
    """``p(y | f) = N(f, Q⁻¹)`` presented per point: ``sample``/``rsample`` are joint (correlated) draws, ``log_prob``
    returns per-point terms whose sum over the last dimension is the exact joint log-density (each term alone is not
    a marginal density). ``mean = f``, ``variance = diag(Q⁻¹)``.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.gpytorch import CorrelatedNoiseNormal, PrecisionInverseLinearOperator
    >>> from sparseprec.structures import ar1
    >>> d = CorrelatedNoiseNormal(torch.zeros(5, dtype=torch.float64),
    ...                           PrecisionInverseLinearOperator.from_precision(ar1(5, 0.7)))
    >>> y = d.sample()
    >>> joint = torch.distributions.MultivariateNormal(torch.zeros(5, dtype=torch.float64),
    ...                                                precision_matrix=ar1(5, 0.7).to_dense())
    >>> d.log_prob(y).shape, torch.allclose(d.log_prob(y).sum(), joint.log_prob(y))
    (torch.Size([5]), True)
    """

    arg_constraints = {"loc": constraints.real}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc: torch.Tensor, noise: PrecisionInverseLinearOperator, validate_args: bool | None = None):
        if noise.batch_shape != torch.Size() or noise.shape[-1] != loc.shape[-1]:
            raise ValueError(
                f"noise must be one unbatched ({loc.shape[-1]}, {loc.shape[-1]}) operator, got {noise.shape}"
            )
        self.loc, self.noise = loc, noise
        super().__init__(batch_shape=loc.shape, validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return self.noise.diagonal().expand(self.loc.shape)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.loc.shape
        count = max(int(torch.Size(shape[:-1]).numel()), 1)
        eps = self.noise.zero_mean_mvn_samples(count)  # (count, n): the noise operator is unbatched here
        return self.loc + eps.reshape(shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        r = value - self.loc
        return -0.5 * (_LOG_2PI - _logdet_terms(self.noise) + _pointwise_quadratic(self.noise, r))


class SparsePrecisionGaussianLikelihood(_GaussianLikelihoodBase):
    """Gaussian likelihood with sparse-precision (correlated) noise; see the module.

    Parameters
    ----------
    structure : torch.Tensor
        ``G`` of ``Q = τ (κ² I + G)``: sparse symmetric ``(n, n)`` over the training points (e.g.
        ``sparseprec.structures.grid_laplacian``).
    tau, kappa2 : float
        Initial values (``kappa2=None``: ``Q = τ G``).

    Examples
    --------
    >>> import torch, gpytorch
    >>> from sparseprec.gpytorch import SparsePrecisionGaussianLikelihood
    >>> from sparseprec.structures import grid_laplacian
    >>> likelihood = SparsePrecisionGaussianLikelihood(grid_laplacian((10, 10), dtype=torch.float64), tau=4.0)
    >>> f = gpytorch.distributions.MultivariateNormal(torch.zeros(100, dtype=torch.float64),
    ...                                               torch.eye(100, dtype=torch.float64))
    >>> likelihood(f).covariance_matrix.shape  # K + Q⁻¹, exact
    torch.Size([100, 100])
    """

    def __init__(self, structure: torch.Tensor, tau: float = 1.0, kappa2: float | None = 1.0, **kwargs):
        super().__init__(noise_covar=SparsePrecisionNoise(structure, tau=tau, kappa2=kappa2), **kwargs)

    @property
    def tau(self) -> torch.Tensor:
        """τ of ``Q = τ (κ² I + G)`` (positive; settable: ``likelihood.tau = 2.0`` or ``initialize(tau=2.0)``)."""
        return self.noise_covar.tau

    @tau.setter
    def tau(self, value: float | torch.Tensor) -> None:
        self.noise_covar.tau = value

    @property
    def kappa2(self) -> torch.Tensor | None:
        """κ² of ``Q = τ (κ² I + G)`` (``None`` for ``kappa2=None``; settable otherwise, else ``AttributeError``)."""
        return self.noise_covar.kappa2

    @kappa2.setter
    def kappa2(self, value: float | torch.Tensor) -> None:
        self.noise_covar.kappa2 = value

    def marginal(self, function_dist: MultivariateNormal, *params, **kwargs) -> MultivariateNormal:
        mean, covar = function_dist.mean, function_dist.lazy_covariance_matrix
        noise = self._shaped_noise_covar(mean.shape, *params, **kwargs)
        return function_dist.__class__(mean, KernelPlusPrecisionInverse(covar, noise))

    def forward(self, function_samples: torch.Tensor, *params, **kwargs) -> CorrelatedNoiseNormal:
        noise = self.noise_covar(*params, shape=function_samples.shape[-1:], **kwargs)
        return CorrelatedNoiseNormal(function_samples, noise)

    def expected_log_prob(self, target: torch.Tensor, input: MultivariateNormal, *params, **kwargs) -> torch.Tensor:
        noise = self.noise_covar(*params, shape=input.mean.shape[-1:], **kwargs)
        r = target - input.mean
        pattern = noise.pattern
        rows, cols = pattern.rows.to(r.device), pattern.col.to(r.device)
        K = input.lazy_covariance_matrix
        k_at_pattern = K[..., rows, cols]  # K_ij at Q's stored entries only
        trace_terms = torch.zeros_like(r).index_add(-1, rows, noise.values * k_at_pattern)  # (Q K)_ii
        return -0.5 * (_LOG_2PI - _logdet_terms(noise) + _pointwise_quadratic(noise, r) + trace_terms)

    def log_marginal(self, observations: torch.Tensor, function_dist: MultivariateNormal, *params, **kwargs):
        noise = self.noise_covar(*params, shape=function_dist.mean.shape[-1:], **kwargs)
        variance = function_dist.variance + noise.diagonal()
        return torch.distributions.Normal(function_dist.mean, variance.sqrt()).log_prob(observations)

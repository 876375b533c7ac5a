"""SparseCholeskyVariationalDistribution inside an SVGP: the same ELBO and gradients as GPyTorch's dense
CholeskyVariationalDistribution holding the same covariance, and no densified covariance on the whitened path.

The reference: a model identical in everything but q(u), whose ``chol_variational_covar`` is the dense ``L`` (scale
form, ``S = L Lᵀ``) or the dense Cholesky factor of ``S = (L Lᵀ)⁻¹`` (precision form). The ELBO and its gradients
w.r.t. the variational mean, the factor values (the dense reference's gradient read at the stored entries; for the
precision form through the chain rule of ``S(L)`` by autograd on a dense copy), the kernel's and the likelihood's
hyper-parameters agree in float64 to round-off.
"""

from __future__ import annotations

import gpytorch
import pytest
import torch
from linear_operator.operators import DiagLinearOperator

from sparseprec.gpytorch import SparseCholeskyVariationalDistribution
from sparseprec.gpytorch import variational as variational_module

F64 = torch.float64
SIDE = 8  # 8 × 8 grid: m = 64 inducing points


def grid_pattern(side: int) -> torch.Tensor:
    """Strictly-lower pairs of the 8-neighbour stencil on a ``side × side`` grid in row-major order."""
    i = torch.arange(side * side)
    r, c = i // side, i % side
    pairs = []
    for dr, dc in ((0, -1), (-1, -1), (-1, 0), (-1, 1)):
        ok = (r + dr >= 0) & (c + dc >= 0) & (c + dc < side)
        pairs.append(torch.stack([i[ok], (i + dr * side + dc)[ok]]))
    return torch.cat(pairs, 1)


class _SVGP(gpytorch.models.ApproximateGP):
    def __init__(self, q, whitened: bool):
        g = torch.linspace(0, 1, SIDE, dtype=F64)
        z = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
        strategy = (
            gpytorch.variational.VariationalStrategy if whitened else gpytorch.variational.UnwhitenedVariationalStrategy
        )
        super().__init__(strategy(self, z, q, learn_inducing_locations=False))
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.MaternKernel(nu=1.5))

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _dense_factor(q: SparseCholeskyVariationalDistribution) -> torch.Tensor:
    rows, cols = q.factor_pattern
    L = torch.zeros(q.num_inducing_points, q.num_inducing_points, dtype=F64)
    L[rows, cols] = q.factor_values
    return L


def _pair(parameterization: str, whitened: bool, seed: int = 0):
    m = SIDE * SIDE
    torch.manual_seed(seed)
    q = SparseCholeskyVariationalDistribution(m, pattern=grid_pattern(SIDE), parameterization=parameterization)
    ours = _SVGP(q, whitened).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        q.factor_values.copy_(0.1 * torch.randn(q.factor_values.shape, generator=g, dtype=F64))
        diagonal = q._diagonal_positions
        q.factor_values[diagonal] = 0.5 + torch.rand(diagonal.numel(), generator=g, dtype=F64)
        q.variational_mean.copy_(torch.randn(m, generator=g, dtype=F64))
        ours.mean_module.constant.fill_(0.3)
        ours.covar_module.base_kernel.lengthscale = 0.4
        ours.covar_module.outputscale = 1.7
    ours.variational_strategy.variational_params_initialized.fill_(1)
    theirs = _SVGP(gpytorch.variational.CholeskyVariationalDistribution(m), whitened).double()
    shared = {k: v for k, v in ours.state_dict().items() if "_variational_distribution" not in k}
    theirs.load_state_dict(shared, strict=False)
    with torch.no_grad():
        L = _dense_factor(q)
        if parameterization == "precision":
            L = torch.linalg.cholesky(torch.cholesky_inverse(L))  # S = (L Lᵀ)⁻¹ = L⁻ᵀ L⁻¹
        dense_q = theirs.variational_strategy._variational_distribution
        dense_q.chol_variational_covar.copy_(L)
        dense_q.variational_mean.copy_(q.variational_mean)
    theirs.variational_strategy.variational_params_initialized.fill_(1)
    return ours, theirs


def _elbo(model, x, y):
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    with torch.no_grad():
        likelihood.noise = 0.05
    elbo = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=500)
    model.train()
    likelihood.train()
    value = elbo(model(x), y)
    value.backward()
    return value, likelihood


def _data(n: int):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 2, generator=g, dtype=F64)
    return x, torch.sin(5 * x).sum(-1) + 0.1 * torch.randn(n, generator=g, dtype=F64)


@pytest.mark.parametrize("whitened", [True, False], ids=["whitened", "unwhitened"])
@pytest.mark.parametrize("parameterization", ["scale", "precision"])
@pytest.mark.parametrize("n", [40, 150], ids=["n<m", "n>m"])  # GPyTorch takes another route when n > m
def test_elbo_and_gradients_match_the_dense_cholesky_variational_distribution(whitened, parameterization, n):
    x, y = _data(n)
    ours, theirs = _pair(parameterization, whitened)
    value, likelihood = _elbo(ours, x, y)
    reference, reference_likelihood = _elbo(theirs, x, y)
    torch.testing.assert_close(value, reference, rtol=1e-10, atol=1e-10)
    for name in (
        "mean_module.raw_constant",
        "covar_module.raw_outputscale",
        "covar_module.base_kernel.raw_lengthscale",
    ):
        ours_grad = ours.get_parameter(name).grad
        torch.testing.assert_close(ours_grad, theirs.get_parameter(name).grad, rtol=1e-8, atol=1e-10, msg=name)
    torch.testing.assert_close(likelihood.raw_noise.grad, reference_likelihood.raw_noise.grad, rtol=1e-8, atol=1e-10)
    q = ours.variational_strategy._variational_distribution
    dense_q = theirs.variational_strategy._variational_distribution
    torch.testing.assert_close(q.variational_mean.grad, dense_q.variational_mean.grad, rtol=1e-8, atol=1e-10)
    rows, cols = q.factor_pattern
    if parameterization == "scale":
        expected = dense_q.chol_variational_covar.grad[rows, cols]
    else:  # chain rule through C = chol((L Lᵀ)⁻¹) on a dense copy of L
        L = _dense_factor(q).detach().requires_grad_()
        C = torch.linalg.cholesky(torch.cholesky_inverse(L))
        (grad,) = torch.autograd.grad(C, L, dense_q.chol_variational_covar.grad.tril())
        expected = grad[rows, cols]
    torch.testing.assert_close(q.factor_values.grad, expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("parameterization", ["scale", "precision"])
def test_kl_against_the_whitened_prior_matches_gpytorch(parameterization):
    ours, theirs = _pair(parameterization, whitened=True, seed=3)
    kl = ours.variational_strategy.kl_divergence()
    reference = theirs.variational_strategy.kl_divergence()
    torch.testing.assert_close(kl, reference, rtol=1e-10, atol=1e-10)
    prior = gpytorch.distributions.MultivariateNormal(
        torch.full((SIDE * SIDE,), 0.2, dtype=F64), DiagLinearOperator(torch.linspace(0.5, 2.0, SIDE * SIDE, dtype=F64))
    )
    q_ours = ours.variational_strategy.variational_distribution
    q_theirs = theirs.variational_strategy.variational_distribution
    torch.testing.assert_close(
        torch.distributions.kl_divergence(q_ours, prior),
        torch.distributions.kl_divergence(q_theirs, prior),
        rtol=1e-10,
        atol=1e-10,
    )


def test_the_whitened_scale_form_never_densifies_the_variational_covariance(monkeypatch):
    # minibatch smaller than m: GPyTorch multiplies S by K_uu^{-1/2} K_uf and takes the KL against N(0, I); neither
    # needs S or its root as a dense m × m matrix (with a minibatch larger than m GPyTorch itself densifies S − I)
    def refuse(self):
        raise AssertionError("the variational covariance or its root was densified")

    monkeypatch.setattr(variational_module._SparseTriangular, "to_dense", refuse)
    monkeypatch.setattr(variational_module._SparseCholeskyCovariance, "to_dense", refuse)
    x, y = _data(40)
    ours, _ = _pair("scale", whitened=True)
    value, _ = _elbo(ours, x, y)
    assert torch.isfinite(value)
    assert ours.variational_strategy._variational_distribution.factor_values.grad is not None


def test_scale_form_variance_is_the_row_sums_of_squares():
    ours, _ = _pair("scale", whitened=True)
    q = ours.variational_strategy._variational_distribution
    L = _dense_factor(q).detach()
    torch.testing.assert_close(q().variance.detach(), (L * L).sum(-1))
    torch.testing.assert_close(q().covariance_matrix.detach(), L @ L.T)


def test_precision_form_starts_diagonal_at_a_diagonal_prior_without_densifying(monkeypatch):
    monkeypatch.setattr(variational_module, "_conditional_precision_factor", None)  # the dense route is not taken
    q = SparseCholeskyVariationalDistribution(16, pattern=grid_pattern(4)).double()
    d = torch.linspace(0.5, 2.0, 16, dtype=F64)
    prior = gpytorch.distributions.MultivariateNormal(torch.zeros(16, dtype=F64), DiagLinearOperator(d))
    q.initialize_variational_distribution(prior)
    torch.testing.assert_close(q().covariance_matrix.detach(), torch.diag(d))

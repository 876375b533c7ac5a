"""SparsePrecisionGaussianLikelihood: exact marginal likelihood vs the dense full-noise-covariance reference, gradients,
expected log-likelihood, per-point contracts, ExactGP prediction, noise-parameter recovery, errors."""

from __future__ import annotations

import math
from unittest.mock import MagicMock, patch

import gpytorch
import linear_operator
import pytest
import torch

from sparseprec.gpytorch import SparsePrecisionGaussianLikelihood
from sparseprec.structures import grid_laplacian

F64 = torch.float64


def _grid(s=8):
    t = torch.linspace(0, 1, s, dtype=F64)
    X = torch.cartesian_prod(t, t)
    return X, grid_laplacian((s, s), dtype=F64).detach()


class _GP(gpytorch.models.ExactGP):
    def __init__(self, x, y, likelihood):
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _dense_noise(likelihood):
    values = likelihood.noise_covar.precision_values()
    return likelihood.noise_covar.pattern.dense(values)


def _model(s=8, tau=3.0, kappa2=0.5, seed=0):
    X, G = _grid(s)
    y = torch.randn(s * s, dtype=F64, generator=torch.Generator().manual_seed(seed))
    likelihood = SparsePrecisionGaussianLikelihood(G, tau=tau, kappa2=kappa2).double()
    model = _GP(X, y, likelihood).double()
    return model, likelihood, X, y


def test_exact_marginal_log_likelihood_equals_the_dense_full_covariance_reference():
    model, likelihood, X, y = _model()
    model.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    # n = 64 ≤ max_cholesky_size: the exact path (its iterative path above the size: test_kernel_plus_noise_iterative)
    cg = MagicMock(wraps=linear_operator.utils.linear_cg)
    with patch("linear_operator.utils.linear_cg", new=cg):
        ours = mll(model(X), y)
    assert not cg.called
    ours.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    K = model.covar_module(X).to_dense()
    mean = model.mean_module(X)
    dense = torch.distributions.MultivariateNormal(mean, K + torch.linalg.inv(_dense_noise(likelihood)))
    reference = dense.log_prob(y) / y.numel()
    reference.backward()
    torch.testing.assert_close(ours, reference)
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, msg=name)


def test_expected_log_prob_sums_to_the_exact_expectation_and_uses_the_whole_precision():
    _, likelihood, _, y = _model()
    n = y.numel()
    g = torch.Generator().manual_seed(4)
    A = torch.randn(n, n, dtype=F64, generator=g) / math.sqrt(n)
    K = A @ A.T + 0.1 * torch.eye(n, dtype=F64)
    mu = torch.randn(n, dtype=F64, generator=g)
    q = gpytorch.distributions.MultivariateNormal(mu, K)
    per_point = likelihood.expected_log_prob(y, q)
    assert per_point.shape == (n,)
    Q = _dense_noise(likelihood)
    r = y - mu
    exact = 0.5 * torch.logdet(Q) - 0.5 * n * math.log(2 * math.pi) - 0.5 * r @ Q @ r - 0.5 * torch.trace(Q @ K)
    torch.testing.assert_close(per_point.sum(), exact)
    # the diagonal-only answer (what _GaussianLikelihoodBase computes from the noise diagonal) is different
    diag = torch.linalg.inv(Q).diagonal()
    independent = (-0.5 * ((r.square() + K.diagonal()) / diag + diag.log() + math.log(2 * math.pi))).sum()
    assert abs(float((independent - exact).detach())) > 1.0


def test_the_conditional_samples_jointly_and_its_terms_sum_to_the_joint_density():
    _, likelihood, _, y = _model()
    likelihood.requires_grad_(False)
    f = torch.randn(3, y.numel(), dtype=F64, generator=torch.Generator().manual_seed(5))
    conditional = likelihood(f)
    assert conditional.sample().shape == f.shape and conditional.sample((4,)).shape == (4, *f.shape)
    Q = _dense_noise(likelihood)
    dense = torch.distributions.MultivariateNormal(f, precision_matrix=Q)
    torch.testing.assert_close(conditional.log_prob(y).sum(-1), dense.log_prob(y))
    torch.manual_seed(0)
    draws = conditional.sample((20_000,))[:, 0] - f[0]
    covariance = torch.linalg.inv(Q)
    standard_error = (2 * covariance.diagonal().square() / 20_000).sqrt()
    assert bool(((draws.var(0) - covariance.diagonal()).abs() < 5 * standard_error).all())
    neighbours = (draws[:, 0] * draws[:, 1]).mean()  # correlated noise: adjacent pixels covary
    assert abs(float(neighbours - covariance[0, 1])) < 5 * float(covariance[0, 0]) / math.sqrt(20_000)


def test_log_marginal_is_the_per_point_marginal_density():
    _, likelihood, _, y = _model()
    n = y.numel()
    q = gpytorch.distributions.MultivariateNormal(torch.zeros(n, dtype=F64), torch.eye(n, dtype=F64))
    noise = torch.linalg.inv(_dense_noise(likelihood)).diagonal()
    expected = torch.distributions.Normal(0.0, (1 + noise).sqrt()).log_prob(y)
    torch.testing.assert_close(likelihood.log_marginal(y, q), expected)


def test_exact_gp_prediction_matches_the_dense_posterior():
    model, likelihood, X, y = _model()
    model.eval()
    x_test = torch.rand(7, 2, dtype=F64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        prediction = model(x_test)
        K = model.covar_module(X).to_dense()
        Ks = model.covar_module(x_test, X).to_dense()
        Kss = model.covar_module(x_test).to_dense()
        C = K + torch.linalg.inv(_dense_noise(likelihood))
        m = model.mean_module(X)
        mean = model.mean_module(x_test) + Ks @ torch.linalg.solve(C, y - m)
        covariance = Kss - Ks @ torch.linalg.solve(C, Ks.T)
    torch.testing.assert_close(prediction.mean, mean)
    torch.testing.assert_close(prediction.covariance_matrix, covariance, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="noise exists only on the training grid"):
        likelihood(prediction)


def test_recovers_the_noise_parameters_it_was_simulated_with():
    """20 × 20 image: smooth GP signal plus GMRF noise with τ = 4, κ² = 0.3; fit all hyper-parameters by the exact
    marginal likelihood and recover τ and κ².

    One image identifies τ well and κ² (the noise's inverse squared correlation length) loosely: over 8 simulated
    images (seeds 11–14, each with the CHOLMOD and the SciPy backend, whose samplers draw different images from the
    same seed) the fitted τ was 3.3–4.5 and κ² 0.09–0.80. So: τ within 30 %, κ² within a factor 4, and the fit is a
    maximum — the exact marginal likelihood at the fitted noise is at least the one at the true noise (same kernel).
    """
    s, tau, kappa2 = 20, 4.0, 0.3
    X, G = _grid(s)
    signal = torch.sin(3 * X[:, 0]) * torch.cos(2 * X[:, 1])
    truth = SparsePrecisionGaussianLikelihood(G, tau=tau, kappa2=kappa2).double()
    torch.manual_seed(11)
    with torch.no_grad():
        noise = truth(signal.unsqueeze(0)).sample()[0] - signal
    y = signal + noise
    likelihood = SparsePrecisionGaussianLikelihood(G, tau=1.0, kappa2=1.0).double()
    model = _GP(X, y, likelihood).double()
    model.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(800):  # converged: the loss at the fitted noise is below the loss at the true noise
        optimizer.zero_grad()
        (-mll(model(X), y)).backward()
        optimizer.step()
    assert float(likelihood.tau.detach()) == pytest.approx(tau, rel=0.3)
    assert kappa2 / 4 <= float(likelihood.kappa2.detach()) <= kappa2 * 4
    with torch.no_grad():
        fitted = float(mll(model(X), y))
        likelihood.tau, likelihood.kappa2 = tau, kappa2
        at_truth = float(mll(model(X), y))
    assert fitted >= at_truth


def test_noise_parameters_can_be_set_like_gpytorch_hyper_parameters():
    _, G = _grid(4)
    likelihood = SparsePrecisionGaussianLikelihood(G, tau=1.0, kappa2=1.0).double()
    likelihood.tau, likelihood.kappa2 = 2.5, 0.7
    assert float(likelihood.tau.detach()) == pytest.approx(2.5)
    assert float(likelihood.kappa2.detach()) == pytest.approx(0.7)
    likelihood.initialize(tau=3.0, kappa2=torch.tensor(0.2, dtype=torch.float64))  # GPyTorch's initialize
    expected = 3.0 * (0.2 * torch.eye(16, dtype=torch.float64) + G.to_dense())
    torch.testing.assert_close(_dense_noise(likelihood), expected)
    no_kappa = SparsePrecisionGaussianLikelihood(G, tau=1.0, kappa2=None).double()
    with pytest.raises(AttributeError, match="kappa2=None"):
        no_kappa.kappa2 = 0.3

"""The noise's marginal variances diag(Q⁻¹) carry the exact gradient w.r.t. Q's stored values (and so w.r.t. τ, κ²):
against dense autograd through torch.linalg.inv, for one and several backward blocks, batched operators, the
likelihood's ``log_marginal`` and the marginal's ``variance``; and no training step pays for that backward."""

from __future__ import annotations

from unittest.mock import patch

import gpytorch
import pytest
import torch

from sparseprec.gpytorch import PrecisionInverseLinearOperator, SparsePrecisionGaussianLikelihood, _inverse_diagonal
from sparseprec.structures import grid_laplacian
from tests.gpytorch.test_likelihood import _GP

F64 = torch.float64


def _values(side, batch=(), seed=0):
    """Stored values of random SPD precisions on a side × side grid pattern (both triangles tied)."""
    g = torch.Generator().manual_seed(seed)
    pattern = PrecisionInverseLinearOperator.from_precision(grid_laplacian((side, side), dtype=F64).detach()).pattern
    rows, cols, n = pattern.rows, pattern.col, pattern.n
    key = torch.minimum(rows, cols) * n + torch.maximum(rows, cols)
    weights = torch.rand(*batch, n * n, generator=g, dtype=F64)[..., key] * 0.9 + 0.1
    values = torch.where(rows != cols, -weights, torch.zeros((), dtype=F64))
    row_sums = torch.zeros(*batch, n, dtype=F64).index_add(-1, rows, -values)
    diagonal = row_sums + 0.3 + torch.rand(*batch, n, generator=g, dtype=F64)
    return values.index_add(-1, pattern.diagonal_positions, diagonal), pattern


def _dense_variances(values, pattern):
    dense = pattern.dense(values)
    return torch.linalg.inv(0.5 * (dense + dense.mT)).diagonal(dim1=-2, dim2=-1)


@pytest.mark.parametrize("side, batch", [(3, ()), (9, ()), (3, (2,))])  # 9 × 9 = 81 nodes: two backward blocks
def test_variances_and_their_gradient_equal_the_dense_inverse(side, batch):
    values, pattern = _values(side, batch)
    n = pattern.n
    upstream = torch.randn(*batch, n, dtype=F64, generator=torch.Generator().manual_seed(1))
    upstream[..., ::5] = 0.0  # nodes whose variance the loss does not use are skipped in the backward
    ours_values = values.clone().requires_grad_(True)
    ours = PrecisionInverseLinearOperator(ours_values, pattern).diagonal()
    (ours * upstream).sum().backward()
    dense_values = values.clone().requires_grad_(True)
    reference = _dense_variances(dense_values, pattern)
    (reference * upstream).sum().backward()
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(ours_values.grad, dense_values.grad)


def _likelihood_problem(side=4):
    t = torch.linspace(0, 1, side, dtype=F64)
    x = torch.cartesian_prod(t, t)
    G = grid_laplacian((side, side), dtype=F64).detach()
    likelihood = SparsePrecisionGaussianLikelihood(G, tau=2.5, kappa2=0.4).double()
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel()).double()
    y = torch.randn(side * side, dtype=F64, generator=torch.Generator().manual_seed(2))
    return likelihood, kernel, x, y, G


def _dense_noise_covariance(tau, kappa2, G):
    return torch.linalg.inv(tau * (kappa2 * torch.eye(G.shape[0], dtype=F64) + G.to_dense()))


def test_log_marginal_gradient_reaches_the_noise_parameters():
    likelihood, kernel, x, y, G = _likelihood_problem()
    mean = torch.zeros_like(y)
    f = gpytorch.distributions.MultivariateNormal(mean, kernel(x))
    likelihood.log_marginal(y, f).sum().backward()
    noise = likelihood.noise_covar
    parameters = {"tau": noise.raw_tau, "kappa2": noise.raw_kappa2, "outputscale": kernel.raw_outputscale}
    ours = {name: p.grad for name, p in parameters.items()}
    # dense reference in the raw (unconstrained) parameters, through the same softplus transforms
    raw = {name: p.detach().clone().requires_grad_(True) for name, p in parameters.items()}
    softplus = torch.nn.functional.softplus
    variance = (
        softplus(raw["outputscale"])
        + _dense_noise_covariance(softplus(raw["tau"]), softplus(raw["kappa2"]), G).diagonal()
    )  # K_ii = the output scale for an RBF kernel
    torch.distributions.Normal(mean, variance.sqrt()).log_prob(y).sum().backward()
    for name in ours:
        torch.testing.assert_close(ours[name].reshape(()), raw[name].grad.reshape(()), msg=name)


def test_predictive_variance_gradient_reaches_the_noise_parameters():
    likelihood, kernel, x, y, G = _likelihood_problem()
    f = gpytorch.distributions.MultivariateNormal(torch.zeros_like(y), kernel(x))
    likelihood(f).variance.sum().backward()
    tau, kappa2 = likelihood.tau.detach().requires_grad_(True), likelihood.kappa2.detach().requires_grad_(True)
    _dense_noise_covariance(tau, kappa2, G).diagonal().sum().backward()
    sigmoid = torch.sigmoid  # d softplus(r) / dr
    torch.testing.assert_close(
        likelihood.noise_covar.raw_tau.grad.reshape(()),
        (tau.grad * sigmoid(likelihood.noise_covar.raw_tau)).reshape(()),
    )
    torch.testing.assert_close(
        likelihood.noise_covar.raw_kappa2.grad.reshape(()),
        (kappa2.grad * sigmoid(likelihood.noise_covar.raw_kappa2)).reshape(()),
    )


@pytest.mark.parametrize("max_cholesky_size", [10_000, 0])  # the exact path and GPyTorch's CG/SLQ path
def test_a_training_step_does_not_pay_for_the_variance_gradient(max_cholesky_size):
    likelihood, _, x, y, _ = _likelihood_problem(side=6)
    model = _GP(x, y, likelihood).double()
    model.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    calls = []
    backward = _inverse_diagonal._InverseDiagonal.backward

    def counting(ctx, g):
        calls.append(g.shape)
        return backward(ctx, g)

    with (
        patch.object(_inverse_diagonal._InverseDiagonal, "backward", staticmethod(counting)),
        gpytorch.settings.max_cholesky_size(max_cholesky_size),
        gpytorch.settings.min_preconditioning_size(1),
    ):
        (-mll(model(x), y)).backward()
    assert likelihood.noise_covar.raw_tau.grad is not None
    assert calls == []

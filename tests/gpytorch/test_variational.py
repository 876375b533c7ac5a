"""SparseCholeskyVariationalDistribution: GPyTorch's VariationalTestCase (both parameterisations, batched models), and
exact agreement with GPyTorch's dense distributions on the same parameters."""

from __future__ import annotations

import unittest

import gpytorch
import torch
from gpytorch.test.variational_test_case import VariationalTestCase
from linear_operator import to_linear_operator

from sparseprec.gpytorch import SparseCholeskyVariationalDistribution


class _Conformance(VariationalTestCase):
    parameterization = "precision"

    @property
    def batch_shape(self):
        return torch.Size([])

    @property
    def distribution_cls(self):
        parameterization = self.parameterization

        def make(num_inducing, batch_shape=torch.Size([]), **kwargs):  # noqa: B008 - GPyTorch's signature
            band = torch.stack([torch.arange(1, num_inducing), torch.arange(num_inducing - 1)])
            return SparseCholeskyVariationalDistribution(num_inducing, pattern=band, batch_shape=batch_shape,
                                                         parameterization=parameterization, **kwargs)  # fmt: skip

        return make

    @property
    def mll_cls(self):
        return gpytorch.mlls.VariationalELBO

    @property
    def strategy_cls(self):
        return gpytorch.variational.VariationalStrategy

    def test_training_iteration(self, *args, **kwargs):
        cg_mock, _, ciq_mock = super().test_training_iteration(*args, **kwargs)
        self.assertFalse(cg_mock.called)
        self.assertFalse(ciq_mock.called)

    def test_fantasy_call(self, *args, **kwargs):
        # GPyTorch builds fantasy models only for its own CholeskyVariationalDistribution (as for MeanField/Delta)
        with self.assertRaisesRegex(NotImplementedError, "CholeskyVariationalDistribution"):
            super().test_fantasy_call(*args, **kwargs)

    def test_eval_iteration(self, *args, **kwargs):
        cg_mock, _, ciq_mock = super().test_eval_iteration(*args, **kwargs)
        self.assertFalse(cg_mock.called)
        self.assertFalse(ciq_mock.called)


class TestSparseCholeskyVariationalPrecision(_Conformance, unittest.TestCase):
    parameterization = "precision"


class TestSparseCholeskyVariationalScale(_Conformance, unittest.TestCase):
    parameterization = "scale"


def _random_factor(q, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        q.factor_values.copy_(0.3 * torch.randn(q.factor_values.shape, generator=g))
        positions = q._diagonal_positions
        q.factor_values[..., positions] = 0.5 + torch.rand(q.factor_values[..., positions].shape, generator=g)
        q.variational_mean.copy_(torch.randn(q.variational_mean.shape, generator=g))


def test_full_pattern_scale_form_is_gpytorch_cholesky_variational_distribution():
    m = 7
    rows, cols = torch.tril_indices(m, m, -1)
    ours = SparseCholeskyVariationalDistribution(m, pattern=torch.stack([rows, cols]), parameterization="scale")
    _random_factor(ours)
    theirs = gpytorch.variational.CholeskyVariationalDistribution(m)
    r, c = ours.factor_pattern
    L = torch.zeros(m, m)
    L[r, c] = ours.factor_values.detach()
    with torch.no_grad():
        theirs.chol_variational_covar.copy_(L)
        theirs.variational_mean.copy_(ours.variational_mean)
    prior = gpytorch.distributions.MultivariateNormal(torch.zeros(m), torch.eye(m) * 2.0)
    kl_ours = torch.distributions.kl_divergence(ours(), prior)
    kl_theirs = torch.distributions.kl_divergence(theirs(), prior)
    torch.testing.assert_close(kl_ours, kl_theirs)
    torch.testing.assert_close(ours().covariance_matrix, theirs().covariance_matrix)


def test_default_pattern_is_mean_field_and_precision_form_inverts_the_factor():
    m = 5
    q = SparseCholeskyVariationalDistribution(m, parameterization="precision")
    assert q.factor_values.numel() == m  # diagonal only: mean field
    _random_factor(q)
    d = q.factor_values.detach()
    torch.testing.assert_close(q().variance, d.pow(-2))
    band = torch.stack([torch.arange(1, m), torch.arange(m - 1)])
    q = SparseCholeskyVariationalDistribution(m, pattern=band, parameterization="precision")
    _random_factor(q, seed=1)
    r, c = q.factor_pattern
    L = torch.zeros(m, m)
    L[r, c] = q.factor_values.detach()
    S = torch.linalg.inv(L @ L.T)
    x = torch.randn(3, m)
    dense = torch.distributions.MultivariateNormal(q.variational_mean.detach(), S)
    torch.testing.assert_close(q().log_prob(x).detach(), dense.log_prob(x), rtol=1e-4, atol=1e-4)
    prior = gpytorch.distributions.MultivariateNormal(torch.zeros(m), torch.eye(m))
    reference = torch.distributions.kl_divergence(
        dense, torch.distributions.MultivariateNormal(torch.zeros(m), torch.eye(m))
    )
    torch.testing.assert_close(torch.distributions.kl_divergence(q(), prior).detach(), reference, rtol=1e-4, atol=1e-4)


def test_pattern_errors():
    import pytest

    with pytest.raises(ValueError, match=r"pattern indices must lie in \[0, 4\)"):
        SparseCholeskyVariationalDistribution(4, pattern=torch.tensor([[5], [0]]))
    with pytest.raises(ValueError, match="parameterization must be"):
        SparseCholeskyVariationalDistribution(4, parameterization="cov")


def _prior(K: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
    return gpytorch.distributions.MultivariateNormal(torch.zeros(K.shape[:-1], dtype=K.dtype), K)


def test_precision_form_starts_at_the_prior_when_the_pattern_holds_its_markov_structure():
    # Ornstein–Uhlenbeck (Matérn-1/2) kernel on sorted 1-D inputs: u_j | u_{>j} depends on u_{j+1} only, so the
    # one-neighbour pattern holds the prior's precision exactly; a batch of two length-scales.
    t = torch.sort(torch.rand(12, dtype=torch.float64) * 5).values
    K = torch.stack([torch.exp(-(t[:, None] - t[None, :]).abs() / ell) for ell in (0.7, 2.0)])
    band = torch.stack([torch.arange(1, 12), torch.arange(11)])
    q = SparseCholeskyVariationalDistribution(12, pattern=band, batch_shape=torch.Size([2])).double()
    q.initialize_variational_distribution(_prior(K))
    torch.testing.assert_close(q().covariance_matrix.detach(), K, rtol=1e-10, atol=1e-10)


def test_precision_form_full_pattern_starts_exactly_at_any_prior_and_partial_pattern_keeps_its_conditionals():
    m = 9
    x = torch.randn(m, 2, dtype=torch.float64)
    K = torch.exp(-0.5 * torch.cdist(x, x).square()) + 0.1 * torch.eye(m, dtype=torch.float64)
    rows, cols = torch.tril_indices(m, m, -1)
    q = SparseCholeskyVariationalDistribution(m, pattern=torch.stack([rows, cols])).double()
    q.initialize_variational_distribution(_prior(K))
    torch.testing.assert_close(q().covariance_matrix.detach(), K, rtol=1e-10, atol=1e-10)
    # two later neighbours per point: the implied u_j | u_{j+1}, u_{j+2} is the prior's (Vecchia's construction)
    pairs = torch.tensor([(j + s, j) for j in range(m) for s in (1, 2) if j + s < m]).T
    q = SparseCholeskyVariationalDistribution(m, pattern=pairs).double()
    q.initialize_variational_distribution(_prior(K))
    r, c = q.factor_pattern
    L = torch.zeros(m, m, dtype=torch.float64)
    L[r, c] = q.factor_values.detach()
    for j in range(m - 2):
        N = [j + 1, j + 2]
        b = torch.linalg.solve(K[N][:, N], K[N, j])
        d = K[j, j] - K[j, N] @ b
        torch.testing.assert_close(L[j, j], d.rsqrt())
        torch.testing.assert_close(L[N, j], -b * d.rsqrt())


def test_precision_form_initialisation_refuses_a_prior_that_is_not_positive_definite():
    import pytest

    K = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)
    q = SparseCholeskyVariationalDistribution(2, pattern=torch.tensor([[1], [0]])).double()
    prior = gpytorch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), to_linear_operator(K))
    with pytest.raises(ValueError, match="not positive definite on the pattern.*inducing point 0"):
        q.initialize_variational_distribution(prior)

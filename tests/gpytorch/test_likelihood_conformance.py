"""GPyTorch's own BaseLikelihoodTestCase for SparsePrecisionGaussianLikelihood (5 points on a path graph).

Two base checks assume conditionally independent noise and are replaced by the same checks done right for correlated
noise (same shapes, same tolerances):

- ``_test_log_prob`` compares ``expected_log_prob`` with ``Likelihood.expected_log_prob``, a 1-D Gauss–Hermite rule
  per point that treats the ``f_i`` as independent, so it drops the terms ``Q_ij K_ji`` (i ≠ j) that correlated noise
  brings; the replacement averages ``forward(f).log_prob(y)`` over joint draws of ``f`` (Monte Carlo, 20 000 draws).
- ``_test_log_marginal`` compares ``log_marginal`` with a Monte Carlo average of ``exp(forward(f).log_prob(y))`` per
  point, the per-point marginal density only when each term depends on ``y_i, f_i`` alone. Here
  ``forward(f).log_prob`` returns per-point terms of the *joint* correlated density (their sum is exact) and
  ``log_marginal`` is the per-point marginal ``log N(y_i; μ_i, K_ii + (Q⁻¹)_ii)`` (GPyTorch's meaning); the replacement
  checks it against Monte Carlo with the marginal conditional ``N(y_i; f_i, (Q⁻¹)_ii)``.
"""

from __future__ import annotations

import unittest

import torch
from gpytorch.test.base_likelihood_test_case import BaseLikelihoodTestCase

from sparseprec.gpytorch import SparsePrecisionGaussianLikelihood
from sparseprec.structures import grid_laplacian


class TestSparsePrecisionGaussianLikelihood(BaseLikelihoodTestCase, unittest.TestCase):
    seed = 0

    def create_likelihood(self):
        return SparsePrecisionGaussianLikelihood(grid_laplacian((1, 5), dtype=torch.float32).detach(), tau=2.0,
                                                 kappa2=0.5)  # fmt: skip

    def _test_log_marginal(self, batch_shape):
        likelihood = self.create_likelihood()
        input = self._create_marginal_input(batch_shape)
        target = self._create_targets(batch_shape)
        output = likelihood.log_marginal(target, input)
        self.assertTrue(torch.is_tensor(output))
        self.assertEqual(output.shape, batch_shape + torch.Size([5]))
        with torch.no_grad():
            noise_variance = likelihood.noise_covar(shape=torch.Size([5])).diagonal()
            f = input.rsample(torch.Size([20_000]))
            per_point = torch.distributions.Normal(f, noise_variance.sqrt()).log_prob(target)
            monte_carlo = per_point.logsumexp(0) - torch.log(torch.tensor(20_000.0))
        self.assertAllClose(output.detach(), monte_carlo, rtol=0.25)

    def _test_log_prob(self, batch_shape):
        likelihood = self.create_likelihood()
        input = self._create_marginal_input(batch_shape)
        target = self._create_targets(batch_shape)
        output = likelihood.expected_log_prob(target, input)
        self.assertTrue(torch.is_tensor(output))
        self.assertEqual(output.shape, batch_shape + torch.Size([5]))
        with torch.no_grad():
            f = input.rsample(torch.Size([20_000]))
            monte_carlo = likelihood(f).log_prob(target).mean(0)
        self.assertAllClose(output.detach(), monte_carlo, rtol=0.25)

"""``K + Q⁻¹`` on GPyTorch's iterative path (CG, stochastic Lanczos quadrature) and its preconditioner
``P = U Uᵀ + Q⁻¹`` (``LowRankPlusPrecisionInverse``), against dense torch.

- linear_operator's own conformance suite on ``KernelPlusPrecisionInverse``: CG is expected where GPyTorch would use it
  (``max_cholesky_size`` exceeded), and not on its ``cholesky`` variants (the exact dense path);
- the preconditioner: solve, log-determinant and its gradient, samples' covariance, CG closure vs the dense
  ``(Q⁻¹ + U Uᵀ)⁻¹``;
- the iterative marginal log-likelihood and its gradient: unbiased (mean over probe seeds) and close to the exact value;
  the exact path below ``max_cholesky_size`` calls neither CG nor Lanczos.
"""

from __future__ import annotations

import unittest
from unittest.mock import MagicMock, patch

import gpytorch
import linear_operator
import pytest
import torch
from linear_operator import settings
from linear_operator.operators import RootLinearOperator
from linear_operator.test.linear_operator_test_case import LinearOperatorTestCase

from sparseprec.gpytorch import (
    KernelPlusPrecisionInverse,
    LowRankPlusPrecisionInverse,
    PrecisionInverseLinearOperator,
)
from sparseprec.structures import ar1, grid_laplacian

F64 = torch.float64


def _noise_values(seed=0, dtype=torch.float32):
    from test_linear_operators import _precision  # a random SPD precision on a 2 × 3 grid (same helper as there)

    return _precision((), seed=seed, dtype=dtype)


class TestKernelPlusPrecisionInverse(LinearOperatorTestCase, unittest.TestCase):
    """linear_operator's suite: iterative (CG/SLQ with our preconditioner) when ``max_cholesky_size`` is exceeded."""

    seed = 0
    should_test_sample = True
    should_call_cg = True
    should_call_lanczos = True

    def create_linear_op(self):
        values, pattern = _noise_values()
        g = torch.Generator().manual_seed(1)
        # K = R Rᵀ through its root: symmetric for every R, so the suite's gradients w.r.t. R have one meaning
        kernel = RootLinearOperator(torch.randn(6, 4, generator=g).requires_grad_(True))
        return KernelPlusPrecisionInverse(kernel, PrecisionInverseLinearOperator(values.requires_grad_(True), pattern))

    def evaluate_linear_op(self, linear_op):
        # the noise's dense precision symmetrised (the same matrix), so the reference gradient w.r.t. Q's stored values
        # is the symmetric one the operator returns (as in test_linear_operators.py)
        noise = linear_op.noise
        dense = noise.pattern.dense(noise.values)
        return linear_op.kernel.to_dense() + torch.linalg.inv(0.5 * (dense + dense.mT))


def _grid_problem(s=12, seed=0):
    n = s * s
    t = torch.linspace(0, 1, s, dtype=F64)
    x = torch.cartesian_prod(t, t)
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel()).double()
    kernel.base_kernel.lengthscale = 0.2
    Q = (4.0 * (0.2 * torch.eye(n, dtype=F64) + grid_laplacian((s, s), dtype=F64).to_dense())).to_sparse_csr()
    noise = PrecisionInverseLinearOperator.from_precision(Q)
    y = torch.randn(n, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return kernel, x, noise, y


def _objective_and_grads(kernel, x, noise, y):
    """``yᵀ A⁻¹ y + log det A`` for ``A = K + Q⁻¹`` with its gradient w.r.t. (log outputscale, log lengthscale, Q)."""
    values = noise.values.detach().clone().requires_grad_(True)
    kernel.zero_grad()
    A = KernelPlusPrecisionInverse(kernel(x).evaluate_kernel(), PrecisionInverseLinearOperator(values, noise.pattern))
    inv_quad, logdet = A.inv_quad_logdet(y, logdet=True)
    (inv_quad + logdet).backward()
    grads = torch.cat([kernel.raw_outputscale.grad.reshape(1), kernel.base_kernel.raw_lengthscale.grad.reshape(1),
                       values.grad])  # fmt: skip
    return inv_quad.item(), logdet.item(), grads


def _dense_objective_and_grads(kernel, x, noise, y):
    values = noise.values.detach().clone().requires_grad_(True)
    kernel.zero_grad()
    dense_noise = noise.pattern.dense(values)
    A = kernel(x).to_dense() + torch.linalg.inv(0.5 * (dense_noise + dense_noise.mT))
    inv_quad = y @ torch.linalg.solve(A, y)
    logdet = torch.logdet(A)
    (inv_quad + logdet).backward()
    grads = torch.cat([kernel.raw_outputscale.grad.reshape(1), kernel.base_kernel.raw_lengthscale.grad.reshape(1),
                       values.grad])  # fmt: skip
    return inv_quad.item(), logdet.item(), grads


# ---- the preconditioner -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, 1, 4])
def test_preconditioner_solve_logdet_and_closure_equal_the_dense_inverse(k):
    n = 40
    g = torch.Generator().manual_seed(k)
    U = torch.randn(n, k, dtype=F64, generator=g)
    Q = ar1(n, 0.7, 2.0).detach()
    P = LowRankPlusPrecisionInverse(U, PrecisionInverseLinearOperator.from_precision(Q))
    dense = U @ U.T + torch.linalg.inv(Q.to_dense())
    B = torch.randn(n, 3, dtype=F64, generator=g)
    torch.testing.assert_close(P.to_dense(), dense)
    torch.testing.assert_close(P.solve(B), torch.linalg.solve(dense, B))
    torch.testing.assert_close(P.preconditioner_closure()(B), torch.linalg.solve(dense, B))
    torch.testing.assert_close(P.logdet(), torch.logdet(dense))
    inv_quad, logdet = P.inv_quad_logdet(B, logdet=True)
    torch.testing.assert_close(inv_quad, (B * torch.linalg.solve(dense, B)).sum())
    torch.testing.assert_close(P.diagonal(), dense.diagonal())
    torch.testing.assert_close(P @ B, dense @ B)


def test_preconditioner_logdet_gradient_equals_the_dense_gradient():
    n = 30
    g = torch.Generator().manual_seed(3)
    U = torch.randn(n, 3, dtype=F64, generator=g).requires_grad_(True)
    noise = PrecisionInverseLinearOperator.from_precision(ar1(n, 0.6, 1.5).detach())
    values = noise.values.detach().clone().requires_grad_(True)
    P = LowRankPlusPrecisionInverse(U, PrecisionInverseLinearOperator(values, noise.pattern))
    B = torch.randn(n, 2, dtype=F64, generator=g)
    ours = P.logdet() + P.inv_quad(B)
    grads = torch.autograd.grad(ours, (U, values))
    U2, v2 = U.detach().clone().requires_grad_(True), values.detach().clone().requires_grad_(True)
    dense_q = noise.pattern.dense(v2)
    dense = U2 @ U2.T + torch.linalg.inv(0.5 * (dense_q + dense_q.mT))
    reference = torch.logdet(dense) + (B * torch.linalg.solve(dense, B)).sum()
    expected = torch.autograd.grad(reference, (U2, v2))
    torch.testing.assert_close(ours, reference)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_preconditioner_samples_have_its_covariance():
    n = 12
    U = torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
    Q = ar1(n, 0.5, 1.0).detach()
    P = LowRankPlusPrecisionInverse(U, PrecisionInverseLinearOperator.from_precision(Q))
    torch.manual_seed(0)
    z = P.zero_mean_mvn_samples(40_000)
    assert z.shape == (40_000, n)
    dense = P.to_dense()
    covariance = z.T @ z / z.shape[0]
    # each entry's Monte Carlo s.d. is at most sqrt(2 / N) max|P| ≈ 0.007 max|P|: 5 s.d.
    assert float((covariance - dense).abs().max()) < 0.035 * float(dense.abs().max())


def test_preconditioner_rejects_bad_inputs():
    noise = PrecisionInverseLinearOperator.from_precision(ar1(5, 0.5).detach())
    with pytest.raises(TypeError, match="noise must be a PrecisionInverseLinearOperator"):
        LowRankPlusPrecisionInverse(torch.zeros(5, 1, dtype=F64), torch.eye(5, dtype=F64))
    with pytest.raises(ValueError, match=r"root must have shape \(\*batch, 5, k\)"):
        LowRankPlusPrecisionInverse(torch.zeros(4, 1, dtype=F64), noise)
    with pytest.raises(TypeError, match="floating-point"):
        LowRankPlusPrecisionInverse(torch.zeros(5, 1, dtype=torch.int64), noise)


# ---- the operator's two paths -------------------------------------------------------------------------------------
def test_exact_path_below_max_cholesky_size_calls_neither_cg_nor_lanczos():
    kernel, x, noise, y = _grid_problem(s=10)
    cg, lanczos = MagicMock(wraps=linear_operator.utils.linear_cg), MagicMock()
    with (
        patch("linear_operator.utils.linear_cg", new=cg),
        patch("linear_operator.utils.lanczos.lanczos_tridiag", new=lanczos),
    ):
        ours = _objective_and_grads(kernel, x, noise, y)  # n = 100 ≤ 800
    assert not cg.called and not lanczos.called
    reference = _dense_objective_and_grads(kernel, x, noise, y)
    assert ours[0] == pytest.approx(reference[0], rel=1e-10)
    assert ours[1] == pytest.approx(reference[1], rel=1e-10)
    torch.testing.assert_close(ours[2], reference[2])


def test_iterative_path_is_used_above_max_cholesky_size_and_matches_the_dense_values():
    kernel, x, noise, y = _grid_problem(s=12)
    reference = _dense_objective_and_grads(kernel, x, noise, y)
    cg = MagicMock(wraps=linear_operator.utils.linear_cg)
    torch.manual_seed(0)
    with (
        patch("linear_operator.utils.linear_cg", new=cg),
        settings.max_cholesky_size(100),
        settings.min_preconditioning_size(100),
        settings.cg_tolerance(1e-5),
        settings.num_trace_samples(64),
    ):
        inv_quad, logdet, _ = _objective_and_grads(kernel, x, noise, y)
    assert cg.called
    assert inv_quad == pytest.approx(reference[0], rel=1e-5)  # a solve: CG's tolerance
    # the log-determinant: exact log det P plus a 64-probe estimate of log det(P⁻¹A), whose spread is O(1)
    assert logdet == pytest.approx(reference[1], abs=3.0)


@pytest.mark.parametrize("rank", [0, 5])
def test_iterative_gradient_is_unbiased(rank):
    """The mean gradient over independent probe draws equals the exact gradient (kernel hyper-parameters and every
    stored value of Q), for the noise-only preconditioner (k = 0) and with a rank-5 pivoted Cholesky part."""
    kernel, x, noise, y = _grid_problem(s=12)
    reference = _dense_objective_and_grads(kernel, x, noise, y)[2]
    draws = []
    with (
        settings.max_cholesky_size(100),
        settings.min_preconditioning_size(0),
        settings.max_preconditioner_size(rank),
        settings.cg_tolerance(1e-5),
        settings.num_trace_samples(50),
        settings.max_lanczos_quadrature_iterations(144),
    ):
        for seed in range(8):
            torch.manual_seed(seed)
            draws.append(_objective_and_grads(kernel, x, noise, y)[2])
    draws = torch.stack(draws)
    mean, sd = draws.mean(0), draws.std(0) / draws.shape[0] ** 0.5
    # each coordinate within 5 standard errors (+ a small floor for CG's error)
    assert bool(((mean - reference).abs() <= 5 * sd + 1e-3 * reference.abs().max()).all())


def test_no_preconditioner_when_gpytorch_turns_it_off():
    kernel, x, noise, y = _grid_problem(s=12)
    A = KernelPlusPrecisionInverse(kernel(x).evaluate_kernel().detach(), noise)
    with settings.max_preconditioner_size(0):
        assert A._preconditioner() == (None, None, None)
    with settings.max_cholesky_size(100), settings.max_preconditioner_size(0), settings.cg_tolerance(1e-5):
        solved = A.solve(y.unsqueeze(-1)).squeeze(-1)
    residual = (A.to_dense() @ solved - y).norm() / y.norm()
    assert float(residual) < 1e-3  # unpreconditioned CG to GPyTorch's tolerance on this ill-conditioned A


def test_marginal_log_likelihood_of_an_exact_gp_above_max_cholesky_size():
    """ExactGP + SparsePrecisionGaussianLikelihood, n = 144 with max_cholesky_size = 100: GPyTorch's iterative path
    runs (CG called) and the marginal log-likelihood is within its CG/SLQ accuracy of the dense value."""
    from sparseprec.gpytorch import SparsePrecisionGaussianLikelihood

    s = 12
    t = torch.linspace(0, 1, s, dtype=F64)
    x = torch.cartesian_prod(t, t)
    y = torch.sin(4 * x[:, 0]) + 0.3 * torch.randn(s * s, dtype=F64, generator=torch.Generator().manual_seed(0))
    likelihood = SparsePrecisionGaussianLikelihood(grid_laplacian((s, s), dtype=F64).detach(), tau=4.0, kappa2=0.2)

    class GP(gpytorch.models.ExactGP):
        def __init__(self):
            super().__init__(x, y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel())

        def forward(self, inputs):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(inputs), self.covar_module(inputs))

    model = GP().double()
    likelihood.double()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    model.train()
    exact = mll(model(x), y).item()
    cg = MagicMock(wraps=linear_operator.utils.linear_cg)
    torch.manual_seed(0)
    with patch("linear_operator.utils.linear_cg", new=cg), settings.max_cholesky_size(100):
        iterative = mll(model(x), y)
        iterative.backward()
    assert cg.called
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())
    assert iterative.item() == pytest.approx(exact, abs=0.05)  # per point: GPyTorch's default tolerances
    # the posterior on the training grid through the likelihood: mean and variances of K + Q⁻¹ at the same points
    model.eval()
    # (debug off: GPyTorch warns when the test inputs equal the training inputs, which is the point here)
    with torch.no_grad(), settings.max_cholesky_size(100), gpytorch.settings.debug(False):
        predictive = likelihood(model(x))
    assert predictive.mean.shape == (s * s,)
    assert bool((predictive.variance > 0).all())

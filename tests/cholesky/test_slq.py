"""Stochastic Lanczos quadrature log-determinant: value and gradient within their stated statistical tolerances."""

from __future__ import annotations

import pytest
import torch

from sparseprec.cholesky import ExactLogDet, SLQLogDet, slq_logdet, sparse_logdet
from tests.solvers.problems import grid_laplacian


def test_slq_value_is_close_to_exact():
    Q = grid_laplacian(50, shift=0.5)  # n = 2500, κ ≈ 17
    exact = float(sparse_logdet(Q))
    estimates = torch.tensor(
        [float(slq_logdet(Q, num_probes=64, generator=torch.Generator().manual_seed(s))) for s in range(8)]
    )
    # unbiased over probes: the mean of 8 independent 64-probe estimates within 4 standard errors of the exact value
    standard_error = float(estimates.std() / 8**0.5)
    assert abs(float(estimates.mean()) - exact) < 4 * standard_error + 1e-6 * abs(exact)
    assert float((estimates - exact).abs().max()) / exact < 5e-3  # each estimate within 0.5 % (seen: 0.33 %)
    # reproducible with a seeded generator
    a = slq_logdet(Q, generator=torch.Generator().manual_seed(1))
    b = slq_logdet(Q, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_slq_quadrature_is_exact_for_enough_steps():
    # with enough Lanczos steps each quadratic form is exact; for a diagonal Q every Rademacher probe gives
    # zᵀ log(Q) z = tr log Q, so only the quadrature could err
    Q = torch.diag(torch.linspace(0.5, 4.0, 30, dtype=torch.float64)).to_sparse_csr()
    value = slq_logdet(Q, num_probes=3, lanczos_steps=30, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(value, torch.logdet(Q.to_dense()), rtol=1e-10, atol=1e-10)


def test_slq_gradient_estimates_the_inverse():
    Q = grid_laplacian(20, shift=0.5).requires_grad_()  # n = 400
    slq_logdet(Q, num_probes=4096, generator=torch.Generator().manual_seed(0), cg_rtol=1e-10).backward()
    Qe = Q.detach().clone().requires_grad_()
    sparse_logdet(Qe).backward()
    error = (Q.grad.values() - Qe.grad.values()).norm() / Qe.grad.values().norm()
    assert float(error) < 0.05  # Hutchinson: relative error ~ 1/sqrt(P) x O(1)


def test_logdet_estimators_and_errors():
    Q = grid_laplacian(5, shift=1.0)
    torch.testing.assert_close(ExactLogDet()(Q), torch.logdet(Q.to_dense()))
    estimate = SLQLogDet(num_probes=512, generator=torch.Generator().manual_seed(0))(Q)
    torch.testing.assert_close(estimate, sparse_logdet(Q), rtol=2e-2, atol=0)
    with pytest.raises(ValueError, match="num_probes must be a positive int"):
        SLQLogDet(num_probes=0)
    with pytest.raises(TypeError, match="cholesky must be a SparseCholesky"):
        ExactLogDet(cholesky="scipy")
    with pytest.raises(ValueError, match="num_probes must be a positive int"):
        slq_logdet(Q, num_probes=0)
    with pytest.raises(ValueError, match="not positive definite"):
        slq_logdet(torch.sparse_csr_tensor(Q.crow_indices(), Q.col_indices(), -Q.values(), Q.shape))

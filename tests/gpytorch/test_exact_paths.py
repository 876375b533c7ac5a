"""The sparse-precision operators inside GPyTorch: exact log-densities and gradients (dense torch references), no CG or
Lanczos at any size, use in pyro.sample, and the construction errors."""

from __future__ import annotations

from unittest.mock import MagicMock, patch

import gpytorch
import linear_operator
import pyro
import pytest
import torch

from sparseprec.gpytorch import PrecisionInverseLinearOperator, SparsePrecisionLinearOperator
from sparseprec.structures import ar1, matern_spde

F64 = torch.float64


def test_mvn_log_prob_and_gradients_match_dense_torch():
    kappa = torch.tensor(0.7, dtype=F64, requires_grad=True)
    Q = matern_spde((7, 6), kappa, 1.3)
    Sigma = PrecisionInverseLinearOperator.from_precision(Q)
    loc = torch.randn(42, dtype=F64, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 42, dtype=F64, generator=torch.Generator().manual_seed(1))
    ours = gpytorch.distributions.MultivariateNormal(loc, Sigma).log_prob(x).sum()
    (g_ours,) = torch.autograd.grad(ours, kappa)
    dense = torch.distributions.MultivariateNormal(loc, precision_matrix=matern_spde((7, 6), kappa, 1.3).to_dense())
    reference = dense.log_prob(x).sum()
    (g_ref,) = torch.autograd.grad(reference, kappa)
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(g_ours, g_ref)


@pytest.mark.parametrize("operator", ["covariance", "precision"])
def test_no_cg_or_lanczos_above_the_dense_cholesky_size(operator):
    """n = 2000 > linear_operator's max_cholesky_size (800), where its default would run CG + stochastic Lanczos."""
    n = 2000
    Q = ar1(n, 0.95, 2.0).detach()
    if operator == "covariance":
        op = PrecisionInverseLinearOperator.from_precision(Q)
    else:
        op = SparsePrecisionLinearOperator.from_sparse(Q)
    y = torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    cg, lanczos = MagicMock(wraps=linear_operator.utils.linear_cg), MagicMock()
    with (
        patch("linear_operator.utils.linear_cg", new=cg),
        patch("linear_operator.utils.lanczos.lanczos_tridiag", new=lanczos),
    ):
        inv_quad, logdet = op.inv_quad_logdet(y, logdet=True, reduce_inv_quad=False)
        solved = torch.linalg.solve(op, y)
    assert not cg.called and not lanczos.called
    dense = Q.to_dense() if operator == "precision" else torch.linalg.inv(Q.to_dense())
    torch.testing.assert_close(logdet, torch.logdet(dense))
    torch.testing.assert_close(inv_quad, (y * torch.linalg.solve(dense, y)).sum(0))
    torch.testing.assert_close(solved, torch.linalg.solve(dense, y))


def test_samples_and_variances_are_exact():
    Q = ar1(30, 0.8, 1.0).detach()
    Sigma = PrecisionInverseLinearOperator.from_precision(Q)
    dense = torch.linalg.inv(Q.to_dense())
    torch.testing.assert_close(Sigma.diagonal(), dense.diagonal())
    torch.manual_seed(0)
    draws = Sigma.zero_mean_mvn_samples(40_000)
    assert draws.shape == (40_000, 30)
    standard_error = (dense.diagonal().square() * 2 / 40_000).sqrt()  # of a sample variance
    assert bool(((draws.var(0) - dense.diagonal()).abs() < 5 * standard_error).all())
    root = Sigma.root_decomposition().root.to_dense()
    torch.testing.assert_close(root @ root.T, dense)


def test_gpytorch_mvn_with_the_operator_works_in_pyro_sample():
    Q = ar1(50, 0.5, 1.0).detach()
    mvn = gpytorch.distributions.MultivariateNormal(
        torch.zeros(50, dtype=F64), PrecisionInverseLinearOperator.from_precision(Q)
    )
    x = torch.randn(50, dtype=F64, generator=torch.Generator().manual_seed(3))

    def model():
        pyro.sample("x", mvn, obs=x)

    trace = pyro.poutine.trace(model).get_trace()
    reference = torch.distributions.MultivariateNormal(torch.zeros(50, dtype=F64), precision_matrix=Q.to_dense())
    torch.testing.assert_close(trace.log_prob_sum(), reference.log_prob(x))


def test_construction_errors():
    with pytest.raises(ValueError, match="symmetric"):
        PrecisionInverseLinearOperator.from_precision(torch.tensor([[2.0, 1.0], [0.0, 2.0]], dtype=F64).to_sparse_csr())
    with pytest.raises(ValueError, match="diagonal"):
        SparsePrecisionLinearOperator.from_sparse(torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64).to_sparse_csr())
    op = SparsePrecisionLinearOperator.from_sparse(ar1(4, 0.5))
    with pytest.raises(ValueError, match=r"values must have shape \(\.\.\., 10\)"):
        SparsePrecisionLinearOperator(torch.ones(3, dtype=F64), op.pattern)
    with pytest.raises(TypeError, match="Q must be a sparse"):
        SparsePrecisionLinearOperator.from_sparse(torch.eye(3, dtype=F64))

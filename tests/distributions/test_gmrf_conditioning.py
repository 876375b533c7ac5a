"""GMRF posteriors and the conjugate log marginal likelihood against dense Gaussian formulas."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck
from torch.distributions import MultivariateNormal

from sparseprec.distributions import GMRF
from sparseprec.solvers import CG
from sparseprec.structures import adjacency_from_pairs, car
from tests.conftest import rebuild, stored_values

F64 = torch.float64
EDGES = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (1, 4), (2, 5), (6, 0), (6, 3), (7, 6), (7, 2)]


def _problem(m=5, seed=0, layout="csr"):
    g = torch.Generator().manual_seed(seed)
    W = adjacency_from_pairs(EDGES)
    Q = car(W, 0.8, 1.5).detach()
    mask = torch.rand(m, 8, generator=g) < 0.4
    mask[torch.arange(m), torch.arange(m)] = True
    A_dense = torch.randn(m, 8, generator=g, dtype=F64) * mask
    A = A_dense.to_sparse_csr() if layout == "csr" else A_dense.to_sparse().coalesce()
    y = torch.randn(3, m, generator=g, dtype=F64)
    w = 0.5 + torch.rand(m, generator=g, dtype=F64)
    loc = torch.randn(8, generator=g, dtype=F64)
    return Q, A, A_dense, y, w, loc


def _dense_posterior(Q, A, y, w, loc):
    Qd = Q.to_dense()
    Qp = Qd + A.T @ torch.diag(w) @ A
    mean = loc + torch.linalg.solve(Qp, (A.T @ (w[:, None] * (y - A @ loc).T))).T
    return Qp, mean


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("solver", [None, CG()], ids=["cholesky", "cg"])
def test_posterior_matches_dense_conditioning(solver, layout):
    Q, A, A_dense, y, w, loc = _problem(layout=layout)
    post = GMRF(loc, Q).condition(A, y, w, solver=solver)
    Qp, mean = _dense_posterior(Q, A_dense, y, w, loc)
    torch.testing.assert_close(post.precision_matrix.detach().to_dense(), Qp)
    tol = {} if solver is None else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(post.loc, mean, **tol)
    torch.testing.assert_close(post.covariance_matrix[0], torch.linalg.inv(Qp))
    assert post.batch_shape == (3,)


def test_posterior_equals_the_joint_gaussian_conditional():
    # the other standard formula: Σ_post = Σ − Σ Aᵀ (R⁻¹ + A Σ Aᵀ)⁻¹ A Σ
    Q, A, A_dense, y, w, loc = _problem(seed=2)
    S = torch.linalg.inv(Q.to_dense())
    K = S @ A_dense.T @ torch.linalg.inv(torch.diag(1 / w) + A_dense @ S @ A_dense.T)
    post = GMRF(loc, Q).condition(A, y[0], w)
    torch.testing.assert_close(post.loc, loc + K @ (y[0] - A_dense @ loc))
    torch.testing.assert_close(post.covariance_matrix, S - K @ A_dense @ S)


@pytest.mark.parametrize("noise", ["scalar", "vector"])
def test_log_marginal_likelihood_matches_dense(noise):
    Q, A, A_dense, y, w, loc = _problem(seed=1)
    if noise == "scalar":
        w = torch.tensor(2.0, dtype=F64)
    prior = GMRF(loc, Q)
    value = prior.log_marginal_likelihood(A, y, w)
    W = torch.diag(w.expand(A.shape[0]))
    marginal = MultivariateNormal(
        A_dense @ loc, torch.linalg.inv(W) + A_dense @ torch.linalg.inv(Q.to_dense()) @ A_dense.T
    )
    torch.testing.assert_close(value, marginal.log_prob(y))
    cg_value = prior.log_marginal_likelihood(A, y, w, solver=CG(rtol=1e-10))
    torch.testing.assert_close(cg_value, marginal.log_prob(y), rtol=1e-8, atol=1e-8)


def test_gradients_through_condition_and_the_marginal_likelihood():
    W = adjacency_from_pairs(EDGES)
    _, A, A_dense, y, w, loc = _problem(seed=3)
    a_values = stored_values(A).clone().requires_grad_()

    def marginal(rho, tau, a_values, w, y):
        return GMRF(loc, car(W, rho, tau)).log_marginal_likelihood(rebuild(A, a_values), y, w)

    def posterior_mean(rho, tau, a_values, w, y):
        return GMRF(loc, car(W, rho, tau)).condition(rebuild(A, a_values), y, w).loc

    rho = torch.tensor(0.7, dtype=F64, requires_grad=True)
    tau = torch.tensor(1.2, dtype=F64, requires_grad=True)
    inputs = (rho, tau, a_values, w.clone().requires_grad_(), y.clone().requires_grad_())
    assert gradcheck(marginal, inputs)
    assert gradcheck(posterior_mean, inputs)
    assert gradcheck(
        lambda rho, tau, y: GMRF(loc, car(W, rho, tau)).condition(A, y, w, solver=CG(rtol=1e-12)).loc,
        (rho, tau, inputs[-1]),
        atol=1e-6,
    )


def test_condition_errors():
    Q, A, A_dense, y, w, loc = _problem()
    prior = GMRF(loc, Q)
    with pytest.raises(ValueError, match=r"obs_matrix must have shape \(m, 8\)"):
        prior.condition(torch.ones(5, 7, dtype=F64).to_sparse_csr(), y, w)
    with pytest.raises(ValueError, match=r"y must have shape \(\.\.\., 5\)"):
        prior.condition(A, torch.zeros(4, dtype=F64), w)
    with pytest.raises(ValueError, match="noise_precision must be positive"):
        prior.condition(A, y, -1.0)
    with pytest.raises(ValueError, match=r"noise_precision must be a scalar or have shape \(5,\)"):
        prior.condition(A, y, torch.ones(4, dtype=F64))
    with pytest.raises(NotImplementedError, match="diagonal"):
        prior.condition(A, y, torch.eye(5, dtype=F64).to_sparse())
    with pytest.raises(TypeError, match="obs_matrix must be a sparse COO or CSR"):
        prior.condition(A_dense, y, w)


def test_condition_refuses_observations_of_another_dtype():
    Q, A, A_dense, y, w, loc = _problem()
    with pytest.raises(TypeError, match="y must have loc's dtype"):
        GMRF(loc, Q).condition(A, y.float(), w)

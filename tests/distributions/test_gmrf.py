"""GMRF against torch's dense MultivariateNormal(precision_matrix=Q): density, gradients, samples, errors."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.autograd import gradcheck
from torch.distributions import MultivariateNormal

import sparseprec
from sparseprec.cholesky import ExactLogDet, SLQLogDet, SparseCholesky
from sparseprec.distributions import GMRF
from sparseprec.structures import adjacency_from_pairs, ar1, car, matern_spde
from tests.conftest import rebuild, stored_values

F64 = torch.float64
BACKENDS = sparseprec.cholesky.available_backends()


def _random_spd(n=9, seed=0, layout="csr"):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, n, generator=g) < 0.3
    mask = mask | mask.T | torch.eye(n, dtype=torch.bool)
    A = torch.randn(n, n, generator=g, dtype=F64) * mask
    A = 0.5 * (A + A.T)
    A = A + torch.diag(A.abs().sum(1) + 0.5)  # diagonally dominant
    dense = A * mask
    sparse = dense.to_sparse_csr() if layout == "csr" else dense.to_sparse().coalesce()
    return sparse, dense


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_log_prob_entropy_variance_match_dense(layout, backend):
    Q, dense = _random_spd(layout=layout)
    loc = torch.randn(3, 9, dtype=F64)
    d = GMRF(loc, Q, cholesky=SparseCholesky(backend=backend))
    ref = MultivariateNormal(loc, precision_matrix=dense)
    x = torch.randn(4, 3, 9, dtype=F64)
    torch.testing.assert_close(d.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(d.entropy(), ref.entropy())
    torch.testing.assert_close(d.variance, ref.variance)
    torch.testing.assert_close(d.covariance_matrix, ref.covariance_matrix)
    assert d.precision_matrix is Q
    assert d.batch_shape == (3,) and d.event_shape == (9,)


def test_gradients_match_dense_autograd():
    Q, dense = _random_spd(12, seed=1)
    values = stored_values(Q).clone().requires_grad_()
    loc = torch.randn(2, 12, dtype=F64, requires_grad=True)
    x = torch.randn(5, 2, 12, dtype=F64, requires_grad=True)
    d = GMRF(loc, rebuild(Q, values))
    (d.log_prob(x).sum() + d.entropy().sum()).backward()

    dense_values = dense.clone().requires_grad_()
    loc_d, x_d = (t.detach().clone().requires_grad_() for t in (loc, x))
    ref = MultivariateNormal(loc_d, precision_matrix=dense_values)
    (ref.log_prob(x_d).sum() + ref.entropy().sum()).backward()
    torch.testing.assert_close(loc.grad, loc_d.grad)
    torch.testing.assert_close(x.grad, x_d.grad)
    # torch symmetrises its precision argument's gradient as we do: read it at the stored entries
    G = dense_values.grad
    expected = 0.5 * (G + G.T)
    coo = Q.to_sparse_coo()
    torch.testing.assert_close(values.grad, expected[tuple(coo.indices())])


def test_gradcheck_through_structured_hyper_parameters():
    W = adjacency_from_pairs([(0, 1), (1, 2), (2, 3), (3, 0), (1, 3), (3, 4)])
    x = torch.randn(3, 5, dtype=F64)

    def log_prob_car(rho, tau, loc):
        return GMRF(loc, car(W, rho, tau)).log_prob(x)

    rho = torch.tensor(0.4, dtype=F64, requires_grad=True)
    tau = torch.tensor(1.7, dtype=F64, requires_grad=True)
    loc = torch.randn(5, dtype=F64, requires_grad=True)
    assert gradcheck(log_prob_car, (rho, tau, loc))

    y = torch.randn(2, 12, dtype=F64)

    def log_prob_matern(kappa, tau):
        return GMRF(torch.zeros(12, dtype=F64), matern_spde((4, 3), kappa, tau)).log_prob(y)

    kappa = torch.tensor(0.8, dtype=F64, requires_grad=True)
    assert gradcheck(log_prob_matern, (kappa, tau))


def test_samples_have_the_right_moments():
    Q = ar1(6, 0.7, 2.0).detach()
    loc = torch.arange(6, dtype=F64)
    d = GMRF(loc, Q)
    torch.manual_seed(0)
    x = d.sample((20_000,))
    cov = torch.linalg.inv(Q.to_dense())
    sd = cov.diagonal().sqrt()
    assert ((x.mean(0) - loc).abs() <= 4.5 * sd / 20_000**0.5).all()
    centred = x - x.mean(0)
    sample_cov = centred.T @ centred / (20_000 - 1)
    se = ((sd[:, None] * sd[None, :]) ** 2 + cov**2).sqrt() / 20_000**0.5
    assert ((sample_cov - cov).abs() <= 4.5 * se).all()


def test_rsample_shapes_and_gradient_to_loc():
    Q, _ = _random_spd()
    loc = torch.zeros(2, 9, dtype=F64, requires_grad=True)
    d = GMRF(loc, Q)
    x = d.rsample((3,))
    assert x.shape == (3, 2, 9)
    x.sum().backward()
    torch.testing.assert_close(loc.grad, torch.full((2, 9), 3.0, dtype=F64))


def test_rsample_refuses_a_learnable_precision():
    rho = torch.tensor(0.5, dtype=F64, requires_grad=True)
    d = GMRF(torch.zeros(5, dtype=F64), ar1(5, rho))
    with pytest.raises(NotImplementedError, match="reparameterised w.r.t. loc only"):
        d.rsample()
    assert d.sample((2,)).shape == (2, 5)  # sample() needs no gradient
    with pytest.warns(UserWarning, match="no gradient w.r.t. the precision"):
        d.variance  # noqa: B018


def test_expand_shares_the_factor_and_pickles():
    Q, dense = _random_spd()
    d = GMRF(torch.zeros(9, dtype=F64), Q)
    d.log_prob(torch.zeros(9, dtype=F64))
    big = d.expand((4, 2))
    assert big.batch_shape == (4, 2) and big._factor is d._factor  # the per-element factors are shared
    x = big.sample((3,))
    assert x.shape == (3, 4, 2, 9) and big.log_prob(x).shape == (3, 4, 2)
    again = pickle.loads(pickle.dumps(big))
    torch.testing.assert_close(again.log_prob(x), big.log_prob(x))


def test_slq_log_det_option():
    Q = matern_spde((12, 12), 0.6, 1.0).detach()
    x = torch.randn(144, dtype=F64)
    exact = GMRF(torch.zeros(144, dtype=F64), Q).log_prob(x)
    g = torch.Generator().manual_seed(0)
    estimate = GMRF(torch.zeros(144, dtype=F64), Q, logdet=SLQLogDet(num_probes=256, generator=g)).log_prob(x)
    # ½ log det Q is ~300 here; the SLQ estimate with 256 probes is within 1 % of it
    assert abs(float(estimate - exact)) < 0.01 * 0.5 * float(torch.logdet(Q.to_dense()))


def test_errors():
    Q, dense = _random_spd()
    loc = torch.zeros(9, dtype=F64)
    with pytest.raises(TypeError, match="precision must be a sparse COO or CSR"):
        GMRF(loc, dense)
    other = dense + torch.diag(torch.ones(8, dtype=F64), 1) + torch.diag(torch.ones(8, dtype=F64), -1)
    with pytest.raises(ValueError, match="one pattern shared by the batch"):  # elements with different patterns
        GMRF(loc, torch.stack([dense, other]).to_sparse())
    with pytest.raises(ValueError, match=r"loc must have shape \(\.\.\., 9\)"):
        GMRF(torch.zeros(8, dtype=F64), Q)
    with pytest.raises(TypeError, match="same dtype"):
        GMRF(loc.float(), Q)
    with pytest.raises(TypeError, match="logdet must be a log-det estimator, got the string 'slq'"):
        GMRF(loc, Q, logdet="slq")
    with pytest.raises(TypeError, match=r"cholesky must be a sparseprec.cholesky.SparseCholesky"):
        GMRF(loc, Q, cholesky="scipy")
    with pytest.raises(ValueError, match="differ"):
        GMRF(loc, Q, cholesky=SparseCholesky("scipy"), logdet=ExactLogDet(SparseCholesky("auto", "natural")))
    indefinite = (dense - 10 * torch.eye(9, dtype=F64)).to_sparse_csr()
    with pytest.raises(ValueError, match="precision"):
        GMRF(loc, indefinite, validate_args=True)
    unvalidated = GMRF(loc, (dense - torch.diag(dense.diagonal()) + 0.01 * torch.eye(9, dtype=F64)).to_sparse_csr(),
                       validate_args=False)  # fmt: skip
    with pytest.raises(sparseprec.NotPositiveDefiniteError):
        unvalidated.log_prob(loc)
    asymmetric = dense.clone()
    asymmetric[0, 1] += 1.0
    with pytest.raises(ValueError, match="precision"):
        GMRF(loc, asymmetric.to_sparse_csr(), validate_args=True)
    with pytest.raises(ValueError, match="shape"):
        GMRF(loc, Q, validate_args=True).log_prob(torch.zeros(8, dtype=F64))


def test_a_precision_given_by_its_factor_agrees_with_the_precision_form():
    # (GMRF.from_cholesky returned another class; the factor form is SparseMultivariateNormal's precision_tril)
    Q, dense = _random_spd(10, seed=4)
    L = torch.linalg.cholesky(dense)
    x = torch.randn(3, 10, dtype=F64)
    loc = torch.randn(10, dtype=F64)
    via_factor = sparseprec.SparseMultivariateNormal(loc, precision_tril=L.to_sparse_csr())
    assert not hasattr(GMRF, "from_cholesky")
    torch.testing.assert_close(via_factor.log_prob(x), GMRF(loc, Q).log_prob(x))
    torch.testing.assert_close(via_factor.precision_matrix.to_dense(), dense)


def test_car_distribution_and_its_kl_from_a_diagonal_normal():
    from torch.distributions import Independent, Normal, kl_divergence

    from sparseprec.distributions import CAR

    W = adjacency_from_pairs([(0, 1), (1, 2), (2, 3), (3, 0), (1, 3)])
    rho = torch.tensor(0.6, dtype=F64, requires_grad=True)
    d = CAR(W, rho, tau=1.5)
    Qd = car(W, 0.6, 1.5).detach().to_dense()
    ref = MultivariateNormal(torch.zeros(4, dtype=F64), precision_matrix=Qd)
    x = torch.randn(3, 4, dtype=F64)
    torch.testing.assert_close(d.log_prob(x), ref.log_prob(x))
    assert type(d.expand((2,))) is CAR and d.expand((2,)).batch_shape == (2,)
    g = torch.Generator().manual_seed(1)
    p = Independent(Normal(torch.randn(2, 4, generator=g, dtype=F64), 0.5 + torch.rand(4, generator=g, dtype=F64)), 1)
    dense_p = MultivariateNormal(p.base_dist.loc, covariance_matrix=torch.diag_embed(p.variance))
    torch.testing.assert_close(kl_divergence(p, d), kl_divergence(dense_p, ref))
    kl_divergence(p, d).sum().backward()
    assert rho.grad is not None
    assert gradcheck(lambda r: kl_divergence(p, CAR(W, r, 1.5)), (torch.tensor(0.3, dtype=F64, requires_grad=True),))

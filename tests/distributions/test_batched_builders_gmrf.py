"""GMRFs built from batched hyper-parameters (``matern_spde`` with a batch of κ, ``car``/``CAR`` with a batch of ρ):
log_prob, gradients w.r.t. the hyper-parameters, variances and samples equal those of one GMRF per element."""

from __future__ import annotations

import torch

from sparseprec.distributions import CAR, GMRF
from sparseprec.structures import adjacency_from_pairs, car, matern_spde

F64 = torch.float64
EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (1, 3), (3, 4), (4, 5), (5, 0)]


def test_matern_with_a_batch_of_kappa_equals_separate_gmrfs():
    shape = (5, 4)
    n = 20
    kappa = torch.tensor([0.5, 1.0, 2.0], dtype=F64, requires_grad=True)
    tau = torch.tensor(1.5, dtype=F64, requires_grad=True)
    d = GMRF(torch.zeros(n, dtype=F64), matern_spde(shape, kappa, tau))
    assert d.batch_shape == (3,) and d.event_shape == (n,)
    x = torch.randn(2, 3, n, generator=torch.Generator().manual_seed(0), dtype=F64)
    d.log_prob(x).sum().backward()
    tau_grad = torch.zeros((), dtype=F64)
    for i in range(3):
        k = kappa.detach()[i].clone().requires_grad_()
        t = tau.detach().clone().requires_grad_()
        one = GMRF(torch.zeros(n, dtype=F64), matern_spde(shape, k, t))
        lp = one.log_prob(x[:, i])
        torch.testing.assert_close(d.log_prob(x)[:, i].detach(), lp.detach())
        lp.sum().backward()
        torch.testing.assert_close(kappa.grad[i], k.grad)
        tau_grad += t.grad
        Q = matern_spde(shape, float(k.detach()), float(t.detach())).to_dense()
        with torch.no_grad():  # variance carries no gradient w.r.t. the precision (and says so)
            torch.testing.assert_close(one.variance, torch.linalg.inv(Q).diagonal())
            torch.testing.assert_close(d.variance[i], one.variance)
    torch.testing.assert_close(tau.grad, tau_grad)  # tau is shared: its gradient sums over the batch


def test_samples_of_a_batched_matern_have_the_variance_of_their_own_element():
    shape = (4, 3)
    kappa = torch.tensor([0.3, 3.0], dtype=F64)
    d = GMRF(torch.zeros(12, dtype=F64), matern_spde(shape, kappa, 1.0))
    torch.manual_seed(0)
    samples = d.sample((20000,))
    assert samples.shape == (20000, 2, 12)
    empirical = samples.var(0)
    expected = d.variance
    # the sample variance of N draws has relative standard error sqrt(2 / (N - 1)) ≈ 0.01; allow 5 of them
    assert torch.all((empirical / expected - 1).abs() < 0.05)
    assert float(expected[0].mean()) > 10 * float(expected[1].mean())  # the two elements really differ


def test_car_gradient_w_r_t_a_batch_of_rho():
    W = adjacency_from_pairs(EDGES)
    rho = torch.tensor([-0.5, 0.2, 0.9], dtype=F64, requires_grad=True)
    d = CAR(W, rho, tau=2.0)
    x = torch.randn(6, generator=torch.Generator().manual_seed(1), dtype=F64)
    d.log_prob(x).sum().backward()
    for i in range(3):
        r = rho.detach()[i].clone().requires_grad_()
        Q = car(W, r, 2.0)
        lp = GMRF(torch.zeros(6, dtype=F64), Q).log_prob(x)
        lp.backward()
        torch.testing.assert_close(rho.grad[i], r.grad)
        # and against the dense formula: d/dρ [½ log det Q − ½ xᵀQx] = −½ τ tr(Q⁻¹ W) + ½ τ xᵀ W x
        half = car(W, 0.5, 1.0).to_dense()
        Wd = -2.0 * (half - torch.diag(half.diagonal()))
        Qd = car(W, float(r.detach()), 2.0).to_dense()
        expected = -0.5 * 2.0 * torch.trace(torch.linalg.solve(Qd, Wd)) + 0.5 * 2.0 * x @ Wd @ x
        torch.testing.assert_close(r.grad, expected)

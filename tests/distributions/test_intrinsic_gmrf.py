"""Intrinsic GMRFs against the dense pseudo-determinant density and the pseudo-inverse covariance."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

from sparseprec.distributions import ICAR, IntrinsicGMRF
from sparseprec.structures import adjacency_from_pairs, icar, rw1, rw2

F64 = torch.float64
EDGES = [(0, 1), (1, 2), (2, 0), (2, 3), (4, 5), (5, 6), (6, 7), (7, 4), (4, 6)]  # two components


def _dense_log_prob(Q, x, loc):
    eigenvalues = torch.linalg.eigvalsh(Q)
    nonzero = eigenvalues[eigenvalues > 1e-9 * eigenvalues.max()]
    r = x - loc
    quadratic = (r @ Q * r).sum(-1)
    return -0.5 * nonzero.numel() * math.log(2 * math.pi) + 0.5 * nonzero.log().sum() - 0.5 * quadratic


def _rw2_constraints(n):
    t = torch.arange(n, dtype=F64)
    return torch.stack([torch.ones(n, dtype=F64), t])


def _cases():
    W = adjacency_from_pairs(EDGES)
    yield "icar", icar(W, 1.7).detach(), None
    yield "rw1", rw1(7, tau=0.5).detach(), None
    yield "rw2", rw2(9).detach(), _rw2_constraints(9)
    # a constraint matrix whose rows span the null space without being orthonormal
    yield "rw2-mixed", rw2(9).detach(), torch.tensor([[2.0, 1.0], [0.5, -3.0]], dtype=F64) @ _rw2_constraints(9)
    yield "rw1-cyclic", rw1(6, cyclic=True).detach(), None


@pytest.mark.parametrize(("name", "Q", "C"), list(_cases()), ids=[c[0] for c in _cases()])
def test_log_prob_entropy_variance_match_dense(name, Q, C):
    n = Q.shape[-1]
    loc = torch.randn(2, n, dtype=F64)
    d = IntrinsicGMRF(loc, Q, constraint_matrix=C)
    x = d.sample((3,))
    Qd = Q.to_dense()
    torch.testing.assert_close(d.log_prob(x), _dense_log_prob(Qd, x, loc))
    pinv = torch.linalg.pinv(Qd)  # the covariance under constraints spanning the null space
    torch.testing.assert_close(d.variance, pinv.diagonal().expand(2, n))
    eig = torch.linalg.eigvalsh(Qd)
    log_pdet = eig[eig > 1e-9 * eig.max()].log().sum()
    expected_entropy = 0.5 * d.rank * (1 + math.log(2 * math.pi)) - 0.5 * log_pdet
    torch.testing.assert_close(d.entropy(), expected_entropy.expand(2))
    torch.testing.assert_close(d.log_generalized_determinant(), log_pdet)


@pytest.mark.parametrize(("name", "Q", "C"), list(_cases()), ids=[c[0] for c in _cases()])
def test_samples_satisfy_the_constraints_and_have_the_pseudo_inverse_covariance(name, Q, C):
    n = Q.shape[-1]
    loc = torch.linspace(-1, 1, n, dtype=F64)
    d = IntrinsicGMRF(loc, Q, constraint_matrix=C)
    torch.manual_seed(0)
    x = d.sample((20_000,))
    Cm = d.constraint_matrix
    assert (x @ Cm.T - loc @ Cm.T).abs().max() < 1e-8
    cov = torch.linalg.pinv(Q.to_dense())
    centred = x - loc
    sample_cov = centred.T @ centred / 20_000
    sd = cov.diagonal().sqrt()
    se = ((sd[:, None] * sd[None, :]) ** 2 + cov**2).sqrt() / 20_000**0.5
    assert ((sample_cov - cov).abs() <= 4.5 * se + 1e-12).all()


def test_constraint_value_and_mean():
    Q = rw1(5).detach()
    d = IntrinsicGMRF(torch.zeros(5, dtype=F64), Q, constraint_value=torch.tensor([5.0], dtype=F64))
    torch.testing.assert_close(d.mean, torch.ones(5, dtype=F64))
    x = d.sample((4,))
    torch.testing.assert_close(x.sum(-1), torch.full((4,), 5.0, dtype=F64))


def test_icar_gradient_in_tau():
    W = adjacency_from_pairs(EDGES)
    x = ICAR(W).sample((3,))

    def log_prob(tau):
        return ICAR(W, tau).log_prob(x)

    tau = torch.tensor(1.3, dtype=F64, requires_grad=True)
    assert gradcheck(log_prob, (tau,))
    log_prob(tau).sum().backward()
    # d/dτ [½ (n−k) log τ − ½ τ xᵀ(D−W)x], n − k = 8 − 2
    L = icar(W).detach().to_dense()
    expected = (3 * 0.5 * 6 / tau - 0.5 * (x @ L * x).sum()).detach()
    torch.testing.assert_close(tau.grad, expected)


def test_icar_convenience_and_rank():
    d = ICAR(adjacency_from_pairs(EDGES), tau=2.0)
    assert d.rank == 6 and d.event_shape == (8,) and d.batch_shape == ()
    assert d.constraint_matrix.shape == (2, 8)
    big = d.expand((3,))
    assert big.sample((2,)).shape == (2, 3, 8) and big.log_prob(big.sample()).shape == (3,)


def test_errors():
    Q = rw2(6).detach()
    loc = torch.zeros(6, dtype=F64)
    with pytest.raises(ValueError, match="span the whole null space"):
        IntrinsicGMRF(loc, Q)  # sum-to-zero alone does not cover RW2's null space
    with pytest.raises(ValueError, match=r"span the null space of precision \(Q Cᵀ = 0\)"):
        IntrinsicGMRF(loc, rw1(6).detach(), constraint_matrix=torch.eye(6, dtype=F64)[:1])
    with pytest.raises(ValueError, match="full row rank"):
        IntrinsicGMRF(loc, Q, constraint_matrix=torch.ones(2, 6, dtype=F64))
    with pytest.raises(ValueError, match=r"dense \(k, 6\)"):
        IntrinsicGMRF(loc, Q, constraint_matrix=torch.ones(6, dtype=F64))
    d = IntrinsicGMRF(loc, rw1(6).detach(), validate_args=True)
    with pytest.raises(ValueError, match="does not satisfy the constraint"):
        d.log_prob(torch.ones(6, dtype=F64))
    tau = torch.tensor(1.0, dtype=F64, requires_grad=True)
    with pytest.raises(NotImplementedError, match="loc only"):
        IntrinsicGMRF(loc, rw1(6, tau=tau)).rsample()

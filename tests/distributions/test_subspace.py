"""AffineSubspace and its bijection: on the subspace, inverse, Jacobian from the definition, pushed-back density."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import biject_to, transform_to

from sparseprec.distributions import ICAR, AffineSubspace, AffineSubspaceTransform, IntrinsicGMRF
from sparseprec.structures import adjacency_from_pairs, rw2

F64 = torch.float64


def _random_subspace(k=2, n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    C = torch.randn(k, n, generator=g, dtype=F64)
    e = torch.randn(3, k, generator=g, dtype=F64)  # a batch of right-hand sides
    return AffineSubspace(C, e, torch.tensor([1, 4])), g


def test_forward_lands_on_the_subspace_and_inverts():
    subspace, g = _random_subspace()
    t = biject_to(subspace)
    assert isinstance(t, AffineSubspaceTransform) and isinstance(transform_to(subspace), AffineSubspaceTransform)
    z = torch.randn(5, 3, 5, generator=g, dtype=F64)
    x = t(z)
    assert x.shape == (5, 3, 7) and t.forward_shape(z.shape) == x.shape and t.inverse_shape(x.shape) == z.shape
    torch.testing.assert_close(x @ subspace.constraint_matrix.T, subspace.constraint_value.expand(5, 3, 2))
    assert bool(subspace.check(x).all())
    torch.testing.assert_close(t.inv(x), z)
    off = x + 1e-3 * torch.randn(x.shape, generator=g, dtype=F64)
    assert not bool(subspace.check(off).any())


def test_log_det_jacobian_is_the_volume_factor_of_the_map():
    """log|J| = ½ log det(AᵀA), A = ∂x/∂z (n × (n−k)), computed here by autograd."""
    subspace, g = _random_subspace()
    t = biject_to(subspace)
    z = torch.randn(5, generator=g, dtype=F64)
    A = torch.autograd.functional.jacobian(lambda u: t(u)[0], z)  # first batch row of e
    expected = 0.5 * torch.logdet(A.T @ A)
    torch.testing.assert_close(t.log_abs_det_jacobian(z, t(z)[0]), expected)
    assert t.log_abs_det_jacobian(torch.zeros(4, 3, 5, dtype=F64), None).shape == (4, 3)


def test_sum_to_zero_jacobian_is_minus_half_log_n():
    t = biject_to(AffineSubspace(torch.ones(1, 6, dtype=F64), torch.zeros(1, dtype=F64), torch.tensor([0])))
    torch.testing.assert_close(
        t.log_abs_det_jacobian(torch.zeros(5, dtype=F64), None), torch.tensor(-0.5 * math.log(6), dtype=F64)
    )


@pytest.mark.parametrize("case", ["icar", "rw2"])
def test_pushed_back_density_is_the_pinned_gmrf(case):
    """p(x(z)) |J| is a normalised Gaussian density on R^{n−k}: N(z; ·, Q_{S̄S̄}⁻¹) (checked against its dense form)."""
    if case == "icar":
        d = ICAR(adjacency_from_pairs([(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 5), (5, 3), (6, 7)], n=8), tau=1.7)
    else:
        t = torch.arange(9, dtype=F64)
        d = IntrinsicGMRF(torch.zeros(9, dtype=F64), rw2(9), constraint_matrix=torch.stack([t**0, t / 8]))
    transform = biject_to(d.support)
    z = torch.randn(10, d.rank, generator=torch.Generator().manual_seed(1), dtype=F64)
    x = transform(z)
    pushed = d.log_prob(x) + transform.log_abs_det_jacobian(z, x)
    keep = transform._keep
    Q = d.precision.to_dense()[keep][:, keep]
    reference = torch.distributions.MultivariateNormal(torch.zeros(d.rank, dtype=F64), precision_matrix=Q)
    torch.testing.assert_close(pushed, reference.log_prob(z))


def test_intrinsic_support_is_the_constraint_subspace():
    d = ICAR(adjacency_from_pairs([(0, 1), (1, 2), (2, 3)]), validate_args=True)
    assert isinstance(d.support, AffineSubspace) and d.support.event_dim == 1
    assert bool(d.support.check(d.sample((3,))).all())
    with pytest.raises(ValueError, match="constraint C x = e"):
        d.log_prob(torch.ones(4, dtype=F64))

"""Generic checks of every distribution case of ``cases.py`` against its dense reference.

Statistical policy (written once): samplers are checked with a fixed seed on ``N = 20 000`` draws. The sample mean of
coordinate ``i`` has standard error :math:`\\sigma_i / \\sqrt N`; the sample covariance entry ``(i, j)`` of Gaussian
data has standard error :math:`\\sqrt{(\\Sigma_{ii}\\Sigma_{jj} + \\Sigma_{ij}^2) / N}`. Each entry must lie within
4.5 standard errors (two-sided probability :math:`6.8 \\times 10^{-6}` per entry for a correct sampler, so a few
thousand entries over the whole registry still fail by chance with probability about 1 %, and never with the fixed
seed), while a wrong factor (a transposed or missing :math:`D`) moves entries by many standard errors at ``N = 20 000``.
"""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from torch.distributions import Distribution, constraints

import sparseprec.distributions as distributions
from tests.distributions.cases import CASES, DistributionCase

NUM_SAMPLES = 20_000
STANDARD_ERRORS = 4.5


def _ids(case: DistributionCase) -> str:
    return case.id


parametrize_cases = pytest.mark.parametrize("case", CASES, ids=_ids)


def _dense(A: torch.Tensor) -> torch.Tensor:
    return A if A.layout == torch.strided else A.to_dense()


def test_every_distribution_class_has_a_case():
    exported = {
        obj
        for obj in vars(distributions).values()
        if isinstance(obj, type) and issubclass(obj, Distribution) and obj.__module__.startswith("sparseprec")
    }
    covered = {case.cls for case in CASES}
    assert exported <= covered, f"no registry case for {sorted(c.__name__ for c in exported - covered)}"


@parametrize_cases
def test_log_prob_and_its_gradients_match_dense(case):
    x = case.values((4,), seed=1).requires_grad_()
    loc = case.loc.clone().requires_grad_()
    ours = case.dist(loc).log_prob(x)
    x_ref, loc_ref = (t.detach().clone().requires_grad_() for t in (x, loc))
    expected = case.log_prob(x_ref, loc_ref)
    assert ours.shape == expected.shape == (4,) + case.batch_shape
    torch.testing.assert_close(ours, expected)
    # a generic scalar function of the log-densities, so every element's gradient is weighted differently
    weights = torch.linspace(0.5, 1.5, ours.numel(), dtype=ours.dtype).reshape(ours.shape)
    (ours * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(loc.grad, loc_ref.grad)
    torch.testing.assert_close(x.grad, x_ref.grad)


@parametrize_cases
def test_moments_match_dense(case):
    d = case.dist()
    shape = case.batch_shape + (case.n,)
    torch.testing.assert_close(d.mean, case.loc.expand(shape))  # the constraint C x = C μ holds at μ
    torch.testing.assert_close(d.mode, case.loc.expand(shape))
    torch.testing.assert_close(d.variance, case.variance())
    torch.testing.assert_close(d.stddev, case.variance().sqrt())


@parametrize_cases
def test_entropy_matches_dense(case):
    d = case.dist()
    torch.testing.assert_close(d.entropy(), case.entropy())
    if case.intrinsic:
        torch.testing.assert_close(d.log_generalized_determinant(), case.log_pdet())


@parametrize_cases
def test_dense_matrices_match(case):
    d = case.dist()
    matrix_shape = case.batch_shape + (case.n, case.n)
    torch.testing.assert_close(_dense(d.precision_matrix).expand(matrix_shape), case.precision.expand(matrix_shape))
    if case.has_covariance_matrix:
        torch.testing.assert_close(d.covariance_matrix, case.covariance.expand(matrix_shape))


@parametrize_cases
def test_samples_have_the_dense_mean_and_covariance(case):
    d = case.dist()
    torch.manual_seed(0)
    x = d.sample((NUM_SAMPLES,))
    assert x.shape == (NUM_SAMPLES,) + case.batch_shape + (case.n,)
    assert bool(d.support.check(x).all())
    if case.intrinsic:  # on the constraint C x = C μ to rounding
        C = case.constraint_matrix
        assert (x @ C.T - case.loc @ C.T).abs().max() < 1e-8
    Sigma = case.covariance
    sd = Sigma.diagonal(dim1=-2, dim2=-1).sqrt()
    mean = x.mean(0)
    assert ((mean - case.loc).abs() <= STANDARD_ERRORS * sd / math.sqrt(NUM_SAMPLES)).all()
    centred = x - mean
    covariance = torch.einsum("s...i,s...j->...ij", centred, centred) / (NUM_SAMPLES - 1)
    se = ((sd[..., :, None] * sd[..., None, :]) ** 2 + Sigma**2).sqrt() / math.sqrt(NUM_SAMPLES)
    # 1e-12: rounding where an intrinsic case's covariance is exactly constrained (rows of C Σ vanish)
    assert ((covariance - Sigma).abs() <= STANDARD_ERRORS * se + 1e-12).all()


@parametrize_cases
def test_shapes_and_declared_constraints(case):
    loc = case.loc.clone().requires_grad_()
    d = case.dist(loc)
    batch, event = case.batch_shape, torch.Size((case.n,))
    assert d.batch_shape == batch and d.event_shape == event
    assert d.sample().shape == batch + event
    x = d.sample((2, 3))
    assert x.shape == (2, 3) + batch + event and not x.requires_grad
    assert d.log_prob(x).shape == (2, 3) + batch
    assert d.entropy().shape == batch
    assert isinstance(d.support, constraints.Constraint) and d.support.event_dim == 1
    assert isinstance(d.arg_constraints, dict) and "loc" in d.arg_constraints
    for name, constraint in d.arg_constraints.items():
        assert isinstance(constraint, constraints.Constraint)
        assert bool(constraint.check(getattr(d, name)).all()), name
    assert d.has_rsample == case.has_rsample
    if case.has_rsample:
        # reparameterised w.r.t. loc: x = loc + (noise independent of loc), so ∂Σx/∂loc counts the draws
        r = d.rsample((2, 3))
        assert r.shape == (2, 3) + batch + event and r.requires_grad
        r.sum().backward()
        draws_per_loc = 6 * batch.numel() // case.loc.shape[:-1].numel()
        torch.testing.assert_close(loc.grad, torch.full_like(loc, float(draws_per_loc)))


@parametrize_cases
def test_expand_shares_the_parameters_and_broadcasts_log_prob(case):
    d = case.dist()
    d.entropy()  # factorised where the class factorises: expand must share the factor too
    big = d.expand((4, 5) + case.batch_shape)
    assert type(big) is type(d)
    assert big.batch_shape == (4, 5) + case.batch_shape and big.event_shape == d.event_shape
    for name in case.shared:  # the heavy sparse tensors (and a cached factor) are shared, not copied
        assert getattr(big, name) is getattr(d, name), name
    x = big.sample((2,))
    assert x.shape == (2, 4, 5) + case.batch_shape + (case.n,)
    assert big.log_prob(x).shape == (2, 4, 5) + case.batch_shape
    torch.testing.assert_close(big.log_prob(x), d.log_prob(x))  # d broadcasts its batch against x's
    one = case.values()  # one point per batch element, broadcast over the new dimension
    torch.testing.assert_close(big.log_prob(one), d.log_prob(one).expand(big.batch_shape))
    torch.testing.assert_close(big.entropy(), d.entropy().expand(big.batch_shape))
    torch.testing.assert_close(big.mean, d.mean.expand(big.batch_shape + d.event_shape))
    torch.testing.assert_close(big.variance, d.variance.expand(big.batch_shape + d.event_shape))


@parametrize_cases
def test_pickle_round_trip(case):
    d = case.dist()
    x = case.values((3, 1), seed=2)  # broadcasts against the expanded batch (2,) + batch_shape too
    d.log_prob(x)  # factorised and cached before pickling
    for dist in (d, d.expand((2,) + case.batch_shape)):
        again = pickle.loads(pickle.dumps(dist))
        assert type(again) is type(dist) and again.batch_shape == dist.batch_shape
        torch.testing.assert_close(again.log_prob(x), dist.log_prob(x))
        torch.testing.assert_close(again.variance, dist.variance)

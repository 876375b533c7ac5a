"""Issue 15 audit: constrained ICAR variances of isolated nodes, matern_marginal_variance checks, the shapes of
hyper-parameters, boolean flags."""

import math

import numpy as np
import pytest
import torch

from sparseprec.datasets import load_scotland_lip_cancer
from sparseprec.distributions import ICAR
from sparseprec.structures import (
    adjacency_from_pairs,
    ar1,
    bym2_scaling,
    bym2_scaling_per_node,
    car,
    constrained_icar_variances,
    matern_marginal_variance,
)

F64 = torch.float64


def _pseudo_inverse_diagonal(A: torch.Tensor) -> np.ndarray:
    """diag of (D − W)⁺: the covariance of the ICAR under one sum-to-zero constraint per component (the constrained
    model's covariance is the Moore–Penrose inverse, as the null space is spanned by the component indicators)."""
    W = A.to_dense().numpy()
    L = np.diag(W.sum(1)) - W
    return np.diag(np.linalg.pinv(L, hermitian=True))


@pytest.mark.parametrize(
    "pairs, n",
    [
        ([(0, 1)], 3),
        ([(0, 1), (1, 2), (2, 0), (3, 4)], 7),
        ([(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)], 5),
    ],
)
def test_constrained_icar_variances_match_pseudo_inverse(pairs, n):
    A = adjacency_from_pairs(pairs, n=n)
    variances = constrained_icar_variances(A)
    assert torch.isfinite(variances).all()
    np.testing.assert_allclose(variances.numpy(), _pseudo_inverse_diagonal(A), rtol=1e-10, atol=1e-12)


def test_isolated_node_variance_zero_and_agrees_with_icar_distribution():
    A = adjacency_from_pairs([(0, 1)], n=3)
    variances = constrained_icar_variances(A)
    torch.testing.assert_close(variances, torch.tensor([0.25, 0.25, 0.0], dtype=F64))
    torch.testing.assert_close(ICAR(A).variance, variances)


def test_bym2_per_node_with_islands_still_one():
    factors = bym2_scaling_per_node(adjacency_from_pairs([(0, 1), (1, 2)], n=4))
    assert float(factors[3]) == 1.0


def test_bym2_scaling_is_a_float_and_per_node_a_tensor():
    # two functions with fixed return types (there used to be one whose return type depended on a flag)
    connected = adjacency_from_pairs([(0, 1), (1, 2)])
    assert isinstance(bym2_scaling(connected), float)
    factors = bym2_scaling_per_node(connected)
    assert isinstance(factors, torch.Tensor) and factors.shape == (3,)
    torch.testing.assert_close(factors, torch.full((3,), bym2_scaling(connected), dtype=F64))
    with pytest.raises(ValueError, match="2 connected components: use bym2_scaling_per_node"):
        bym2_scaling(adjacency_from_pairs([(0, 1), (2, 3)]))


@pytest.mark.parametrize("islands", ["no", 0, None])
def test_scotland_islands_must_be_bool(islands):
    with pytest.raises(TypeError, match=r"islands must be a bool"):
        load_scotland_lip_cancer(islands=islands)


def test_matern_marginal_variance_formula():
    # ν = α − d/2; σ² = Γ(ν) / (Γ(α) (4π)^{d/2} κ^{2ν} τ²)
    for kappa, tau, alpha, d in [(0.5, 1.0, 2, 2), (2.0, 0.3, 2, 3), (1.5, 2.0, 1, 1), (0.7, 1.1, 4, 3)]:
        nu = alpha - d / 2
        expected = math.gamma(nu) / (math.gamma(alpha) * (4 * math.pi) ** (d / 2) * kappa ** (2 * nu) * tau**2)
        assert math.isclose(matern_marginal_variance(kappa, tau, alpha=alpha, d=d), expected, rel_tol=1e-12)


def test_matern_marginal_variance_tensor_is_differentiable():
    kappa = torch.tensor(0.5, dtype=F64, requires_grad=True)
    value = matern_marginal_variance(kappa, 1.0)  # 1 / (4π κ²) in 2-D, α = 2
    value.backward()
    torch.testing.assert_close(kappa.grad, torch.tensor(-2 / (4 * math.pi * 0.5**3), dtype=F64))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"kappa": 1.0, "tau": -1.0}, ValueError, r"tau must be positive and finite"),
        ({"kappa": 0.0, "tau": 1.0}, ValueError, r"kappa must be positive and finite, got 0.0"),
        ({"kappa": float("nan"), "tau": 1.0}, ValueError, r"must be positive and finite"),
        ({"kappa": 1.0, "tau": 1.0, "d": 0}, ValueError, r"d must be a positive int"),
        ({"kappa": 1.0, "tau": 1.0, "d": 2.5}, TypeError, r"d must be an int"),
        ({"kappa": 1.0, "tau": 1.0, "alpha": True}, TypeError, r"alpha must be an int"),
        ({"kappa": 1.0, "tau": 1.0, "alpha": 5}, ValueError, r"alpha must be 1, 2, 3 or 4"),
        ({"kappa": 1.0, "tau": 1.0, "alpha": 1, "d": 2}, ValueError, r"alpha - d/2 must be positive"),
        ({"kappa": "1", "tau": 1.0}, TypeError, r"kappa must be a float"),
    ],
)
def test_matern_marginal_variance_refuses(kwargs, error, message):
    with pytest.raises(error, match=message):
        matern_marginal_variance(**kwargs)


@pytest.mark.parametrize("shape", [(1,), (1, 1), (2,)])
def test_batched_hyper_parameters_give_a_batch_of_precisions(shape):
    # a hyper-parameter of shape (1,) or (1, 1) used to be refused: it is now a batch (tests/structures/
    # test_batched_builders.py checks the values); only 0-D parameters give an unbatched (n, n) matrix
    A = adjacency_from_pairs([(0, 1), (1, 2)])
    rho = torch.full(shape, 0.5, dtype=F64)
    assert car(A, rho).shape == (*shape, 3, 3)
    assert ar1(4, rho).shape == (*shape, 4, 4)
    assert car(A, 0.5, tau=torch.ones(shape, dtype=F64)).shape == (*shape, 3, 3)


def test_scalar_hyper_parameter_0d_tensor_kept_differentiable():
    rho = torch.tensor(0.5, dtype=F64, requires_grad=True)
    Q = car(adjacency_from_pairs([(0, 1), (1, 2)]), rho)
    Q.values().sum().backward()
    assert rho.grad is not None


def test_bool_tensor_hyper_parameter_refused():
    with pytest.raises(TypeError, match=r"rho must be a float or a real floating tensor, got a torch.bool tensor"):
        ar1(4, torch.tensor(True))

"""Audit of sparseprec.gpytorch (issue 15): the noise's pattern in the state dict, checked patterns and arguments."""

from __future__ import annotations

import pickle

import pytest
import torch

import sparseprec.gpytorch as G
from sparseprec.gpytorch._sparse_symmetric import SymmetricPattern
from sparseprec.structures import ar1


def _pattern_matrix(i: int, j: int) -> torch.Tensor:
    """A 3 × 3 SPD matrix storing its diagonal and the pair (i, j), (j, i): 5 entries whatever the pair."""
    dense = 2.0 * torch.eye(3, dtype=torch.float64)
    dense[i, j] = dense[j, i] = 0.5
    return dense.to_sparse()


Q1, Q2 = _pattern_matrix(0, 1), _pattern_matrix(1, 2)


# ---- 1. the noise's pattern travels with the state dict --------------------------------------------------------------
@pytest.mark.parametrize("strict", [True, False])
def test_likelihood_state_dict_of_another_pattern_of_the_same_size_is_refused(strict):
    saved = G.SparsePrecisionGaussianLikelihood(Q1, tau=3.0).state_dict()
    target = G.SparsePrecisionGaussianLikelihood(Q2)
    before = target.noise_covar.structure_values.clone()
    with pytest.raises(RuntimeError, match=r"structure_pattern.*must be this noise's pattern; entry 1 of G"):
        target.load_state_dict(saved, strict=strict)
    assert torch.equal(target.noise_covar.structure_values, before)


def test_noise_state_dict_of_another_size_is_refused():
    saved = G.SparsePrecisionNoise(ar1(4, 0.5)).state_dict()
    with pytest.raises(RuntimeError, match=r"structure_pattern.*must be this noise's pattern, of shape \(2, 5\)"):
        G.SparsePrecisionNoise(Q1).load_state_dict(saved)


def test_same_pattern_round_trips_with_its_values_and_hyper_parameters():
    source = G.SparsePrecisionGaussianLikelihood(Q1, tau=3.0, kappa2=0.25)
    target = G.SparsePrecisionGaussianLikelihood(Q1)
    target.load_state_dict(source.state_dict())
    assert torch.allclose(target.tau, torch.tensor(3.0, dtype=torch.float64))
    assert torch.allclose(target.kappa2, torch.tensor(0.25, dtype=torch.float64))
    expected = 3.0 * (0.25 * torch.eye(3, dtype=torch.float64) + Q1.to_dense())
    dense = target.noise_covar(shape=torch.Size([3])).to_dense()
    assert torch.allclose(torch.linalg.inv(dense), expected)


def test_the_pattern_buffer_is_the_row_and_column_of_each_value():
    noise = G.SparsePrecisionNoise(Q2)
    rows, cols = noise.structure_pattern
    assert noise.structure_pattern.dtype == torch.int64
    assert torch.equal(Q2.to_dense()[rows, cols], noise.structure_values)
    assert noise.double().structure_pattern.dtype == torch.int64


@pytest.mark.parametrize("strict", [True, False])
def test_a_state_dict_without_the_pattern_is_refused_until_it_is_added(strict):
    source = G.SparsePrecisionNoise(Q1, tau=2.0)
    old = {k: v for k, v in source.state_dict().items() if k != "structure_pattern"}
    target = G.SparsePrecisionNoise(Q1)
    with pytest.raises(RuntimeError, match="'structure_pattern' is missing.*add this noise's 'structure_pattern'"):
        target.load_state_dict(old, strict=strict)
    old["structure_pattern"] = target.state_dict()["structure_pattern"]
    target.load_state_dict(old, strict=strict)
    assert torch.allclose(target.tau, torch.tensor(2.0, dtype=torch.float64))


# ---- 2. SymmetricPattern checks its input ----------------------------------------------------------------------------
def test_symmetric_pattern_refuses_float_indices():
    with pytest.raises(TypeError, match="crow must be an int32 or int64 tensor.*float32"):
        SymmetricPattern(torch.tensor([0.0, 2, 4]), torch.tensor([0.0, 1.7, 0.2, 1]), 2)
    with pytest.raises(TypeError, match="col must be an int32 or int64 tensor.*float32"):
        SymmetricPattern(torch.tensor([0, 2, 4]), torch.tensor([0.0, 1, 0, 1]), 2)


@pytest.mark.parametrize("n", [3.7, True, "3"])
def test_symmetric_pattern_refuses_a_non_int_size(n):
    with pytest.raises(TypeError, match="n must be an int"):
        SymmetricPattern(torch.tensor([0, 2, 4]), torch.tensor([0, 1, 0, 1]), n)


def test_symmetric_pattern_refuses_a_negative_size():
    with pytest.raises(ValueError, match="n must be a non-negative int.*got -1"):
        SymmetricPattern(torch.tensor([0]), torch.tensor([], dtype=torch.long), -1)


def test_symmetric_pattern_refuses_a_non_symmetric_pattern_naming_the_entry():
    # row 0: (0, 0), (0, 1); row 1: (1, 1) only: (1, 0) missing
    with pytest.raises(ValueError, match=r"entry 1 at \(0, 1\) is stored and \(1, 0\) is not"):
        SymmetricPattern(torch.tensor([0, 2, 3]), torch.tensor([0, 1, 1]), 2)


@pytest.mark.parametrize(
    ("crow", "col", "match"),
    [
        ([0, 2, 1, 3], [0, 1, 2], "decreasing row pointers"),
        ([0, 2, 4], [0, 5, 0, 1], "column index out of range"),
        ([0, 2, 4], [1, 0, 0, 1], "not strictly increasing"),
        ([0, 2], [0, 1], "n \\+ 1 = 3 row pointers"),
    ],
)
def test_symmetric_pattern_refuses_bad_csr_indices(crow, col, match):
    n = 3 if len(crow) == 4 else 2
    with pytest.raises(ValueError, match=match):
        SymmetricPattern(torch.tensor(crow), torch.tensor(col), n)


def test_a_valid_symmetric_pattern_is_built_and_pickles():
    pattern = SymmetricPattern(torch.tensor([0, 2, 4], dtype=torch.int32), torch.tensor([0, 1, 0, 1]), 2)
    copy = pickle.loads(pickle.dumps(pattern))
    assert copy.n == 2 and copy.crow.dtype == torch.int64
    assert torch.equal(copy.rows, torch.tensor([0, 0, 1, 1]))
    assert torch.equal(copy.diagonal_positions, torch.tensor([0, 3]))


# ---- 3. tau and kappa2 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tau", "kappa2"])
@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("1", TypeError, "must be a positive finite scalar.*got str"),
        (True, TypeError, "must be a positive finite scalar.*got bool"),
        (torch.tensor([1.0, 2.0]), ValueError, r"must be a positive finite scalar \(one element\).*shape \(2,\)"),
        (-1.0, ValueError, "must be a positive finite scalar.*got -1.0"),
        (float("nan"), ValueError, "must be a positive finite scalar.*got nan"),
        (0, ValueError, "must be a positive finite scalar.*got 0.0"),
    ],
)
def test_tau_and_kappa2_must_be_positive_finite_scalars(name, value, error, match):
    with pytest.raises(error, match=f"{name} {match}"):
        G.SparsePrecisionNoise(Q1, **{name: value})
    noise = G.SparsePrecisionNoise(Q1)
    with pytest.raises(error, match=f"{name} {match}"):
        setattr(noise, name, value)
    likelihood = G.SparsePrecisionGaussianLikelihood(Q1)
    with pytest.raises(error, match=f"{name} {match}"):
        setattr(likelihood, name, value)


def test_tau_accepts_numbers_and_one_element_tensors():
    noise = G.SparsePrecisionNoise(Q1, tau=2, kappa2=torch.tensor([0.5]))
    assert torch.allclose(noise.tau, torch.tensor(2.0, dtype=torch.float64))
    assert torch.allclose(noise.kappa2, torch.tensor(0.5, dtype=torch.float64))
    noise.initialize(tau=4.0)
    assert torch.allclose(noise.tau, torch.tensor(4.0, dtype=torch.float64))


# ---- 4. num_inducing_points ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [3.0, True, "3"])
def test_num_inducing_points_must_be_an_int(m):
    with pytest.raises(TypeError, match="num_inducing_points must be an int"):
        G.SparseCholeskyVariationalDistribution(m)


@pytest.mark.parametrize("m", [-1, 0])
def test_num_inducing_points_must_be_positive(m):
    with pytest.raises(ValueError, match=f"num_inducing_points must be a positive int, got {m}"):
        G.SparseCholeskyVariationalDistribution(m)


# ---- 5. the transpose of a symmetric operator ------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [G.SparsePrecisionLinearOperator, G.PrecisionInverseLinearOperator])
def test_a_symmetric_operator_is_its_own_transpose(cls):
    Q = G.SparsePrecisionLinearOperator.from_sparse(ar1(4, 0.5))
    op = cls(Q.values, Q.pattern)
    assert op.mT is op or torch.equal(op.mT.to_dense(), op.to_dense())
    torch.testing.assert_close(op.mT.to_dense(), op.to_dense().mT)
    with pytest.raises(TypeError):  # no flag: a symmetric operator has one orientation
        cls(Q.values, Q.pattern, transposed=True)

"""Issue 15 audit: IntrinsicGMRF constraint arguments and GMRF.condition arguments (error contract)."""

import pytest
import torch

from sparseprec.distributions import GMRF, IntrinsicGMRF
from sparseprec.structures import ar1, rw1, rw2

F64 = torch.float64
NAN = float("nan")


def _rw2_model(**kwargs):
    t = torch.arange(6, dtype=F64)
    return IntrinsicGMRF(torch.zeros(6, dtype=F64), rw2(6), constraint_matrix=torch.stack([t**0, t]), **kwargs)


@pytest.mark.parametrize("validate_args", [True, False, None])
def test_nan_constraint_value_refused(validate_args):
    with pytest.raises(ValueError, match=r"constraint_value must be finite"):
        _rw2_model(constraint_value=torch.full((2,), NAN, dtype=F64), validate_args=validate_args)


def test_constraint_value_list_refused():
    with pytest.raises(TypeError, match=r"constraint_value must be a torch.Tensor, got list"):
        _rw2_model(constraint_value=[0.0, 0.0])


def test_constraint_value_0d_refused():
    with pytest.raises(ValueError, match=r"constraint_value must have shape \(\.\.\., n\), got a 0-D tensor"):
        _rw2_model(constraint_value=torch.tensor(0.0, dtype=F64))


def test_constraint_value_wrong_length_refused():
    with pytest.raises(ValueError, match=r"constraint_value must have shape \(\.\.\., 2\)"):
        _rw2_model(constraint_value=torch.zeros(3, dtype=F64))


def test_constraint_value_dtype_must_match_loc():
    with pytest.raises(TypeError, match=r"constraint_value and loc must have the same dtype"):
        _rw2_model(constraint_value=torch.zeros(2, dtype=torch.float32))


def test_constraint_value_is_satisfied_by_samples():
    e = torch.tensor([1.0, -2.0], dtype=F64)
    d = _rw2_model(constraint_value=e)
    x = d.sample((3,))
    t = torch.arange(6, dtype=F64)
    torch.testing.assert_close(x @ torch.stack([t**0, t]).T, e.expand(3, 2))


def test_nan_constraint_matrix_refused():
    C = torch.ones(1, 5, dtype=F64)
    C[0, 2] = NAN
    with pytest.raises(ValueError, match=r"constraint_matrix must be finite"):
        IntrinsicGMRF(torch.zeros(5, dtype=F64), rw1(5), constraint_matrix=C)


def test_constraint_matrix_list_refused():
    with pytest.raises(TypeError, match=r"constraint_matrix must be a dense \(k, 5\) torch.Tensor, got list"):
        IntrinsicGMRF(torch.zeros(5, dtype=F64), rw1(5), constraint_matrix=[[1.0] * 5])


def test_constraint_matrix_wrong_shape_refused():
    with pytest.raises(ValueError, match=r"constraint_matrix must be a dense \(k, 5\) tensor"):
        IntrinsicGMRF(torch.zeros(5, dtype=F64), rw1(5), constraint_matrix=torch.ones(5, dtype=F64))


def _prior(validate_args=True):
    return GMRF(torch.zeros(4, dtype=F64), ar1(4, 0.5), validate_args=validate_args)


def _obs():
    return torch.eye(4, dtype=F64)[:2].to_sparse_csr()


def test_condition_nan_y_refused_with_validation():
    with pytest.raises(ValueError, match=r"y must be finite"):
        _prior().condition(_obs(), torch.tensor([0.0, NAN], dtype=F64), 1.0)


def test_condition_nan_y_not_checked_without_validation():
    posterior = _prior(validate_args=False).condition(_obs(), torch.tensor([0.0, NAN], dtype=F64), 1.0)
    assert torch.isnan(posterior.loc).any()  # documented: the value check is governed by validate_args


@pytest.mark.parametrize("validate_args", [True, False])
def test_condition_nan_obs_matrix_named(validate_args):
    A = torch.eye(4, dtype=F64)[:2]
    A[1, 1] = NAN
    with pytest.raises(ValueError, match=r"obs_matrix must be finite, got nan at entry \(1, 1\)"):
        _prior(validate_args).condition(A.to_sparse_csr(), torch.zeros(2, dtype=F64), 1.0)


@pytest.mark.parametrize("solver", [3, 2.5, "cg"])
def test_condition_solver_not_callable_named(solver):
    with pytest.raises(TypeError, match=r"solver must be"):
        _prior().condition(_obs(), torch.zeros(2, dtype=F64), 1.0, solver=solver)


def test_condition_posterior_mean_matches_dense():
    Q = ar1(4, 0.5).to_dense()
    A = torch.eye(4, dtype=F64)[:2]
    y = torch.tensor([1.0, -1.0], dtype=F64)
    posterior = _prior().condition(A.to_sparse_csr(), y, 2.0)
    expected = torch.linalg.solve(Q + 2.0 * A.T @ A, 2.0 * A.T @ y)
    torch.testing.assert_close(posterior.loc, expected)

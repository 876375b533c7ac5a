"""Every argument error of SparseMultivariateNormal names the argument, what was expected and what was given."""

from __future__ import annotations

import pytest
import torch

from sparseprec.distributions import SparseMultivariateNormal
from tests.distributions.smvn_cases import make_case

F64 = torch.float64


def _lower(n=4, diagonal=True):
    L = torch.tril(torch.ones(n, n, dtype=F64) * 0.1, -1) + (torch.eye(n, dtype=F64) if diagonal else 0)
    return L.to_sparse_csr()


def test_exactly_one_factor():
    loc = torch.zeros(4, dtype=F64)
    with pytest.raises(ValueError, match="exactly one of scale_tril and precision_tril"):
        SparseMultivariateNormal(loc)
    with pytest.raises(ValueError, match="exactly one of scale_tril and precision_tril"):
        SparseMultivariateNormal(loc, scale_tril=_lower(), precision_tril=_lower())


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda loc: {"scale_tril": torch.eye(4, dtype=F64)}, TypeError, "scale_tril must be a sparse COO or CSR"),
        (lambda loc: {"precision_tril": _lower().to_dense().T.to_sparse()}, ValueError, "stores 6 entries above"),
        (
            lambda loc: {"precision_tril": (_lower().to_dense() - torch.diag(torch.ones(4, dtype=F64))).to_sparse()},
            ValueError,
            "no stored diagonal entry in row 0",
        ),
        (
            lambda loc: {"scale_tril": _lower(), "diagonal": torch.ones(4, dtype=F64)},
            ValueError,
            "stores 4 diagonal entries",
        ),
        (lambda loc: {"scale_tril": _lower().float()}, TypeError, "loc and scale_tril must have the same dtype"),
        (
            lambda loc: {"scale_tril": _lower(5, diagonal=True)},
            ValueError,
            r"loc must have shape \(\.\.\., 5\) to match scale_tril of shape \(5, 5\), got \(2, 4\)",
        ),
        (
            lambda loc: {"scale_tril": _lower(diagonal=False), "diagonal": torch.ones(3, dtype=F64)},
            ValueError,
            r"diagonal must have shape \(\.\.\., 4\)",
        ),
        (
            lambda loc: {"scale_tril": _lower(diagonal=False), "diagonal": torch.ones(4, dtype=torch.float32)},
            TypeError,
            "diagonal and scale_tril must have the same dtype",
        ),
        (
            lambda loc: {"scale_tril": _lower(diagonal=False), "diagonal": torch.ones(3, 4, dtype=F64)},
            ValueError,
            "must have broadcastable batch shapes",
        ),
    ],
)
def test_construction_errors(make, error, match):
    loc = torch.zeros(2, 4, dtype=F64)
    with pytest.raises(error, match=match):
        SparseMultivariateNormal(loc, **make(loc))


def test_loc_must_be_a_dense_vector():
    with pytest.raises(ValueError, match=r"loc must have shape \(\.\.\., n\), got a 0-D tensor"):
        SparseMultivariateNormal(torch.tensor(0.0, dtype=F64), scale_tril=_lower())
    with pytest.raises(TypeError, match="loc must be a dense"):
        SparseMultivariateNormal(torch.zeros(4, dtype=F64).to_sparse(), scale_tril=_lower())


def test_batched_factor_must_be_the_last_batch_dimension():
    case = make_case("scale", False, batch=2)
    with pytest.raises(ValueError, match="must have broadcastable batch shapes"):
        SparseMultivariateNormal(torch.zeros(3, 7, dtype=F64), scale_tril=case.L)
    one = make_case("scale", False, batch=1)
    with pytest.raises(ValueError, match="batch size 1 must match the last batch dimension"):
        SparseMultivariateNormal(torch.zeros(3, 7, dtype=F64), scale_tril=one.L)


def test_validation_of_values():
    loc = torch.zeros(4, dtype=F64)
    negative = _lower().to_dense()
    negative[2, 2] = -1.0
    with pytest.raises(ValueError, match="precision_tril"):
        SparseMultivariateNormal(loc, precision_tril=negative.to_sparse_csr(), validate_args=True)
    # without validation, a negative diagonal is accepted: Σ = L Lᵀ only depends on |L_ii|
    SparseMultivariateNormal(loc, precision_tril=negative.to_sparse_csr(), validate_args=False)
    nan = _lower().to_dense()
    nan[3, 0] = float("nan")
    with pytest.raises(ValueError, match="scale_tril"):
        SparseMultivariateNormal(loc, scale_tril=nan.to_sparse_csr(), validate_args=True)
    with pytest.raises(ValueError, match="diagonal"):
        SparseMultivariateNormal(
            loc,
            scale_tril=_lower(diagonal=False),
            diagonal=torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=F64),
            validate_args=True,
        )
    with pytest.raises(ValueError, match="loc"):
        SparseMultivariateNormal(torch.full((4,), float("nan"), dtype=F64), scale_tril=_lower(), validate_args=True)


def test_validation_of_the_value():
    dist = SparseMultivariateNormal(torch.zeros(4, dtype=F64), scale_tril=_lower(), validate_args=True)
    with pytest.raises(ValueError, match="shape"):
        dist.log_prob(torch.zeros(5, dtype=F64))
    with pytest.raises(ValueError, match="support"):
        dist.log_prob(torch.tensor([0.0, float("nan"), 0.0, 0.0], dtype=F64))


def test_constraint_flags_per_batch_element():
    case = make_case("precision", False, "csr", batch=2)
    L = case.L
    rows = torch.repeat_interleave(torch.arange(7), L.crow_indices()[1].diff())
    values = L.values().clone()
    values[1, (rows == 3) & (L.col_indices()[1] == 3)] = -1.0  # a negative diagonal entry in batch element 1 only
    L_bad = torch.sparse_csr_tensor(L.crow_indices(), L.col_indices(), values, L.shape)
    dist = SparseMultivariateNormal(case.loc, precision_tril=L_bad, validate_args=False)
    assert dist.arg_constraints["precision_tril"].check(L_bad).tolist() == [True, False]
    with pytest.raises(ValueError, match="precision_tril"):
        SparseMultivariateNormal(case.loc, precision_tril=L_bad, validate_args=True)

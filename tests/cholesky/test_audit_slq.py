"""slq_logdet's error contract (issue 15): the same input checks as sparse_logdet, typed argument errors."""

import pytest
import torch

import sparseprec
from sparseprec.cholesky import SLQLogDet, slq_logdet

F64 = torch.float64


def _tridiagonal(n: int = 8) -> torch.Tensor:
    return (
        3 * torch.eye(n, dtype=F64)
        + torch.diag(torch.ones(n - 1, dtype=F64), 1)
        + torch.diag(torch.ones(n - 1, dtype=F64), -1)
    )


def test_non_symmetric_values_refused_like_sparse_logdet():
    D = _tridiagonal()
    D[0, 1] = 1.5  # pattern symmetric, values not
    Q = D.to_sparse_csr()
    with pytest.raises(ValueError, match=r"Q is not symmetric"):
        sparseprec.cholesky.sparse_logdet(Q)
    with pytest.raises(ValueError, match=r"Q is not symmetric: Q\[0, 1\] = 1.5"):
        slq_logdet(Q)
    with pytest.raises(ValueError, match=r"Q is not symmetric"):
        SLQLogDet()(Q)


def test_non_finite_values_refused():
    D = _tridiagonal()
    D[2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"Q has a non-finite value nan"):
        slq_logdet(D.to_sparse_csr())


def test_not_positive_definite_raises_library_error():
    with pytest.raises(sparseprec.NotPositiveDefiniteError, match=r"Q is not positive definite"):
        slq_logdet((-_tridiagonal()).to_sparse_csr(), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("cg_rtol", [-1.0, 0.0, float("nan"), float("inf")])
def test_cg_rtol_must_be_positive_and_finite(cg_rtol):
    with pytest.raises(ValueError, match=r"cg_rtol must be positive and finite"):
        slq_logdet(_tridiagonal().to_sparse_csr(), cg_rtol=cg_rtol)


@pytest.mark.parametrize("cg_rtol", ["1e-6", True, None])
def test_cg_rtol_type(cg_rtol):
    with pytest.raises(TypeError, match=r"cg_rtol must be a float"):
        slq_logdet(_tridiagonal().to_sparse_csr(), cg_rtol=cg_rtol)


@pytest.mark.parametrize("name", ["num_probes", "lanczos_steps"])
@pytest.mark.parametrize("value", [2.5, 3.0, True, "4"])
def test_counts_must_be_ints(name, value):
    with pytest.raises(TypeError, match=rf"{name} must be an int"):
        slq_logdet(_tridiagonal().to_sparse_csr(), **{name: value})


@pytest.mark.parametrize("name", ["num_probes", "lanczos_steps"])
def test_counts_must_be_positive(name):
    with pytest.raises(ValueError, match=rf"{name} must be a positive int, got 0"):
        slq_logdet(_tridiagonal().to_sparse_csr(), **{name: 0})


def test_generator_type():
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None, got int 3"):
        slq_logdet(_tridiagonal().to_sparse_csr(), generator=3)


def test_valid_call_estimates_logdet():
    D = _tridiagonal()
    estimate = slq_logdet(D.to_sparse_csr(), num_probes=400, generator=torch.Generator().manual_seed(1))
    assert abs(float(estimate) / float(torch.logdet(D)) - 1) < 0.05

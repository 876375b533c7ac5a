"""SparseMultivariateNormal specifics beyond the generic checks of test_registry.py: batched factors, sparse matrices,
warnings, dtypes, parameterisation names."""

from __future__ import annotations

import pytest
import torch

from tests.distributions.smvn_cases import FORM_IDS, FORMS, dense_reference, make_case


def _dense(A: torch.Tensor) -> torch.Tensor:
    return A if A.layout == torch.strided else A.to_dense()


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize(("form", "ldl"), FORMS, ids=FORM_IDS)
def test_batched_factor_broadcasts_with_loc_and_diagonal(form, ldl, layout):
    # factor batch (2,) is the last batch dim; loc adds (3, 1); d (LDL forms) has its own (2,) batch
    case = make_case(form, ldl, layout, batch=2, loc_batch=(3,), d_batch=(2,) if ldl else ())
    case.loc = case.loc[:, :1].clone()  # (3, 1, n): broadcasts against the factor's 2
    dist, ref = case.dist(), case.reference()
    assert dist.batch_shape == (3, 2)
    x = torch.randn(5, 3, 2, 7, dtype=torch.float64)
    torch.testing.assert_close(dist.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(dist.entropy(), ref.entropy())
    torch.testing.assert_close(dist.variance, ref.variance)
    torch.testing.assert_close(dist.covariance_matrix, ref.covariance_matrix)
    P = dist.precision_matrix
    torch.testing.assert_close(_dense(P).expand(3, 2, 7, 7), ref.precision_matrix)
    if form == "precision":
        assert P.layout == torch.sparse_coo and P.shape == (2, 7, 7)
    assert dist.rsample((4,)).shape == (4, 3, 2, 7)


def test_precision_matrix_is_sparse_with_the_product_pattern():
    case = make_case("precision", False, "csr", n=30, density=0.1)
    P = case.dist().precision_matrix
    assert P.layout == torch.sparse_csr
    dense = case.L_dense @ case.L_dense.T
    torch.testing.assert_close(P.to_dense(), dense)
    # stored entries: exactly the structural pattern of L Lᵀ (both triangles), nothing dense
    structural = (case.L_dense != 0).double() @ (case.L_dense != 0).double().T > 0
    assert P._nnz() == int(structural.sum()) < 30 * 30


def test_sparse_covariance_of_a_scale_form():
    case = make_case("scale", True, "coo", n=12)
    S = case.dist().covariance_sparse()
    torch.testing.assert_close(S.to_dense(), case.reference().covariance_matrix)
    with pytest.raises(ValueError, match="covariance_sparse"):
        make_case("precision", True).dist().covariance_sparse()


def test_dense_matrices_warn_above_the_size_threshold(monkeypatch):
    import sparseprec.distributions.sparse_mvn as module

    monkeypatch.setattr(module, "DENSE_WARNING_SIZE", 5)
    dist = make_case("precision", False).dist()
    with pytest.warns(UserWarning, match="dense 7 x 7"):
        dist.covariance_matrix  # noqa: B018
    with pytest.warns(UserWarning, match="dense 7 x 7"):
        make_case("scale", False).dist().precision_matrix  # noqa: B018


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float32_and_float64(dtype):
    case = make_case("precision", True, "csr", dtype=dtype, loc_batch=(2,))
    dist = case.dist()
    x = dist.sample((3,))
    assert x.dtype == dtype and dist.log_prob(x).dtype == dtype
    ref = dense_reference("precision", case.L_dense.double(), case.d.double(), case.loc.double())
    torch.testing.assert_close(dist.log_prob(x).double(), ref.log_prob(x.double()), rtol=1e-4, atol=1e-4)


def test_expand_keeps_a_batched_factor_last():
    case = make_case("scale", False, "csr", batch=2)
    dist = case.dist()
    assert dist.expand((3, 2)).log_prob(torch.zeros(7, dtype=torch.float64)).shape == (3, 2)
    with pytest.raises(ValueError, match="batch size 2 must match the last batch dimension"):
        dist.expand((2, 3))


def test_parameterization_names_and_constraints():
    names = {make_case(f, ldl).dist().parameterization for f, ldl in FORMS}
    assert names == {"scale_tril", "scale_ldl", "precision_tril", "precision_ldl"}
    dist = make_case("precision", True).dist()
    assert set(dist.arg_constraints) == {"loc", "precision_tril", "diagonal"}
    for name, constraint in dist.arg_constraints.items():
        assert bool(constraint.check(getattr(dist, name)).all())
    assert set(make_case("scale", False).dist().arg_constraints) == {"loc", "scale_tril"}

"""The whiteners behind SparseMultivariateNormal, each map against dense algebra on the registry of smvn_cases.

For every parameterisation, with Σ built densely from the factor: ``whiten`` is a linear map W with W Σ Wᵀ = I (a
whitened N(0, Σ) has identity covariance), ``color`` is its inverse (C Cᵀ = Σ), ``half_logdet`` is ½ log det Σ, and
the moments and matrices agree with the dense ones.
"""

from __future__ import annotations

import pytest
import torch

from sparseprec.distributions._whitener import ColoringTransform, PrecisionWhitener, ScaleWhitener, whitener_for
from tests.distributions.smvn_cases import FORM_IDS, FORMS, make_case

SHAPES = {
    "unbatched": {},
    "batched_factor": {"batch": 2},
    "batched_d": {"d_batch": (3,)},
    "both_batched": {"batch": 2, "d_batch": (3, 2)},
}


def _case(form: str, ldl: bool, shape: str):
    kwargs = dict(SHAPES[shape])
    if not ldl:
        kwargs.pop("d_batch", None)
    return make_case(form, ldl, n=6, **kwargs)


def _whitener(case):
    return whitener_for(**{f"{case.form}_tril": case.L}, diagonal=case.d if case.ldl else None)


def _dense_map(f, whitener) -> torch.Tensor:
    """The matrix of the linear map ``f`` (applied to the last dim), ``batch_shape + (n, n)``."""
    n = whitener.n
    eye = torch.eye(n, dtype=torch.float64)
    columns = eye.reshape((n,) + (1,) * len(whitener.batch_shape) + (n,)).expand((n,) + whitener.batch_shape + (n,))
    return f(columns).movedim(0, -1)  # row j of the input is e_j: its image is column j


@pytest.fixture(
    params=[(f, s) for f in zip(FORMS, FORM_IDS, strict=True) for s in SHAPES], ids=lambda p: f"{p[0][1]}-{p[1]}"
)
def case(request):
    (form, ldl), _ = request.param[0]
    return _case(form, ldl, request.param[1])


def test_the_form_picks_the_whitener(case):
    expected = ScaleWhitener if case.form == "scale" else PrecisionWhitener
    w = _whitener(case)
    assert type(w) is expected
    assert w.parameterization == f"{case.form}_{'ldl' if case.ldl else 'tril'}"
    assert w.sparse_covariance == (case.form == "scale") and w.sparse_precision == (case.form == "precision")


def test_whiten_gives_identity_covariance_and_color_inverts_it(case):
    w = _whitener(case)
    Sigma = case.reference().covariance_matrix
    W = _dense_map(w.whiten, w)
    C = _dense_map(w.color, w)
    eye = torch.eye(w.n, dtype=torch.float64).expand_as(W)
    torch.testing.assert_close(W @ Sigma @ W.transpose(-1, -2), eye)
    torch.testing.assert_close(C @ C.transpose(-1, -2), Sigma.expand_as(C))
    torch.testing.assert_close(W @ C, eye)
    r = torch.randn((4,) + w.batch_shape + (w.n,), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(w.color(w.whiten(r)), r)
    torch.testing.assert_close(w.whiten(w.color(r)), r)


def test_half_logdet_variance_and_matrices_against_dense(case):
    w = _whitener(case)
    reference = case.reference()
    Sigma = reference.covariance_matrix.expand(w.batch_shape + (w.n, w.n))
    torch.testing.assert_close(w.half_logdet(), 0.5 * torch.logdet(Sigma))
    torch.testing.assert_close(w.variance(), Sigma.diagonal(dim1=-2, dim2=-1))
    torch.testing.assert_close(w.covariance_matrix(w.batch_shape), Sigma)
    Q = w.precision_matrix(w.batch_shape)
    torch.testing.assert_close(Q.to_dense() if Q.layout != torch.strided else Q, torch.linalg.inv(Sigma))
    if w.sparse_covariance:
        torch.testing.assert_close(w.covariance_sparse().to_dense(), Sigma)
    else:
        torch.testing.assert_close(w.precision_diagonal(), torch.linalg.inv(Sigma).diagonal(dim1=-2, dim2=-1))
        with pytest.raises(ValueError, match="covariance_sparse"):
            w.covariance_sparse()


def test_coloring_transform_is_the_affine_map_with_half_logdet_jacobian(case):
    w = _whitener(case)
    loc = torch.randn(w.batch_shape + (w.n,), dtype=torch.float64)
    t = ColoringTransform(loc, w)
    eps = torch.randn((5,) + w.batch_shape + (w.n,), dtype=torch.float64)
    x = t(eps)
    torch.testing.assert_close(x, loc + w.color(eps))
    torch.testing.assert_close(t.inv(x), eps)
    torch.testing.assert_close(t.log_abs_det_jacobian(eps, x), w.half_logdet().expand(x.shape[:-1]))


@pytest.mark.parametrize("form", ["scale", "precision"])
def test_whiten_and_color_gradcheck(form):
    case = make_case(form, True, n=5)
    L, d = case.L, case.d.clone().requires_grad_()
    r = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)

    def maps(r, d):
        w = whitener_for(**{f"{form}_tril": L}, diagonal=d)
        return w.whiten(r), w.color(r), w.half_logdet()

    assert torch.autograd.gradcheck(maps, (r, d))


def test_empty_event():
    L = torch.zeros(0, 0, dtype=torch.float64).to_sparse_csr()
    for w in (whitener_for(scale_tril=L), whitener_for(precision_tril=L)):
        z = torch.zeros(3, 0, dtype=torch.float64)
        assert w.whiten(z).shape == w.color(z).shape == (3, 0)
        assert w.half_logdet().shape == () and float(w.half_logdet()) == 0.0
        assert w.variance().shape == (0,) and w.covariance_matrix(torch.Size()).shape == (0, 0)


def test_sparse_product_with_two_batch_dims_is_differentiable():
    case = make_case("precision", True, n=5, batch=2, d_batch=(3, 2))
    d = case.d.clone().requires_grad_()
    w = whitener_for(precision_tril=case.L, diagonal=d)
    Q = w.precision_matrix(w.batch_shape)
    assert Q.shape == (3, 2, 5, 5)
    dense = (case.L_dense * d.unsqueeze(-2)) @ case.L_dense.transpose(-1, -2)
    torch.testing.assert_close(Q.to_dense(), dense)
    (grad,) = torch.autograd.grad((Q.to_dense() * dense.detach()).sum(), d)
    (expected,) = torch.autograd.grad((dense * dense.detach()).sum(), d)
    torch.testing.assert_close(grad, expected)

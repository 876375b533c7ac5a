"""Gradients of SparseMultivariateNormal: gradcheck in float64 and agreement with dense torch autograd."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from sparseprec.distributions import SparseMultivariateNormal
from tests.distributions.smvn_cases import (
    FORM_IDS,
    FORMS,
    dense_from_values,
    dense_reference,
    make_case,
    rebuild,
    stored_values,
)


def _build(case, values, d, loc):
    kwargs = {f"{case.form}_tril": rebuild(case.L, values)}
    if case.ldl:
        kwargs["diagonal"] = d
    return SparseMultivariateNormal(loc, **kwargs)


@pytest.mark.parametrize("layout", ["coo", "csr", "coo_uncoalesced"])
@pytest.mark.parametrize(("form", "ldl"), FORMS, ids=FORM_IDS)
def test_gradcheck_log_prob_entropy_and_rsample(form, ldl, layout):
    case = make_case(form, ldl, layout, n=5, loc_batch=(2,))
    values = stored_values(case.L).clone().requires_grad_()
    d = (case.d if ldl else torch.ones(5, dtype=torch.float64)).clone().requires_grad_(ldl)
    loc = case.loc.clone().requires_grad_()
    x = torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True)

    def log_prob(values, d, loc, x):
        return _build(case, values, d, loc).log_prob(x)

    def entropy_and_variance(values, d):
        dist = _build(case, values, d, case.loc)
        out = [dist.entropy()]
        if form == "scale":  # the precision forms' variance carries no gradient (see the docstring)
            out.append(dist.variance)
        return tuple(out)

    def rsample(values, d, loc):
        torch.manual_seed(3)  # the same ε on every evaluation
        return _build(case, values, d, loc).rsample((4,))

    assert gradcheck(log_prob, (values, d, loc, x))
    if ldl:
        assert gradcheck(entropy_and_variance, (values, d))
    else:
        assert gradcheck(lambda v: entropy_and_variance(v, d), (values,))
    assert gradcheck(rsample, (values, d, loc))


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize(("form", "ldl"), FORMS, ids=FORM_IDS)
def test_gradients_match_dense_autograd(form, ldl, batched):
    case = make_case(form, ldl, "csr", n=9, batch=2 if batched else None, loc_batch=(3,))
    values = stored_values(case.L).clone().requires_grad_()
    d = case.d.clone().requires_grad_() if ldl else None
    loc = case.loc.clone().requires_grad_()
    x = torch.randn(4, *case.loc.shape, dtype=torch.float64)

    dist = _build(case, values, d, loc)
    (dist.log_prob(x).sum() + dist.entropy().sum()).backward()
    ours = [values.grad, loc.grad] + ([d.grad] if ldl else [])

    values_ref = stored_values(case.L).clone().requires_grad_()
    d_ref = case.d.clone().requires_grad_() if ldl else None
    loc_ref = case.loc.clone().requires_grad_()
    ref = dense_reference(form, dense_from_values(case, values_ref), d_ref, loc_ref)
    (ref.log_prob(x).sum() + ref.entropy().sum()).backward()
    expected = [values_ref.grad, loc_ref.grad] + ([d_ref.grad] if ldl else [])
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_gradient_reaches_a_sparse_leaf_factor_on_its_pattern():
    case = make_case("precision", False, "csr", n=20, density=0.2)
    L = case.L.detach().clone().requires_grad_()
    dist = SparseMultivariateNormal(case.loc, precision_tril=L)
    dist.log_prob(torch.randn(8, 20, dtype=torch.float64)).sum().backward()
    assert L.grad.layout == torch.sparse_csr
    assert torch.equal(L.grad.col_indices(), L.col_indices())
    assert torch.equal(L.grad.crow_indices(), L.crow_indices())


def test_precision_form_variance_says_it_has_no_gradient():
    case = make_case("precision", True, "csr")
    values = stored_values(case.L).clone().requires_grad_()
    dist = _build(case, values, case.d, case.loc)
    with pytest.warns(UserWarning, match="carries no gradient"):
        variance = dist.variance
    assert not variance.requires_grad
    torch.testing.assert_close(variance, case.reference().variance)

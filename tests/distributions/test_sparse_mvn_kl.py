"""Registered KL divergences of SparseMultivariateNormal against torch's dense KL(MVN || MVN)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from sparseprec.distributions import SparseMultivariateNormal
from tests.distributions.smvn_cases import FORM_IDS, FORMS, dense_reference, make_case, rebuild, stored_values


def _diagonal_normal(n, batch=(), seed=0):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(batch + (n,), generator=g, dtype=torch.float64)
    scale = 0.3 + torch.rand(batch + (n,), generator=g, dtype=torch.float64)
    return Independent(Normal(loc, scale), 1), MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("ldl", [False, True])
def test_independent_normal_vs_precision_form(ldl, layout):
    q = make_case("precision", ldl, layout, loc_batch=(2,))
    p, p_dense = _diagonal_normal(7, (3, 1))
    kl = kl_divergence(p, q.dist())
    assert kl.shape == (3, 2)
    torch.testing.assert_close(kl, kl_divergence(p_dense, q.reference()))


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("ldl_q", [False, True])
@pytest.mark.parametrize("ldl_p", [False, True])
def test_scale_form_vs_precision_form(ldl_p, ldl_q, batched):
    batch = 2 if batched else None
    p = make_case("scale", ldl_p, "csr", batch=batch, density=0.3, seed=1, n=12)
    q = make_case("precision", ldl_q, "coo", batch=batch, density=0.3, seed=2, n=12, loc_batch=(3,))
    kl = kl_divergence(p.dist(), q.dist())
    expected = kl_divergence(p.reference(), q.reference())
    assert kl.shape == expected.shape
    torch.testing.assert_close(kl, expected)


@pytest.mark.parametrize(("form", "ldl"), FORMS, ids=FORM_IDS)
def test_dense_mvn_vs_either_form(form, ldl):
    q = make_case(form, ldl, "csr", batch=2, loc_batch=(3,))
    g = torch.Generator().manual_seed(5)
    A = torch.randn(3, 2, 7, 7, generator=g, dtype=torch.float64)
    p = MultivariateNormal(torch.randn(3, 2, 7, generator=g, dtype=torch.float64), A @ A.mT + torch.eye(7))
    torch.testing.assert_close(kl_divergence(p, q.dist()), kl_divergence(p, q.reference()))


def test_kl_gradients_match_dense():
    p_case = make_case("scale", True, "csr", n=6, seed=3)
    q_case = make_case("precision", False, "csr", n=6, seed=4)
    vp, vq = stored_values(p_case.L).clone(), stored_values(q_case.L).clone()
    dp, locp, locq = p_case.d.clone(), p_case.loc.clone(), q_case.loc.clone()

    def kl(vp, vq, dp, locp, locq):
        p = SparseMultivariateNormal(locp, scale_tril=rebuild(p_case.L, vp), diagonal=dp)
        q = SparseMultivariateNormal(locq, precision_tril=rebuild(q_case.L, vq))
        return kl_divergence(p, q)

    inputs = tuple(t.requires_grad_() for t in (vp, vq, dp, locp, locq))
    assert gradcheck(kl, inputs)
    ind, _ = _diagonal_normal(6)
    loc, scale = (t.clone().requires_grad_() for t in (ind.base_dist.loc, ind.base_dist.scale))
    assert gradcheck(
        lambda loc, scale, vq: kl_divergence(
            Independent(Normal(loc, scale), 1),
            SparseMultivariateNormal(locq.detach(), precision_tril=rebuild(q_case.L, vq)),
        ),
        (loc, scale, vq),
    )


def test_unsupported_pairs_raise_not_implemented():
    scale = make_case("scale", False).dist()
    precision = make_case("precision", False).dist()
    ind, _ = _diagonal_normal(7)
    with pytest.raises(NotImplementedError, match="p in a scale form and q in a precision form"):
        kl_divergence(precision, scale)
    with pytest.raises(NotImplementedError, match="p in a scale form and q in a precision form"):
        kl_divergence(precision, precision)
    with pytest.raises(NotImplementedError, match="needs q in a precision form"):
        kl_divergence(ind, scale)
    with pytest.raises(NotImplementedError):
        kl_divergence(scale, MultivariateNormal(torch.zeros(7, dtype=torch.float64), torch.eye(7, dtype=torch.float64)))
    batched = make_case("precision", False, batch=2).dist()
    with pytest.raises(NotImplementedError, match="same batch size"):
        kl_divergence(scale, batched)


def test_kl_of_a_distribution_with_itself_is_zero():
    case = make_case("scale", True, "csr", n=15)
    p = case.dist()
    Q_form = dense_reference("scale", case.L_dense, case.d, case.loc).precision_matrix
    L_q = torch.linalg.cholesky(Q_form)
    q = SparseMultivariateNormal(case.loc, precision_tril=L_q.to_sparse_csr())
    torch.testing.assert_close(kl_divergence(p, q), torch.zeros((), dtype=torch.float64), atol=1e-10, rtol=0)

"""Hessians of the log-densities against dense torch references: w.r.t. the value, the mean, and (where the
parameterisation is a factor) the factor's stored values; a clear error where a second derivative is not implemented.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import hessian
from torch.distributions import MultivariateNormal

import sparseprec
from sparseprec.distributions import GMRF
from sparseprec.solvers import CG
from tests.conftest import rebuild, stored_values
from tests.distributions.smvn_cases import FORM_IDS, FORMS, dense_from_values, dense_reference, make_case

DT = torch.float64


def _issue_precision() -> torch.Tensor:
    return torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0], [1.0, 0.0, 4.0]], dtype=DT)


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_gmrf_hessian_wrt_value_is_minus_q(layout):
    """The example of the issue: d²/dx² log N(x; μ, Q⁻¹) = −Q (it came back −Q/2)."""
    Q = _issue_precision()
    Qs = Q.to_sparse_csr() if layout == "csr" else Q.to_sparse_coo()
    loc = torch.tensor([0.5, -1.0, 2.0], dtype=DT)
    x = torch.tensor([1.0, 2.0, -0.5], dtype=DT)
    torch.testing.assert_close(hessian(lambda v: GMRF(loc, Qs).log_prob(v), x), -Q)
    torch.testing.assert_close(hessian(lambda m: GMRF(m, Qs).log_prob(x), loc), -Q)


def test_gmrf_mixed_hessian_value_and_loc():
    Q = _issue_precision()
    Qs = Q.to_sparse_csr()
    x = torch.tensor([1.0, 2.0, -0.5], dtype=DT)
    loc = torch.zeros(3, dtype=DT)
    H = hessian(lambda x, m: GMRF(m, Qs).log_prob(x), (x, loc))
    torch.testing.assert_close(H[0][1], Q)
    torch.testing.assert_close(H[1][0], Q)


def test_gmrf_hessian_matches_dense_on_batches():
    g = torch.Generator().manual_seed(0)
    n = 6
    A = torch.randn(n, n, generator=g, dtype=DT)
    Q = A @ A.T + n * torch.eye(n, dtype=DT)
    Q = torch.where(torch.rand(n, n, generator=g) < 0.5, Q, 0.0)
    Q = (torch.triu(Q) + torch.triu(Q, 1).T).fill_diagonal_(n * 2.0)  # symmetric, diagonally dominant
    loc = torch.randn(2, n, generator=g, dtype=DT)
    x = torch.randn(2, n, generator=g, dtype=DT)
    dense = MultivariateNormal(loc, precision_matrix=Q)
    ours = hessian(lambda v: GMRF(loc, Q.to_sparse_csr()).log_prob(v).sum(), x)
    torch.testing.assert_close(ours, hessian(lambda v: dense.log_prob(v).sum(), x))


def test_gmrf_hessian_vector_product_through_precision_values():
    """Mixed second derivative of log p(x) w.r.t. Q's values and x: the quadratic form's part is exact."""
    Q = _issue_precision()
    Qs = Q.to_sparse_csr()
    x = torch.tensor([1.0, 2.0, -0.5], dtype=DT, requires_grad=True)
    values = Qs.values().clone().requires_grad_()
    Qv = sparseprec.sparse_csr_tensor(Qs.crow_indices(), Qs.col_indices(), values, (3, 3))
    lp = GMRF(torch.zeros(3, dtype=DT), Qv).log_prob(x)
    (gx,) = torch.autograd.grad(lp, x, create_graph=True)  # −½ (Q + Qᵀ) x, every stored value independent
    (gv,) = torch.autograd.grad(gx.sum(), values)  # d/dQ_ij of −½ Σ_k ((Q + Qᵀ) x)_k = −½ (x_i + x_j)
    rows, cols = torch.tensor([0, 0, 1, 2, 2]), Qs.col_indices()
    torch.testing.assert_close(gv, -0.5 * (x.detach()[rows] + x.detach()[cols]))


def test_gmrf_logdet_second_derivative_raises():
    Qs = _issue_precision().to_sparse_csr()
    values = Qs.values().clone().requires_grad_()
    Qv = sparseprec.sparse_csr_tensor(Qs.crow_indices(), Qs.col_indices(), values, (3, 3))
    lp = GMRF(torch.zeros(3, dtype=DT), Qv).log_prob(torch.ones(3, dtype=DT))
    (gv,) = torch.autograd.grad(lp, values, create_graph=True)
    with pytest.raises(sparseprec.NotTwiceDifferentiableError, match="sparse_logdet"):
        torch.autograd.grad(gv.sum(), values)


@pytest.mark.parametrize(("form", "ldl"), FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_sparse_mvn_hessian_wrt_value_and_loc(form, ldl, layout):
    case = make_case(form, ldl, layout, n=6, seed=3)
    ref = case.reference()
    x = torch.randn(6, generator=torch.Generator().manual_seed(1), dtype=DT)
    torch.testing.assert_close(hessian(case.dist().log_prob, x), hessian(ref.log_prob, x))
    H = hessian(lambda m: type(case.dist())(m, **case.kwargs).log_prob(x), case.loc)
    torch.testing.assert_close(H, hessian(lambda m: MultivariateNormal(m, ref.covariance_matrix).log_prob(x), case.loc))


@pytest.mark.parametrize(("form", "ldl"), FORMS, ids=FORM_IDS)
def test_sparse_mvn_hessian_wrt_factor_values(form, ldl):
    """The full Hessian of log p(x) w.r.t. the factor's stored values (log-det term included: it is a sum of
    log |L_ii|, twice differentiable) equals the dense reference's."""
    case = make_case(form, ldl, "csr", n=5, seed=4, density=0.5)
    x = torch.randn(5, generator=torch.Generator().manual_seed(2), dtype=DT)
    v0 = stored_values(case.L).detach()

    def ours(v):
        kwargs = dict(case.kwargs)
        kwargs[f"{form}_tril"] = rebuild(case.L, v)
        return type(case.dist())(case.loc, **kwargs).log_prob(x)

    def dense(v):
        return dense_reference(form, dense_from_values(case, v), case.d, case.loc).log_prob(x)

    torch.testing.assert_close(hessian(ours, v0), hessian(dense, v0))


@pytest.mark.parametrize("solver", [None, CG()], ids=["cholesky", "cg"])
def test_posterior_log_prob_hessian_wrt_observations(solver):
    """x | y of y = A x + e: μ_post = μ + Q_post⁻¹ Aᵀ R (y − A μ), so d²/dy² log p(x | y) = −R A Q_post⁻¹ Aᵀ R."""
    Q = _issue_precision()
    A = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 1.0]], dtype=DT)
    R = torch.tensor([2.0, 3.0], dtype=DT)
    prior = GMRF(torch.zeros(3, dtype=DT), Q.to_sparse_csr())
    x = torch.tensor([0.3, -0.2, 0.1], dtype=DT)
    y = torch.tensor([1.0, -1.0], dtype=DT)

    def log_prob(y):
        post = prior.condition(A.to_sparse_csr(), y, R, solver=solver)
        return post.log_prob(x)

    Q_post = Q + A.T @ torch.diag(R) @ A
    expected = -torch.diag(R) @ A @ torch.linalg.inv(Q_post) @ A.T @ torch.diag(R)
    torch.testing.assert_close(hessian(log_prob, y), expected, rtol=1e-6, atol=1e-8)


def test_icar_hessian_wrt_value_is_minus_q():
    from sparseprec.distributions import ICAR
    from sparseprec.structures import adjacency_from_pairs

    W = adjacency_from_pairs([(0, 1), (1, 2), (2, 3), (0, 3), (1, 3)])
    d = ICAR(W, tau=2.0)
    x = torch.tensor([0.5, -0.25, 0.25, -0.5], dtype=d.precision.dtype)
    torch.testing.assert_close(hessian(d.log_prob, x), -d.precision.to_dense())

"""GMRF and IntrinsicGMRF with a batch of precisions on one shared pattern, against one distribution per element and
dense references (torch's MultivariateNormal, dense inverses and posterior formulas)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch.autograd import gradcheck
from torch.distributions import MultivariateNormal

import sparseprec
from sparseprec.distributions import CAR, GMRF, ICAR, IntrinsicGMRF
from sparseprec.distributions._precision import batched_csr
from sparseprec.solvers import CG
from sparseprec.structures import adjacency_from_pairs, ar1, car, icar, rw1

F64 = torch.float64
EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (1, 3), (3, 4), (4, 5)]


def _pattern(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, n, generator=g) < 0.3
    return mask | mask.T | torch.eye(n, dtype=torch.bool)


def _dense_batch(b: int, n: int = 7, seed: int = 0) -> torch.Tensor:
    """``b`` diagonally dominant SPD matrices on one pattern, of different scales (so that the elements differ)."""
    mask = _pattern(n, seed)
    g = torch.Generator().manual_seed(seed + 1)
    A = torch.randn(b, n, n, generator=g, dtype=F64) * mask
    A = 0.5 * (A + A.transpose(-1, -2))
    A = A + torch.diag_embed(A.abs().sum(-1) + 0.5)
    scale = torch.arange(1, b + 1, dtype=F64)[:, None, None]
    return A * mask * scale


def _sparse_batch(dense: torch.Tensor, layout: str = "csr", requires_grad: bool = False):
    """``(Q, values)``: the batch as a sparse tensor and, for CSR, its ``(b, nnz)`` values (a leaf)."""
    if layout == "coo":
        Q = dense.to_sparse().coalesce()
        return (Q.requires_grad_() if requires_grad else Q), None
    one = dense[0].to_sparse_csr()
    crow, col = one.crow_indices(), one.col_indices()
    values = dense[:, sparseprec.pattern.rows_from_crow(crow, col.numel()), col].clone()
    values.requires_grad_(requires_grad)
    return batched_csr(crow, col, values, dense.shape[-1]), values


def _separate(dense: torch.Tensor, loc: torch.Tensor) -> list[GMRF]:
    return [GMRF(loc, dense[i].to_sparse_csr()) for i in range(dense.shape[0])]


# ---- density, entropy, gradients -------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_log_prob_and_entropy_equal_separate_gmrfs_and_the_dense_reference(layout):
    dense = _dense_batch(4)
    Q, _ = _sparse_batch(dense, layout)
    loc = torch.randn(7, dtype=F64)
    d = GMRF(loc, Q)
    assert d.batch_shape == (4,) and d.event_shape == (7,)
    x = torch.randn(5, 4, 7, dtype=F64)
    expected = torch.stack([g.log_prob(x[:, i]) for i, g in enumerate(_separate(dense, loc))], dim=-1)
    torch.testing.assert_close(d.log_prob(x), expected)
    torch.testing.assert_close(d.log_prob(x), MultivariateNormal(loc, precision_matrix=dense).log_prob(x))
    torch.testing.assert_close(d.entropy(), MultivariateNormal(loc, precision_matrix=dense).entropy())


def test_gradients_w_r_t_loc_and_the_batched_values_equal_those_of_separate_gmrfs():
    dense = _dense_batch(4)
    Q, values = _sparse_batch(dense, requires_grad=True)
    loc = torch.randn(4, 7, dtype=F64, requires_grad=True)
    x = torch.randn(3, 4, 7, dtype=F64)
    GMRF(loc, Q).log_prob(x).sum().backward()
    for i in range(4):
        Qi, vi = _sparse_batch(dense[i : i + 1], requires_grad=True)
        li = loc.detach()[i].clone().requires_grad_()
        GMRF(li, Qi).log_prob(x[:, i]).sum().backward()
        torch.testing.assert_close(loc.grad[i], li.grad)
        torch.testing.assert_close(values.grad[i], vi.grad[0])


def test_log_prob_gradcheck_w_r_t_the_batched_values_and_loc():
    dense = _dense_batch(3, n=5, seed=3)
    one = dense[0].to_sparse_csr()
    crow, col = one.crow_indices(), one.col_indices()
    rows = sparseprec.pattern.rows_from_crow(crow, col.numel())
    position = torch.zeros(5, 5, dtype=torch.int64)
    position[rows, col] = torch.arange(col.numel())
    mirror = position[col, rows]  # the stored entry (j, i) of each (i, j)
    _, values = _sparse_batch(dense, requires_grad=True)
    x = torch.randn(2, 3, 5, dtype=F64)

    def f(values, loc):  # a symmetric precision: each value and its mirror move together
        return GMRF(loc, batched_csr(crow, col, 0.5 * (values + values[:, mirror]), 5)).log_prob(x)

    assert gradcheck(f, (values, torch.randn(5, dtype=F64, requires_grad=True)))


def test_a_coo_leaf_precision_gets_its_gradient_on_its_own_indices():
    dense = _dense_batch(2, n=5)
    Q, _ = _sparse_batch(dense, "coo", requires_grad=True)
    GMRF(torch.zeros(5, dtype=F64), Q).log_prob(torch.ones(5, dtype=F64)).sum().backward()
    # ∂/∂Q of −½ xᵀQx + ½ log det Q is −½ x xᵀ + ½ Q⁻¹, at the stored entries of each element
    expected = (-0.5 * torch.ones(5, 5, dtype=F64) + 0.5 * torch.linalg.inv(dense)) * (dense != 0)
    torch.testing.assert_close(Q.grad.to_dense(), expected)


@pytest.mark.parametrize(
    ("loc_shape", "batch_shape"), [((7,), (4,)), ((4, 7), (4,)), ((3, 1, 7), (3, 4)), ((3, 4, 7), (3, 4))]
)
def test_batch_shapes_broadcast_as_torch_multivariate_normal(loc_shape, batch_shape):
    dense = _dense_batch(4)
    Q, _ = _sparse_batch(dense)
    loc = torch.randn(loc_shape, dtype=F64)
    d = GMRF(loc, Q)
    reference = MultivariateNormal(loc, precision_matrix=dense)
    assert d.batch_shape == reference.batch_shape == batch_shape
    x = torch.randn((2,) + batch_shape + (7,), dtype=F64)
    torch.testing.assert_close(d.log_prob(x), reference.log_prob(x))
    assert d.sample((2,)).shape == x.shape and d.variance.shape == batch_shape + (7,)


def test_a_broadcast_precision_batch_dimension_serves_every_index():
    dense = _dense_batch(3)
    Q, _ = _sparse_batch(dense[:1])  # (1, n, n) against loc (3, n): one element serves all three
    loc = torch.randn(3, 7, dtype=F64)
    d = GMRF(loc, Q)
    assert d.batch_shape == (3,)
    x = torch.randn(2, 3, 7, dtype=F64)
    torch.testing.assert_close(d.log_prob(x), MultivariateNormal(loc, precision_matrix=dense[:1]).log_prob(x))


def test_two_precision_batch_dimensions():
    dense = _dense_batch(6).reshape(2, 3, 7, 7)
    one = dense[0, 0].to_sparse_csr()
    crow, col = one.crow_indices(), one.col_indices()
    rows = sparseprec.pattern.rows_from_crow(crow, col.numel())
    Q = batched_csr(crow, col, dense[..., rows, col], 7)
    assert Q.shape == (2, 3, 7, 7)
    loc = torch.randn(7, dtype=F64)
    d = GMRF(loc, Q)
    x = torch.randn(4, 2, 3, 7, dtype=F64)
    reference = MultivariateNormal(loc, precision_matrix=dense)
    assert d.batch_shape == (2, 3)
    torch.testing.assert_close(d.log_prob(x), reference.log_prob(x))
    torch.testing.assert_close(d.variance, reference.variance)


# ---- variance, covariance, samples -----------------------------------------------------------------------------------
def test_variance_and_covariance_equal_the_dense_inverse_of_each_element():
    dense = _dense_batch(4)
    Q, _ = _sparse_batch(dense)
    d = GMRF(torch.zeros(2, 1, 7, dtype=F64), Q)
    inverse = torch.linalg.inv(dense)
    torch.testing.assert_close(d.variance, inverse.diagonal(dim1=-2, dim2=-1).expand(2, 4, 7))
    torch.testing.assert_close(d.covariance_matrix, inverse.expand(2, 4, 7, 7))
    torch.testing.assert_close(d.stddev, d.variance.sqrt())


def test_samples_have_the_moments_of_their_own_element():
    """Policy: a fixed seed and a tolerance of about five standard errors of the estimated moments."""
    torch.manual_seed(0)
    dense = _dense_batch(2, n=4, seed=5)
    dense[1] = dense[1] * 9.0  # element 1: variances nine times smaller than element 0's... apart from its own shape
    Q, _ = _sparse_batch(dense)
    loc = torch.tensor([[1.0, -1.0, 0.5, 0.0]], dtype=F64).expand(2, 4)
    d = GMRF(loc, Q)
    N = 40000
    x = d.sample((N,))
    assert x.shape == (N, 2, 4)
    covariance = torch.linalg.inv(dense)
    for i in range(2):
        se = (covariance[i].diagonal() / N).sqrt()
        assert ((x[:, i].mean(0) - loc[i]).abs() < 5 * se).all()
        centred = x[:, i] - loc[i]
        empirical = centred.T @ centred / N
        scale = covariance[i].diagonal().sqrt()
        se_cov = torch.outer(scale, scale) * (2 / N) ** 0.5
        assert ((empirical - covariance[i]).abs() < 5 * se_cov).all()


# ---- conditioning ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", [None, CG()], ids=["cholesky", "cg"])
def test_condition_and_marginal_likelihood_equal_the_dense_formulas_per_element(solver):
    dense = _dense_batch(3)
    Q, values = _sparse_batch(dense, requires_grad=True)
    loc = torch.randn(7, dtype=F64)
    A = torch.zeros(4, 7, dtype=F64)
    A[0, 0], A[1, 2], A[2, 5], A[3, 1], A[3, 6] = 1.0, 2.0, -1.0, 0.5, 0.5
    w = torch.tensor([2.0, 1.0, 4.0, 3.0], dtype=F64)
    y = torch.randn(2, 1, 4, dtype=F64)  # broadcast against the precision batch: posterior batch (2, 3)
    prior = GMRF(loc, Q)
    post = prior.condition(A.to_sparse_csr(), y, w, solver=solver)
    assert post.batch_shape == (2, 3) and post.precision_matrix.shape == (3, 7, 7)
    Q_post = dense + A.T @ torch.diag(w) @ A
    torch.testing.assert_close(post.precision_matrix.detach().to_dense(), Q_post)
    mean = loc + torch.linalg.solve(Q_post, A.T @ (w * (y - A @ loc)).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(post.loc.detach(), mean, rtol=1e-6, atol=1e-6)
    evidence = prior.log_marginal_likelihood(A.to_sparse_csr(), y, w, solver=solver)
    marginal = MultivariateNormal(A @ loc, A @ torch.linalg.inv(dense) @ A.T + torch.diag(1 / w))
    torch.testing.assert_close(evidence, marginal.log_prob(y), rtol=1e-6, atol=1e-6)
    evidence.sum().backward()  # reaches the batched values
    assert values.grad.shape == values.shape and torch.isfinite(values.grad).all()


def test_the_marginal_likelihood_gradient_per_element_equals_separate_priors():
    dense = _dense_batch(2, n=5, seed=2)
    Q, values = _sparse_batch(dense, requires_grad=True)
    A = torch.eye(5, dtype=F64)[[0, 3]].to_sparse_csr()
    y = torch.tensor([0.5, -1.0], dtype=F64)
    GMRF(torch.zeros(5, dtype=F64), Q).log_marginal_likelihood(A, y, 2.0).sum().backward()
    for i in range(2):
        Qi, vi = _sparse_batch(dense[i : i + 1], requires_grad=True)
        GMRF(torch.zeros(5, dtype=F64), Qi).log_marginal_likelihood(A, y, 2.0).sum().backward()
        torch.testing.assert_close(values.grad[i], vi.grad[0])


# ---- expand, pickling, copies ----------------------------------------------------------------------------------------
def test_expand_shares_the_precision_and_factors_and_pickles():
    dense = _dense_batch(4)
    Q, _ = _sparse_batch(dense)
    d = GMRF(torch.zeros(7, dtype=F64), Q)
    x = torch.randn(4, 7, dtype=F64)
    d.log_prob(x)
    big = d.expand((3, 4))
    assert big.batch_shape == (3, 4) and big._factor is d._factor and big.precision is d.precision
    torch.testing.assert_close(big.log_prob(x), d.log_prob(x).expand(3, 4))
    with pytest.raises(ValueError, match="cannot expand"):
        d.expand((3, 5))
    for again in (pickle.loads(pickle.dumps(big)), copy.deepcopy(big)):
        assert again.batch_shape == (3, 4)
        torch.testing.assert_close(again.log_prob(x), big.log_prob(x))
        torch.testing.assert_close(again.variance, big.variance)


# ---- errors ----------------------------------------------------------------------------------------------------------
def test_errors_name_the_shapes():
    dense = _dense_batch(2)
    Q, _ = _sparse_batch(dense)
    with pytest.raises(ValueError, match=r"loc \(3, 7\) and precision \(2, 7, 7\) do not broadcast"):
        GMRF(torch.zeros(3, 7, dtype=F64), Q)
    other = dense.clone()
    other[1, 0, 6] = other[1, 6, 0] = 0.0 if dense[0, 0, 6] != 0 else 0.1
    with pytest.raises(ValueError, match=r"one pattern shared by the batch.*\(2, 7, 7\) element 1"):
        GMRF(torch.zeros(7, dtype=F64), other.to_sparse())
    # CSR elements with the same number of entries at other positions: {01, 10} and {12, 21} off the diagonal
    crow = torch.tensor([[0, 2, 4, 5], [0, 1, 3, 5]])
    col = torch.tensor([[0, 1, 0, 1, 2], [0, 1, 2, 1, 2]])
    mixed = torch.sparse_csr_tensor(crow, col, torch.tensor([[2.0, 1, 1, 2, 2], [2, 2, 1, 1, 2]], dtype=F64), (2, 3, 3))
    with pytest.raises(ValueError, match="element 1 stores other positions than element 0"):
        GMRF(torch.zeros(3, dtype=F64), mixed)
    with pytest.raises(ValueError, match=r"logdet=SLQLogDet\(...\) takes one"):
        GMRF(torch.zeros(7, dtype=F64), Q, logdet=sparseprec.cholesky.SLQLogDet())
    diagonal = torch.diag_embed(dense.diagonal(dim1=-2, dim2=-1))
    indefinite = dense.clone()
    indefinite[1] = diagonal[1] + 10 * (dense[1] - diagonal[1])  # positive diagonal, off-diagonal entries too large
    with pytest.raises(ValueError, match="positive definite"):
        GMRF(torch.zeros(7, dtype=F64), _sparse_batch(indefinite)[0], validate_args=True)


def test_rsample_refuses_a_precision_that_requires_grad_and_variance_warns():
    Q, _ = _sparse_batch(_dense_batch(2), requires_grad=True)
    d = GMRF(torch.zeros(7, dtype=F64), Q)
    with pytest.raises(NotImplementedError, match="reparameterised w.r.t. loc only"):
        d.rsample()
    assert d.sample((3,)).shape == (3, 2, 7)
    with pytest.warns(UserWarning, match="no gradient w.r.t. the precision"):
        d.variance  # noqa: B018


# ---- builders with batched hyper-parameters --------------------------------------------------------------------------
def _batched_builder(build, *args, **kwargs) -> torch.Tensor:
    try:
        return build(*args, **kwargs)
    except (ValueError, TypeError) as error:  # until the builders take batched hyper-parameters
        pytest.skip(f"{build.__name__} refuses batched hyper-parameters: {error}")


def test_ar1_with_a_batch_of_rho_equals_four_separate_gmrfs_values_and_gradients():
    rho = torch.tensor([0.1, 0.5, -0.3, 0.9], dtype=F64, requires_grad=True)
    Q = _batched_builder(ar1, 6, rho)
    d = GMRF(torch.zeros(6, dtype=F64), Q)
    x = torch.randn(3, 4, 6, dtype=F64)
    d.log_prob(x).sum().backward()
    for i in range(4):
        r = rho.detach()[i].clone().requires_grad_()
        one = GMRF(torch.zeros(6, dtype=F64), ar1(6, r))
        lp = one.log_prob(x[:, i])
        torch.testing.assert_close(d.log_prob(x)[:, i].detach(), lp.detach())
        lp.sum().backward()
        torch.testing.assert_close(rho.grad[i], r.grad)


def test_car_with_batched_rho_and_tau_broadcasts_them():
    W = adjacency_from_pairs(EDGES)
    rho = torch.tensor([0.2, 0.7], dtype=F64)
    tau = torch.tensor([[1.0], [3.0], [0.5]], dtype=F64)
    _batched_builder(car, W, rho, tau)
    d = CAR(W, rho, tau)
    assert d.batch_shape == (3, 2)
    x = torch.randn(6, dtype=F64)
    for a in range(3):
        for b in range(2):
            expected = GMRF(torch.zeros(6, dtype=F64), car(W, float(rho[b]), float(tau[a, 0]))).log_prob(x)
            torch.testing.assert_close(d.log_prob(x)[a, b], expected)


# ---- intrinsic GMRFs -------------------------------------------------------------------------------------------------
def test_rw1_with_a_batch_of_tau_equals_separate_intrinsic_gmrfs():
    tau = torch.tensor([0.5, 1.0, 2.0, 8.0], dtype=F64, requires_grad=True)
    Q = _batched_builder(rw1, 6, tau=tau)
    loc = torch.randn(6, dtype=F64)
    d = IntrinsicGMRF(loc, Q)
    assert d.batch_shape == (4,) and d.constraint_matrix.shape == (1, 6)
    x = d.sample((3,))
    assert x.shape == (3, 4, 6)
    torch.testing.assert_close(x.sum(-1), loc.sum().expand(3, 4))  # the constraint is shared by the batch
    d.log_prob(x).sum().backward()
    separate = []
    for i in range(4):
        t = tau.detach()[i].clone().requires_grad_()
        one = IntrinsicGMRF(loc, rw1(6, tau=t))
        separate.append(one)
        lp = one.log_prob(x[:, i])
        torch.testing.assert_close(d.log_prob(x)[:, i].detach(), lp.detach())
        lp.sum().backward()
        torch.testing.assert_close(tau.grad[i], t.grad)  # (n − 1) / (2 τ) − ½ xᵀ R x
    with torch.no_grad():
        torch.testing.assert_close(d.variance, torch.stack([one.variance for one in separate]))
        torch.testing.assert_close(d.entropy(), torch.stack([one.entropy() for one in separate]))
        torch.testing.assert_close(d.mean, loc.expand(4, 6))


def test_intrinsic_samples_have_the_constrained_covariance_of_their_element():
    """Policy as for the GMRF: fixed seed, five standard errors."""
    torch.manual_seed(1)
    tau = torch.tensor([1.0, 16.0], dtype=F64)
    Q = _batched_builder(rw1, 4, tau=tau)
    d = IntrinsicGMRF(torch.zeros(4, dtype=F64), Q)
    N = 40000
    x = d.sample((N,))
    for i in range(2):
        covariance = torch.linalg.pinv(Q[i].to_dense())  # the constrained covariance: the pseudo-inverse
        empirical = x[:, i].T @ x[:, i] / N
        scale = covariance.diagonal().sqrt()
        assert ((empirical - covariance).abs() < 5 * torch.outer(scale, scale) * (2 / N) ** 0.5).all()


def test_icar_with_batched_tau_expands_and_pickles():
    W = adjacency_from_pairs(EDGES)
    tau = torch.tensor([1.0, 2.0, 4.0], dtype=F64)
    _batched_builder(icar, W, tau)
    d = ICAR(W, tau)
    assert d.batch_shape == (3,) and d._reduced.shape == (3, 5, 5)
    x = d.sample()
    big = d.expand((2, 3))
    assert big.batch_shape == (2, 3) and big.constraint_value.shape == (2, 3, 1)
    for i in range(3):
        torch.testing.assert_close(d.log_prob(x)[i], ICAR(W, float(tau[i])).log_prob(x[i]))
    for again in (pickle.loads(pickle.dumps(big)), copy.deepcopy(big)):
        torch.testing.assert_close(again.log_prob(x), big.log_prob(x))


def test_intrinsic_errors():
    Q = _batched_builder(rw1, 6, tau=torch.tensor([1.0, 2.0], dtype=F64))
    with pytest.raises(ValueError, match="span the null space"):  # a proper CAR element in the batch would not do
        IntrinsicGMRF(torch.zeros(6, dtype=F64), Q, constraint_matrix=torch.arange(6, dtype=F64)[None])
    with pytest.raises(ValueError, match="do not broadcast"):
        IntrinsicGMRF(torch.zeros(3, 6, dtype=F64), Q)


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_the_stored_diagonal_of_every_element(layout):
    dense = _dense_batch(3)
    Q, _ = _sparse_batch(dense, layout)
    d = GMRF(torch.zeros(7, dtype=F64), Q)
    torch.testing.assert_close(d._precision_diagonal(), dense.diagonal(dim1=-2, dim2=-1))

"""``ConstrainedGMRF`` against the dense conditional Gaussian.

Dense reference, for :math:`x \\sim N(\\mu, \\Sigma)`, :math:`\\Sigma = H^{-1}`, conditioned on :math:`C x = e`:
mean :math:`\\mu - \\Sigma C^\\top (C\\Sigma C^\\top)^{-1}(C\\mu - e)`, covariance
:math:`\\Sigma_c = \\Sigma - \\Sigma C^\\top (C\\Sigma C^\\top)^{-1} C\\Sigma`, and the density on the subspace
through an orthonormal basis ``N`` of :math:`\\mathrm{null}(C)`: :math:`x = x_0 + N z` with
:math:`z \\sim N(N^\\top(m - x_0), N^\\top \\Sigma_c N)` (``N`` is an isometry onto the subspace, so the density
of ``z`` is the density w.r.t. the ``(n − k)``-dimensional Lebesgue measure there).

Statistical policy: fixed seed, ``20 000`` draws, every sample mean and covariance entry within 4.5 standard errors (as
``test_registry.py``).
"""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from torch.autograd import gradcheck
from torch.distributions import (
    Independent,
    MultivariateNormal,
    Normal,
    biject_to,
    kl_divergence,
)

import sparseprec
from sparseprec.distributions import GMRF, ConstrainedGMRF
from sparseprec.structures import ar1
from tests.distributions.cases import random_spd

F64 = torch.float64
SHAPES = [(7, 1), (8, 2), (10, 3)]  # (n, k)


# ---- problems and the dense reference --------------------------------------------------------------------------------
def _problem(n: int, k: int, seed: int = 0, loc_batch: tuple[int, ...] = ()):
    """A random sparse SPD ``H`` (dense and CSR), a dense ``C`` of full row rank, ``loc`` and ``e``."""
    dense, mask = random_spd(n, seed)
    g = torch.Generator().manual_seed(100 + seed)
    C = torch.randn(k, n, generator=g, dtype=F64)
    loc = torch.randn(loc_batch + (n,), generator=g, dtype=F64)
    e = torch.randn(loc_batch + (k,), generator=g, dtype=F64)
    return dense, dense.to_sparse_csr() if mask.all() else _csr(dense, mask), C, loc, e


def _csr(dense: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    rows, cols = mask.nonzero().T  # row-major: CSR order
    crow = torch.zeros(dense.shape[0] + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(rows, minlength=dense.shape[0]).cumsum(0)
    return torch.sparse_csr_tensor(crow, cols, dense[rows, cols], dense.shape)


def _reference(H: torch.Tensor, C: torch.Tensor, loc: torch.Tensor, e: torch.Tensor):
    """Dense ``(mean, covariance)`` of ``N(loc, H⁻¹)`` given ``C x = e`` (mean batched as ``loc``/``e``)."""
    Sigma = torch.linalg.inv(H)
    V = Sigma @ C.T
    S = C @ V
    gap = loc @ C.T - e
    mean = loc - torch.linalg.solve(S, gap.unsqueeze(-1)).squeeze(-1) @ V.T
    return mean, Sigma - V @ torch.linalg.solve(S, V.T)


def _null_basis(C: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis ``(n, n − k)`` of the null space of ``C``."""
    _, _, Vh = torch.linalg.svd(C)
    return Vh[C.shape[0] :].T


def _dense_log_prob(H, C, loc, e, x):
    """The density on ``{C x = e}`` through the coordinates ``z = Nᵀ(x − x0)``, by torch's ``MultivariateNormal``."""
    mean, covariance = _reference(H, C, loc, e)
    N = _null_basis(C)
    x0 = mean.detach()  # any point of the subspace
    covariance_z = N.T @ covariance @ N
    covariance_z = 0.5 * (covariance_z + covariance_z.T)
    return MultivariateNormal((mean - x0) @ N, covariance_z).log_prob((x - x0) @ N)


def _on_constraint(C: torch.Tensor, e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The orthogonal projection of ``w`` onto ``{C x = e}`` (differentiable in ``e``)."""
    gap = w @ C.T - e
    return w - torch.linalg.solve(C @ C.T, gap.unsqueeze(-1)).squeeze(-1) @ C


def _symmetric_precision(dense: torch.Tensor, mask: torch.Tensor):
    """``(theta, build)``: the lower triangle of ``dense`` (on ``mask``) as a parameter vector, and a map from it to
    the symmetric CSR precision and its dense form (a perturbation of ``theta`` is a symmetric perturbation of H)."""
    n = dense.shape[0]
    rows, cols = mask.nonzero().T
    lower = rows >= cols
    index = torch.full((n, n), -1, dtype=torch.int64)
    index[rows[lower], cols[lower]] = torch.arange(int(lower.sum()))
    param_of_entry = index[torch.maximum(rows, cols), torch.minimum(rows, cols)]
    crow = torch.zeros(n + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(rows, minlength=n).cumsum(0)
    theta = dense[rows[lower], cols[lower]].clone()

    def build(theta: torch.Tensor):
        values = theta[param_of_entry]
        H = sparseprec.sparse_csr_tensor(crow, cols, values, (n, n))
        H_dense = torch.zeros(n, n, dtype=theta.dtype).index_put((rows, cols), values)
        return H, H_dense

    return theta, build


# ---- moments and the density -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_mean_covariance_and_variance_match_the_dense_conditional_gaussian(n, k):
    H_dense, H, C, loc, e = _problem(n, k, seed=n, loc_batch=(2,))
    d = ConstrainedGMRF(loc, H, C, e)
    mean, covariance = _reference(H_dense, C, loc, e)
    assert d.batch_shape == (2,) and d.event_shape == (n,)
    torch.testing.assert_close(d.mean, mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(d.mode, mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(d.covariance_matrix, covariance.expand(2, n, n), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(d.variance, covariance.diagonal().expand(2, n), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(d.stddev, covariance.diagonal().sqrt().expand(2, n))
    assert (d.mean @ C.T - e).abs().max() < 1e-10


@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_default_constraint_value_keeps_the_mean_at_loc(n, k):
    _, H, C, loc, _ = _problem(n, k, seed=1, loc_batch=(3,))
    d = ConstrainedGMRF(loc, H, C)
    torch.testing.assert_close(d.constraint_value, loc @ C.T)
    torch.testing.assert_close(d.mean, loc, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_log_prob_and_entropy_match_the_density_on_the_null_space(n, k):
    H_dense, H, C, loc, e = _problem(n, k, seed=2 * n, loc_batch=(2,))
    d = ConstrainedGMRF(loc, H, C, e)
    g = torch.Generator().manual_seed(5)
    x = _on_constraint(C, e, torch.randn(4, 2, n, generator=g, dtype=F64))
    expected = _dense_log_prob(H_dense, C, loc, e, x)
    assert d.log_prob(x).shape == (4, 2)
    torch.testing.assert_close(d.log_prob(x), expected, rtol=1e-10, atol=1e-10)
    _, covariance = _reference(H_dense, C, loc, e)
    N = _null_basis(C)
    entropy = MultivariateNormal(torch.zeros(n - k, dtype=F64), N.T @ covariance @ N).entropy()
    torch.testing.assert_close(d.entropy(), entropy.expand(2), rtol=1e-10, atol=1e-10)
    assert d.rank == n - k


def _dense_log_prob_direct(H, C, loc, e, x):
    """The same density by the formula of the spec, for values off the null-space parametrisation."""
    k = C.shape[0]
    Sigma = torch.linalg.inv(H)
    S = C @ Sigma @ C.T
    d = loc @ C.T - e
    gmrf = MultivariateNormal(loc, precision_matrix=H).log_prob(x)
    mahalanobis = (d * torch.linalg.solve(S, d.unsqueeze(-1)).squeeze(-1)).sum(-1)
    constant = 0.5 * k * math.log(2 * math.pi) - 0.5 * torch.logdet(C @ C.T)
    return gmrf + constant + 0.5 * torch.logdet(S) + 0.5 * mahalanobis


def test_the_two_dense_references_agree():
    H_dense, _, C, loc, e = _problem(8, 2, seed=3)
    x = _on_constraint(C, e, torch.randn(3, 8, dtype=F64))
    torch.testing.assert_close(_dense_log_prob(H_dense, C, loc, e, x), _dense_log_prob_direct(H_dense, C, loc, e, x))


# ---- gradients -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_gradcheck_log_prob_wrt_loc_and_constraint_value(n, k):
    _, H, C, loc, e = _problem(n, k, seed=4, loc_batch=(2,))
    w = torch.randn(3, 2, n, generator=torch.Generator().manual_seed(6), dtype=F64)

    def log_prob(loc, e):
        x = _on_constraint(C, e, w)  # stays on the constraint as e moves
        return ConstrainedGMRF(loc, H, C, e).log_prob(x)

    assert gradcheck(log_prob, (loc.requires_grad_(), e.requires_grad_()))


@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_gradcheck_log_prob_and_mean_wrt_the_precision_values(n, k):
    dense, mask = random_spd(n, seed=7)
    _, _, C, loc, e = _problem(n, k, seed=7)
    theta, build = _symmetric_precision(dense, mask)
    x = _on_constraint(C, e, torch.randn(3, n, generator=torch.Generator().manual_seed(8), dtype=F64))

    def log_prob(theta):
        return ConstrainedGMRF(loc, build(theta)[0], C, e).log_prob(x)

    def mean(theta):
        return ConstrainedGMRF(loc, build(theta)[0], C, e).mean

    theta = theta.requires_grad_()
    assert gradcheck(log_prob, (theta,))
    assert gradcheck(mean, (theta,))
    # and the same gradient as the dense reference
    ours = torch.autograd.grad(log_prob(theta).sum(), theta)[0]
    expected = torch.autograd.grad(_dense_log_prob_direct(build(theta)[1], C, loc, e, x).sum(), theta)[0]
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-9)


def test_gradcheck_log_prob_wrt_the_constraint_matrix():
    _, H, C, loc, e = _problem(7, 2, seed=9)
    w = torch.randn(3, 7, generator=torch.Generator().manual_seed(10), dtype=F64)

    def log_prob(C):
        x = _on_constraint(C, e, w)
        return ConstrainedGMRF(loc, H, C, e).log_prob(x)

    assert gradcheck(log_prob, (C.requires_grad_(),))


def test_rsample_gradients_are_the_kriging_projection():
    n, k = 9, 2
    H_dense, H, C, loc, e = _problem(n, k, seed=11)
    loc, e = loc.requires_grad_(), e.requires_grad_()
    d = ConstrainedGMRF(loc, H, C, e)
    x = d.rsample((5,))
    assert x.shape == (5, n) and x.requires_grad
    upstream = torch.randn(5, n, generator=torch.Generator().manual_seed(12), dtype=F64)
    (x * upstream).sum().backward()
    Sigma = torch.linalg.inv(H_dense)
    V = Sigma @ C.T
    VS = V @ torch.linalg.inv(C @ V)  # V S⁻¹
    P = torch.eye(n, dtype=F64) - VS @ C  # ∂x/∂loc
    torch.testing.assert_close(loc.grad, upstream.sum(0) @ P, rtol=1e-10, atol=1e-10)  # Pᵀ g
    torch.testing.assert_close(e.grad, upstream.sum(0) @ VS, rtol=1e-10, atol=1e-10)  # (V S⁻¹)ᵀ g


def test_rsample_refuses_a_precision_that_requires_grad():
    dense, mask = random_spd(6, seed=13)
    theta, build = _symmetric_precision(dense, mask)
    d = ConstrainedGMRF(torch.zeros(6, dtype=F64), build(theta.requires_grad_())[0], torch.ones(1, 6, dtype=F64))
    with pytest.raises(NotImplementedError, match="reparameterised w.r.t. loc only"):
        d.rsample()
    assert d.sample().shape == (6,)


# ---- sampling --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_samples_satisfy_the_constraint_and_have_the_conditional_moments(n, k):
    H_dense, H, C, loc, e = _problem(n, k, seed=14)
    d = ConstrainedGMRF(loc, H, C, e)
    torch.manual_seed(0)
    num = 20_000
    x = d.sample((num,))
    assert x.shape == (num, n) and not x.requires_grad
    assert (x @ C.T - e).abs().max() < 1e-10
    assert bool(d.support.check(x).all())
    mean, covariance = _reference(H_dense, C, loc, e)
    sd = covariance.diagonal().sqrt()
    assert ((x.mean(0) - mean).abs() <= 4.5 * sd / math.sqrt(num)).all()
    centred = x - x.mean(0)
    sample_covariance = centred.T @ centred / (num - 1)
    se = ((sd[:, None] * sd[None, :]) ** 2 + covariance**2).sqrt() / math.sqrt(num)
    assert ((sample_covariance - covariance).abs() <= 4.5 * se + 1e-12).all()


def test_batched_constraint_values_give_batched_samples_on_their_constraints():
    _, H, C, loc, _ = _problem(8, 2, seed=15)
    e = torch.randn(3, 2, dtype=F64)
    d = ConstrainedGMRF(loc, H, C, e)
    assert d.batch_shape == (3,) and d.loc.shape == (3, 8) and d.constraint_value.shape == (3, 2)
    x = d.sample((4,))
    assert x.shape == (4, 3, 8)
    assert (x @ C.T - e).abs().max() < 1e-10


# ---- support, expand, pickle, repr -----------------------------------------------------------------------------------
def test_support_bijection_maps_onto_the_constraint():
    _, H, C, loc, e = _problem(8, 2, seed=16)
    d = ConstrainedGMRF(loc, H, C, e)
    t = biject_to(d.support)
    z = torch.randn(5, 6, dtype=F64)
    x = t(z)
    assert (x @ C.T - e).abs().max() < 1e-10
    torch.testing.assert_close(t.inv(x), z)
    assert d.support.pinned.numel() == 2


def test_expand_pickle_and_repr():
    H_dense, H, C, loc, e = _problem(7, 2, seed=17, loc_batch=(3,))
    d = ConstrainedGMRF(loc, H, C, e)
    d.entropy()  # factorised: expand shares the factor
    big = d.expand((4, 3))
    assert type(big) is ConstrainedGMRF and big.batch_shape == (4, 3)
    assert big.constraint_value.shape == (4, 3, 2) and big.precision is d.precision and big._factor is d._factor
    x = big.sample((2,))
    assert x.shape == (2, 4, 3, 7) and (x @ C.T - e).abs().max() < 1e-10
    torch.testing.assert_close(big.log_prob(x), d.log_prob(x))
    torch.testing.assert_close(big.mean, d.mean.expand(4, 3, 7))
    torch.testing.assert_close(big.variance, d.variance.expand(4, 3, 7))
    with pytest.raises(ValueError, match="cannot expand"):
        d.expand((2,))
    for dist in (d, big):
        again = pickle.loads(pickle.dumps(dist))
        assert type(again) is ConstrainedGMRF and again.batch_shape == dist.batch_shape
        torch.testing.assert_close(again.log_prob(x), dist.log_prob(x))
        torch.testing.assert_close(again.variance, dist.variance)
    assert repr(d) == (
        f"ConstrainedGMRF(loc: (3, 7), precision: (7, 7) with {H._nnz()} stored entries, constraint_matrix: (2, 7))"
    )


# ---- observations ----------------------------------------------------------------------------------------------------
def test_condition_and_log_marginal_likelihood_match_dense():
    n, k, m = 8, 2, 3
    H_dense, H, C, loc, e = _problem(n, k, seed=18)
    prior = ConstrainedGMRF(loc, H, C, e)
    g = torch.Generator().manual_seed(19)
    A_dense = torch.randn(m, n, generator=g, dtype=F64)
    y = torch.randn(m, generator=g, dtype=F64)
    w = torch.tensor([2.0, 0.5, 1.0], dtype=F64)
    post = prior.condition(A_dense.to_sparse_csr(), y, w)
    assert type(post) is ConstrainedGMRF
    # the dense posterior: prior N(m_c, Σ_c) with y = A x + ε, ε ~ N(0, diag(w)⁻¹)
    mean_c, cov_c = _reference(H_dense, C, loc, e)
    K = cov_c @ A_dense.T @ torch.linalg.inv(A_dense @ cov_c @ A_dense.T + torch.diag(1 / w))
    torch.testing.assert_close(post.mean, mean_c + K @ (y - A_dense @ mean_c), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(post.covariance_matrix, cov_c - K @ A_dense @ cov_c, rtol=1e-10, atol=1e-10)
    marginal = MultivariateNormal(A_dense @ mean_c, A_dense @ cov_c @ A_dense.T + torch.diag(1 / w))
    torch.testing.assert_close(
        prior.log_marginal_likelihood(A_dense.to_sparse_csr(), y, w), marginal.log_prob(y), rtol=1e-10, atol=1e-10
    )


def test_kl_from_a_full_rank_normal_is_infinite():
    _, H, C, loc, e = _problem(6, 1, seed=20)
    p = Independent(Normal(torch.zeros(6, dtype=F64), torch.ones(6, dtype=F64)), 1)
    assert math.isinf(float(kl_divergence(p, ConstrainedGMRF(loc, H, C, e))))
    assert math.isfinite(float(kl_divergence(p, GMRF(loc, H))))


# ---- errors ----------------------------------------------------------------------------------------------------------
def _args():
    _, H, C, loc, e = _problem(6, 2, seed=21)
    return H, C, loc, e


@pytest.mark.parametrize(
    ("C", "error", "match"),
    [
        (torch.ones(6, dtype=F64), ValueError, r"dense \(k, 6\) tensor, got .* shape \(6,\)"),
        (torch.ones(2, 5, dtype=F64), ValueError, r"dense \(k, 6\) tensor, got .* shape \(2, 5\)"),
        (torch.ones(1, 6, dtype=F64).to_sparse(), ValueError, "dense"),
        (torch.zeros(0, 6, dtype=F64), ValueError, "full row rank"),
        (torch.ones(2, 6, dtype=F64), ValueError, "full row rank"),  # rank 1
        (torch.full((1, 6), math.nan, dtype=F64), ValueError, "finite"),
        ([[1.0] * 6], TypeError, "torch.Tensor, got list"),
        (torch.ones(1, 6, dtype=torch.bool), TypeError, "real numbers"),
    ],
    ids=["1d", "wrong_n", "sparse", "k0", "rank_deficient", "nan", "list", "bool"],
)
def test_bad_constraint_matrix(C, error, match):
    H, _, loc, _ = _args()
    with pytest.raises(error, match=match):
        ConstrainedGMRF(loc, H, C)


def test_bad_constraint_value():
    H, C, loc, e = _args()
    with pytest.raises(ValueError, match=r"constraint_value must have shape \(\.\.\., 2\)"):
        ConstrainedGMRF(loc, H, C, torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="0-D"):
        ConstrainedGMRF(loc, H, C, torch.tensor(0.0, dtype=F64))
    with pytest.raises(ValueError, match="finite"):
        ConstrainedGMRF(loc, H, C, torch.tensor([0.0, math.inf], dtype=F64))
    with pytest.raises(TypeError, match="same dtype"):
        ConstrainedGMRF(loc, H, C, e.float())
    with pytest.raises(ValueError, match="do not broadcast"):
        ConstrainedGMRF(loc.expand(3, 6), H, C, torch.zeros(4, 2, dtype=F64))


def test_bad_loc_and_precision():
    H, C, loc, _ = _args()
    with pytest.raises(ValueError, match="batched precision"):
        ConstrainedGMRF(loc, torch.stack([H.to_dense()] * 2).to_sparse_csr(), C)
    with pytest.raises(ValueError, match=r"loc must have shape \(\.\.\., 6\)"):
        ConstrainedGMRF(torch.zeros(5, dtype=F64), H, C)
    with pytest.raises(TypeError, match="same dtype"):
        ConstrainedGMRF(loc.float(), H, C)
    indefinite = H.to_dense() - torch.diag(H.to_dense().diagonal() - 1e-3)  # positive diagonal, not definite
    with pytest.raises(ValueError, match="positive definite"):
        ConstrainedGMRF(loc, indefinite.to_sparse_csr(), C, validate_args=True)


def test_value_off_the_constraint_is_refused_under_validate_args():
    H, C, loc, e = _args()
    d = ConstrainedGMRF(loc, H, C, e, validate_args=True)
    x = d.sample()
    d.log_prob(x)
    with pytest.raises(ValueError, match=r"does not satisfy the constraint C x = e"):
        d.log_prob(x + 0.1)
    off = ConstrainedGMRF(loc, H, C, e, validate_args=False)
    assert torch.isfinite(off.log_prob(x + 0.1))  # the formula itself, unchecked


# ---- float32 ---------------------------------------------------------------------------------------------------------
def test_float32_smoke():
    H_dense, H, C, loc, e = _problem(8, 2, seed=22)
    d64 = ConstrainedGMRF(loc, H, C, e)
    d = ConstrainedGMRF(loc.float(), H.to(torch.float32), C.float(), e.float())
    x = d.sample((3,))
    assert x.dtype == torch.float32 and (x @ C.float().T - e.float()).abs().max() < 1e-4
    for ours, expected in [
        (d.log_prob(x), d64.log_prob(x.double())),
        (d.mean, d64.mean),
        (d.variance, d64.variance),
        (d.entropy(), d64.entropy()),
    ]:
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours.double(), expected, rtol=1e-3, atol=1e-3)
    assert ConstrainedGMRF(torch.zeros(5), ar1(5, 0.5, dtype=torch.float32), torch.ones(1, 5)).sample().dtype == (
        torch.float32
    )

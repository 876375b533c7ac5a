r"""The Laplace approximation of sparseprec.laplace checked against dense references written from the mathematics.

Every reference here is independent of the library's inner loop: dense torch matrices, observation log-densities from
:mod:`torch.distributions` with their η-derivatives by autograd, a plain unrolled Newton iteration (differentiable by
autograd end to end), and the Laplace formula

.. math::

    \log\tilde p(y \mid \theta) = \log p(y \mid x^*) + \log p(x^* \mid \theta) - \tfrac12 \log\det H
    + \tfrac n2 \log 2\pi, \qquad H = Q + A^\top W A, \ W = -\mathrm{diag}(f''(\eta^*)),

(on the constraint surface with an orthonormal basis ``N`` of ``null(C)``: ``NᵀHN`` and ``n − k``). Small problems
(n ≤ 25), float64, fixed seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.distributions as td

import sparseprec
from sparseprec import ConvergenceError, NotPositiveDefiniteError, sparse_csr_tensor
from sparseprec.distributions import GMRF, ICAR
from sparseprec.laplace import (
    Bernoulli,
    Binomial,
    Gaussian,
    LatentGaussianModel,
    NegativeBinomial,
    Newton,
    Poisson,
    StudentT,
)
from sparseprec.structures import ar1, grid_adjacency, icar

F64 = torch.float64
LOG_2PI = math.log(2 * math.pi)


# ------------------------------------------------------------------------------------------------ dense helpers


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These problems are tiny: torch's intra-op threads only add synchronisation (a 10 x 7 CSR product took 4 ms
    instead of 16 µs on a loaded 2-core machine). The setting is restored after the module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def csr_pattern(m: int, n: int, density: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row pointers and column indices of a random ``(m, n)`` pattern with at least one entry per row and column."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(m, n, generator=g) < density
    mask[torch.arange(m), torch.randint(n, (m,), generator=g)] = True
    mask[torch.randint(m, (n,), generator=g), torch.arange(n)] = True
    S = mask.to(F64).to_sparse_csr()
    return S.crow_indices(), S.col_indices()


def dense_from_csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape) -> torch.Tensor:
    """The dense matrix of a CSR (differentiable w.r.t. ``values`` by plain indexing)."""
    rows = torch.repeat_interleave(torch.arange(shape[0]), crow.diff())
    return torch.zeros(shape, dtype=values.dtype).index_put((rows, col), values)


def eta_derivatives(loglik: Callable, eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(f, f', f'')`` of an elementwise log-likelihood by autograd (graphs kept: differentiable again)."""
    with torch.enable_grad():
        if not eta.requires_grad:
            eta = eta.detach().requires_grad_(True)
        f = loglik(eta)
        (f1,) = torch.autograd.grad(f.sum(), eta, create_graph=True)
        (f2,) = torch.autograd.grad(f1.sum(), eta, create_graph=True)
    return f, f1, f2


def gaussian_log_density(x: torch.Tensor, mu: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    r = x - mu
    return -0.5 * r @ Q @ r + 0.5 * torch.logdet(Q) - 0.5 * x.numel() * LOG_2PI


def dense_newton(loglik, mu, Q, A, offset, iterations: int = 40, x0=None) -> torch.Tensor:
    """The unrolled Newton iteration ``x ← x + H⁻¹ g`` of ``Σ f(Ax + o) − ½ (x−μ)ᵀQ(x−μ)`` (fully differentiable)."""
    x = mu if x0 is None else x0
    for _ in range(iterations):
        _, f1, f2 = eta_derivatives(loglik, A @ x + offset)
        g = A.T @ f1 - Q @ (x - mu)
        H = Q + A.T @ (-f2[:, None] * A)
        x = x + torch.linalg.solve(H, g)
    return x


def dense_laplace(loglik, mu, Q, A, offset, iterations: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p̃, x*)`` of the unconstrained dense reference."""
    x = dense_newton(loglik, mu, Q, A, offset, iterations)
    f, _, f2 = eta_derivatives(loglik, A @ x + offset)
    H = Q + A.T @ (-f2[:, None] * A)
    n = x.numel()
    value = f.sum() + gaussian_log_density(x, mu, Q) - 0.5 * torch.logdet(H) + 0.5 * n * LOG_2PI
    return value, x


def central_difference(fn: Callable[[dict], torch.Tensor], params: dict, name: str, direction: torch.Tensor, h=1e-5):
    """``(fn(p + h d) − fn(p − h d)) / 2h`` for the parameter ``name`` moved along ``direction``."""
    values = []
    for sign in (1.0, -1.0):
        moved = {k: (v.detach() + sign * h * direction if k == name else v.detach()) for k, v in params.items()}
        values.append(float(fn(moved)))
    return (values[0] - values[1]) / (2 * h)


# --------------------------------------------------------------------------- a. Gaussian: the conjugate posterior


def test_gaussian_likelihood_is_the_conjugate_posterior():
    n, m = 6, 9
    g = torch.Generator().manual_seed(0)
    crow, col = csr_pattern(m, n, 0.3, seed=1)
    a_values = torch.randn(col.numel(), generator=g, dtype=F64).requires_grad_(True)
    tau = torch.tensor(1.7, dtype=F64, requires_grad=True)
    w = torch.tensor(2.5, dtype=F64, requires_grad=True)
    offset = torch.randn(m, generator=g, dtype=F64).requires_grad_(True)
    mu = torch.randn(n, generator=g, dtype=F64).requires_grad_(True)
    y = torch.randn(m, generator=g, dtype=F64) * 2

    A = sparse_csr_tensor(crow, col, a_values, (m, n))
    prior = GMRF(mu, ar1(n, 0.6, tau=tau))
    fit = LatentGaussianModel(prior, Gaussian(w), obs_matrix=A, offset=offset).laplace(y)
    assert fit.converged and fit.hessian == "observed"

    post = prior.condition(A, y - offset, w)
    exact = prior.log_marginal_likelihood(A, y - offset, w)
    torch.testing.assert_close(fit.mode, post.loc, rtol=0, atol=1e-10)
    torch.testing.assert_close(fit.posterior.precision.to_dense(), post.precision.to_dense(), rtol=0, atol=1e-10)
    value = fit.log_marginal_likelihood()
    torch.testing.assert_close(value, exact, rtol=0, atol=1e-10)

    # a third, fully dense route: y − o ~ N(A μ, A Q⁻¹ Aᵀ + w⁻¹ I)
    Ad = dense_from_csr(crow, col, a_values, (m, n))
    Qd = ar1(n, 0.6, tau=tau).to_dense()
    cov = Ad @ torch.linalg.inv(Qd) @ Ad.T + torch.eye(m, dtype=F64) / w
    dense = td.MultivariateNormal(Ad @ mu + offset, covariance_matrix=cov).log_prob(y)
    torch.testing.assert_close(value, dense, rtol=0, atol=1e-10)

    leaves = [tau, w, a_values, offset, mu]
    ours = torch.autograd.grad(value, leaves, retain_graph=True)
    reference = torch.autograd.grad(exact, leaves, retain_graph=True)
    via_dense = torch.autograd.grad(dense, leaves)
    for name, a, b, c in zip(["tau", "w", "A values", "offset", "mu"], ours, reference, via_dense, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8, msg=f"gradient w.r.t. {name} vs GMRF")
        torch.testing.assert_close(a, c, rtol=1e-8, atol=1e-8, msg=f"gradient w.r.t. {name} vs dense MVN")


# --------------------------------------------------------------- b. non-Gaussian: dense unrolled Newton reference


N_LATENT, M_OBS = 7, 10


@dataclass
class Case:
    """A likelihood for the unconstrained dense comparison: its parameters (``param`` may require grad), the library
    likelihood built from them and the same log-density in torch.distributions."""

    id: str
    y: Callable[[torch.Generator], torch.Tensor]
    param: Callable[[torch.Generator], torch.Tensor | None]
    library: Callable[[torch.Tensor | None], object]
    reference: Callable[[torch.Tensor | None, torch.Tensor, torch.Tensor], torch.Tensor]  # (param, y, eta) -> (m,)
    mean: float = 0.0  # prior mean level


TOTAL = torch.tensor([3, 5, 8, 2, 6, 4, 7, 5, 3, 9], dtype=F64)

CASES = [
    Case(
        "poisson",
        y=lambda g: torch.poisson(torch.full((M_OBS,), 4.0, dtype=F64), generator=g),
        param=lambda g: 1.0 + torch.rand(M_OBS, generator=g, dtype=F64),  # exposure
        library=lambda p: Poisson(exposure=p),
        reference=lambda p, y, eta: td.Poisson(p * eta.exp()).log_prob(y),
        mean=1.0,
    ),
    Case(
        "bernoulli",
        y=lambda g: torch.bernoulli(torch.full((M_OBS,), 0.4, dtype=F64), generator=g),
        param=lambda g: None,
        library=lambda p: Bernoulli(),
        reference=lambda p, y, eta: td.Bernoulli(logits=eta).log_prob(y),
    ),
    Case(
        "binomial",
        y=lambda g: torch.binomial(TOTAL, torch.full((M_OBS,), 0.6, dtype=F64), generator=g),
        param=lambda g: None,
        library=lambda p: Binomial(total_count=TOTAL),
        reference=lambda p, y, eta: td.Binomial(total_count=TOTAL, logits=eta).log_prob(y),
    ),
    Case(
        "negative_binomial",
        y=lambda g: torch.poisson(
            torch.full((M_OBS,), 5.0, dtype=F64) * torch.rand(M_OBS, generator=g, dtype=F64) * 2, generator=g
        ),
        param=lambda g: torch.tensor(3.0, dtype=F64),  # dispersion
        library=lambda p: NegativeBinomial(dispersion=p),
        reference=lambda p, y, eta: td.NegativeBinomial(total_count=p, logits=eta - p.log()).log_prob(y),
        mean=1.2,
    ),
]


class Problem:
    """One case's parameters (leaves), its library fit and its dense reference, rebuilt from any parameter dict."""

    def __init__(self, case: Case, seed: int = 3):
        g = torch.Generator().manual_seed(seed)
        self.case = case
        self.crow, self.col = csr_pattern(M_OBS, N_LATENT, 0.25, seed=seed + 1)
        self.y = case.y(g)
        params = {
            "tau": torch.tensor(1.3, dtype=F64),
            "mu": case.mean + 0.3 * torch.randn(N_LATENT, generator=g, dtype=F64),
            "A": 0.5 + 0.5 * torch.rand(self.col.numel(), generator=g, dtype=F64),
            "offset": 0.2 * torch.randn(M_OBS, generator=g, dtype=F64),
        }
        param = case.param(g)
        if param is not None:
            params["likelihood"] = param
        self.params = {k: v.requires_grad_(True) for k, v in params.items()}

    def model(self, p: dict) -> LatentGaussianModel:
        prior = GMRF(p["mu"], ar1(N_LATENT, 0.5, tau=p["tau"]))
        A = sparse_csr_tensor(self.crow, self.col, p["A"], (M_OBS, N_LATENT))
        return LatentGaussianModel(prior, self.case.library(p.get("likelihood")), obs_matrix=A, offset=p["offset"])

    def dense(self, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
        Q = ar1(N_LATENT, 0.5, tau=p["tau"]).to_dense()
        A = dense_from_csr(self.crow, self.col, p["A"], (M_OBS, N_LATENT))

        def loglik(eta):
            return self.case.reference(p.get("likelihood"), self.y, eta)

        return dense_laplace(loglik, p["mu"], Q, A, p["offset"])

    def library_value(self, p: dict) -> torch.Tensor:
        return self.model(p).laplace(self.y).log_marginal_likelihood()


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def problem(request) -> Problem:
    return Problem(request.param)


def test_laplace_value_and_mode_match_dense_newton(problem):
    fit = problem.model(problem.params).laplace(problem.y)
    assert fit.converged and fit.hessian == "observed"
    value, mode = problem.dense(problem.params)
    torch.testing.assert_close(fit.log_marginal_likelihood(), value, rtol=0, atol=1e-9)
    torch.testing.assert_close(fit.mode, mode, rtol=0, atol=1e-9)
    # the posterior precision is H = Q + AᵀWA at the mode
    p = problem.params
    A = dense_from_csr(problem.crow, problem.col, p["A"], (M_OBS, N_LATENT))
    _, _, f2 = eta_derivatives(
        lambda eta: problem.case.reference(p.get("likelihood"), problem.y, eta), A @ mode + p["offset"]
    )
    H = ar1(N_LATENT, 0.5, tau=p["tau"]).to_dense() + A.T @ (-f2[:, None] * A)
    torch.testing.assert_close(fit.posterior.precision.to_dense(), H, rtol=0, atol=1e-9)


def test_laplace_gradients_match_dense_newton_and_finite_differences(problem):
    p = problem.params
    names = list(p)
    ours = torch.autograd.grad(problem.library_value(p), [p[k] for k in names])
    reference = torch.autograd.grad(problem.dense(p)[0], [p[k] for k in names])
    g = torch.Generator().manual_seed(11)
    for name, a, b in zip(names, ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7, msg=f"gradient w.r.t. {name} ({problem.case.id})")
        direction = torch.randn(p[name].shape, generator=g, dtype=F64)
        fd = central_difference(problem.library_value, p, name, direction)
        assert abs(float((a * direction).sum()) - fd) < 1e-6 * max(1.0, abs(fd)), (
            name,
            float((a * direction).sum()),
            fd,
        )


def test_mode_derivative_matches_unrolled_newton(problem):
    p = problem.params
    mode = problem.model(p).laplace(problem.y).mode
    reference = problem.dense(p)[1]
    for i in range(N_LATENT):
        (ours,) = torch.autograd.grad(mode[i], p["tau"], retain_graph=True)
        (dense,) = torch.autograd.grad(reference[i], p["tau"], retain_graph=True)
        torch.testing.assert_close(ours, dense, rtol=1e-7, atol=1e-7, msg=f"d mode[{i}] / d tau")
    # the whole Jacobian w.r.t. the prior mean in one random direction
    v = torch.randn(N_LATENT, generator=torch.Generator().manual_seed(5), dtype=F64)
    (ours,) = torch.autograd.grad(mode @ v, p["mu"])
    (dense,) = torch.autograd.grad(reference @ v, p["mu"])
    torch.testing.assert_close(ours, dense, rtol=1e-7, atol=1e-7)


# ------------------------------------------------------------------------ c. constraints: a BYM-like stacked model


ROWS, COLS = 3, 4
R = ROWS * COLS
N_BYM = 1 + 2 * R


class BYM:
    """Intercept (precision 0.01) + i.i.d. (precision 1) + ICAR(τ) on a 3×4 grid, ``η = x₀ + a u + b v`` with
    ``a = σ√(1−φ)``, ``b = σ√φ``; θ = (log σ, logit φ, log τ); Poisson counts with expected counts ``E``."""

    def __init__(self, seed: int = 21):
        g = torch.Generator().manual_seed(seed)
        self.W = grid_adjacency((ROWS, COLS)).to(F64)
        self.E = 2.0 + 8.0 * torch.rand(R, generator=g, dtype=F64)
        self.y = torch.poisson(self.E * torch.exp(0.4 * torch.randn(R, generator=g, dtype=F64)), generator=g)
        self.crow = torch.arange(0, 3 * R + 1, 3)
        self.col = torch.stack([torch.zeros(R, dtype=torch.long), 1 + torch.arange(R), 1 + R + torch.arange(R)], 1)
        self.col = self.col.reshape(-1)
        C = torch.zeros(1, N_BYM, dtype=F64)
        C[0, 1 + R :] = 1.0
        self.C = C
        # an orthonormal basis of null(C): the last n − k right singular vectors
        self.N = torch.linalg.svd(C, full_matrices=True).Vh[1:].T
        structure = icar(self.W, 1.0).to_dense()
        self.structure = structure
        self.structure_eigenvalues = torch.linalg.eigvalsh(structure)[1:]  # one zero eigenvalue (connected grid)

    @staticmethod
    def scales(theta):
        sigma, phi = theta[0].exp(), torch.sigmoid(theta[1])
        return sigma * (1 - phi).sqrt(), sigma * phi.sqrt(), theta[2].exp()

    def obs_values(self, theta) -> torch.Tensor:
        a, b, _ = self.scales(theta)
        ones = torch.ones(R, dtype=F64)
        return torch.stack([ones, a * ones, b * ones], 1).reshape(-1)

    def model(self, theta) -> LatentGaussianModel:
        _, _, tau = self.scales(theta)
        prior = [
            GMRF(torch.zeros(1, dtype=F64), (0.01 * torch.eye(1, dtype=F64)).to_sparse_csr()),
            GMRF(torch.zeros(R, dtype=F64), torch.eye(R, dtype=F64).to_sparse_csr()),
            ICAR(self.W, tau),
        ]
        A = sparse_csr_tensor(self.crow, self.col, self.obs_values(theta), (R, N_BYM))
        return LatentGaussianModel(prior, Poisson(exposure=self.E), obs_matrix=A)

    def dense(self, theta, iterations: int = 40) -> dict:
        _, _, tau = self.scales(theta)
        A = dense_from_csr(self.crow, self.col, self.obs_values(theta), (R, N_BYM))
        Q = torch.block_diag(torch.full((1, 1), 0.01, dtype=F64), torch.eye(R, dtype=F64), tau * self.structure)
        N = self.N

        def loglik(eta):
            return td.Poisson(self.E * eta.exp()).log_prob(self.y)

        z = torch.zeros(N.shape[1], dtype=F64)
        for _ in range(iterations):
            x = N @ z
            _, f1, f2 = eta_derivatives(loglik, A @ x)
            g = N.T @ (A.T @ f1 - Q @ x)
            Hz = N.T @ (Q + A.T @ (-f2[:, None] * A)) @ N
            z = z + torch.linalg.solve(Hz, g)
        x = N @ z
        f, _, f2 = eta_derivatives(loglik, A @ x)
        H = Q + A.T @ (-f2[:, None] * A)
        Hz = N.T @ H @ N
        u = x[1 + R :]
        log_prior = (
            td.Normal(torch.tensor(0.0, dtype=F64), 10.0).log_prob(x[0])
            + td.Normal(torch.tensor(0.0, dtype=F64), 1.0).log_prob(x[1 : 1 + R]).sum()
            # ICAR w.r.t. Lebesgue measure on {1ᵀu = 0}: nonzero eigenvalues of τ(D − W)
            - 0.5 * (R - 1) * LOG_2PI
            + 0.5 * (torch.log(self.structure_eigenvalues).sum() + (R - 1) * tau.log())
            - 0.5 * tau * (u @ self.structure @ u)
        )
        k = self.C.shape[0]
        log_gaussian_at_mode = -0.5 * (N_BYM - k) * LOG_2PI + 0.5 * torch.logdet(Hz)
        covariance = N @ torch.linalg.inv(Hz) @ N.T
        return {
            "value": f.sum() + log_prior - log_gaussian_at_mode,
            "mode": x,
            "variance": covariance.diagonal(),
            "predictor_variance": (A @ covariance @ A.T).diagonal(),
            "log_gaussian_at_mode": log_gaussian_at_mode,
        }


def test_constrained_bym_matches_dense_subspace_reference():
    bym = BYM()
    theta = torch.tensor([-0.3, 0.4, 0.2], dtype=F64, requires_grad=True)
    fit = bym.model(theta).laplace(bym.y)
    assert fit.converged
    reference = bym.dense(theta)
    value = fit.log_marginal_likelihood()
    torch.testing.assert_close(value, reference["value"], rtol=0, atol=1e-9)
    torch.testing.assert_close(fit.mode, reference["mode"], rtol=0, atol=1e-9)
    assert abs(float(fit.mode.detach()[1 + R :].sum())) < 1e-10
    (ours,) = torch.autograd.grad(value, theta)
    (dense,) = torch.autograd.grad(reference["value"], theta)
    torch.testing.assert_close(ours, dense, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(fit.variance, reference["variance"].detach(), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(fit.predictor_variance, reference["predictor_variance"].detach(), rtol=1e-9, atol=1e-10)
    with torch.no_grad():
        log_density = fit.posterior.log_prob(fit.mode)
    torch.testing.assert_close(log_density, reference["log_gaussian_at_mode"].detach(), rtol=0, atol=1e-9)


def test_constrained_bym_gradient_matches_finite_differences():
    bym = BYM()
    theta = torch.tensor([-0.3, 0.4, 0.2], dtype=F64, requires_grad=True)
    (gradient,) = torch.autograd.grad(bym.model(theta).laplace(bym.y).log_marginal_likelihood(), theta)
    h = 1e-5
    for j in range(3):
        e = torch.zeros(3, dtype=F64)
        e[j] = h
        plus = float(bym.model(theta.detach() + e).laplace(bym.y).log_marginal_likelihood())
        minus = float(bym.model(theta.detach() - e).laplace(bym.y).log_marginal_likelihood())
        assert abs(float(gradient[j]) - (plus - minus) / (2 * h)) < 1e-6, (j, float(gradient[j]), plus, minus)


def test_constrained_mode_derivative_matches_dense():
    bym = BYM()
    theta = torch.tensor([-0.3, 0.4, 0.2], dtype=F64, requires_grad=True)
    mode = bym.model(theta).laplace(bym.y).mode
    reference = bym.dense(theta)["mode"]
    v = torch.randn(N_BYM, generator=torch.Generator().manual_seed(2), dtype=F64)
    (ours,) = torch.autograd.grad(mode @ v, theta)
    (dense,) = torch.autograd.grad(reference @ v, theta)
    torch.testing.assert_close(ours, dense, rtol=1e-7, atol=1e-7)


# ------------------------------------------------------------------------ d. importance sampling: the exact p(y)


def poisson_three_nodes(counts: torch.Tensor):
    prior = GMRF(torch.full((3,), math.log(5.0), dtype=F64), ar1(3, 0.5, tau=2.0))
    return prior, LatentGaussianModel(prior, Poisson()).laplace(counts)


def importance_log_evidence(prior: GMRF, fit, counts: torch.Tensor, draws: int, seed: int) -> tuple[float, float]:
    """``(log p̂(y), standard error)`` with the Laplace Gaussian inflated ×1.5 in sd as proposal."""
    H = fit.posterior.precision.to_dense().detach()
    proposal = td.MultivariateNormal(fit.mode.detach(), covariance_matrix=2.25 * torch.linalg.inv(H))
    torch.manual_seed(seed)
    x = proposal.sample((draws,))
    Q = prior.precision.to_dense()
    target = td.MultivariateNormal(prior.loc, precision_matrix=Q).log_prob(x) + td.Poisson(x.exp()).log_prob(
        counts
    ).sum(-1)
    log_w = target - proposal.log_prob(x)
    estimate = torch.logsumexp(log_w, 0) - math.log(draws)
    w = torch.exp(log_w - log_w.max())
    relative_se = w.std() / w.mean() / math.sqrt(draws)
    return float(estimate), float(relative_se)


def test_laplace_marginal_likelihood_against_importance_sampling():
    counts = torch.tensor([4.0, 7.0, 3.0], dtype=F64)
    errors = []
    for scale in (1.0, 10.0):
        prior, fit = poisson_three_nodes(scale * counts)
        exact, se = importance_log_evidence(prior, fit, scale * counts, draws=200_000, seed=0)
        laplace = float(fit.log_marginal_likelihood())
        assert se < 0.005, se
        errors.append(abs(laplace - exact))
    assert errors[0] < 0.05, errors
    assert errors[1] < errors[0], errors  # asymptotic exactness: more information, smaller error


# ------------------------------------------------------------------------------------- e. a non-log-concave case


def test_student_t_outlier_mode_and_observed_precision():
    n = 8
    prior = GMRF(torch.zeros(n, dtype=F64), ar1(n, 0.6, tau=1.0))
    y = torch.tensor([0.2, -0.1, 0.4, 6.0, 0.3, 0.1, -0.2, 0.5], dtype=F64)  # y[3] an outlier
    df, scale = 3.0, 0.5
    fit = LatentGaussianModel(prior, StudentT(df=df, scale=scale)).laplace(y)
    # Q + AᵀWA with the observed W stays positive definite here: every step is a Newton step
    assert fit.converged and fit.hessian == "observed" and fit.result.information_steps == 0
    mode = fit.mode.detach()
    Q = prior.precision.to_dense()

    def loglik(eta):
        return td.StudentT(df, eta, scale).log_prob(y)

    _, f1, f2 = eta_derivatives(loglik, mode)
    gradient = (f1 - Q @ mode).detach()
    assert float(gradient.abs().max()) < 1e-8  # a converged float64 mode: ∇ψ = 0 to rounding
    assert bool((f2 > 0).any())  # the outlier makes the observed curvature positive: W has a negative entry
    H = Q - torch.diag(f2.detach())
    assert bool((torch.linalg.eigvalsh(H) > 0).all())  # a strict local maximum
    # a dense Newton iteration with the observed Hessian does not move from our mode
    eye = torch.eye(n, dtype=F64)
    refined = dense_newton(loglik, torch.zeros(n, dtype=F64), Q, eye, torch.zeros(n, dtype=F64), 20, x0=mode)
    torch.testing.assert_close(mode, refined.detach(), rtol=0, atol=1e-8)
    torch.testing.assert_close(fit.posterior.precision.to_dense(), H.detach(), rtol=0, atol=1e-9)
    # and an independent optimiser from the prior mean finds the same maximiser
    x = torch.zeros(n, dtype=F64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [x], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe"
    )

    def closure():
        optimiser.zero_grad()
        loss = -(loglik(x).sum() - 0.5 * x @ Q @ x)
        loss.backward()
        return loss

    optimiser.step(closure)
    torch.testing.assert_close(mode, x.detach(), rtol=0, atol=1e-8)


def test_student_t_fallback_to_expected_information_then_newton():
    """A weak prior (tau = 0.01) leaves Q − diag(f'') indefinite at the start (the outlier's f'' > 0): those steps use
    the expected information and say so; the last ones are Newton steps, so the mode is exact to rounding."""
    n = 8
    prior = GMRF(torch.zeros(n, dtype=F64), ar1(n, 0.6, tau=0.01))
    y = torch.tensor([0.2, -0.1, 0.4, 6.0, 0.3, 0.1, -0.2, 0.5], dtype=F64)
    fit = LatentGaussianModel(prior, StudentT(df=3.0, scale=0.5)).laplace(y)
    assert fit.converged and fit.hessian == "expected information" and fit.result.information_steps >= 1
    Q = prior.precision.to_dense()
    mode = fit.mode.detach()

    def loglik(eta):
        return td.StudentT(3.0, eta, 0.5).log_prob(y)

    _, f1, f2 = eta_derivatives(loglik, mode)
    assert float((f1.detach() - Q @ mode).abs().max()) < 1e-8
    assert bool((torch.linalg.eigvalsh(Q - torch.diag(f2.detach())) > 0).all())


def test_student_t_outlier_marginal_likelihood_and_gradient():
    """The Laplace formula with the observed Hessian at the exact maximiser (dense Newton refined from our mode)."""
    n = 8
    tau = torch.tensor(1.0, dtype=F64, requires_grad=True)
    y = torch.tensor([0.2, -0.1, 0.4, 6.0, 0.3, 0.1, -0.2, 0.5], dtype=F64)
    prior = GMRF(torch.zeros(n, dtype=F64), ar1(n, 0.6, tau=tau))
    fit = LatentGaussianModel(prior, StudentT(df=3.0, scale=0.5)).laplace(y)
    value = fit.log_marginal_likelihood()

    def loglik(eta):
        return td.StudentT(3.0, eta, 0.5).log_prob(y)

    zero, eye = torch.zeros(n, dtype=F64), torch.eye(n, dtype=F64)
    Q = ar1(n, 0.6, tau=tau).to_dense()
    x = dense_newton(loglik, zero, Q, eye, zero, 30, x0=fit.mode.detach())
    f, _, f2 = eta_derivatives(loglik, x)
    dense = f.sum() + gaussian_log_density(x, zero, Q) - 0.5 * torch.logdet(Q - torch.diag(f2)) + 0.5 * n * LOG_2PI
    torch.testing.assert_close(value, dense, rtol=0, atol=1e-9)
    (ours,) = torch.autograd.grad(value, tau)
    (reference,) = torch.autograd.grad(dense, tau)
    torch.testing.assert_close(ours, reference, rtol=1e-7, atol=1e-7)


# --------------------------------------------------------------------------- f. the symbolic analysis is reused


def test_symbolic_analysis_is_reused_across_fits():
    n, m = 10, 12
    crow, col = csr_pattern(m, n, 0.2, seed=4)
    g = torch.Generator().manual_seed(4)
    values = 0.5 + torch.rand(col.numel(), generator=g, dtype=F64)
    A = sparse_csr_tensor(crow, col, values, (m, n))
    y = torch.poisson(torch.full((m,), 3.0, dtype=F64), generator=g)
    before = sparseprec.cache_info().symbolic_analyses
    counts = []
    for tau in torch.linspace(0.5, 5.0, 10, dtype=F64):
        tau = tau.clone().requires_grad_(True)
        model = LatentGaussianModel(GMRF(torch.ones(n, dtype=F64), ar1(n, 0.4, tau=tau)), Poisson(), obs_matrix=A)
        fit = model.laplace(y)
        fit.log_marginal_likelihood().backward()
        _ = fit.variance, fit.predictor_variance
        counts.append(sparseprec.cache_info().symbolic_analyses - before)
    assert counts[-1] <= 3, counts
    assert counts[-1] == counts[0], counts  # nothing new after the first fit


# ------------------------------------------------------------------------------------------------------ g. errors


def _poisson_model(n: int = 5, **kwargs) -> LatentGaussianModel:
    return LatentGaussianModel(GMRF(torch.zeros(n, dtype=F64), ar1(n, 0.5)), Poisson(), **kwargs)


def test_error_y_outside_support():
    with pytest.raises(ValueError, match=r"\by\b.*non-negative integers"):
        _poisson_model().laplace(torch.tensor([1.0, -1.0, 0.0, 2.0, 3.0], dtype=F64))
    with pytest.raises(ValueError, match=r"\by\b"):
        _poisson_model().laplace(torch.tensor([1.0, 0.5, 0.0, 2.0, 3.0], dtype=F64))
    with pytest.raises(ValueError, match=r"\by\b.*shape"):
        _poisson_model().laplace(torch.ones(2, 5, dtype=F64))


def test_error_obs_matrix_shape_dtype_layout():
    wrong_shape = torch.ones(3, 6, dtype=F64).to_sparse_csr()
    with pytest.raises(ValueError, match=r"obs_matrix.*\(m, 5\).*\(3, 6\)"):
        _poisson_model(obs_matrix=wrong_shape)
    wrong_dtype = torch.ones(3, 5, dtype=torch.float32).to_sparse_csr()
    with pytest.raises(ValueError, match=r"obs_matrix.*float64.*float32"):
        _poisson_model(obs_matrix=wrong_dtype)
    with pytest.raises(TypeError, match="obs_matrix"):
        _poisson_model(obs_matrix=torch.ones(3, 5, dtype=F64))
    with pytest.raises(ValueError, match=r"offset.*\(3,\)"):
        _poisson_model(obs_matrix=torch.ones(3, 5, dtype=F64).to_sparse_csr(), offset=torch.zeros(5, dtype=F64))


def test_error_batched_prior():
    batched = GMRF(torch.zeros(2, 5, dtype=F64), ar1(5, 0.5))
    with pytest.raises(ValueError, match=r"prior.*batch_shape"):
        LatentGaussianModel(batched, Poisson())
    with pytest.raises(ValueError, match=r"prior\[1\].*batch"):
        LatentGaussianModel([GMRF(torch.zeros(5, dtype=F64), ar1(5, 0.5)), batched], Poisson())


def test_error_too_few_newton_iterations():
    y = torch.tensor([40.0, 55.0, 0.0, 70.0, 31.0], dtype=F64)
    with pytest.raises(ConvergenceError, match="max_iterations") as info:
        _poisson_model().laplace(y, newton=Newton(max_iterations=1))
    assert "x0" in str(info.value)  # says what to try
    assert info.value.solution is not None and not info.value.solution.converged


def test_error_non_identified_direction():
    # an ICAR precision used as a plain GMRF (no constraint) observed only through contrasts x_i − x_{i+1}:
    # the constant direction is neither in the prior nor in the data
    n = 6
    W = grid_adjacency((2, 3)).to(F64)
    prior = GMRF(torch.zeros(n, dtype=F64), icar(W, 1.0), validate_args=False)
    rows = torch.arange(n - 1)
    crow = torch.arange(0, 2 * (n - 1) + 1, 2)
    col = torch.stack([rows, rows + 1], 1).reshape(-1)
    values = torch.tensor([1.0, -1.0], dtype=F64).repeat(n - 1)
    A = sparse_csr_tensor(crow, col, values, (n - 1, n))
    model = LatentGaussianModel(prior, Poisson(), obs_matrix=A)
    with pytest.raises(NotPositiveDefiniteError, match=r"not positive definite.*constraint"):
        model.laplace(torch.tensor([1.0, 2.0, 0.0, 1.0, 3.0], dtype=F64))


# ------------------------------------------------------------------------------------------------ h. float32


def test_float32_poisson_matches_float64():
    n = 10
    g = torch.Generator().manual_seed(8)
    y = torch.poisson(torch.full((n,), 4.0, dtype=F64), generator=g)
    values = {}
    for dtype in (torch.float32, F64):
        prior = GMRF(torch.ones(n, dtype=dtype), ar1(n, 0.7, tau=2.0, dtype=dtype))
        fit = LatentGaussianModel(prior, Poisson()).laplace(y.to(dtype))
        assert fit.converged
        value = fit.log_marginal_likelihood()
        assert value.dtype == dtype and fit.mode.dtype == dtype
        values[dtype] = float(value)
    assert abs(values[torch.float32] - values[F64]) <= 1e-4 * abs(values[F64]), values

"""The observation likelihoods of sparseprec.laplace, checked against torch.distributions and autograd.

A registry of cases (likelihood class, constructor parameters with per-observation and shared values, the same
distribution in torch.distributions, its mean and variance) feeds generic checks: log_prob against torch, the closed-
form derivatives against autograd (at moderate and extreme η), gradcheck in η and in the differentiable parameters,
Newton weights, sampling moments (seeded), float32, and the errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
import torch.distributions as td

from sparseprec.laplace.likelihoods import (
    Bernoulli,
    Binomial,
    Gaussian,
    GenericLikelihood,
    Likelihood,
    NegativeBinomial,
    Poisson,
    StudentT,
)

M = 7  # observations per test problem
F64 = torch.float64


def _vec(values, dtype=F64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


@dataclass
class Case:
    """A likelihood with its reference: ``params(dtype)`` gives the constructor arguments, ``reference(p, eta)`` the
    same distribution in torch.distributions (``p`` the parameters as float64 tensors), ``moments(p, eta)`` its mean
    and variance; ``grad`` names the parameters that may require grad."""

    id: str
    cls: type
    params: Callable[[torch.dtype], dict]
    reference: Callable[[dict, torch.Tensor], td.Distribution]
    moments: Callable[[dict, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    grad: tuple[str, ...] = ()
    eta_scale: float = 1.0
    extra: dict = field(default_factory=dict)

    def make(self, dtype=F64, **overrides) -> Likelihood:
        return self.cls(**{**self.params(dtype), **overrides})

    def tensors(self, eta: torch.Tensor) -> dict:
        """The parameters as tensors of eta's dtype, broadcast to (m,); exposure None becomes 1."""
        out = {}
        for name, value in self.params(eta.dtype).items():
            value = 1.0 if value is None else value
            out[name] = torch.as_tensor(value, dtype=eta.dtype).expand(eta.shape)
        return out


def _poisson_rate(p, eta):
    return p["exposure"] * eta.exp()


def _nb_mean(p, eta):
    return p["exposure"] * eta.exp()


CASES = [
    Case(
        "poisson",
        Poisson,
        lambda dtype: {"exposure": None},
        lambda p, eta: td.Poisson(_poisson_rate(p, eta)),
        lambda p, eta: (_poisson_rate(p, eta), _poisson_rate(p, eta)),
    ),
    Case(
        "poisson_exposure",
        Poisson,
        lambda dtype: {"exposure": _vec([0.5, 1.0, 2.0, 3.0, 0.2, 1.5, 4.0], dtype)},
        lambda p, eta: td.Poisson(_poisson_rate(p, eta)),
        lambda p, eta: (_poisson_rate(p, eta), _poisson_rate(p, eta)),
    ),
    Case(
        "poisson_scalar_exposure",
        Poisson,
        lambda dtype: {"exposure": 2.5},
        lambda p, eta: td.Poisson(_poisson_rate(p, eta)),
        lambda p, eta: (_poisson_rate(p, eta), _poisson_rate(p, eta)),
    ),
    Case(
        "bernoulli",
        Bernoulli,
        lambda dtype: {},
        lambda p, eta: td.Bernoulli(logits=eta),
        lambda p, eta: (eta.sigmoid(), eta.sigmoid() * (-eta).sigmoid()),
        eta_scale=2.0,
    ),
    Case(
        "binomial",
        Binomial,
        lambda dtype: {"total_count": torch.tensor([1, 5, 10, 0, 3, 20, 7])},
        lambda p, eta: td.Binomial(total_count=p["total_count"], logits=eta),
        lambda p, eta: (p["total_count"] * eta.sigmoid(), p["total_count"] * eta.sigmoid() * (-eta).sigmoid()),
        eta_scale=2.0,
    ),
    Case(
        "binomial_scalar",
        Binomial,
        lambda dtype: {"total_count": 12},
        lambda p, eta: td.Binomial(total_count=p["total_count"], logits=eta),
        lambda p, eta: (p["total_count"] * eta.sigmoid(), p["total_count"] * eta.sigmoid() * (-eta).sigmoid()),
        eta_scale=2.0,
    ),
    Case(
        "negative_binomial",
        NegativeBinomial,
        lambda dtype: {
            "dispersion": _vec([0.5, 1.0, 2.0, 5.0, 10.0, 0.8, 3.0], dtype),
            "exposure": _vec([1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 0.7], dtype),
        },
        lambda p, eta: td.NegativeBinomial(
            total_count=p["dispersion"], logits=eta + p["exposure"].log() - p["dispersion"].log()
        ),
        lambda p, eta: (_nb_mean(p, eta), _nb_mean(p, eta) + _nb_mean(p, eta) ** 2 / p["dispersion"]),
        grad=("dispersion",),
    ),
    Case(
        "negative_binomial_scalar",
        NegativeBinomial,
        lambda dtype: {"dispersion": torch.tensor(2.0, dtype=dtype), "exposure": None},
        lambda p, eta: td.NegativeBinomial(total_count=p["dispersion"], logits=eta - p["dispersion"].log()),
        lambda p, eta: (_nb_mean(p, eta), _nb_mean(p, eta) + _nb_mean(p, eta) ** 2 / p["dispersion"]),
        grad=("dispersion",),
    ),
    Case(
        "gaussian",
        Gaussian,
        lambda dtype: {"noise_precision": _vec([0.5, 1.0, 4.0, 2.0, 10.0, 0.1, 3.0], dtype)},
        lambda p, eta: td.Normal(eta, p["noise_precision"].rsqrt()),
        lambda p, eta: (eta, 1 / p["noise_precision"]),
        grad=("noise_precision",),
    ),
    Case(
        "gaussian_scalar",
        Gaussian,
        lambda dtype: {"noise_precision": 2.0},
        lambda p, eta: td.Normal(eta, p["noise_precision"].rsqrt()),
        lambda p, eta: (eta, 1 / p["noise_precision"]),
    ),
    Case(
        "student_t",
        StudentT,
        lambda dtype: {
            "df": _vec([9.0, 8.0, 10.0, 6.0, 20.0, 7.0, 12.0], dtype),
            "scale": _vec([0.5, 1.0, 2.0, 0.3, 1.5, 0.8, 1.0], dtype),
        },
        lambda p, eta: td.StudentT(p["df"], eta, p["scale"]),
        lambda p, eta: (eta, p["scale"] ** 2 * p["df"] / (p["df"] - 2)),
        grad=("df", "scale"),
    ),
    Case(
        "student_t_scalar",
        StudentT,
        lambda dtype: {"df": torch.tensor(6.0, dtype=dtype), "scale": 0.7},
        lambda p, eta: td.StudentT(p["df"], eta, p["scale"]),
        lambda p, eta: (eta, p["scale"] ** 2 * p["df"] / (p["df"] - 2)),
        grad=("df",),
    ),
]
GRAD_CASES = [c for c in CASES if c.grad]


def _ids(cases):
    return [c.id for c in cases]


def _eta(case: Case, seed: int, dtype=F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (case.eta_scale * torch.randn(M, generator=g, dtype=F64)).to(dtype)


def _problem(case: Case, seed: int = 0, dtype=F64):
    """(likelihood, y drawn from the model, eta)."""
    lik = case.make(dtype)
    eta = _eta(case, seed, dtype)
    y = lik.check(lik.sample(eta, torch.Generator().manual_seed(seed + 100)), eta)
    return lik, y, eta


def _autograd_derivatives(lik: Likelihood, y: torch.Tensor, eta: torch.Tensor):
    e = eta.detach().clone().requires_grad_(True)
    lp = lik.log_prob(y, e)
    out = []
    current = lp
    for _ in range(3):
        (current,) = torch.autograd.grad(current.sum(), e, create_graph=True, allow_unused=True)
        current = torch.zeros_like(e) if current is None else current
        out.append(current.detach())
        if not current.requires_grad:
            out.extend([torch.zeros_like(e)] * (3 - len(out)))
            break
    return out


# --------------------------------------------------------------------------------------------------- log_prob


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_log_prob_matches_torch_distributions(case, seed):
    lik, y, eta = _problem(case, seed)
    ref = case.reference(case.tensors(eta), eta).log_prob(y)
    lp = lik.log_prob(y, eta)
    assert lp.shape == (M,) and lp.dtype == F64
    torch.testing.assert_close(lp, ref, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------ derivatives


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_derivatives_match_autograd(case):
    lik, y, eta = _problem(case, 3)
    for d, ref in zip(lik.derivatives(y, eta), _autograd_derivatives(lik, y, eta), strict=True):
        assert d.shape == (M,) and d.dtype == F64
        torch.testing.assert_close(d, ref, rtol=1e-10, atol=1e-10)


def _extreme_y(case: Case, lik: Likelihood, eta: torch.Tensor) -> list[torch.Tensor]:
    """Observations at both ends of the support (and a draw from the model) for extreme eta."""
    if case.cls is Bernoulli:
        return [torch.zeros(M, dtype=F64), torch.ones(M, dtype=F64)]
    if case.cls is Binomial:
        n = case.tensors(eta)["total_count"].clone()
        return [torch.zeros(M, dtype=F64), n, torch.floor(n / 2)]
    if case.cls in (Poisson, NegativeBinomial):
        return [torch.zeros(M, dtype=F64), torch.full((M,), 5.0, dtype=F64)]
    return [torch.zeros(M, dtype=F64), torch.full((M,), 3.0, dtype=F64)]


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_derivatives_stable_at_extreme_eta(case, sign):
    lik = case.make()
    eta = torch.full((M,), 30.0 * sign, dtype=F64)
    eta[::2] *= 0.5  # ±15 and ±30
    for y in _extreme_y(case, lik, eta):
        y = lik.check(y, eta)
        lp = lik.log_prob(y, eta)
        assert torch.isfinite(lp).all()
        torch.testing.assert_close(lp, case.reference(case.tensors(eta), eta).log_prob(y), rtol=1e-12, atol=1e-12)
        for d, ref in zip(lik.derivatives(y, eta), _autograd_derivatives(lik, y, eta), strict=True):
            assert torch.isfinite(d).all()
            torch.testing.assert_close(d, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls", [Bernoulli, lambda: Binomial(3)])
def test_logistic_curvature_keeps_relative_accuracy_in_the_tails(cls):
    # σ(η)σ(−η) at |η| = 30 is ≈ e^{−30}; σ(1 − σ) would lose all but ~3 digits to cancellation.
    lik = cls()
    n = 1.0 if isinstance(lik, Bernoulli) else 3.0
    eta = _vec([30.0, -30.0, 40.0])
    y = lik.check(torch.zeros(3), eta)
    _, d2, d3 = lik.derivatives(y, eta)
    e = torch.exp(-eta.abs())
    pq = e / (1 + e) ** 2
    torch.testing.assert_close(d2, -n * pq, rtol=1e-13, atol=0)
    torch.testing.assert_close(d3, -n * pq * torch.tanh(-eta / 2), rtol=1e-13, atol=0)


# -------------------------------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("case", GRAD_CASES, ids=_ids(GRAD_CASES))
@pytest.mark.parametrize("what", ["log_prob", "derivatives"])
def test_gradcheck_in_eta_and_parameters(case, what):
    lik0, y, eta = _problem(case, 5)
    base = case.params(F64)
    names = case.grad
    leaves = [torch.as_tensor(base[n], dtype=F64).detach().clone().requires_grad_(True) for n in names]

    def f(eta, *values):
        lik = case.cls(**{**base, **dict(zip(names, values, strict=True))})
        if what == "log_prob":
            return lik.log_prob(y, eta)
        return torch.cat(lik.derivatives(y, eta))

    assert torch.autograd.gradcheck(f, (eta.clone().requires_grad_(True), *leaves))
    if what == "derivatives":  # the lead differentiates d1 and d2 once more (in θ) inside its own backward
        assert torch.autograd.gradgradcheck(f, (eta.clone().requires_grad_(True), *leaves))


@pytest.mark.parametrize("case", [c for c in CASES if not c.grad], ids=_ids([c for c in CASES if not c.grad]))
def test_gradcheck_in_eta(case):
    lik, y, eta = _problem(case, 6)
    assert torch.autograd.gradcheck(lambda e: torch.cat(lik.derivatives(y, e)), (eta.clone().requires_grad_(True),))
    assert torch.autograd.gradcheck(lambda e: lik.log_prob(y, e), (eta.clone().requires_grad_(True),))


# ----------------------------------------------------------------------------------------------- information


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_information(case):
    lik, y, eta = _problem(case, 7)
    w = lik.information(y, eta)
    assert w.shape == (M,) and w.dtype == F64 and not w.requires_grad
    assert (w >= 0).all()
    if lik.log_concave:
        torch.testing.assert_close(w, -lik.derivatives(y, eta)[1], rtol=1e-14, atol=0)
        assert (lik.derivatives(y, eta)[1] <= 0).all()


def test_student_t_information_is_the_expected_curvature():
    df, scale = 5.0, 0.8
    lik = StudentT(df=df, scale=scale)
    n = 20_000
    eta = torch.full((n,), 0.4, dtype=F64)
    y = lik.sample(eta, torch.Generator().manual_seed(11))
    monte_carlo = (-lik.derivatives(y, eta)[1]).mean()
    expected = (df + 1) / ((df + 3) * scale**2)
    torch.testing.assert_close(lik.information(y, eta), torch.full((n,), expected, dtype=F64))
    assert abs(monte_carlo.item() / expected - 1) < 0.03


def test_student_t_is_not_log_concave():
    lik = StudentT(df=3.0, scale=1.0)
    eta = _vec([0.0, 0.0])
    y = lik.check(_vec([0.5, 4.0]), eta)
    d2 = lik.derivatives(y, eta)[1]
    assert d2[0] < 0 < d2[1]
    assert not lik.log_concave


def _poisson_log_density(y, eta):
    return y * eta - eta.exp() - torch.lgamma(y + 1)


def test_generic_reproduces_poisson():
    case = CASES[0]
    lik, y, eta = _problem(case, 8)
    generic = GenericLikelihood(_poisson_log_density, log_concave=True)
    assert generic.log_concave
    torch.testing.assert_close(generic.check(y, eta), y)
    torch.testing.assert_close(generic.log_prob(y, eta), lik.log_prob(y, eta), rtol=1e-14, atol=1e-14)
    for d, ref in zip(generic.derivatives(y, eta), lik.derivatives(y, eta), strict=True):
        torch.testing.assert_close(d, ref, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(generic.information(y, eta), lik.information(y, eta), rtol=1e-14, atol=1e-14)


def test_generic_clamps_information_of_a_student_t_density():
    student = StudentT(df=3.0, scale=1.0)
    generic = GenericLikelihood(lambda y, eta: student.log_prob(y, eta))
    assert not generic.log_concave
    eta = torch.zeros(4, dtype=F64)
    y = generic.check(_vec([0.1, -0.5, 4.0, -10.0]), eta)
    d2 = student.derivatives(y, eta)[1]
    for d, ref in zip(generic.derivatives(y, eta), student.derivatives(y, eta), strict=True):
        torch.testing.assert_close(d, ref, rtol=1e-12, atol=1e-14)
    w = generic.information(y, eta)
    torch.testing.assert_close(w, (-d2).clamp(min=0), rtol=1e-12, atol=0)
    assert (w[:2] > 0).all() and (w[2:] == 0).all()


def test_generic_under_no_grad_and_with_eta_that_does_not_require_grad():
    generic = GenericLikelihood(_poisson_log_density, log_concave=True)
    eta = _vec([0.0, 1.0, -2.0])
    y = generic.check(torch.tensor([1, 0, 3]), eta)
    with torch.no_grad():
        d1, d2, d3 = generic.derivatives(y, eta)
    assert not (d1.requires_grad or d2.requires_grad or d3.requires_grad)
    torch.testing.assert_close(d1, y - eta.exp())
    torch.testing.assert_close(d3, -eta.exp())
    d1, d2, d3 = generic.derivatives(y, eta)  # eta is a plain tensor: a leaf copy is differentiated
    torch.testing.assert_close(d2, -eta.exp())
    assert not eta.requires_grad


def test_generic_derivatives_carry_gradients_of_closed_over_parameters():
    w = torch.tensor(2.0, dtype=F64, requires_grad=True)
    generic = GenericLikelihood(lambda y, eta: Gaussian(w).log_prob(y, eta), log_concave=True)
    eta = _vec([0.0, 1.0])
    y = generic.check(_vec([0.5, -1.0]), eta)
    d1, d2, d3 = generic.derivatives(y, eta)  # d3 = 0: d2 does not depend on eta
    assert torch.equal(d3, torch.zeros(2, dtype=F64))
    (grad,) = torch.autograd.grad(d1.sum() + d2.sum(), w)
    torch.testing.assert_close(grad, (y - eta).sum() - 2)  # d1 = w (y − η), d2 = −w


def test_generic_with_eta_that_requires_grad_keeps_its_graph():
    generic = GenericLikelihood(_poisson_log_density, log_concave=True)
    x = _vec([0.0, 1.0]).requires_grad_(True)
    eta = 2 * x  # not a leaf
    y = generic.check(_vec([1.0, 2.0]), eta)
    d1 = generic.derivatives(y, eta)[0]
    (grad,) = torch.autograd.grad(d1.sum(), x)
    torch.testing.assert_close(grad, -2 * eta.detach().exp())


def test_generic_cannot_sample():
    with pytest.raises(NotImplementedError, match="GenericLikelihood cannot sample"):
        GenericLikelihood(_poisson_log_density).sample(torch.zeros(2))


# ---------------------------------------------------------------------------------------------------- sample


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_sample_moments(case):
    # n draws for each of the M observation settings; each empirical mean and variance within 5 of its standard errors
    # (sd of the mean sqrt(var / n); of the sample variance sqrt((mu4 - var^2) / n), mu4 estimated from the draws).
    n = 20_000
    params = {k: v.repeat(n) if isinstance(v, torch.Tensor) and v.dim() else v for k, v in case.params(F64).items()}
    lik = case.cls(**params)  # per-observation parameters tiled like eta
    eta = _eta(case, 9)
    mean, var = case.moments(case.tensors(eta), eta)
    draws = lik.sample(eta.repeat(n), torch.Generator().manual_seed(12))
    assert draws.shape == (n * M,) and draws.dtype == F64 and not draws.requires_grad
    draws = draws.reshape(n, M)
    case.make().check(draws[0], eta)  # in the support
    centred = draws - draws.mean(0)
    mu4 = (centred**4).mean(0)
    assert ((draws.mean(0) - mean).abs() <= 5 * (var / n).sqrt()).all()
    assert ((draws.var(0) - var).abs() <= 5 * ((mu4 - var**2).clamp(min=0) / n).sqrt() + 1e-12).all()


def test_sample_is_reproducible_with_a_generator():
    lik = NegativeBinomial(2.0)
    eta = torch.zeros(50, dtype=F64)
    a = lik.sample(eta, torch.Generator().manual_seed(3))
    b = lik.sample(eta, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------------- float32


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_float32(case):
    lik64, y64, eta64 = _problem(case, 10)
    lik = case.make(torch.float32)
    eta = eta64.float()
    y = lik.check(y64.long() if case.cls not in (Gaussian, StudentT) else y64, eta)
    assert y.dtype == torch.float32
    outputs = [lik.log_prob(y, eta), *lik.derivatives(y, eta), lik.information(y, eta), lik.sample(eta)]
    references = [lik64.log_prob(y64, eta64), *lik64.derivatives(y64, eta64), lik64.information(y64, eta64)]
    for out in outputs:
        assert out.dtype == torch.float32 and out.shape == (M,)
    for out, ref in zip(outputs, references, strict=False):
        torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)


def test_float64_parameters_with_float32_eta():
    lik = NegativeBinomial(dispersion=torch.tensor(2.0, dtype=F64, requires_grad=True))
    eta = torch.zeros(3)
    y = lik.check(torch.tensor([0, 1, 2]), eta)
    assert lik.log_prob(y, eta).dtype == torch.float32
    assert all(d.dtype == torch.float32 for d in lik.derivatives(y, eta))


# ------------------------------------------------------------------------------------------------ devices


def test_device(device):
    lik = StudentT(df=torch.tensor(4.0, device=device), scale=1.0)
    eta = torch.zeros(5, dtype=F64, device=device)
    y = lik.check(torch.arange(5), eta)
    assert y.device == eta.device
    for out in [lik.log_prob(y, eta), *lik.derivatives(y, eta), lik.information(y, eta), lik.sample(eta)]:
        assert out.device == eta.device


# ---------------------------------------------------------------------------------------------------- errors

ETA = torch.zeros(3, dtype=F64)

CHECK_ERRORS = [
    # (likelihood, y, exception, message fragment)
    (Poisson(), [1.0, 2.5, 0.0], ValueError, r"y must hold non-negative integers .*y\[1\] = 2.5"),
    (Poisson(), [1, -1, 0], ValueError, r"y must hold non-negative integers .*y\[1\] = -1.0"),
    (Bernoulli(), [0, 1, 2], ValueError, r"y must hold 0 or 1 .*y\[2\] = 2.0"),
    (Binomial(2), [0, 3, 1], ValueError, r"y must hold integers in \[0, total_count\], got y\[1\] = 3.0 with total"),
    (Binomial(torch.tensor([1, 4, 4])), [0, 3, 1.5], ValueError, r"y\[2\] = 1.5 with total_count\[2\] = 4.0"),
    (NegativeBinomial(1.0), [0, 0.5, 1], ValueError, r"y must hold non-negative integers .*y\[1\] = 0.5"),
    (Gaussian(1.0), [0, math.nan, 1], ValueError, r"y must be finite, got y\[1\] = nan"),
    (StudentT(3.0, 1.0), [math.inf, 0, 1], ValueError, r"y must be finite, got y\[0\] = inf"),
    (GenericLikelihood(_poisson_log_density), [0, 0, math.nan], ValueError, r"y must be finite"),
    # per-observation parameters that do not match y, or break their constraint after an in-place update
    (Poisson(torch.ones(4)), [0, 1, 2], ValueError, r"exposure must have shape \(\) or \(m,\) = \(3,\)"),
    (Binomial(torch.tensor([3, 3])), [0, 1, 2], ValueError, r"total_count must have shape \(\) or \(m,\)"),
    (Gaussian(torch.ones(2)), [0, 1, 2], ValueError, r"noise_precision must have shape"),
]


@pytest.mark.parametrize(
    "lik, y, exc, match", CHECK_ERRORS, ids=[f"{type(c[0]).__name__}-{i}" for i, c in enumerate(CHECK_ERRORS)]
)
def test_check_errors(lik, y, exc, match):
    with pytest.raises(exc, match=match):
        lik.check(torch.tensor(y, dtype=F64), ETA)


def test_check_refuses_bad_y_and_eta_like():
    lik = Poisson()
    with pytest.raises(TypeError, match="y must be a torch.Tensor, got list"):
        lik.check([0, 1, 2], ETA)
    with pytest.raises(ValueError, match=r"y must have shape \(m,\).*got \(3, 1\)"):
        lik.check(torch.zeros(3, 1), ETA)
    with pytest.raises(TypeError, match="y must be a dense"):
        lik.check(torch.zeros(3).to_sparse(), ETA)
    with pytest.raises(TypeError, match="y must have a real floating, integer or bool dtype, got torch.complex64"):
        lik.check(torch.zeros(3, dtype=torch.complex64), ETA)
    with pytest.raises(TypeError, match="eta_like must have dtype torch.float32 or torch.float64, got torch.int64"):
        lik.check(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="eta_like must be a torch.Tensor"):
        lik.check(torch.zeros(3), None)


def test_check_sees_in_place_updates_of_parameters():
    r = torch.ones(3, dtype=F64)
    lik = NegativeBinomial(r)
    lik.check(torch.zeros(3), ETA)
    r[1] = -0.5
    with pytest.raises(ValueError, match=r"dispersion must be positive and finite, got dispersion\[1\] = -0.5"):
        lik.check(torch.zeros(3), ETA)


PARAMETER_ERRORS = [
    # (constructor, exception, message fragment)
    (lambda: Poisson(exposure=0.0), ValueError, r"exposure must be positive and finite, got exposure = 0.0"),
    (lambda: Poisson(exposure=torch.tensor([1.0, -2.0])), ValueError, r"exposure\[1\] = -2.0"),
    (lambda: Poisson(exposure="1"), TypeError, r"exposure must be a real number or a torch.Tensor, got str"),
    (lambda: Poisson(exposure=torch.ones(2, 2)), ValueError, r"exposure must have shape \(\) or \(m,\).*\(2, 2\)"),
    (lambda: Binomial(2.5), ValueError, r"total_count must be a non-negative integer, got total_count = 2.5"),
    (lambda: Binomial(torch.tensor([3, -1])), ValueError, r"total_count\[1\] = -1"),
    (lambda: Binomial(True), TypeError, r"total_count must be a real number or a torch.Tensor, got bool"),
    (lambda: Binomial(torch.tensor([True])), TypeError, r"total_count must have a real floating or integer dtype"),
    (lambda: NegativeBinomial(-1.0), ValueError, r"dispersion must be positive and finite, got dispersion = -1.0"),
    (lambda: NegativeBinomial(1.0, exposure=math.inf), ValueError, r"exposure must be positive and finite"),
    (lambda: NegativeBinomial(None), TypeError, r"dispersion must be a real number or a torch.Tensor, got NoneType"),
    (lambda: Gaussian(torch.tensor(math.nan)), ValueError, r"noise_precision must be positive and finite, got noise"),
    (lambda: Gaussian(torch.ones(3).to_sparse()), TypeError, r"noise_precision must be a dense"),
    (lambda: StudentT(0.0, 1.0), ValueError, r"df must be positive and finite, got df = 0.0"),
    (lambda: StudentT(3.0, torch.tensor([1.0, 0.0])), ValueError, r"scale must be positive and finite.*scale\[1\]"),
    (lambda: GenericLikelihood(3.0), TypeError, r"log_prob_fn must be callable"),
    (lambda: GenericLikelihood(_poisson_log_density, log_concave=1), TypeError, r"log_concave must be a bool"),
]


@pytest.mark.parametrize("build, exc, match", PARAMETER_ERRORS)
def test_parameter_errors(build, exc, match):
    with pytest.raises(exc, match=match):
        build()


def test_generic_refuses_a_log_density_of_the_wrong_shape():
    generic = GenericLikelihood(lambda y, eta: (y * eta).sum())
    with pytest.raises(ValueError, match=r"log_prob_fn must return one log-density per observation, shape \(3,\)"):
        generic.log_prob(torch.zeros(3), ETA)
    with pytest.raises(TypeError, match="log_prob_fn must return a torch.Tensor, got float"):
        GenericLikelihood(lambda y, eta: 0.0).log_prob(torch.zeros(3), ETA)


# ---------------------------------------------------------------------------------------------------- misc


def test_repr_shows_the_parameters():
    assert repr(Poisson()) == "Poisson(exposure=None)"
    assert repr(NegativeBinomial(2.0, exposure=torch.ones(3))) == (
        "NegativeBinomial(dispersion=2.0, exposure=tensor(shape=(3,), dtype=torch.float32))"
    )
    df = torch.tensor(4.0, requires_grad=True)
    assert repr(StudentT(df, 1)) == "StudentT(df=tensor(4.0, requires_grad=True), scale=1.0)"
    assert repr(Bernoulli()) == "Bernoulli()"
    assert repr(GenericLikelihood(_poisson_log_density)).startswith("GenericLikelihood(log_prob_fn=_poisson_log")


def test_public_names():
    import sparseprec.laplace.likelihoods as module

    assert set(module.__all__) == {
        "Likelihood",
        "Poisson",
        "Bernoulli",
        "Binomial",
        "NegativeBinomial",
        "Gaussian",
        "StudentT",
        "GenericLikelihood",
    }
    assert all(issubclass(getattr(module, name), Likelihood) for name in module.__all__)

"""The registry of distribution cases: every distribution of :mod:`sparseprec.distributions`, each with its dense
reference, feeding the generic checks of ``test_registry.py`` (as Pyro's ``tests/distributions/conftest.py`` does).

Adding a distribution (or a parameterisation, layout or batch form of one) means adding a :class:`DistributionCase`
to :data:`CASES`; ``test_registry.py`` fails for an exported distribution class without a case.

A case's dense reference is

- for a proper Gaussian, its dense covariance :math:`\\Sigma` (and precision :math:`Q = \\Sigma^{-1}`): the reference
  density, entropy and moments are torch's ``MultivariateNormal``'s;
- for an intrinsic GMRF, its dense precision :math:`Q` (positive semi-definite) and the constraint matrix :math:`C`
  whose rows span :math:`Q`'s null space. The reference density on the constrained space :math:`\\{x : C x = C\\mu\\}`
  is :math:`-\\tfrac{n-k}{2}\\log 2\\pi + \\tfrac12\\log|Q|^* - \\tfrac12 (x-\\mu)^\\top Q (x-\\mu)` with
  :math:`|Q|^*` the product of the non-zero eigenvalues, and the covariance is the pseudo-inverse :math:`Q^+` (the
  Gaussian on :math:`\\mathrm{null}(C) = \\mathrm{range}(Q)` with precision :math:`Q` there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.distributions import Distribution, MultivariateNormal

from sparseprec.distributions import CAR, GMRF, ICAR, ConstrainedGMRF, IntrinsicGMRF, SparseMultivariateNormal
from sparseprec.structures import adjacency_from_pairs, ar1, car, icar, rw1, rw2
from tests.conftest import LAYOUTS, sparse_from_dense
from tests.distributions.smvn_cases import FORM_IDS, FORMS, make_case

F64 = torch.float64
_LOG_2PI = math.log(2 * math.pi)


@dataclass
class DistributionCase:
    """One distribution with its dense reference.

    ``build(loc)`` constructs the distribution for a mean ``loc`` (so that tests can make ``loc`` require grad);
    ``covariance`` is the dense :math:`\\Sigma` (``(..., n, n)``; :math:`Q^+` for an intrinsic case) and
    ``precision`` the dense :math:`Q`; ``constraint_matrix`` is :math:`C` for an intrinsic case (``None`` for a
    proper one). ``shared`` names the attributes ``expand`` must share rather than copy; ``has_covariance_matrix``
    says whether the class offers ``covariance_matrix`` and ``has_rsample`` whether it is reparameterised.
    """

    id: str
    build: Callable[[torch.Tensor], Distribution]
    loc: torch.Tensor
    covariance: torch.Tensor
    precision: torch.Tensor
    constraint_matrix: torch.Tensor | None = None
    shared: tuple[str, ...] = ()
    has_covariance_matrix: bool = True
    has_rsample: bool = True
    cls: type = field(init=False)

    def __post_init__(self) -> None:
        self.cls = type(self.dist())

    @property
    def intrinsic(self) -> bool:
        return self.constraint_matrix is not None

    @property
    def n(self) -> int:
        return self.loc.shape[-1]

    @property
    def batch_shape(self) -> torch.Size:
        return torch.broadcast_shapes(self.loc.shape[:-1], self.covariance.shape[:-2])

    def dist(self, loc: torch.Tensor | None = None) -> Distribution:
        return self.build(self.loc if loc is None else loc)

    def values(self, sample_shape: tuple[int, ...] = (), seed: int = 0) -> torch.Tensor:
        """Random points of the support, ``sample_shape + batch_shape + (n,)`` (projected onto ``C x = C μ``)."""
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(tuple(sample_shape) + self.batch_shape + (self.n,), generator=g, dtype=self.loc.dtype)
        if self.intrinsic:
            C = self.constraint_matrix
            gap = (x - self.loc) @ C.T
            x = x - torch.linalg.solve(C @ C.T, gap.unsqueeze(-1)).squeeze(-1) @ C
        return x

    # ---- the dense reference -----------------------------------------------------------------------------------------
    def log_pdet(self) -> torch.Tensor:
        """:math:`\\log|Q|^*` (the log-determinant for a proper case), by a dense eigendecomposition."""
        eigenvalues = torch.linalg.eigvalsh(self.precision)
        largest = eigenvalues.max(-1, keepdim=True).values
        return torch.where(eigenvalues > 1e-9 * largest, eigenvalues, torch.ones_like(eigenvalues)).log().sum(-1)

    @property
    def rank(self) -> int:
        return self.n - (0 if self.constraint_matrix is None else self.constraint_matrix.shape[0])

    def log_prob(self, value: torch.Tensor, loc: torch.Tensor | None = None) -> torch.Tensor:
        """Dense reference log-density (differentiable in ``value`` and ``loc``)."""
        loc = self.loc if loc is None else loc
        if not self.intrinsic:
            return MultivariateNormal(loc, covariance_matrix=self.covariance).log_prob(value)
        r = value - loc
        quadratic = ((r.unsqueeze(-2) @ self.precision).squeeze(-2) * r).sum(-1)
        return -0.5 * (quadratic + self.rank * _LOG_2PI) + 0.5 * self.log_pdet()

    def entropy(self) -> torch.Tensor:
        half = 0.5 * self.rank * (1 + _LOG_2PI) - 0.5 * self.log_pdet()
        return half.expand(self.batch_shape)

    def variance(self) -> torch.Tensor:
        return self.covariance.diagonal(dim1=-2, dim2=-1).expand(self.batch_shape + (self.n,))


# ---- SparseMultivariateNormal: four forms x layouts, a batch of locs, a batch of factors ---------------------------
def _smvn(id_: str, form: str, ldl: bool, layout: str, **kwargs) -> DistributionCase:
    problem = make_case(form, ldl, layout, **kwargs)
    reference = problem.reference()
    return DistributionCase(
        id_,
        lambda loc: SparseMultivariateNormal(loc, **problem.kwargs),
        problem.loc,
        reference.covariance_matrix,
        reference.precision_matrix,
        shared=("factor",),
    )


def _smvn_cases() -> list[DistributionCase]:
    cases = []
    for (form, ldl), name in zip(FORMS, FORM_IDS, strict=True):
        for layout in ("csr", "coo"):  # one loc
            cases.append(_smvn(f"smvn-{name}-{layout}", form, ldl, layout))
        for layout in LAYOUTS:  # a batch of 3 locs against one factor
            cases.append(_smvn(f"smvn-{name}-{layout}-batch", form, ldl, layout, loc_batch=(3,)))
        # a batch of 2 factors (the last batch dimension), one loc each
        cases.append(_smvn(f"smvn-{name}-factor_batch", form, ldl, "csr", n=6, batch=2))
    return cases


# ---- GMRF and CAR --------------------------------------------------------------------------------------------------
def random_spd(n: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random sparse symmetric diagonally dominant (hence SPD) matrix: its dense form and its stored-entry mask."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, n, generator=g) < 0.3
    mask = mask | mask.T | torch.eye(n, dtype=torch.bool)
    A = torch.randn(n, n, generator=g, dtype=F64) * mask
    A = 0.5 * (A + A.T)
    return (A + torch.diag(A.abs().sum(1) + 0.5)) * mask, mask


def _gmrf(id_: str, loc: torch.Tensor, Q_dense: torch.Tensor, Q: torch.Tensor) -> DistributionCase:
    return DistributionCase(
        id_, lambda loc: GMRF(loc, Q), loc, torch.linalg.inv(Q_dense), Q_dense, shared=("precision", "_factor")
    )


GRAPH = adjacency_from_pairs([(0, 1), (1, 2), (2, 3), (3, 0), (1, 3)])


def _car(id_: str, loc: torch.Tensor) -> DistributionCase:
    Q = car(GRAPH, 0.6, 1.5).detach().to_dense()
    return DistributionCase(
        id_, lambda loc: CAR(GRAPH, 0.6, 1.5, loc=loc), loc, torch.linalg.inv(Q), Q, shared=("precision", "_factor")
    )


def _gmrf_cases() -> list[DistributionCase]:
    g = torch.Generator().manual_seed(1)
    dense, mask = random_spd()
    csr, coo = sparse_from_dense(dense, mask, "csr"), sparse_from_dense(dense, mask, "coo")
    Q_ar1 = ar1(6, 0.7, 2.0).detach()
    return [
        _gmrf("gmrf-random-csr", torch.randn(9, generator=g, dtype=F64), dense, csr),
        _gmrf("gmrf-random-coo-batch", torch.randn(3, 9, generator=g, dtype=F64), dense, coo),
        _gmrf("gmrf-random-csr-batch", torch.randn(3, 9, generator=g, dtype=F64), dense, csr),
        _gmrf("gmrf-ar1", torch.arange(6, dtype=F64), Q_ar1.to_dense(), Q_ar1),
        _gmrf("gmrf-ar1-batch", torch.randn(2, 6, generator=g, dtype=F64), Q_ar1.to_dense(), Q_ar1),
        _car("car", torch.zeros(4, dtype=F64)),
        _car("car-batch", torch.randn(3, 4, generator=g, dtype=F64)),
    ]


# ---- intrinsic GMRFs: ICAR, RW1, RW2 with constraints ----------------------------------------------------------------
TWO_COMPONENTS = adjacency_from_pairs([(0, 1), (1, 2), (2, 0), (2, 3), (4, 5), (5, 6), (6, 7), (7, 4), (4, 6)])


def rw2_constraints(n: int) -> torch.Tensor:
    """``[1; t]``: the rows spanning RW2's null space (constants and lines)."""
    t = torch.arange(n, dtype=F64)
    return torch.stack([torch.ones(n, dtype=F64), t])


def _intrinsic(
    id_: str,
    loc: torch.Tensor,
    Q: torch.Tensor,
    C: torch.Tensor | None,
    build: Callable[[torch.Tensor], Distribution] | None = None,
) -> DistributionCase:
    if build is None:

        def build(loc: torch.Tensor) -> IntrinsicGMRF:
            return IntrinsicGMRF(loc, Q, constraint_matrix=C)

    constraint_matrix = build(loc).constraint_matrix  # the default: one sum-to-zero row per connected component
    Q_dense = Q.to_dense()
    return DistributionCase(
        id_,
        build,
        loc,
        torch.linalg.pinv(Q_dense),
        Q_dense,
        constraint_matrix,
        shared=("precision", "constraint_matrix", "_factor"),
        has_covariance_matrix=False,
    )


def _icar(id_: str, loc: torch.Tensor) -> DistributionCase:
    Q = icar(TWO_COMPONENTS, 1.7).detach()
    return _intrinsic(id_, loc, Q, None, build=lambda loc: ICAR(TWO_COMPONENTS, 1.7, loc=loc))


def _intrinsic_cases() -> list[DistributionCase]:
    problems = {
        "icar": (icar(TWO_COMPONENTS, 1.7).detach(), None),  # two components: two sum-to-zero constraints
        "rw1": (rw1(7, tau=0.5).detach(), None),
        "rw2": (rw2(9).detach(), rw2_constraints(9)),
        # constraint rows spanning the null space without being orthonormal
        "rw2-mixed": (rw2(9).detach(), torch.tensor([[2.0, 1.0], [0.5, -3.0]], dtype=F64) @ rw2_constraints(9)),
        "rw1-cyclic": (rw1(6, cyclic=True).detach(), None),
    }
    g = torch.Generator().manual_seed(2)
    cases = []
    for name, (Q, C) in problems.items():
        n = Q.shape[-1]
        cases.append(_intrinsic(f"intrinsic-{name}", torch.linspace(-1, 1, n, dtype=F64), Q, C))
        cases.append(_intrinsic(f"intrinsic-{name}-batch", torch.randn(2, n, generator=g, dtype=F64), Q, C))
    cases.append(_icar("icar-class", torch.zeros(8, dtype=F64)))
    cases.append(_icar("icar-class-batch", torch.randn(3, 8, generator=g, dtype=F64)))
    return cases


# ---- ConstrainedGMRF: a positive definite precision H conditioned on C x = e --------------------------------------
@dataclass
class ConstrainedCase(DistributionCase):
    """``precision`` is the unconstrained H and ``covariance`` the conditional Σ_C; the density's precision on null(C)
    is P H P (P the orthogonal projection onto null(C)), whose generalised determinant is the reference's."""

    def log_pdet(self) -> torch.Tensor:
        C = self.constraint_matrix
        P = torch.eye(self.n, dtype=C.dtype) - C.T @ torch.linalg.solve(C @ C.T, C)
        eigenvalues = torch.linalg.eigvalsh(P @ self.precision @ P)
        largest = eigenvalues.max(-1, keepdim=True).values
        return torch.where(eigenvalues > 1e-9 * largest, eigenvalues, torch.ones_like(eigenvalues)).log().sum(-1)


def _constrained(id_: str, loc: torch.Tensor, k: int, seed: int) -> DistributionCase:
    dense, mask = random_spd(8, seed)
    H = sparse_from_dense(dense, mask, "csr")
    C = torch.randn(k, 8, generator=torch.Generator().manual_seed(seed), dtype=F64)
    Sigma = torch.linalg.inv(dense)
    V = Sigma @ C.T
    return ConstrainedCase(
        id_,
        lambda loc: ConstrainedGMRF(loc, H, C),
        loc,
        Sigma - V @ torch.linalg.solve(C @ V, V.T),
        dense,
        C,
        shared=("precision", "constraint_matrix", "_factor"),
    )


CONSTRAINED_CASES = [
    _constrained("constrained-k1", torch.linspace(-1, 1, 8, dtype=F64), 1, 5),
    _constrained(
        "constrained-k3-batch", torch.randn(3, 8, generator=torch.Generator().manual_seed(7), dtype=F64), 3, 6
    ),
]


# ---- batched precisions: GMRF with a (4, n, n) precision ------------------------------------------------------------
# Another engineer is adding batched precisions to GMRF. The cases below are collected only once
# ``GMRF(loc, Q)`` accepts a (b, n, n) precision of that layout (probed at import).
def _batched_ar1(layout: str, n: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Four AR(1) precisions (ρ = 0.2, 0.4, 0.6, 0.8; one pattern), dense ``(4, n, n)`` and sparse in ``layout``."""
    dense = torch.stack([ar1(n, rho, 1.5).detach().to_dense() for rho in (0.2, 0.4, 0.6, 0.8)])
    return dense, sparse_from_dense(dense, (dense != 0), layout)


def batched_precision_supported(layout: str) -> bool:
    """Whether ``GMRF`` takes a batch of precisions ``(4, n, n)`` in ``layout`` (the feature being added)."""
    _, Q = _batched_ar1(layout, n=3)
    try:
        GMRF(torch.zeros(3, dtype=F64), Q)
    except (ValueError, TypeError, NotImplementedError, RuntimeError):
        return False
    return True


def _batched_precision_cases() -> list[DistributionCase]:
    g = torch.Generator().manual_seed(3)
    cases = []
    for layout in ("csr", "coo"):
        if not batched_precision_supported(layout):
            continue
        dense, Q = _batched_ar1(layout)
        cases.append(_gmrf(f"gmrf-batched_precision-{layout}", torch.randn(5, generator=g, dtype=F64), dense, Q))
        # locs (3, 1, n) broadcast against the precisions' batch (4,): batch shape (3, 4)
        loc = torch.randn(3, 1, 5, generator=g, dtype=F64)
        cases.append(_gmrf(f"gmrf-batched_precision-{layout}-batch", loc, dense, Q))
    return cases


BATCHED_PRECISION_CASES = _batched_precision_cases()

CASES: list[DistributionCase] = [
    *_smvn_cases(),
    *_gmrf_cases(),
    *_intrinsic_cases(),
    *CONSTRAINED_CASES,
    *BATCHED_PRECISION_CASES,
]

__all__ = ["CASES", "BATCHED_PRECISION_CASES", "DistributionCase", "batched_precision_supported", "random_spd"]

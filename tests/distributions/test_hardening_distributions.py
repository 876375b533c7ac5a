"""Issue 15 for the distributions: ``copy.deepcopy`` of CSR-backed distributions, conditioning on no observations,
the empty event (``n = 0``) and zero-size batches; each against the mathematics or torch's own behaviour."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch

import sparseprec.pyro as sp_pyro
from sparseprec.distributions import CAR, GMRF, ICAR, IntrinsicGMRF, SparseMultivariateNormal
from sparseprec.solvers import CG
from sparseprec.structures import adjacency_from_pairs, ar1, rw2
from tests.distributions.smvn_cases import FORM_IDS, FORMS, make_case

F64 = torch.float64
GRAPH = adjacency_from_pairs([(0, 1), (1, 2), (2, 0), (2, 3), (4, 5)])  # two components


def _rw2_constraints(n):
    t = torch.arange(n, dtype=F64)
    return torch.stack([torch.ones(n, dtype=F64), t])


# ---- deepcopy: a registry of CSR- (and COO-) backed distributions ----------------------------------------------------
def _smvn(form, ldl, layout, batch=None):
    return lambda: make_case(form, ldl, layout, n=6, batch=batch, loc_batch=(2,) if batch is None else ()).dist()


COPY_CASES = {
    "gmrf_csr": lambda: GMRF(torch.randn(2, 5, dtype=F64), ar1(5, 0.6)),
    "gmrf_coo": lambda: GMRF(torch.randn(5, dtype=F64), ar1(5, 0.6).to_sparse_coo()),
    "car": lambda: CAR(GRAPH, 0.4, 2.0),
    "icar": lambda: ICAR(GRAPH, 1.5),
    "intrinsic_rw2": lambda: IntrinsicGMRF(torch.zeros(7, dtype=F64), rw2(7), constraint_matrix=_rw2_constraints(7)),
    "pyro_gmrf": lambda: sp_pyro.GMRF(torch.randn(5, dtype=F64), ar1(5, 0.6)),
    "pyro_car": lambda: sp_pyro.CAR(GRAPH, 0.4),
    "pyro_icar": lambda: sp_pyro.ICAR(GRAPH),
    "pyro_smvn": lambda: sp_pyro.SparseMultivariateNormal(
        torch.zeros(3, dtype=F64), precision_tril=torch.eye(3, dtype=F64).to_sparse_csr()
    ),
}
for (_form, _ldl), _id in zip(FORMS, FORM_IDS, strict=True):
    COPY_CASES[f"smvn_{_id}_csr"] = _smvn(_form, _ldl, "csr")
    COPY_CASES[f"smvn_{_id}_coo"] = _smvn(_form, _ldl, "coo")
    COPY_CASES[f"smvn_{_id}_batched"] = _smvn(_form, _ldl, "coo", batch=3)


def _sparse_tensor(d):
    """The distribution's sparse matrix (precision or factor)."""
    return d.factor if isinstance(d, SparseMultivariateNormal) else d.precision


def _value(d):
    torch.manual_seed(0)
    return d.sample((4,))


@pytest.mark.parametrize("name", list(COPY_CASES))
def test_deepcopy_gives_the_same_distribution_in_new_memory(name):
    d = COPY_CASES[name]()
    x = _value(d)
    expected = d.log_prob(x)
    c = copy.deepcopy(d)
    assert type(c) is type(d) and c.batch_shape == d.batch_shape and c.event_shape == d.event_shape
    torch.testing.assert_close(c.log_prob(x), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c.entropy(), d.entropy(), rtol=1e-12, atol=1e-12)
    original, copied = _sparse_tensor(d), _sparse_tensor(c)
    assert copied.layout == original.layout and copied is not original
    torch.testing.assert_close(copied.to_dense(), original.to_dense(), rtol=0, atol=0)
    values = original.values() if original.layout != torch.sparse_coo else original._values()
    values_copy = copied.values() if copied.layout != torch.sparse_coo else copied._values()
    assert values_copy.data_ptr() != values.data_ptr()
    # independent: writing into the original's values leaves the copy's density unchanged
    with torch.no_grad():
        values.mul_(2.0)
    torch.testing.assert_close(c.log_prob(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["gmrf_csr", "icar", "smvn_precision_tril_csr"])
def test_deepcopy_inside_a_container_keeps_shared_tensors_shared(name):
    d = COPY_CASES[name]()
    holder = {"a": d, "b": d, "matrix": _sparse_tensor(d)}
    copied = copy.deepcopy(holder)
    assert copied["a"] is copied["b"] and copied["a"] is not d
    assert copied["matrix"] is _sparse_tensor(copied["a"])  # one tensor stays one tensor


def test_deepcopy_of_a_csr_leaf_that_requires_grad_is_a_new_leaf():
    case = make_case("precision", False, "csr", n=5)
    L = case.L.detach().requires_grad_()
    d = SparseMultivariateNormal(case.loc, precision_tril=L)
    c = copy.deepcopy(d)
    assert c.factor.is_leaf and c.factor.requires_grad and c.factor is not L
    x = torch.randn(5, dtype=F64)
    c.log_prob(x).backward()
    assert L.grad is None and c.factor.grad is not None
    d.log_prob(x).backward()
    torch.testing.assert_close(c.factor.grad.to_dense(), L.grad.to_dense())


def test_deepcopy_of_a_non_leaf_precision_is_refused_as_torch_refuses_a_non_leaf():
    rho = torch.tensor(0.4, dtype=F64, requires_grad=True)
    d = CAR(GRAPH.to_dense()[:4, :4].to_sparse_csr(), rho)
    dense_loc = torch.distributions.Normal(rho * torch.ones(2, dtype=F64), 1.0)
    with pytest.raises(RuntimeError, match="graph leaves") as ours:
        copy.deepcopy(d)
    with pytest.raises(RuntimeError, match="graph leaves") as theirs:
        copy.deepcopy(dense_loc)
    assert str(ours.value) == str(theirs.value)


def test_intrinsic_gmrf_pickles_and_copies_without_its_derived_state():
    d = ICAR(GRAPH, 2.0)
    x = _value(d)
    for again in (pickle.loads(pickle.dumps(d)), copy.deepcopy(d)):
        torch.testing.assert_close(again.log_prob(x), d.log_prob(x))
        torch.testing.assert_close(again._reduced.to_dense(), d._reduced.to_dense())
        assert torch.equal(again._pinned, d._pinned)
        torch.testing.assert_close(again.variance, d.variance)


# ---- conditioning on no observations ---------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", [None, CG()], ids=["cholesky", "cg"])
@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_conditioning_on_no_observations_returns_the_prior(layout, solver):
    loc = torch.randn(5, dtype=F64, requires_grad=True)
    Q = ar1(5, 0.6)
    prior = GMRF(loc, Q)
    A = torch.zeros(0, 5, dtype=F64)
    A = A.to_sparse_csr() if layout == "csr" else A.to_sparse()
    y = torch.zeros(3, 0, dtype=F64)  # a batch of three empty observation vectors
    posterior = prior.condition(A, y, noise_precision=torch.ones(0, dtype=F64), solver=solver)
    assert posterior.batch_shape == (3,) and posterior.event_shape == (5,)
    torch.testing.assert_close(posterior.loc, loc.detach().expand(3, 5))
    torch.testing.assert_close(posterior.precision_matrix.to_dense(), Q.to_dense())  # Q + Aᵀ R A with A empty
    x = torch.randn(3, 5, dtype=F64)
    torch.testing.assert_close(posterior.log_prob(x), prior.log_prob(x))
    posterior.log_prob(x).sum().backward()  # the posterior stays on the prior's graph
    torch.testing.assert_close(loc.grad, sparseprec_dense_grad(Q, x, loc.detach()))
    # log p(y) of an empty y is log 1
    torch.testing.assert_close(prior.log_marginal_likelihood(A, y, 1.0), torch.zeros(3, dtype=F64))


def sparseprec_dense_grad(Q, x, loc):
    """∂/∂μ Σ_b log N(x_b; μ, Q⁻¹) = Σ_b Q (x_b − μ)."""
    return (Q.to_dense() @ (x - loc).T).sum(-1)


# ---- the empty event and zero-size batches ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["csr", "coo", "batched"])
@pytest.mark.parametrize(("form", "ldl"), FORMS, ids=FORM_IDS)
def test_sparse_mvn_of_the_empty_event(form, ldl, layout):
    batch = (2,) if layout == "batched" else ()
    L = torch.zeros(batch + (0, 0), dtype=F64)
    L = L.to_sparse_csr() if layout == "csr" else L.to_sparse()
    loc = torch.zeros((3,) + batch + (0,), dtype=F64, requires_grad=True)
    kwargs = {f"{form}_tril": L}
    if ldl:
        kwargs["diagonal"] = torch.ones(0, dtype=F64)
    d = SparseMultivariateNormal(loc, **kwargs, validate_args=True)
    assert d.batch_shape == (3,) + batch and d.event_shape == (0,)
    # the density of the empty vector is 1 (log 0): no quadratic form, no log-determinant, no (2π)^(n/2); entropy 0
    value = torch.zeros((4, 3) + batch + (0,), dtype=F64)
    torch.testing.assert_close(d.log_prob(value), torch.zeros((4, 3) + batch, dtype=F64))
    torch.testing.assert_close(d.entropy(), torch.zeros((3,) + batch, dtype=F64))
    sample = d.rsample((5,))
    assert sample.shape == (5, 3) + batch + (0,)
    assert d.variance.shape == (3,) + batch + (0,)
    assert d.covariance_matrix.shape == (3,) + batch + (0, 0)
    assert d.precision_matrix.shape[-2:] == (0, 0)
    d.log_prob(value).sum().backward()
    assert loc.grad.shape == loc.shape


def test_gmrf_of_the_empty_event_is_refused_clearly():
    with pytest.raises(ValueError, match=r"precision must be at least 1 x 1.*got shape \(0, 0\)"):
        GMRF(torch.zeros(0, dtype=F64), torch.zeros(0, 0, dtype=F64).to_sparse_csr())


@pytest.mark.parametrize(
    "make",
    [
        lambda: GMRF(torch.zeros(5, dtype=F64), ar1(5, 0.6), validate_args=False),
        lambda: ICAR(GRAPH, validate_args=True),
        lambda: make_case("precision", False, "csr", n=5).dist(validate_args=False),
        lambda: make_case("scale", True, "coo", n=5).dist(validate_args=False),
    ],
    ids=["gmrf", "icar", "smvn_precision", "smvn_scale_ldl"],
)
def test_zero_size_sample_and_batch(make):
    d = make()
    n = d.event_shape[0]
    empty = d.sample((0,))
    assert empty.shape == (0,) + d.batch_shape + (n,)
    assert d.log_prob(empty).shape == (0,) + d.batch_shape
    assert d.expand((0,) + d.batch_shape).log_prob(torch.zeros(n, dtype=F64)).shape == (0,) + d.batch_shape


def test_log_prob_of_the_empty_event_is_exact_for_any_mean():
    # the normalising constant and quadratic form both vanish; nothing depends on loc
    loc = torch.randn(2, 0, dtype=F64)
    d = SparseMultivariateNormal(loc, scale_tril=torch.zeros(0, 0, dtype=F64).to_sparse_csr())
    assert math.isclose(float(d.log_prob(torch.zeros(0, dtype=F64)).abs().max()), 0.0)


# ---- conditioning arguments ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"noise_precision": math.inf}, ValueError, "noise_precision must be positive and finite, got inf"),
        ({"noise_precision": -1.0}, ValueError, "noise_precision must be positive and finite, got -1.0"),
        ({"noise_precision": torch.tensor([1.0, math.nan], dtype=F64)}, ValueError, "positive and finite, got nan"),
        ({"noise_precision": True}, TypeError, "noise_precision must be a float or a tensor, got bool"),
        ({"noise_precision": "1"}, TypeError, "noise_precision must be a float or a tensor, got str"),
        ({"noise_precision": 1.0, "solver": "chol"}, TypeError, "solver must be a solver object, got the string"),
    ],
)
def test_condition_refuses_bad_noise_and_solver_names(kwargs, error, message):
    prior = GMRF(torch.zeros(4, dtype=F64), ar1(4, 0.5))
    A = torch.eye(4, dtype=F64)[:2].to_sparse_csr()
    with pytest.raises(error, match=message):
        prior.condition(A, torch.ones(2, dtype=F64), **kwargs)

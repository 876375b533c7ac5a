"""sparseprec.distributed: many BYM2 fits, serially and on a 2-worker dask LocalCluster (worker processes).

The distributed results must equal the serial loop's exactly (same floats): each fit is independent of every other,
and both paths run the same code with the same thread pools. Numerical failures are contained per outcome; the
specification and the results pickle small; importing sparseprec (or sparseprec.distributed) imports no Dask.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import pytest
import torch

from sparseprec.datasets import load_scotland_lip_cancer
from sparseprec.distributed import (
    INLA,
    AtlasResults,
    BYM2Poisson,
    EmpiricalBayes,
    Graph,
    Outcome,
    OutcomeFit,
    fit_many,
    fit_outcome,
    worker_state,
)
from sparseprec.distributed import fitting as fitting_module
from sparseprec.distributed.bym2 import log_prior, pieces_for
from sparseprec.laplace import Newton

F64 = torch.float64


@pytest.fixture(scope="module")
def data():
    return load_scotland_lip_cancer()


@pytest.fixture(scope="module")
def spec(data):
    # max_iterations=10: the all-zero outcome below fails (its Newton run needs more), the others converge
    return BYM2Poisson(Graph.from_adjacency(data.adjacency), num_covariates=1, newton=Newton(max_iterations=10))


def _outcomes(data, count: int) -> list[Outcome]:
    g = torch.Generator().manual_seed(21)
    covariate = data.aff_percent.to(F64)[:, None] / 10
    out = [Outcome(data.observed, data.expected, covariate, "lip cancer")]
    for i in range(count - 1):
        risk = (0.4 * torch.randn(data.num_districts, generator=g, dtype=F64)).exp()
        out.append(Outcome(torch.poisson(data.expected * risk, generator=g), data.expected, covariate, f"sim {i}"))
    return out


@pytest.fixture(scope="module")
def outcomes(data):
    out = _outcomes(data, 6)
    out.insert(2, Outcome(torch.zeros(data.num_districts), data.expected, out[0].covariates, "all zero"))
    return out


@pytest.fixture(scope="module")
def serial(spec, outcomes):
    return fit_many(spec, outcomes)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, worker_dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


# ---- the model --------------------------------------------------------------------------------------------------
def test_model_is_the_lip_cancer_example_bym2(data, spec):
    from sparseprec.examples.lip_cancer import bym2_laplace

    build, example_log_prior = bym2_laplace(data)
    outcome = spec.check_outcome(_outcomes(data, 1)[0])
    t = torch.tensor([-0.7, 2.0], dtype=F64)
    with torch.no_grad():
        expected = build(t).laplace(data.observed.to(F64)).log_marginal_likelihood()
        got = pieces_for(spec).model(spec, t, outcome).laplace(outcome.counts).log_marginal_likelihood()
    assert torch.isclose(got, expected, rtol=0, atol=1e-10)
    assert torch.isclose(log_prior(spec, t), example_log_prior(t), rtol=0, atol=1e-12)


def test_relative_risk_summaries_are_the_lognormal_moments(data, serial):
    fit = serial[0]
    assert fit.ok and fit.rr_mean.shape == fit.rr_sd.shape == fit.exceedance.shape == (data.num_districts,)
    assert bool(((fit.exceedance >= 0) & (fit.exceedance <= 1)).all()) and bool((fit.rr_sd > 0).all())
    # lip cancer: relative risks from about 0.3 to 5, σ ≈ 0.5 and ρ near 1 (the Laplace demo's mode)
    assert 0.3 < fit.sigma < 0.8 and fit.rho > 0.5
    assert fit.rr_mean.max() > 3 and fit.rr_mean.min() < 0.5
    assert fit.laplace_evaluations >= 1 and fit.newton_iterations >= fit.laplace_evaluations


def test_inla_method_agrees_with_empirical_bayes(data):
    outcome = _outcomes(data, 1)[0]
    graph = Graph.from_adjacency(data.adjacency)
    eb = fit_outcome(BYM2Poisson(graph, num_covariates=1), outcome)
    grid = fit_outcome(BYM2Poisson(graph, num_covariates=1, method=INLA()), outcome)
    assert grid.ok and grid.theta_mean is not None and bool((grid.theta_sd > 0).all())
    assert eb.theta_mean is None and eb.theta_sd is None
    torch.testing.assert_close(grid.theta_mode, eb.theta_mode, rtol=0, atol=1e-3)  # both modes of p̃(t | y)
    assert (grid.rr_mean / eb.rr_mean - 1).abs().max() < 0.1
    # log p(y) by the grid is below log p̃(y | θ̂) + log p(θ̂) + log(cell volume) of a single point, and finite
    assert math.isfinite(grid.log_marginal_likelihood) and grid.laplace_evaluations > 50


# ---- serial == distributed, failures contained ------------------------------------------------------------------
def test_failure_is_contained_and_marked(spec, outcomes, serial):
    assert [fit.index for fit in serial] == list(range(len(outcomes)))
    failed = serial[2]
    assert failed.status == "failed" and failed.name == "all zero"
    assert failed.reason.startswith("ConvergenceError: ") and "did not converge" in failed.reason
    assert all(getattr(failed, name) is None for name in ("rr_mean", "exceedance", "theta_mode", "newton_iterations"))
    assert [fit.name for fit in serial.failures] == ["all zero"]
    # the other outcomes are exactly what they are without the failing one beside them
    alone = fit_many(spec, [outcomes[3]])
    assert serial[3] == OutcomeFit(**{**alone[0].__dict__, "index": 3})
    table = serial.to_tensors()
    assert table["status"][2] == "failed" and bool(table["rr_mean"][2].isnan().all())
    assert bool(torch.isfinite(table["rr_mean"][[0, 1, 3]]).all()) and table["theta_mean"] is None


def test_non_finite_summaries_are_a_failure_not_a_nan(spec, outcomes, monkeypatch):
    original = fitting_module._summaries

    def poisoned(*args):
        summaries = original(*args)
        summaries["rr_sd"] = summaries["rr_sd"].clone()
        summaries["rr_sd"][5] = float("nan")
        return summaries

    monkeypatch.setattr(fitting_module, "_summaries", poisoned)
    fit = fit_outcome(spec, outcomes[0])
    assert fit.status == "failed" and fit.reason == "non-finite posterior summary: rr_sd[5] = nan"


def test_distributed_results_equal_the_serial_loop_exactly(spec, outcomes, serial, client):
    results = fit_many(spec, outcomes, client=client, chunk_size=3)
    assert isinstance(results, AtlasResults) and results == serial
    for a, b in zip(results, serial, strict=True):  # == compares tensors with torch.equal; spelled out here
        assert a.status == b.status and a.reason == b.reason
        if a.ok:
            assert torch.equal(a.rr_mean, b.rr_mean) and torch.equal(a.exceedance, b.exceedance)
            assert a.log_marginal_likelihood == b.log_marginal_likelihood
    states = client.run(worker_state)
    assert len(states) == 2 and all(s["torch_threads"] == 1 for s in states.values())
    # the second map reuses each worker's pieces and symbolic analyses: nothing new is built or analysed
    again = fit_many(spec, outcomes, client=client, chunk_size=2)
    assert again == serial
    after = client.run(worker_state)
    for address, state in after.items():
        assert state["pieces_built"] == states[address]["pieces_built"] <= 1
        assert state["symbolic_analyses"] == states[address]["symbolic_analyses"]


def test_worker_thread_pools_are_limited(client):
    def pools():
        import threadpoolctl

        return sorted({info["num_threads"] for info in threadpoolctl.threadpool_info()})

    assert all(threads == [1] for threads in client.run(pools).values())


# ---- small pickles, validation ----------------------------------------------------------------------------------
def test_spec_and_results_pickle_small(data, spec, serial):
    assert len(pickle.dumps(spec)) < 8_000  # 132 edges and a few settings: no matrix, no factor
    n = data.num_districts
    for fit in serial:
        assert len(pickle.dumps(fit)) < 8_000
        tensors = [v for v in fit.__dict__.values() if isinstance(v, torch.Tensor)]
        assert all(t.numel() <= n for t in tensors)  # nothing n × n
    restored = pickle.loads(pickle.dumps(spec))
    assert restored.graph == spec.graph and restored.graph.key == spec.graph.key
    assert pieces_for(restored) is pieces_for(spec)  # a freshly unpickled spec finds this process's pieces


def test_graph_key_is_the_content():
    a = Graph(5, torch.tensor([[0, 1], [2, 1], [3, 4]]))
    b = Graph(5, [(4, 3), (1, 2), (0, 1), (1, 0)])
    assert a == b and a.key == b.key and a.pairs.tolist() == [[0, 1], [1, 2], [3, 4]]
    assert a != Graph(6, [(0, 1), (1, 2), (3, 4)])
    with pytest.raises(ValueError, match="self-loops"):
        Graph(3, [(1, 1)])
    with pytest.raises(ValueError, match=r"pairs must index areas 0\.\.2"):
        Graph(3, [(0, 3)])


def test_bad_outcomes_raise_before_anything_runs(spec, outcomes):
    bad = list(outcomes[:2]) + [Outcome(torch.ones(5), torch.ones(5))]
    with pytest.raises(ValueError, match=r"outcomes\[2\]\.counts must be a tensor of shape \(56,\)"):
        fit_many(spec, bad)
    negative = Outcome(-outcomes[0].counts, outcomes[0].expected, outcomes[0].covariates)
    with pytest.raises(ValueError, match=r"outcomes\[0\]\.counts must be non-negative whole numbers"):
        fit_many(spec, [negative])
    with pytest.raises(ValueError, match=r"covariates must have shape \(56, 1\)"):
        fit_many(spec, [Outcome(outcomes[0].counts, outcomes[0].expected)])
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        fit_many(spec, outcomes, chunk_size=0)
    with pytest.raises(TypeError, match="method must be"):
        BYM2Poisson(spec.graph, method="inla")
    with pytest.raises(ValueError, match="dz must be a positive finite number"):
        INLA(dz=0)
    with pytest.raises(ValueError, match="max_iterations must be an integer >= 1"):
        EmpiricalBayes(max_iterations=0)


def test_to_dataframe_is_long_format(serial):
    pytest.importorskip("pandas")
    frame = serial.to_dataframe()
    assert len(frame) == 56 * (len(serial) - 1) + 1
    assert set(frame.loc[frame["status"] == "failed", "name"]) == {"all zero"}


# ---- Dask stays optional ----------------------------------------------------------------------------------------
def test_importing_sparseprec_imports_no_dask():
    code = (
        "import sys, sparseprec, sparseprec.distributed\n"
        "loaded = sorted(m for m in ('dask', 'distributed') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

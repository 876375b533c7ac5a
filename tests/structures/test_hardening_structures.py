"""The builders' error contract (issue 15): bad hyper-parameters and sizes are refused with a message naming the
argument, never turned into a negative "precision" or a silently truncated lattice; empty edge lists are graphs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sparseprec.distributions import ICAR
from sparseprec.structures import (
    adjacency_from_pairs,
    ar1,
    car,
    connected_components,
    graph_laplacian,
    grid_adjacency,
    grid_laplacian,
    icar,
    matern_spde,
    rw1,
    rw2,
)

F64 = torch.float64
PATH = adjacency_from_pairs([(0, 1), (1, 2)])

# ---- scale / precision parameters: positive and finite, one check for every builder ----------------------------------
BUILDERS = {
    "icar": lambda tau: icar(PATH, tau),
    "rw1": lambda tau: rw1(5, tau=tau),
    "rw1_cyclic": lambda tau: rw1(5, cyclic=True, tau=tau),
    "rw2": lambda tau: rw2(5, tau=tau),
    "car": lambda tau: car(PATH, 0.5, tau),
    "ar1": lambda tau: ar1(4, 0.5, tau),
    "matern_tau": lambda tau: matern_spde((3, 3), 1.0, tau),
    "matern_kappa": lambda kappa: matern_spde((3, 3), kappa, 1.0),
}
BAD_VALUES = [-1.0, 0.0, -0.0, math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("value", BAD_VALUES, ids=str)
@pytest.mark.parametrize("builder", list(BUILDERS))
def test_non_positive_or_non_finite_parameters_are_refused(builder, value):
    name = "kappa" if builder == "matern_kappa" else "tau"
    with pytest.raises(ValueError, match=rf"{name}.* must be positive and finite, got .*{value}"):
        BUILDERS[builder](value)


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_a_negative_tensor_parameter_is_refused_too(builder):
    value = torch.tensor(-2.0, dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match="must be positive and finite, got .*-2.0"):
        BUILDERS[builder](value)


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_a_positive_parameter_still_gives_a_positive_semidefinite_precision(builder):
    Q = BUILDERS[builder](0.7).detach().to_dense()
    torch.testing.assert_close(Q, Q.T)
    assert float(torch.linalg.eigvalsh(Q).min()) > -1e-10


@pytest.mark.parametrize("tau", [-1.0, 0.0])
def test_icar_distribution_reports_tau_not_the_constraints(tau):
    # the precision used to be built with a negative/zero tau and fail later with a misleading constraint message
    with pytest.raises(ValueError, match=f"tau must be positive and finite, got {tau}") as info:
        ICAR(PATH, tau=tau)
    assert "constraint" not in str(info.value)


# ---- sizes: ints only, never truncated ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda s: grid_laplacian(s), "shape"),
        (lambda s: grid_adjacency(s), "shape"),
        (lambda s: matern_spde(s, 1.0), "grid_shape"),
    ],
    ids=["grid_laplacian", "grid_adjacency", "matern_spde"],
)
@pytest.mark.parametrize(
    ("shape", "error"),
    [
        ((2.5, 3), TypeError),  # used to become a 2 x 3 lattice of 6 nodes
        ((3.0, 3), TypeError),
        ((True, 3), TypeError),
        ((torch.tensor(2.5), 3), TypeError),
        ("33", TypeError),
        (3, TypeError),
        ((-2, 3), ValueError),
        ((0, 3), ValueError),
        ((3,), ValueError),
        ((2, 2, 2, 2), ValueError),
    ],
    ids=str,
)
def test_lattice_shapes_must_be_positive_ints(build, name, shape, error):
    with pytest.raises(error, match=rf"^{name} must"):
        build(shape)


@pytest.mark.parametrize("shape", [(2, 3), [2, 3], (np.int64(2), 3), torch.Size([2, 3]), (torch.tensor(2), 3)])
def test_integer_sizes_of_any_integer_type_are_accepted(shape):
    assert grid_laplacian(shape).shape == (6, 6)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: rw1(4.0), TypeError, "n must be an int, got float 4.0"),
        (lambda: rw1(4.5), TypeError, "n must be an int, got float 4.5"),
        (lambda: rw2(True), TypeError, "n must be an int, got a bool"),
        (lambda: ar1(3.5, 0.5), TypeError, "n must be an int, got float 3.5"),
        (lambda: ar1(1, 0.5), ValueError, r"n must be an int >= 2 \(ar1 needs two time points\), got 1"),
        (lambda: rw1(1), ValueError, r"n must be an int >= 2 \(an RW1 needs 2 points\), got 1"),
        (lambda: matern_spde((3, 3), 1.0, alpha=2.0), TypeError, "alpha must be an int, got float 2.0"),
        (lambda: matern_spde((3, 3), 1.0, alpha=True), TypeError, "alpha must be an int, got a bool"),
        (lambda: matern_spde((3, 3), 1.0, spacing=math.inf), ValueError, "spacing must be positive and finite"),
        (lambda: matern_spde((3, 3), 1.0, spacing=0.0), ValueError, "spacing must be positive and finite"),
        (lambda: matern_spde((3, 3), 1.0, spacing="1"), TypeError, "spacing must be a float, got str"),
        (lambda: grid_adjacency((3, 3), neighbours=4.5), TypeError, "neighbours must be an int, got float 4.5"),
        # a tau given by position lands on the flag: it used to make a cyclic walk with tau = 1
        (lambda: rw1(10, 2.0), TypeError, r"cyclic must be a bool, got float 2.0 \(give tau by keyword"),
        (lambda: rw2(10, 0.5), TypeError, r"cyclic must be a bool, got float 0.5 \(give tau by keyword"),
        (lambda: grid_laplacian((3, 3), cyclic=1), TypeError, "cyclic must be a bool, got int 1"),
        (lambda: adjacency_from_pairs([(0, 1)], n=2.5), TypeError, "n must be an int, got float 2.5"),
        (lambda: adjacency_from_pairs([], n=-1), ValueError, "n must be a non-negative int, got -1"),
        (lambda: icar(PATH, dtype=torch.int64), TypeError, "dtype must be torch.float32 or torch.float64"),
        (lambda: graph_laplacian(PATH, dtype=torch.float16), TypeError, "dtype must be torch.float32 or"),
        (lambda: grid_laplacian((2, 2), dtype=torch.int32), TypeError, "dtype must be torch.float32 or"),
        (lambda: rw1(4, dtype=torch.int64), TypeError, "dtype must be torch.float32 or torch.float64"),
    ],
)
def test_sizes_and_settings_are_checked_with_a_clear_message(build, error, message):
    with pytest.raises(error, match=f"^{message}"):
        build()


def test_flags_given_as_bools_still_work():
    torch.testing.assert_close(rw1(5, np.bool_(True), tau=2.0).to_dense(), rw1(5, cyclic=True, tau=2.0).to_dense())
    assert grid_laplacian((3, 3), cyclic=True).shape == (9, 9)


def test_numpy_integer_sizes_are_accepted():
    torch.testing.assert_close(rw1(np.int64(4)).to_dense(), rw1(4).to_dense())
    torch.testing.assert_close(ar1(np.int32(4), 0.5).to_dense(), ar1(4, 0.5).to_dense())
    torch.testing.assert_close(
        matern_spde((3, 3), 1.0, alpha=np.int64(2)).to_dense(), matern_spde((3, 3), 1.0).to_dense()
    )


# ---- empty edge lists -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pairs",
    [
        [],
        (),
        np.zeros((0, 2)),
        np.zeros((0, 2), dtype=np.int64),
        torch.zeros(0, 2),
        torch.zeros(0, 2, dtype=torch.long),
    ],
    ids=["list", "tuple", "float_array", "int_array", "float_tensor", "long_tensor"],
)
def test_an_empty_edge_list_gives_isolated_nodes(pairs):
    W = adjacency_from_pairs(pairs, n=3)
    assert W.layout == torch.sparse_csr and W.shape == (3, 3) and W.dtype == F64
    torch.testing.assert_close(W.to_dense(), torch.zeros(3, 3, dtype=F64))
    count, labels = connected_components(W)
    assert count == 3 and labels.tolist() == [0, 1, 2]
    torch.testing.assert_close(graph_laplacian(W).to_dense(), torch.zeros(3, 3, dtype=F64))


def test_an_empty_edge_list_without_n_is_the_empty_graph():
    W = adjacency_from_pairs([])
    assert W.shape == (0, 0)


def test_dtype_is_never_silently_ignored_or_mixed():
    from sparseprec.structures import ar1, car, icar, matern_spde, rw1

    W = adjacency_from_pairs([(0, 1), (1, 2)])
    rho32 = torch.tensor(0.5, dtype=torch.float32, requires_grad=True)
    # a given dtype converts tensor hyper-parameters, keeping them differentiable (it was silently ignored)
    Q = ar1(4, rho32, dtype=torch.float64)
    assert Q.dtype == torch.float64
    Q.values().sum().backward()
    assert rho32.grad is not None
    # without dtype, the tensors' own dtype; numbers give float64
    assert ar1(4, rho32.detach()).dtype == torch.float32
    assert ar1(4, 0.5).dtype == torch.float64
    assert icar(W, tau=torch.tensor(2.0, dtype=torch.float32)).dtype == torch.float32
    assert rw1(4, tau=torch.tensor(2.0, dtype=torch.float32), dtype=torch.float64).dtype == torch.float64
    # tensors of two dtypes and no dtype: an error, not whichever came first
    tau64 = torch.tensor(1.0, dtype=torch.float64)
    for build in (
        lambda: ar1(4, rho32, tau64),
        lambda: car(W, rho32, tau64),
        lambda: matern_spde((3, 3), rho32, tau64),
    ):
        with pytest.raises(TypeError, match="different dtypes"):
            build()
    assert car(W, rho32, tau64, dtype=torch.float32).dtype == torch.float32

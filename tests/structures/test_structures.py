"""Structured precision builders against dense constructions, known null spaces and closed forms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.autograd import gradcheck

from sparseprec import sparse_mm
from sparseprec.cholesky import diag_inverse, sparse_logdet
from sparseprec.structures import (
    adjacency_from_pairs,
    adjacency_from_scipy,
    ar1,
    bym2_scaling,
    bym2_scaling_per_node,
    car,
    connected_components,
    constrained_icar_variances,
    graph_laplacian,
    grid_adjacency,
    grid_laplacian,
    icar,
    matern_marginal_variance,
    matern_spde,
    rw1,
    rw2,
)

F64 = torch.float64


def _random_graph(n=12, p=0.3, seed=0, connected=True):
    rng = np.random.default_rng(seed)
    edges = [(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < p]
    if connected:
        edges += [(i, i + 1) for i in range(n - 1)]
    return edges


def _dense_adjacency(edges, n):
    W = torch.zeros(n, n, dtype=F64)
    for i, j in edges:
        W[i, j] = W[j, i] = 1.0
    return W


def _is_csr_symmetric(Q):
    D = Q.detach().to_dense()
    return Q.layout == torch.sparse_csr and torch.equal(D, D.T)


# ---- adjacency -------------------------------------------------------------------------------------------------------
def test_adjacency_from_pairs_and_scipy():
    edges = _random_graph()
    W = adjacency_from_pairs(edges + [(j, i) for i, j in edges[:3]])  # duplicates in both directions merge
    torch.testing.assert_close(W.to_dense(), _dense_adjacency(edges, 12))
    assert adjacency_from_pairs([(0, 1)], n=4).shape == (4, 4)
    again = adjacency_from_scipy(sp.csr_matrix(W.to_dense().numpy()))
    torch.testing.assert_close(again.to_dense(), W.to_dense())


@pytest.mark.parametrize(
    ("pairs", "n", "match"),
    [
        ([(0, 0)], None, "self-loops"),
        ([(0, -1)], None, "non-negative"),
        ([(0, 5)], 3, "refer to node 5 but n = 3"),
        ([0, 1, 2], None, r"shape \(m, 2\)"),
        ([(0.5, 1.0)], None, "integer node indices"),
    ],
)
def test_adjacency_from_pairs_errors(pairs, n, match):
    with pytest.raises(ValueError, match=match):
        adjacency_from_pairs(pairs, n)


def test_adjacency_validation_errors():
    with pytest.raises(ValueError, match="symmetric"):
        graph_laplacian(torch.tensor([[0.0, 1.0], [0.0, 0.0]]).to_sparse())
    with pytest.raises(ValueError, match="0/1 entries"):
        graph_laplacian(torch.tensor([[0.0, 2.0], [2.0, 0.0]]).to_sparse())
    with pytest.raises(ValueError, match="self-loops"):
        graph_laplacian(torch.eye(2).to_sparse())
    with pytest.raises(TypeError, match="adjacency must be a graph"):
        graph_laplacian({0: [1]})


def test_connected_components():
    count, labels = connected_components(adjacency_from_pairs([(0, 2), (3, 4)], n=6))
    assert count == 4
    assert labels.tolist() == [0, 1, 0, 2, 2, 3]


# ---- Laplacians ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "neighbours", "cyclic"),
    [((4, 5), 4, False), ((4, 5), 8, False), ((3, 4, 3), 6, False), ((3, 3, 4), 26, False), ((4, 5), 4, True)],
)
def test_grid_adjacency_matches_brute_force(shape, neighbours, cyclic):
    nodes = list(itertools.product(*(range(s) for s in shape)))
    index = {p: k for k, p in enumerate(nodes)}
    W = torch.zeros(len(nodes), len(nodes), dtype=F64)
    for p, q in itertools.product(nodes, nodes):
        delta = [q[a] - p[a] for a in range(len(shape))]
        if cyclic:
            delta = [(x + s // 2) % s - s // 2 for x, s in zip(delta, shape, strict=True)]
        ok = max(map(abs, delta)) == 1 if neighbours in (8, 26) else sum(map(abs, delta)) == 1
        if ok:
            W[index[p], index[q]] = 1.0
    torch.testing.assert_close(grid_adjacency(shape, neighbours, cyclic).to_dense(), W)
    L = grid_laplacian(shape, neighbours, cyclic)
    torch.testing.assert_close(L.to_dense(), torch.diag(W.sum(1)) - W)


def test_grid_errors():
    with pytest.raises(ValueError, match="neighbours must be 4 or 8"):
        grid_adjacency((3, 3), neighbours=6)
    with pytest.raises(ValueError, match="shape must be"):
        grid_adjacency((3,))
    with pytest.raises(ValueError, match="at least 3 points"):
        grid_adjacency((2, 5), cyclic=True)


def test_graph_laplacian_keeps_isolated_nodes_diagonal():
    L = graph_laplacian(adjacency_from_pairs([(0, 1)], n=3))
    assert L._nnz() == 5 and _is_csr_symmetric(L)
    torch.testing.assert_close(L.to_dense()[2], torch.zeros(3, dtype=F64))


# ---- CAR -------------------------------------------------------------------------------------------------------------
def test_icar_and_car_match_dense():
    edges = _random_graph()
    W = _dense_adjacency(edges, 12)
    D = torch.diag(W.sum(1))
    A = adjacency_from_pairs(edges)
    torch.testing.assert_close(icar(A, tau=2.5).detach().to_dense(), 2.5 * (D - W))
    Q = car(A, rho=0.7, tau=1.5)
    assert _is_csr_symmetric(Q)
    torch.testing.assert_close(Q.detach().to_dense(), 1.5 * (D - 0.7 * W))
    # the ICAR null space: constants
    torch.testing.assert_close(icar(A).detach().to_dense() @ torch.ones(12, dtype=F64), torch.zeros(12, dtype=F64))


def test_car_is_differentiable_in_rho_and_tau():
    edges = _random_graph(8, seed=1)
    A = adjacency_from_pairs(edges)
    W = _dense_adjacency(edges, 8)
    D = torch.diag(W.sum(1))
    x = torch.randn(8, dtype=F64)

    def ours(rho, tau):
        Q = car(A, rho, tau)
        return sparse_logdet(Q) - x @ sparse_mm(Q, x)

    rho = torch.tensor(0.6, dtype=F64, requires_grad=True)
    tau = torch.tensor(1.3, dtype=F64, requires_grad=True)
    assert gradcheck(ours, (rho, tau))
    ours(rho, tau).backward()
    rho_d, tau_d = (t.detach().clone().requires_grad_() for t in (rho, tau))
    Qd = tau_d * (D - rho_d * W)
    (torch.logdet(Qd) - x @ Qd @ x).backward()
    torch.testing.assert_close(rho.grad, rho_d.grad)
    torch.testing.assert_close(tau.grad, tau_d.grad)


def test_car_errors():
    A = adjacency_from_pairs([(0, 1), (1, 2)])
    with pytest.raises(ValueError, match=r"\|rho\| < 1"):
        car(A, 1.0)
    with pytest.raises(ValueError, match="tau must be positive"):
        car(A, 0.5, tau=0.0)
    with pytest.raises(ValueError, match="node 3 has none"):
        car(adjacency_from_pairs([(0, 1), (1, 2)], n=4), 0.5)
    with pytest.raises(ValueError, match=r"rho must satisfy \|rho\| < 1, got rho\[1\] = 1.0"):
        car(A, torch.tensor([0.5, 1.0]))  # batched rho: checked entry by entry


# ---- temporal --------------------------------------------------------------------------------------------------------
def _difference(n, order, cyclic):
    D = torch.zeros(n if cyclic else n - order, n, dtype=F64)
    stencil = [-1.0, 1.0] if order == 1 else [1.0, -2.0, 1.0]
    for i in range(D.shape[0]):
        for k, c in enumerate(stencil):
            D[i, (i + k) % n] += c
    return D


@pytest.mark.parametrize("cyclic", [False, True])
@pytest.mark.parametrize("order", [1, 2])
def test_random_walks_match_dense_and_have_the_right_null_space(order, cyclic):
    n = 9
    Q = (rw1 if order == 1 else rw2)(n, cyclic=cyclic, tau=2.0).detach()
    assert _is_csr_symmetric(Q)
    Delta = _difference(n, order, cyclic)
    torch.testing.assert_close(Q.to_dense(), 2.0 * Delta.T @ Delta)
    dense = Q.to_dense()
    one = torch.ones(n, dtype=F64)
    t = torch.arange(1, n + 1, dtype=F64)
    torch.testing.assert_close(dense @ one, torch.zeros(n, dtype=F64), atol=1e-12, rtol=0)
    expected_rank = n - 1 if (order == 1 or cyclic) else n - 2
    assert torch.linalg.matrix_rank(dense) == expected_rank
    if order == 2 and not cyclic:
        torch.testing.assert_close(dense @ t, torch.zeros(n, dtype=F64), atol=1e-12, rtol=0)


def test_ar1_covariance_is_rho_to_the_lag():
    n, rho, tau = 7, 0.6, 2.0
    Q = ar1(n, rho, tau).detach().to_dense()
    lags = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs()
    torch.testing.assert_close(torch.linalg.inv(Q), rho ** lags.to(F64) / (tau * (1 - rho**2)))


def test_ar1_gradients_and_errors():
    x = torch.randn(6, dtype=F64)
    rho = torch.tensor(-0.4, dtype=F64, requires_grad=True)
    tau = torch.tensor(0.8, dtype=F64, requires_grad=True)
    assert gradcheck(lambda r, t: sparse_logdet(ar1(6, r, t)) - x @ sparse_mm(ar1(6, r, t), x), (rho, tau))
    with pytest.raises(ValueError, match=r"\|rho\| < 1"):
        ar1(5, -1.0)
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        ar1(1, 0.5)
    with pytest.raises(ValueError, match=r"an RW2 needs 3 points"):
        rw2(2)


# ---- Matérn SPDE -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1, 2, 3])
@pytest.mark.parametrize("shape", [(5, 4), (3, 3, 4)])
def test_matern_spde_matches_the_dense_recursion(alpha, shape):
    kappa, tau, h = 0.7, 1.3, 0.5
    d = len(shape)
    n = math.prod(shape)
    C = h**d * torch.eye(n, dtype=F64)
    G = h ** (d - 2) * grid_laplacian(shape).to_dense()
    K = kappa**2 * C + G
    Cinv = torch.linalg.inv(C)
    Q = K
    if alpha >= 2:
        Q = K @ Cinv @ K if alpha == 2 else K @ Cinv @ K @ Cinv @ K
    Q = tau**2 * Q
    ours = matern_spde(shape, kappa, tau, alpha=alpha, spacing=h).detach()
    assert _is_csr_symmetric(ours)
    torch.testing.assert_close(ours.to_dense(), Q)


def test_matern_spde_gradients_in_kappa_and_tau():
    x = torch.randn(20, dtype=F64)
    kappa = torch.tensor(0.8, dtype=F64, requires_grad=True)
    tau = torch.tensor(1.2, dtype=F64, requires_grad=True)

    def f(kappa, tau):
        Q = matern_spde((5, 4), kappa, tau)
        return sparse_logdet(Q) - x @ sparse_mm(Q, x)

    assert gradcheck(f, (kappa, tau))


def test_matern_interior_variance_is_close_to_the_continuous_formula():
    s, kappa = 60, 0.5
    variance = diag_inverse(matern_spde((s, s), kappa, 1.0).detach()).reshape(s, s)[s // 2, s // 2]
    # lattice discretisation with h = 1 and range sqrt(8)/kappa ~ 5.7 nodes: within 10 %
    assert abs(float(variance) / matern_marginal_variance(kappa, 1.0) - 1) < 0.1


def test_matern_errors():
    with pytest.raises(ValueError, match="alpha must be 1, 2, 3 or 4"):
        matern_spde((3, 3), 1.0, alpha=5)
    with pytest.raises(ValueError, match="kappa must be positive"):
        matern_spde((3, 3), -1.0)


# ---- BYM2 scaling ----------------------------------------------------------------------------------------------------
def test_constrained_variances_and_bym2_scaling_match_the_pseudo_inverse():
    edges = _random_graph(15, 0.2, seed=3)
    W = _dense_adjacency(edges, 15)
    pinv = torch.linalg.pinv(torch.diag(W.sum(1)) - W)  # covariance under the sum-to-zero constraint
    A = adjacency_from_pairs(edges)
    torch.testing.assert_close(constrained_icar_variances(A), pinv.diagonal())
    assert bym2_scaling(A) == pytest.approx(math.exp(pinv.diagonal().log().mean().item()), rel=1e-12)


def test_bym2_scaling_per_component():
    edges = [(0, 1), (1, 2), (3, 4)]  # components {0,1,2}, {3,4}, and the island {5}
    A = adjacency_from_pairs(edges, n=6)
    with pytest.raises(ValueError, match="3 connected components"):
        bym2_scaling(A)
    factors = bym2_scaling_per_node(A)
    for nodes in ([0, 1, 2], [3, 4]):
        sub = _dense_adjacency([(i - nodes[0], j - nodes[0]) for i, j in edges if i in nodes], len(nodes))
        pinv = torch.linalg.pinv(torch.diag(sub.sum(1)) - sub)
        expected = math.exp(pinv.diagonal().log().mean().item())
        torch.testing.assert_close(factors[nodes], torch.full((len(nodes),), expected, dtype=F64))
    assert factors[5] == 1.0
    assert constrained_icar_variances(A)[5] == 0.0  # an isolated node constrained to zero in its own component

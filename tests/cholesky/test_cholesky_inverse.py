"""Selected inverse, marginal variances and sparse_logdet (value and gradient) against dense torch."""

from __future__ import annotations

import pytest
import torch

import sparseprec
from sparseprec.cholesky import available_backends, cholesky, diag_inverse, selected_inverse, sparse_logdet
from tests.cholesky.test_cholesky_factor import problems, stored
from tests.conftest import dense_grad_at_pattern, rebuild, sparse_from_dense, stored_values
from tests.solvers.test_gradients import symmetric_values

BACKENDS = list(available_backends())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["grid", "graph", "banded"])
def test_selected_inverse_and_diagonal_match_dense_inverse(backend, name):
    Qd = problems()[name]
    factor = cholesky(Qd.to_sparse_csr(), backend=backend)
    inverse = torch.linalg.inv(Qd)
    S = selected_inverse(factor)
    assert S.layout == torch.sparse_csr
    dense = S.to_dense()
    on = dense != 0
    # the pattern contains Q's and is symmetric; the values are Q⁻¹'s
    assert bool(on[Qd != 0].all()) and torch.equal(on, on.T)
    torch.testing.assert_close(dense[on], inverse[on], rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(diag_inverse(factor), inverse.diagonal(), rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(diag_inverse(Qd.to_sparse_csr(), backend=backend), inverse.diagonal())


def test_large_grid_marginal_variances_are_exact():
    # n = 10 000 grid: compare a few variances with direct solves Q x = e_i
    from tests.solvers.problems import grid_laplacian

    Q = grid_laplacian(100, shift=0.1)
    d = diag_inverse(Q)
    factor = cholesky(Q)
    for i in (0, 4321, 9999):
        e = torch.zeros(10_000, dtype=torch.float64)
        e[i] = 1.0
        torch.testing.assert_close(d[i], factor.solve(e)[i], rtol=1e-10, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("triangle", ["full", "lower", "upper"])
@pytest.mark.parametrize("layout", ["coo", "csr", "csr32", "coo_uncoalesced"])
def test_logdet_value_and_gradient_match_dense(backend, triangle, layout):
    Qd = problems()["graph"]
    Q = sparse_from_dense(Qd, stored(Qd, triangle), layout).requires_grad_()
    value = sparse_logdet(Q, backend=backend, triangle=triangle)
    torch.testing.assert_close(value, torch.logdet(Qd))
    (3.0 * value).backward()
    inverse = torch.linalg.inv(Qd)
    expected = inverse if triangle == "full" else 2.0 * inverse - torch.diag(inverse.diagonal())
    assert Q.grad.layout == Q.layout
    torch.testing.assert_close(stored_values(Q.grad), 3.0 * dense_grad_at_pattern(expected, Q.grad))


@pytest.mark.parametrize("backend", BACKENDS)
def test_logdet_gradcheck(backend):
    Qd = problems()["grid"][:40, :40]
    Q = Qd.to_sparse_csr()
    theta, spread = symmetric_values(Q)
    theta.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: sparse_logdet(rebuild(Q, t[spread]), backend=backend), (theta,))
    lower = sparse_from_dense(Qd, stored(Qd, "lower"), "coo")
    values = stored_values(lower).clone().requires_grad_()
    f = lambda v: sparse_logdet(rebuild(lower, v), backend=backend, triangle="lower")  # noqa: E731
    assert torch.autograd.gradcheck(f, (values,))


def test_logdet_of_a_gmrf_precision_trains():
    # maximum likelihood for τ in Q = τ R (R fixed SPD): d/dτ [½ log det(τR) − ½ τ xᵀRx] = 0 at τ = n / xᵀRx
    from tests.solvers.problems import grid_laplacian

    R = grid_laplacian(20, shift=0.5)
    x = torch.randn(400, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    log_tau = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_tau], max_iter=50, line_search_fn="strong_wolfe")
    quad = float(x @ (R @ x))

    def closure():
        optimiser.zero_grad()
        Q = sparseprec.sparse_csr_tensor(R.crow_indices(), R.col_indices(), R.values() * log_tau.exp(), R.shape)
        loss = -(0.5 * sparse_logdet(Q) - 0.5 * log_tau.exp() * quad)
        loss.backward()
        return loss

    optimiser.step(closure)
    torch.testing.assert_close(log_tau.exp().detach(), torch.tensor(400 / quad, dtype=torch.float64), rtol=1e-6, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stored_zeros_and_exact_cancellation_keep_the_symbolic_fill_pattern(backend):
    # (a) stored zeros: a tridiagonal pattern whose off-diagonal values are 0 (a CAR with rho = 0, a guide's factor at
    # initialisation); (b) exact cancellation: Q = [[1, 1, 1], [1, 2, 1], [1, 1, 2]] has L_32 = (1 − 1·1)/1 = 0 in
    # the natural ordering although Q_32 is stored. The selected inverse and log det's gradient must still be read
    # at every stored entry (SuperLU drops exact zeros from L: the SciPy backend must put them back).
    n = 6
    tridiagonal = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs() <= 1
    cancelling = torch.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 2.0]], dtype=torch.float64)
    cases = [
        (sparse_from_dense(2.0 * torch.eye(n, dtype=torch.float64), tridiagonal, "csr"), None),
        (sparse_from_dense(cancelling, cancelling != 0, "csr"), "natural"),
    ]
    for Q, ordering in cases:
        inverse = torch.linalg.inv(Q.to_dense())
        at_stored = dense_grad_at_pattern(inverse, Q)  # (Q⁻¹)_ij at Q's stored entries, in Q's order
        factor = cholesky(Q, backend=backend, ordering=ordering)
        torch.testing.assert_close(diag_inverse(factor), inverse.diagonal())
        torch.testing.assert_close(dense_grad_at_pattern(selected_inverse(factor).to_dense(), Q), at_stored)
        values = stored_values(Q).clone().requires_grad_()
        sparse_logdet(rebuild(Q, values), backend=backend, ordering=ordering).backward()
        torch.testing.assert_close(values.grad, at_stored)

"""Batched hyper-parameters (issue 16): every builder takes hyper-parameters of any batch shape, broadcast together, and
returns one CSR tensor ``(*batch_shape, n, n)`` on the shared pattern, equal to the stack of the scalar builds and
differentiable in the same way; 0-D hyper-parameters still give ``(n, n)``."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch.autograd import gradcheck

import sparseprec
from sparseprec.structures import (
    adjacency_from_pairs,
    ar1,
    car,
    icar,
    matern_marginal_variance,
    matern_spde,
    rw1,
    rw2,
)

F64 = torch.float64
GRAPH = adjacency_from_pairs([(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (3, 4)])  # 5 nodes, no island
# where each kind of hyper-parameter is drawn from: strictly inside its valid range
RANGES = {"rho": (-0.9, 0.9), "tau": (0.5, 2.0), "kappa": (0.3, 1.5)}


@dataclass(frozen=True)
class Case:
    """A builder as a function of its hyper-parameters (by keyword) and the names of those hyper-parameters."""

    build: Callable[..., torch.Tensor]
    parameters: tuple[str, ...]


CASES = {
    "ar1": Case(lambda rho, tau: ar1(5, rho, tau), ("rho", "tau")),
    "car": Case(lambda rho, tau: car(GRAPH, rho, tau), ("rho", "tau")),
    "icar": Case(lambda tau: icar(GRAPH, tau), ("tau",)),
    "rw1": Case(lambda tau: rw1(5, tau=tau), ("tau",)),
    "rw1_cyclic": Case(lambda tau: rw1(5, cyclic=True, tau=tau), ("tau",)),
    "rw2": Case(lambda tau: rw2(6, tau=tau), ("tau",)),
    "rw2_cyclic": Case(lambda tau: rw2(6, cyclic=True, tau=tau), ("tau",)),
    "matern": Case(lambda kappa, tau: matern_spde((3, 3), kappa, tau), ("kappa", "tau")),
    "matern_alpha3_spacing": Case(
        lambda kappa, tau: matern_spde((2, 3), kappa, tau, alpha=3, spacing=0.5), ("kappa", "tau")
    ),
    "matern_3d": Case(lambda kappa, tau: matern_spde((2, 2, 2), kappa, tau, alpha=1), ("kappa", "tau")),
}
TWO_PARAMETERS = [name for name, case in CASES.items() if len(case.parameters) == 2]
SHAPES = [(4,), (2, 3)]


def _draw(name: str, shape: tuple[int, ...], seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    low, high = RANGES[name]
    generator = torch.Generator().manual_seed(seed)
    return (low + (high - low) * torch.rand(shape, generator=generator, dtype=F64)).to(dtype)


def _parameters(case: Case, shape: tuple[int, ...], dtype: torch.dtype = F64) -> dict[str, torch.Tensor]:
    return {name: _draw(name, shape, seed=k, dtype=dtype) for k, name in enumerate(case.parameters)}


def _scalar_build(case: Case, parameters: dict[str, torch.Tensor], index: tuple[int, ...]) -> torch.Tensor:
    """The unbatched build with every (broadcast) hyper-parameter read at ``index``."""
    shape = torch.broadcast_shapes(*(p.shape for p in parameters.values()))
    return case.build(**{name: p.expand(shape)[index] for name, p in parameters.items()})


def _indices(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    return [
        tuple(int(i) for i in index)
        for index in torch.cartesian_prod(*(torch.arange(s) for s in shape)).reshape(-1, len(shape))
    ]


def _flat(Q: torch.Tensor) -> torch.Tensor:
    """A batched CSR ``(*batch, n, n)`` as ``(B, n, n)`` for the ops, differentiably (through ``.values()``)."""
    n = Q.shape[-1]
    nnz = Q.col_indices().shape[-1]
    B = math.prod(Q.shape[:-2])
    crow, col = Q.crow_indices().reshape(B, n + 1), Q.col_indices().reshape(B, nnz)
    return sparseprec.sparse_csr_tensor(crow, col, Q.values().reshape(B, nnz), (B, n, n))


# ---- values ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_batched_build_is_the_stack_of_scalar_builds(name, shape):
    case = CASES[name]
    parameters = _parameters(case, shape)
    Q = case.build(**parameters)
    single = case.build(**{k: p.reshape(-1)[0] for k, p in parameters.items()})
    n, nnz = single.shape[-1], single.col_indices().numel()
    assert Q.layout == torch.sparse_csr and Q.shape == (*shape, n, n) and Q.dtype == F64
    assert Q.values().shape == (*shape, nnz)
    # one shared pattern, expanded over the batch without a copy
    assert Q.crow_indices().shape == (*shape, n + 1) and Q.crow_indices().stride()[: len(shape)] == (0,) * len(shape)
    assert Q.col_indices().stride()[: len(shape)] == (0,) * len(shape)
    torch.testing.assert_close(Q.col_indices().reshape(-1, nnz)[-1], single.col_indices())
    expected = torch.stack([_scalar_build(case, parameters, i).to_dense() for i in _indices(shape)])
    torch.testing.assert_close(Q.to_dense(), expected.reshape(*shape, n, n), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", TWO_PARAMETERS)
@pytest.mark.parametrize(
    ("first", "second", "batch"),
    [((4,), (1,), (4,)), ((4,), (3, 1), (3, 4)), ((4,), (), (4,)), ((), (2, 1), (2, 1)), ((1, 4), (3, 1), (3, 4))],
    ids=str,
)
def test_hyper_parameters_broadcast_together(name, first, second, batch):
    case = CASES[name]
    a, b = case.parameters
    parameters = {a: _draw(a, first, seed=1), b: _draw(b, second, seed=2)}
    Q = case.build(**parameters)
    n = Q.shape[-1]
    assert Q.shape == (*batch, n, n)
    expected = torch.stack([_scalar_build(case, parameters, i).to_dense() for i in _indices(batch)])
    torch.testing.assert_close(Q.to_dense(), expected.reshape(*batch, n, n), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_0d_hyper_parameters_still_give_the_unbatched_matrix(name):
    case = CASES[name]
    numbers = {k: float(p) for k, p in _parameters(case, ()).items()}
    tensors = {k: torch.tensor(v, dtype=F64) for k, v in numbers.items()}
    for Q in (case.build(**numbers), case.build(**tensors)):
        assert Q.dim() == 2 and Q.crow_indices().dim() == 1 and Q.values().dim() == 1
    torch.testing.assert_close(case.build(**tensors).to_dense(), case.build(**numbers).to_dense())


@pytest.mark.parametrize("name", ["ar1", "icar", "matern"])
def test_batched_float32_stays_float32(name):
    case = CASES[name]
    Q = case.build(**_parameters(case, (2, 3), dtype=torch.float32))
    assert Q.dtype == torch.float32 and Q.values().dtype == torch.float32


def test_an_empty_batch_is_an_empty_batch_of_matrices():
    assert ar1(4, torch.zeros(0, dtype=F64)).shape == (0, 4, 4)
    assert icar(GRAPH, torch.ones(2, 0, dtype=F64)).to_dense().shape == (2, 0, 5, 5)


# ---- gradients ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_gradients_match_the_scalar_builds(name, shape):
    # L = Σ_b x_bᵀ Q_b x_b through the ops on the (B, n, n) view; each element's gradient is its scalar build's
    case = CASES[name]
    parameters = {k: p.requires_grad_() for k, p in _parameters(case, shape).items()}
    Q = case.build(**parameters)
    n, B = Q.shape[-1], math.prod(shape)
    x = torch.randn(B, n, 1, generator=torch.Generator().manual_seed(7), dtype=F64)
    (x * sparseprec.sparse_mm(_flat(Q), x)).sum().backward()
    for b, index in enumerate(_indices(shape)):
        scalars = {k: p.detach()[index].clone().requires_grad_() for k, p in parameters.items()}
        (x[b] * sparseprec.sparse_mm(case.build(**scalars), x[b])).sum().backward()
        for k in parameters:
            torch.testing.assert_close(parameters[k].grad[index], scalars[k].grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_through_values_of_a_two_dimensional_batch(name):
    case = CASES[name]
    parameters = {k: p.requires_grad_() for k, p in _parameters(case, (2, 3)).items()}
    Q = case.build(**parameters)
    weights = torch.randn(Q.values().shape, generator=torch.Generator().manual_seed(3), dtype=F64)
    (weights * Q.values()).sum().backward()
    for index in _indices((2, 3)):
        scalars = {k: p.detach()[index].clone().requires_grad_() for k, p in parameters.items()}
        (weights[index] * case.build(**scalars).values()).sum().backward()
        for k in parameters:
            torch.testing.assert_close(parameters[k].grad[index], scalars[k].grad, rtol=1e-10, atol=1e-12)


def test_a_broadcast_parameter_gets_the_sum_of_its_gradients():
    rho = _draw("rho", (4,), seed=1).requires_grad_()
    tau = _draw("tau", (3, 1), seed=2).requires_grad_()
    ar1(5, rho, tau).values().sum().backward()
    rho_d, tau_d = (t.detach().clone().requires_grad_() for t in (rho, tau))
    ar1(5, rho_d.expand(3, 4).clone(), tau_d.expand(3, 4).clone()).values().sum().backward()
    torch.testing.assert_close(rho.grad, rho_d.grad)
    torch.testing.assert_close(tau.grad, tau_d.grad)


@pytest.mark.parametrize("shape", [(2,), (2, 2)], ids=str)
@pytest.mark.parametrize("name", ["ar1", "car", "rw2", "matern"])
def test_gradcheck_values(name, shape):
    case = CASES[name]
    parameters = {k: p.requires_grad_() for k, p in _parameters(case, shape).items()}
    keys = list(parameters)
    nnz = case.build(**{k: p.detach().reshape(-1)[0] for k, p in parameters.items()}).values().numel()
    weights = torch.randn(nnz, 3, generator=torch.Generator().manual_seed(4), dtype=F64)  # 3 random projections

    def projected_values(*p):
        return case.build(**dict(zip(keys, p, strict=True))).values() @ weights

    assert gradcheck(projected_values, tuple(parameters.values()))


@pytest.mark.parametrize("name", ["ar1", "car", "icar", "matern"])
def test_gradcheck_quadratic_form_through_the_ops(name):
    case = CASES[name]
    parameters = {k: p.requires_grad_() for k, p in _parameters(case, (3,)).items()}
    keys = list(parameters)
    n = case.build(**{k: p.detach()[0] for k, p in parameters.items()}).shape[-1]
    x = torch.randn(3, n, 2, generator=torch.Generator().manual_seed(5), dtype=F64)

    def quadratic(*p):
        return (x * sparseprec.sparse_mm(case.build(**dict(zip(keys, p, strict=True))), x)).sum(dim=(-2, -1))

    assert gradcheck(quadratic, tuple(parameters.values()))


def test_a_dense_incoming_gradient_is_read_at_the_stored_entries():
    rho = _draw("rho", (2, 3), seed=1).requires_grad_()
    Q = ar1(4, rho)
    G = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(2), dtype=F64)
    torch.autograd.backward(Q, G)
    rho_d = rho.detach().clone().requires_grad_()
    tau = torch.ones((), dtype=F64)
    dense = tau * (
        torch.diag_embed(torch.stack([torch.ones_like(rho_d), 1 + rho_d**2, 1 + rho_d**2, torch.ones_like(rho_d)], -1))
        - torch.diag_embed(rho_d.unsqueeze(-1).expand(2, 3, 3), offset=1)
        - torch.diag_embed(rho_d.unsqueeze(-1).expand(2, 3, 3), offset=-1)
    )
    torch.testing.assert_close(dense, Q.detach().to_dense())
    (dense * G).sum().backward()
    torch.testing.assert_close(rho.grad, rho_d.grad)


def test_a_sparse_incoming_gradient_on_another_pattern_is_read_at_the_stored_entries():
    rho = _draw("rho", (2, 3), seed=1).requires_grad_()
    G = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(2), dtype=F64)
    G[..., 0, 1] = 0.0  # a stored entry of Q that the gradient does not hold
    G[1, 2, 2, 3] = 0.0
    from_sparse = torch.autograd.grad(ar1(4, rho), rho, G.to_sparse_coo())[0]
    from_dense = torch.autograd.grad(ar1(4, rho), rho, G)[0]
    torch.testing.assert_close(from_sparse, from_dense)
    empty = torch.autograd.grad(ar1(4, rho), rho, torch.zeros(2, 3, 4, 4, dtype=F64).to_sparse_coo())[0]
    torch.testing.assert_close(empty, torch.zeros_like(rho))


def test_matern_marginal_variance_broadcasts():
    kappa, tau = _draw("kappa", (4,), seed=1), _draw("tau", (3, 1), seed=2)
    variance = matern_marginal_variance(kappa, tau)
    assert variance.shape == (3, 4)
    torch.testing.assert_close(variance, 1 / (4 * math.pi * kappa**2 * tau**2))


# ---- errors ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("bad", [-1.0, 0.0, math.nan, math.inf], ids=str)
def test_a_bad_entry_is_named_with_its_index(name, bad):
    case = CASES[name]
    for target in case.parameters:
        if target == "rho" and bad == 0.0:
            continue  # a valid correlation
        parameters = _parameters(case, (2, 3))
        parameters[target][1, 2] = 1.5 if (target == "rho" and bad == -1.0) else bad
        shown = "1.5" if (target == "rho" and bad == -1.0) else str(bad)
        requirement = r"satisfy \|rho\| < 1" if target == "rho" else "be positive and finite"
        with pytest.raises(ValueError, match=rf"^{target} must {requirement}, got {target}\[1, 2\] = {shown}$"):
            case.build(**parameters)


def test_the_first_offending_index_is_named():
    tau = torch.tensor([1.0, -2.0, 1.0, -3.0], dtype=F64)
    with pytest.raises(ValueError, match=r"tau must be positive and finite, got tau\[1\] = -2.0"):
        rw1(5, tau=tau)
    with pytest.raises(ValueError, match=r"rho must satisfy \|rho\| < 1, got rho\[0\] = -1.0"):
        car(GRAPH, torch.tensor([-1.0, 0.5]), torch.tensor([1.0, 1.0]))


def test_a_bad_broadcast_parameter_is_named_on_its_own_shape():
    # tau (1,) broadcasts against rho (4,): the message indexes tau itself, not the broadcast batch
    with pytest.raises(ValueError, match=r"tau must be positive and finite, got tau\[0\] = -1.0"):
        ar1(5, _draw("rho", (4,), seed=1), torch.tensor([-1.0], dtype=F64))
    with pytest.raises(ValueError, match=r"tau must be positive and finite, got -1.0$"):
        ar1(5, _draw("rho", (4,), seed=1), -1.0)


@pytest.mark.parametrize("name", TWO_PARAMETERS)
def test_shapes_that_do_not_broadcast_are_refused(name):
    case = CASES[name]
    a, b = case.parameters
    with pytest.raises(ValueError, match=rf"shapes do not broadcast together \({a} \(4,\), {b} \(3,\)\)"):
        case.build(**{a: _draw(a, (4,), seed=1), b: _draw(b, (3,), seed=2)})


def test_batched_parameters_keep_the_dtype_and_device_rules():
    rho32 = _draw("rho", (3,), seed=1, dtype=torch.float32)
    with pytest.raises(TypeError, match="different dtypes"):
        ar1(4, rho32, torch.ones(3, dtype=F64))
    assert ar1(4, rho32, torch.ones(3, dtype=F64), dtype=F64).dtype == F64
    with pytest.raises(TypeError, match="rho must be a float or a real floating tensor, got a torch.bool tensor"):
        ar1(4, torch.tensor([True, False]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["ar1", "car", "matern"])
def test_batched_builds_on_cuda_match_the_cpu(name):
    case = CASES[name]
    parameters = _parameters(case, (2, 3))
    on_cuda = {k: p.cuda().requires_grad_() for k, p in parameters.items()}
    Q = case.build(**on_cuda)
    assert Q.device.type == "cuda" and Q.crow_indices().device.type == "cuda"
    torch.testing.assert_close(Q.to_dense().cpu(), case.build(**parameters).to_dense())
    Q.values().sum().backward()
    on_cpu = {k: p.clone().requires_grad_() for k, p in parameters.items()}
    case.build(**on_cpu).values().sum().backward()
    for k in parameters:
        torch.testing.assert_close(on_cuda[k].grad.cpu(), on_cpu[k].grad)

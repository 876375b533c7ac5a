"""SparseCholeskyVariationalDistribution's state dict: ``factor_values`` are positions on a sparsity pattern, so the
pattern (and the parameterisation) travel with them. The contract:

- a state dict loaded into a distribution with the same pattern, size and parameterisation gives back exactly the
  saved distribution (values, dense covariance), also through ``torch.save``/``torch.load(weights_only=True)`` and
  inside a GPyTorch model;
- another pattern of the same size (same number of stored entries), another size, or another parameterisation is
  refused: ``load_state_dict`` raises ``RuntimeError`` naming what differs, with ``strict=True`` and ``strict=False``,
  and the target keeps its own values;
- a state dict with ``factor_values`` but without the pattern (saved before it was stored) is refused as well (its
  pattern is unknown), and loads once the target's pattern is added to it explicitly.
"""

from __future__ import annotations

import io

import gpytorch
import pytest
import torch

from sparseprec.gpytorch import SparseCholeskyVariationalDistribution

M = 6


def _band(offset: int, m: int = M) -> torch.Tensor:
    """``(i + offset, i)`` for every ``i``: ``m - offset`` strictly-lower entries."""
    return torch.stack([torch.arange(offset, m), torch.arange(m - offset)])


def _random(q: SparseCholeskyVariationalDistribution, seed: int) -> SparseCholeskyVariationalDistribution:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        q.factor_values.copy_(0.3 * torch.randn(q.factor_values.shape, generator=g, dtype=q.factor_values.dtype))
        diagonal = q._diagonal_positions
        shape = q.factor_values[..., diagonal].shape
        q.factor_values[..., diagonal] = 0.5 + torch.rand(shape, generator=g, dtype=q.factor_values.dtype)
        q.variational_mean.copy_(torch.randn(q.variational_mean.shape, generator=g, dtype=q.variational_mean.dtype))
    return q


def _dense_factor(q: SparseCholeskyVariationalDistribution) -> torch.Tensor:
    rows, cols = q.factor_pattern
    L = torch.zeros(*q.factor_values.shape[:-1], M, M, dtype=q.factor_values.dtype)
    L[..., rows, cols] = q.factor_values.detach()
    return L


def _dense_covariance(q: SparseCholeskyVariationalDistribution) -> torch.Tensor:
    """``S`` from the dense factor (the reference): ``(L Lᵀ)⁻¹`` or ``L Lᵀ``."""
    L = _dense_factor(q)
    LLt = L @ L.mT
    return torch.linalg.inv(LLt) if q.parameterization == "precision" else LLt


def _make(pattern=None, *, m=M, parameterization="precision", batch_shape=torch.Size([]), seed=None):  # noqa: B008
    q = SparseCholeskyVariationalDistribution(m, pattern=pattern, batch_shape=batch_shape,
                                              parameterization=parameterization).double()  # fmt: skip
    return q if seed is None else _random(q, seed)


def _snapshot(q):
    return {
        name: tensor.detach().clone() for name, tensor in q.state_dict().items() if isinstance(tensor, torch.Tensor)
    }


def _unchanged(q, before) -> bool:
    return all(torch.equal(tensor, before[name]) for name, tensor in _snapshot(q).items())


# ---------------------------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("parameterization", ["precision", "scale"])
@pytest.mark.parametrize("batch_shape", [torch.Size([]), torch.Size([2])], ids=["unbatched", "batched"])
@pytest.mark.parametrize("pattern", [None, _band(1), torch.stack(list(torch.tril_indices(M, M, -1)))],
                         ids=["mean_field", "band", "full"])  # fmt: skip
def test_same_pattern_round_trips_exactly(parameterization, batch_shape, pattern):
    saved = _make(pattern, parameterization=parameterization, batch_shape=batch_shape, seed=0)
    target = _make(pattern, parameterization=parameterization, batch_shape=batch_shape, seed=1)
    state = saved.state_dict()
    assert torch.equal(state["factor_pattern"], saved.factor_pattern)
    assert state["_extra_state"] == {"parameterization": parameterization}
    target.load_state_dict(state)
    assert torch.equal(target.factor_values, saved.factor_values)
    assert torch.equal(target.variational_mean, saved.variational_mean)
    assert torch.equal(target.factor_pattern, saved.factor_pattern)
    torch.testing.assert_close(target().covariance_matrix.detach(), _dense_covariance(saved), rtol=1e-10, atol=1e-10)


def test_round_trip_through_torch_save_with_weights_only():
    saved = _make(_band(2), seed=0)
    buffer = io.BytesIO()
    torch.save(saved.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    target = _make(_band(2), seed=1)
    target.load_state_dict(state)
    assert torch.equal(target.factor_values, saved.factor_values)
    torch.testing.assert_close(target().covariance_matrix.detach(), _dense_covariance(saved), rtol=1e-10, atol=1e-10)


def test_the_pattern_does_not_depend_on_how_it_was_given():
    # a sparse tensor, the upper mirror and the lower index all name the same pattern: loading between them is fine
    lower = _band(1)
    sparse = torch.sparse_coo_tensor(lower, torch.ones(lower.shape[1]), (M, M))
    saved = _make(lower.flip(0), seed=0)  # the upper mirror
    target = _make(sparse, seed=1)
    target.load_state_dict(saved.state_dict())
    assert torch.equal(target.factor_values, saved.factor_values)


def test_the_pattern_buffer_keeps_its_integer_dtype_under_module_casts():
    q = SparseCholeskyVariationalDistribution(M, pattern=_band(1))
    pattern = q.factor_pattern.clone()
    q = q.double()
    assert q.factor_pattern.dtype == torch.int64
    assert torch.equal(q.factor_pattern, pattern)


# ------------------------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("strict", [True, False])
def test_another_pattern_of_the_same_size_is_refused(strict):
    saved = _make(_band(1), seed=0)
    target = _make(_band(2), seed=1)
    target_padded = _make(torch.cat([_band(2), torch.tensor([[5], [0]])], dim=1), seed=1)  # same nnz as saved
    assert target_padded.factor_values.shape == saved.factor_values.shape
    # the bug this guards against: the same values on the other pattern are another covariance
    with torch.no_grad():
        target_padded.factor_values.copy_(saved.factor_values)
    assert not torch.allclose(_dense_covariance(target_padded), _dense_covariance(saved))
    for q in (target, target_padded):
        before = _snapshot(q)
        with pytest.raises(RuntimeError, match="factor_pattern.*must be this distribution's pattern"):
            q.load_state_dict(saved.state_dict(), strict=strict)
        assert _unchanged(q, before)  # nothing of the mismatched distribution was loaded


def test_the_refusal_names_the_first_differing_entry():
    saved = _make(_band(1), seed=0)
    target = _make(torch.cat([_band(2), torch.tensor([[5], [0]])], dim=1), seed=1)
    # both in row-major order: (0,0) (1,0) (1,1) ... for the band, (0,0) (1,1) (2,0) ... for the other
    with pytest.raises(RuntimeError, match=r"entry 1 of L must be at \(1, 1\), got \(1, 0\)"):
        target.load_state_dict(saved.state_dict())


@pytest.mark.parametrize("strict", [True, False])
def test_another_size_is_refused(strict):
    saved = _make(_band(1), seed=0)
    for target in (_make(_band(1, m=M + 1), m=M + 1, seed=1), _make(_band(2), seed=1), _make(None, seed=1)):
        before = _snapshot(target)
        with pytest.raises(RuntimeError, match=r"factor_pattern.*must be this distribution's pattern, of shape \(2, "):
            target.load_state_dict(saved.state_dict(), strict=strict)
        assert _unchanged(target, before)


@pytest.mark.parametrize("strict", [True, False])
def test_another_parameterization_is_refused(strict):
    saved = _make(_band(1), parameterization="scale", seed=0)
    target = _make(_band(1), parameterization="precision", seed=1)
    before = _snapshot(target)
    with pytest.raises(RuntimeError, match="parameterization must be 'precision'.*got 'scale'"):
        target.load_state_dict(saved.state_dict(), strict=strict)
    assert _unchanged(target, before)


def test_set_extra_state_refuses_another_parameterization():
    q = _make(_band(1))
    with pytest.raises(ValueError, match="parameterization must be 'precision'.*got 'scale'"):
        q.set_extra_state({"parameterization": "scale"})


# ---------------------------------------------------------------------------------------------- inside a GPyTorch model


class _Model(gpytorch.models.ApproximateGP):
    def __init__(self, pattern):
        q = SparseCholeskyVariationalDistribution(M, pattern=pattern)
        inducing = torch.linspace(0, 1, M).unsqueeze(-1)
        super().__init__(gpytorch.variational.VariationalStrategy(self, inducing, q, learn_inducing_locations=False))
        self.mean_module = gpytorch.means.ZeroMean()
        self.covar_module = gpytorch.kernels.RBFKernel()

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def test_a_model_state_dict_carries_the_pattern_and_refuses_another():
    saved = _Model(_band(1))
    _random(saved.variational_strategy._variational_distribution, 0)
    key = "variational_strategy._variational_distribution.factor_pattern"
    assert key in saved.state_dict()
    same = _Model(_band(1))
    same.load_state_dict(saved.state_dict())
    torch.testing.assert_close(same.variational_strategy.variational_distribution.covariance_matrix,
                               saved.variational_strategy.variational_distribution.covariance_matrix)  # fmt: skip
    other = _Model(torch.cat([_band(2), torch.tensor([[5], [0]])], dim=1))
    with pytest.raises(RuntimeError, match=f"{key}.*must be this distribution's pattern"):
        other.load_state_dict(saved.state_dict(), strict=False)


# ------------------------------------------------------------------------------------- state dicts without the pattern


def _old_state_dict(q):
    state = q.state_dict()
    del state["factor_pattern"], state["_extra_state"]
    return state


@pytest.mark.parametrize("strict", [True, False])
def test_a_state_dict_without_the_pattern_is_refused(strict):
    saved = _make(_band(1), seed=0)
    target = _make(_band(1), seed=1)
    before = _snapshot(target)
    with pytest.raises(RuntimeError, match="'factor_pattern' is missing.*add this distribution's 'factor_pattern'"):
        target.load_state_dict(_old_state_dict(saved), strict=strict)
    assert _unchanged(target, before)


def test_a_state_dict_without_the_pattern_loads_once_the_pattern_is_added_as_the_message_says():
    saved = _make(_band(1), seed=0)
    target = _make(_band(1), seed=1)
    state = _old_state_dict(saved)
    own = target.state_dict()
    state.update({key: own[key] for key in ("factor_pattern", "_extra_state")})
    target.load_state_dict(state)
    assert torch.equal(target.factor_values, saved.factor_values)


def test_a_partial_state_dict_without_factor_values_loads_quietly_when_not_strict():
    saved = _make(_band(1), seed=0)
    target = _make(_band(1), seed=1)
    target.load_state_dict({"variational_mean": saved.variational_mean.detach()}, strict=False)
    assert torch.equal(target.variational_mean, saved.variational_mean)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_pattern_moves_with_the_module_and_is_checked_across_devices():
    saved = _make(_band(1), seed=0).cuda()
    assert saved.factor_pattern.device.type == "cuda" and saved.factor_pattern.dtype == torch.int64
    target = _make(_band(1), seed=1).cuda()
    target.load_state_dict(saved.state_dict())
    assert torch.equal(target.factor_values, saved.factor_values)
    target.load_state_dict(_make(_band(1), seed=2).state_dict())  # a CPU state dict into a CUDA distribution
    other = _make(torch.cat([_band(2), torch.tensor([[5], [0]])], dim=1), seed=1).cuda()
    with pytest.raises(RuntimeError, match=r"entry 1 of L must be at \(1, 1\), got \(1, 0\)"):
        other.load_state_dict(saved.state_dict())
    K = torch.eye(M, dtype=torch.float64, device="cuda") + 0.5
    prior = gpytorch.distributions.MultivariateNormal(torch.zeros(M, dtype=torch.float64, device="cuda"), K)
    target.initialize_variational_distribution(prior)  # uses the pattern on the CPU whatever the module's device
    torch.testing.assert_close(target().covariance_matrix.detach().diagonal(), K.diagonal(), rtol=1e-6, atol=0)

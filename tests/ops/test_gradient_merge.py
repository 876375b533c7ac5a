"""One sparse matrix feeding several ops: the gradients are summed as dense values, never as sparse tensors.

A GMRF's ``log_prob`` uses its precision ``Q`` twice (log-determinant and quadratic form), the sparse guide its factor
twice (solve and log-density). Each op's gradient w.r.t. a sparse operand is sparse on the operand's pattern; summing
two of them is torch's sparse add (coalesce + sort, wrong for batched CSR), and reading such a sum back into values by
matching indices (COO coalesce + sorted search) is slow. The tests check the mathematics (gradients equal to dense
references, ``gradcheck`` in float64, in every layout, batched where supported) and, with spies rather than timings,
that neither the sparse sum nor the index matching happens:

* a matrix built by ``sparseprec.sparse_csr_tensor``/``sparse_coo_tensor`` hands every op its values;
* any other matrix (a user's leaf tensor) is read once by the distribution (``read_once``), its gradient formed once
  with its own layout and pattern;
* a sparse gradient on the same positions in new index tensors (torch's own ops) is recognised by its indices.

Dense reference: :math:`\\ell(Q) = \\sum_b -\\tfrac12 x^\\top Q_b x + \\tfrac12 \\log\\det Q_b` has
:math:`\\partial \\ell / \\partial Q_{b,ij} = -\\tfrac12 x_i x_j + \\tfrac12 (Q_b^{-1})_{ji}` at every stored entry.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.autograd import gradcheck
from torch.utils._python_dispatch import TorchDispatchMode

import sparseprec
from sparseprec.distributions import GMRF, ConstrainedGMRF, SparseMultivariateNormal
from sparseprec.ops import _values, sparse_mm, sparse_triangular_solve
from sparseprec.ops._values import read_once, read_values
from sparseprec.pattern import pattern_of
from tests.conftest import dense_grad_at_pattern, random_pattern, sparse_from_dense

DT = torch.float64
N = 7
LAYOUTS = ["csr", "csr32", "coo", "coo_uncoalesced"]
BATCHES = [None, 2]


class _SparseMerges(TorchDispatchMode):
    """Records torch's additions and coalescings of sparse tensors (the autograd engine's sum of two sparse gradients
    is an ``aten.add`` on them)."""

    OPS = ("add.Tensor", "add_.Tensor", "add.out", "_coalesce.default", "coalesce.default")

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.__name__ in self.OPS and any(isinstance(a, torch.Tensor) and a.layout != torch.strided for a in args):
            self.seen.append(func.__name__)
        return func(*args, **kwargs)


@pytest.fixture
def matching(monkeypatch) -> list[int]:
    """Counts the reads that match a gradient's indices to the pattern (COO coalesce + sorted search)."""
    calls: list[int] = []
    original = _values._at_positions

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_values, "_at_positions", spy)
    return calls


def _precision(layout: str, batch: int | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A sparse SPD precision (symmetric pattern shared by the batch, diagonally dominant) and its dense form."""
    g = torch.Generator().manual_seed(seed)
    mask = random_pattern((N, N), 0.3, g)
    mask = mask | mask.T | torch.eye(N, dtype=torch.bool)
    shape = (N, N) if batch is None else (batch, N, N)
    off = torch.randn(shape, generator=g, dtype=DT)
    off = 0.5 * (off + off.transpose(-1, -2)) * mask
    dense = off + torch.diag_embed(off.abs().sum(-1) + 1.0 + torch.rand(shape[:-1], generator=g, dtype=DT))
    mask = mask.expand(shape)
    return sparse_from_dense(dense, mask, layout), dense


def _dense_loss(Qd: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    quadratic = torch.einsum("i,...ij,j->...", x, Qd, x)
    return (-0.5 * quadratic + 0.5 * torch.logdet(Qd)).sum()


def _dense_reference(dense: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    Qd = dense.clone().requires_grad_()
    _dense_loss(Qd, x).backward()
    return Qd.grad


def _same_pattern(G: torch.Tensor, Q: torch.Tensor) -> None:
    """``G`` has ``Q``'s layout and stored positions (coalesced positions for an uncoalesced COO ``Q``)."""
    assert G.layout == Q.layout and G.shape == Q.shape
    if Q.layout == torch.sparse_csr:
        assert torch.equal(G.crow_indices(), Q.crow_indices()) and torch.equal(G.col_indices(), Q.col_indices())
    else:
        assert G.is_coalesced()
        assert torch.equal(G._indices(), Q.detach().coalesce()._indices())


# ---- a user's leaf precision used twice by a GMRF --------------------------------------------------------------------
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_leaf_precision_gradient_matches_dense_without_sparse_sums(layout, batch, matching):
    Q, dense = _precision(layout, batch)
    Q.requires_grad_()
    x = torch.randn(N, generator=torch.Generator().manual_seed(1), dtype=DT)
    lp = GMRF(torch.zeros(N, dtype=DT), Q).log_prob(x).sum()
    spy = _SparseMerges()
    with spy:
        lp.backward()
    assert spy.seen == [] and matching == []
    _same_pattern(Q.grad, Q)
    expected = dense_grad_at_pattern(_dense_reference(dense, x), Q.grad)
    torch.testing.assert_close(Q.grad.values() if Q.layout == torch.sparse_csr else Q.grad._values(), expected)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_one_distribution_backpropagates_several_times(layout):
    """The one read keeps no tensor: a second ``log_prob`` + backward on the same distribution is exact again."""
    Q, dense = _precision(layout, None)
    Q.requires_grad_()
    d = GMRF(torch.zeros(N, dtype=DT), Q)
    for seed in (1, 2):
        Q.grad = None
        x = torch.randn(N, generator=torch.Generator().manual_seed(seed), dtype=DT)
        d.log_prob(x).backward()
        expected = dense_grad_at_pattern(_dense_reference(dense, x), Q.grad)
        got = Q.grad.values() if Q.layout == torch.sparse_csr else Q.grad._values()
        torch.testing.assert_close(got, expected)


def test_conditioning_and_log_prob_share_one_read(matching):
    """``log_marginal_likelihood`` uses ``Q`` three times (prior log-det and quadratic form, posterior precision)."""
    Q, dense = _precision("csr", None)
    Q.requires_grad_()
    A = torch.eye(N, dtype=DT)[::2].to_sparse_csr()
    y = torch.randn(A.shape[0], generator=torch.Generator().manual_seed(3), dtype=DT)
    value = GMRF(torch.zeros(N, dtype=DT), Q).log_marginal_likelihood(A, y, 2.0)
    spy = _SparseMerges()
    with spy:
        value.backward()
    assert spy.seen == [] and matching == []
    Qd = dense.clone().requires_grad_()
    Ad = A.to_dense()
    covariance = torch.linalg.inv(Qd)
    marginal = torch.distributions.MultivariateNormal(
        torch.zeros(A.shape[0], dtype=DT), Ad @ covariance @ Ad.T + 0.5 * torch.eye(A.shape[0], dtype=DT)
    )
    marginal.log_prob(y).backward()
    torch.testing.assert_close(Q.grad.values(), dense_grad_at_pattern(Qd.grad, Q.grad))


def test_distribution_with_a_read_copies_and_pickles():
    import pickle

    Q, _ = _precision("csr", None)
    Q.requires_grad_()
    d = GMRF(torch.zeros(N, dtype=DT), Q)
    d.log_prob(torch.zeros(N, dtype=DT)).backward()
    for twin in (copy.deepcopy(d), pickle.loads(pickle.dumps(d))):
        x = torch.ones(N, dtype=DT)
        torch.testing.assert_close(twin.log_prob(x), d.log_prob(x))


@pytest.mark.parametrize("source", ["leaf", "sparseprec"])
def test_precision_with_two_batch_dimensions(source):
    """``(2, 3, n, n)`` CSR: torch's sum of two gradients of such a tensor is malformed (it crashed the backward)."""
    Q0, _ = _precision("csr", None)
    scale = torch.arange(1.0, 7.0, dtype=DT).reshape(2, 3, 1)
    crow, col = Q0.crow_indices().expand(2, 3, -1).contiguous(), Q0.col_indices().expand(2, 3, -1).contiguous()
    values = (Q0.values() * scale).clone().requires_grad_()
    if source == "leaf":
        Q = torch.sparse_csr_tensor(crow, col, values.detach(), (2, 3, N, N)).requires_grad_()
    else:
        Q = sparseprec.sparse_csr_tensor(crow, col, values, (2, 3, N, N))
    x = torch.randn(N, generator=torch.Generator().manual_seed(1), dtype=DT)
    GMRF(torch.zeros(N, dtype=DT), Q).log_prob(x).sum().backward()
    got = Q.grad.values() if source == "leaf" else values.grad
    dense = torch.stack([torch.sparse_csr_tensor(Q0.crow_indices(), Q0.col_indices(), v, (N, N)).to_dense()
                         for v in (Q0.values() * scale).reshape(6, -1)])  # fmt: skip
    reference = _dense_reference(dense, x)
    expected = torch.stack([dense_grad_at_pattern(g, Q0) for g in reference]).reshape(2, 3, -1)
    torch.testing.assert_close(got, expected)


# ---- read_once: the ops' gradients summed densely --------------------------------------------------------------------
def _two_ops(B: torch.Tensor, X: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Two ops on one operand: ``|B X|² + sum(Bᵀ W)``."""
    return sparse_mm(B, X).square().sum() + sparse_mm(B, W, transpose=True).sum()


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("layout", ["csr", "coo", "coo_uncoalesced"])
def test_read_once_gradcheck(layout, batch):
    """``read_once`` of a matrix built by torch's own constructor (no remembered values) feeding two ops: gradcheck
    of the loss w.r.t. the constructor's values (first derivatives: torch's constructor is once differentiable)."""
    Q, _ = _precision(layout, batch)
    g = torch.Generator().manual_seed(2)
    shape = (N, 3) if batch is None else (batch, N, 3)
    X = torch.randn(shape, generator=g, dtype=DT, requires_grad=True)
    W = torch.randn(shape, generator=g, dtype=DT)
    if Q.layout == torch.sparse_csr:
        crow, col = Q.crow_indices(), Q.col_indices()

        def build(v):
            return torch.sparse_csr_tensor(crow, col, v, Q.shape)

        v0 = Q.values()
    else:
        indices, coalesced = Q._indices(), Q.is_coalesced()

        def build(v):
            return torch.sparse_coo_tensor(indices, v, Q.shape, is_coalesced=coalesced)

        v0 = Q._values()

    def loss(v, X):
        A = build(v)
        return _two_ops(read_once(A, pattern_of(A)), X, W)

    assert gradcheck(loss, (v0.clone().requires_grad_(), X))


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_read_once_keeps_the_warning_for_torch_constructors(layout):
    """torch's own constructors are once differentiable: building a Hessian through the one read warns (as the ops
    do)."""
    v = torch.tensor([2.0, 1.0, 3.0], dtype=DT, requires_grad=True)
    if layout == "coo":
        A = torch.sparse_coo_tensor(torch.tensor([[0, 1, 1], [0, 0, 1]]), v, (2, 2))
    else:
        A = torch.sparse_csr_tensor(torch.tensor([0, 1, 3]), torch.tensor([0, 0, 1]), v, (2, 2))
    B = read_once(A, pattern_of(A))
    X = torch.ones(2, 1, dtype=DT)
    loss = sparse_mm(B, X).square().sum() + sparse_triangular_solve(B, X, upper=False).sum()
    with pytest.warns(UserWarning, match="sparseprec.sparse_coo_tensor"):
        torch.autograd.grad(loss, v, create_graph=True)


def test_read_once_returns_what_needs_no_read():
    Q, dense = _precision("csr", None)
    assert read_once(Q, pattern_of(Q)) is Q  # no grad
    assert read_once(dense, None) is dense
    v = Q.values().clone().requires_grad_()
    built = sparseprec.sparse_csr_tensor(Q.crow_indices(), Q.col_indices(), v, Q.shape)
    assert read_once(built, pattern_of(built)) is built  # its ops use v already
    leaf = Q.clone().requires_grad_()
    with torch.no_grad():
        assert read_once(leaf, pattern_of(leaf)) is leaf


# ---- the sparse guide's factor: solve + log-density ------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_leaf_factor_used_by_rsample_and_log_prob(layout, matching):
    """``SparseMultivariateNormal(precision_tril=L)``: ``rsample`` solves with ``L``, ``log_prob`` multiplies by it and
    reads its diagonal; one sparse gradient reaches a leaf ``L``, equal to the dense one."""
    g = torch.Generator().manual_seed(4)
    Ld = torch.randn(N, N, generator=g, dtype=DT) * random_pattern((N, N), 0.5, g, triangle="strict_lower")
    Ld = Ld + torch.diag(1.0 + torch.rand(N, generator=g, dtype=DT))
    L = sparse_from_dense(Ld, Ld != 0, layout).requires_grad_()
    eps = torch.randn(4, N, generator=g, dtype=DT)

    def loss(L, draw):
        d = SparseMultivariateNormal(torch.zeros(N, dtype=DT), precision_tril=L)
        z = draw(d)
        return d.log_prob(z).sum() + z.square().sum()

    value = loss(L, lambda d: d.loc + d.coloring_transform()(eps))
    spy = _SparseMerges()
    with spy:
        value.backward()
    assert spy.seen == [] and matching == []
    _same_pattern(L.grad, L)
    Lr = Ld.clone().requires_grad_()
    reference = torch.distributions.MultivariateNormal(torch.zeros(N, dtype=DT), precision_matrix=Lr @ Lr.T)
    z = torch.linalg.solve_triangular(Lr.T, eps.T, upper=True).T
    (reference.log_prob(z).sum() + z.square().sum()).backward()
    got = L.grad.values() if layout == "csr" else L.grad._values()
    torch.testing.assert_close(got, dense_grad_at_pattern(Lr.grad, L.grad))


# ---- gradients on the same positions in new index tensors ------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
def test_same_positions_in_new_indices_are_read_without_matching(layout, matching):
    Q, _ = _precision(layout, 2 if layout == "coo" else None)
    v = (Q.values() if Q.layout == torch.sparse_csr else Q._values()).clone().requires_grad_()
    if Q.layout == torch.sparse_csr:
        A = sparseprec.sparse_csr_tensor(Q.crow_indices(), Q.col_indices(), v, Q.shape)
    else:
        A = sparseprec.sparse_coo_tensor(Q._indices(), v, Q.shape, is_coalesced=Q.is_coalesced())
    coalesced = A.detach() if A.layout == torch.sparse_csr else A.detach().coalesce()
    w = torch.randn(coalesced.values().shape, generator=torch.Generator().manual_seed(5), dtype=DT)
    # the gradient a torch op (or torch's sum of two) returns: the coalesced positions, in freshly allocated indices
    if A.layout == torch.sparse_csr:
        G = torch.sparse_csr_tensor(A.crow_indices().clone(), A.col_indices().clone(), w, A.shape)
    else:
        G = torch.sparse_coo_tensor(coalesced._indices().clone(), w, A.shape, is_coalesced=True)
    (grad,) = torch.autograd.grad(A, v, G)
    assert matching == []
    # the maths: each stored entry reads the gradient at its position (duplicates of an uncoalesced tensor each)
    expected = G.to_dense()[tuple(Q._indices())] if Q.layout == torch.sparse_coo else w
    torch.testing.assert_close(grad, expected)


def test_same_positions_read_matches_the_matching_read():
    """The by-value recognition and the index matching agree (CSR, int32 indices against int64 ones)."""
    Q, _ = _precision("csr32", None)
    pattern = pattern_of(Q)
    w = torch.arange(1.0, Q.values().numel() + 1, dtype=DT)
    G = torch.sparse_csr_tensor(Q.crow_indices().long(), Q.col_indices().long(), w, Q.shape)
    fast = read_values(G, Q, pattern, raw=False)
    slow = _values._at_positions(G, pattern, N)
    torch.testing.assert_close(fast, slow)


def test_batched_csr_with_two_batch_dimensions_reads_new_indices_without_coo(monkeypatch):
    Q, _ = _precision("csr", None)
    crow, col = Q.crow_indices().expand(2, 3, -1), Q.col_indices().expand(2, 3, -1)
    v = Q.values().expand(2, 3, -1).clone().requires_grad_()
    A = sparseprec.sparse_csr_tensor(crow, col, v, (2, 3, N, N))
    w = torch.randn(v.shape, generator=torch.Generator().manual_seed(6), dtype=DT)
    G = torch.sparse_csr_tensor(crow.clone(), col.clone(), w, A.shape)

    def refuse(*args, **kwargs):
        raise AssertionError("the gradient was converted to COO")

    monkeypatch.setattr(torch.Tensor, "to_sparse_coo", refuse)
    (grad,) = torch.autograd.grad(A, v, G)
    torch.testing.assert_close(grad, w)


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_constrained_gmrf_reads_a_leaf_precision_once(layout, matching):
    """``ConstrainedGMRF.log_prob`` uses ``H`` in the log-det, the quadratic form and the kriging solve ``H⁻¹ Cᵀ``: a
    leaf ``H`` gets one sparse gradient, equal to the gradient w.r.t. the values of the same ``H`` built from them."""
    H, _ = _precision(layout, None)
    C = torch.ones(1, N, dtype=DT)
    loc = torch.linspace(0.0, 1.0, N, dtype=DT)
    e = torch.zeros(1, dtype=DT)
    x = torch.randn(2, N, generator=torch.Generator().manual_seed(8), dtype=DT)
    x = x - x.mean(-1, keepdim=True)  # on C x = 0
    leaf = H.clone().requires_grad_()
    value = ConstrainedGMRF(loc, leaf, C, e).log_prob(x).sum()
    spy = _SparseMerges()
    with spy:
        value.backward()
    assert spy.seen == [] and matching == []
    _same_pattern(leaf.grad, leaf)
    v = (H.values() if layout == "csr" else H._values()).clone().requires_grad_()
    built = (
        sparseprec.sparse_csr_tensor(H.crow_indices(), H.col_indices(), v, H.shape)
        if layout == "csr"
        else sparseprec.sparse_coo_tensor(H._indices(), v, H.shape, is_coalesced=True)
    )
    ConstrainedGMRF(loc, built, C, e).log_prob(x).sum().backward()
    torch.testing.assert_close(leaf.grad.values() if layout == "csr" else leaf.grad._values(), v.grad)

"""Second derivatives of the ops: gradgradcheck (float64) through the stored values and the dense operand, and a clear
error from the functions whose derivative is implemented once only.

Each op is called on a matrix built from a values vector by :func:`sparseprec.ops.sparse_csr_tensor` /
:func:`sparseprec.ops.sparse_coo_tensor`, so the checks run through the whole chain a user's learnable matrix takes
(values -> sparse tensor -> op -> sparse gradient -> values).
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import sparseprec
from sparseprec.cholesky import slq_logdet, sparse_cholesky_solve, sparse_logdet
from sparseprec.ops import sparse_coo_tensor, sparse_csr_tensor, sparse_mm, sparse_triangular_solve
from sparseprec.solvers import CG, BiCGSTAB, sparse_generic_solve

DT = torch.float64


def _random_pattern(n: int, m: int, density: float, seed: int, lower: bool = False, diagonal: bool = False):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, m, generator=g) < density
    if lower:
        mask = mask.tril()
    if diagonal:
        mask |= torch.eye(n, m, dtype=torch.bool)
    rows, cols = mask.nonzero(as_tuple=True)
    return rows, cols, g


def _builder(rows, cols, shape, layout):
    """values -> sparse tensor of the pattern (rows, cols), in the given layout (built differentiably)."""
    if layout == "csr":
        crow = torch.zeros(shape[0] + 1, dtype=torch.int64)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)
        return lambda v: sparse_csr_tensor(crow, cols, v, shape)
    if layout == "coo":
        index = torch.stack([rows, cols])
        return lambda v: sparse_coo_tensor(index, v, shape, is_coalesced=True)
    # uncoalesced COO: every entry stored twice, half of the value each time (the same matrix)
    index = torch.cat([torch.stack([rows, cols])] * 2, 1)
    return lambda v: sparse_coo_tensor(index, torch.cat([v, v]) * 0.5, shape)


LAYOUTS = ["csr", "coo", "coo-uncoalesced"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("transpose", [False, True])
def test_sparse_mm_gradgradcheck(layout, transpose):
    rows, cols, g = _random_pattern(5, 4, 0.5, 0)
    build = _builder(rows, cols, (5, 4), layout)
    v = torch.randn(rows.numel(), dtype=DT, generator=g, requires_grad=True)
    B = torch.randn(5 if transpose else 4, 3, dtype=DT, generator=g, requires_grad=True)
    fn = lambda v, B: sparse_mm(build(v), B, transpose=transpose)  # noqa: E731
    assert gradcheck(fn, (v, B))
    assert gradgradcheck(fn, (v, B))


def test_sparse_mm_batched_and_vector_gradgradcheck():
    rows, cols, g = _random_pattern(4, 4, 0.6, 1)
    crow = torch.zeros(5, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=4), 0)
    crow2 = crow.expand(2, 5).contiguous()
    col2 = cols.expand(2, cols.numel()).contiguous()
    v = torch.randn(2, cols.numel(), dtype=DT, generator=g, requires_grad=True)
    B = torch.randn(2, 4, 2, dtype=DT, generator=g, requires_grad=True)
    assert gradgradcheck(lambda v, B: sparse_mm(sparse_csr_tensor(crow2, col2, v, (2, 4, 4)), B), (v, B))
    b = torch.randn(4, dtype=DT, generator=g, requires_grad=True)
    w = v[0].detach().clone().requires_grad_()
    assert gradgradcheck(lambda w, b: sparse_mm(sparse_csr_tensor(crow, cols, w, (4, 4)), b), (w, b))


def _well_conditioned_triangular(n: int, seed: int, layout: str):
    rows, cols, g = _random_pattern(n, n, 0.5, seed, lower=True, diagonal=True)
    v = 0.3 * torch.randn(rows.numel(), dtype=DT, generator=g)
    v = torch.where(rows == cols, 2.0 + v.abs(), v).requires_grad_()
    return _builder(rows, cols, (n, n), layout), v, g


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("transpose", [False, True])
def test_triangular_solve_gradgradcheck(layout, transpose):
    build, v, g = _well_conditioned_triangular(5, 2, layout)
    B = torch.randn(5, 2, dtype=DT, generator=g, requires_grad=True)
    fn = lambda v, B: sparse_triangular_solve(build(v), B, upper=False, transpose=transpose)  # noqa: E731
    assert gradcheck(fn, (v, B))
    assert gradgradcheck(fn, (v, B))


def test_unitriangular_solve_gradgradcheck():
    rows, cols, g = _random_pattern(5, 5, 0.5, 3)
    strict = rows > cols
    rows, cols = rows[strict], cols[strict]
    build = _builder(rows, cols, (5, 5), "csr")
    v = (0.5 * torch.randn(rows.numel(), dtype=DT, generator=g)).requires_grad_()
    B = torch.randn(5, 2, dtype=DT, generator=g, requires_grad=True)
    fn = lambda v, B: sparse_triangular_solve(build(v), B, upper=False, unitriangular=True)  # noqa: E731
    assert gradgradcheck(fn, (v, B))


def _spd(n: int, seed: int):
    """Rows/cols of a symmetric pattern with diagonal and a symmetric, diagonally dominant value vector builder."""
    rows, cols, g = _random_pattern(n, n, 0.4, seed)
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[rows, cols] = True
    mask = mask | mask.T | torch.eye(n, dtype=torch.bool)
    rows, cols = mask.nonzero(as_tuple=True)
    off = torch.rand(n, n, generator=g, dtype=DT) - 0.5
    off = (off + off.T) / 2
    dense = torch.where(mask, off, torch.zeros((), dtype=DT)) + n * torch.eye(n, dtype=DT)
    return rows, cols, dense[rows, cols], g


def _tied(rows, cols, v0):
    """Parameters ``w`` (the lower triangle's values) and the map ``w -> v`` filling both triangles: perturbations
    that keep a full storage symmetric."""
    mirror = torch.tensor([int(((rows == c) & (cols == r)).nonzero()) for r, c in zip(rows, cols, strict=True)])
    lower = rows >= cols
    index = torch.cumsum(lower.long(), 0) - 1  # position of each lower entry among the lower ones
    take = torch.where(lower, index, index[mirror])
    return v0[lower].clone().requires_grad_(), take


@pytest.mark.parametrize("solver", [CG(rtol=1e-13), BiCGSTAB(rtol=1e-13)], ids=["CG", "BiCGSTAB"])
def test_generic_solve_gradgradcheck(solver):
    rows, cols, v0, g = _spd(6, 4)
    build = _builder(rows, cols, (6, 6), "csr")
    w, take = _tied(rows, cols, v0)
    B = torch.randn(6, 2, dtype=DT, generator=g, requires_grad=True)
    fn = lambda w, B: sparse_generic_solve(build(w[take]), B, solve=solver)  # noqa: E731
    assert gradcheck(fn, (w, B), atol=1e-7)
    assert gradgradcheck(fn, (w, B), atol=1e-6)


def test_generic_solve_with_transpose_solve_gradgradcheck():
    rows, cols, g = _random_pattern(5, 5, 0.5, 5, diagonal=True)
    v = (0.3 * torch.randn(rows.numel(), dtype=DT, generator=g) + 3.0 * (rows == cols)).requires_grad_()
    build = _builder(rows, cols, (5, 5), "coo")

    def solve(A, B):
        return torch.linalg.solve(A.to_dense(), B)

    def transpose_solve(A, B):
        return torch.linalg.solve(A.to_dense().T, B)

    B = torch.randn(5, dtype=DT, generator=g, requires_grad=True)
    fn = lambda v, B: sparse_generic_solve(build(v), B, solve, transpose_solve)  # noqa: E731
    assert gradgradcheck(fn, (v, B))


@pytest.mark.parametrize("triangle", ["full", "lower", "upper"])
def test_cholesky_solve_gradgradcheck(triangle):
    rows, cols, v0, g = _spd(6, 6)
    keep = {"full": torch.ones_like(rows, dtype=torch.bool), "lower": rows >= cols, "upper": rows <= cols}[triangle]
    rows, cols, v0 = rows[keep], cols[keep], v0[keep]
    build = _builder(rows, cols, (6, 6), "csr")
    v = v0.clone().requires_grad_()
    B = torch.randn(6, 2, dtype=DT, generator=g, requires_grad=True)
    fn = lambda v, B: sparse_cholesky_solve(build(v), B, triangle=triangle)  # noqa: E731
    if triangle == "full":
        # the values of a full storage must stay symmetric: check along tied (symmetric) perturbations
        w, take = _tied(rows, cols, v0)
        fn = lambda w, B: sparse_cholesky_solve(build(w[take]), B)  # noqa: E731
        assert gradcheck(fn, (w, B))
        assert gradgradcheck(fn, (w, B))
    else:
        assert gradcheck(fn, (v, B))
        assert gradgradcheck(fn, (v, B))


def test_hessian_of_quadratic_through_cholesky_solve_matches_dense():
    """d²/db² of ½ bᵀ Q⁻¹ b is Q⁻¹ exactly (both terms of the product rule, none lost)."""
    rows, cols, v0, g = _spd(7, 7)
    Q = torch.sparse_coo_tensor(torch.stack([rows, cols]), v0, (7, 7)).coalesce().to_sparse_csr()
    b = torch.randn(7, dtype=DT, generator=g)
    H = torch.autograd.functional.hessian(lambda b: 0.5 * b @ sparse_cholesky_solve(Q, b), b)
    torch.testing.assert_close(H, torch.linalg.inv(Q.to_dense()))


def test_logdet_derivative_is_marked_once_differentiable():
    rows, cols, v0, _ = _spd(5, 8)
    build = _builder(rows, cols, (5, 5), "csr")
    v = v0.clone().requires_grad_()
    (grad,) = torch.autograd.grad(sparse_logdet(build(v)), v, create_graph=True)
    assert grad.requires_grad  # not silently cut from the graph
    Qinv = torch.linalg.inv(build(v0).to_dense())
    torch.testing.assert_close(grad.detach(), Qinv[rows, cols])
    with pytest.raises(sparseprec.NotTwiceDifferentiableError, match="sparse_logdet"):
        torch.autograd.grad(grad.sum(), v)
    # without create_graph, nothing changes
    (plain,) = torch.autograd.grad(sparse_logdet(build(v)), v)
    assert not plain.requires_grad


def test_slq_logdet_derivative_is_marked_once_differentiable():
    rows, cols, v0, _ = _spd(5, 9)
    build = _builder(rows, cols, (5, 5), "csr")
    v = v0.clone().requires_grad_()
    value = slq_logdet(build(v), num_probes=8, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(value, v, create_graph=True)
    with pytest.raises(sparseprec.NotTwiceDifferentiableError, match="slq_logdet"):
        torch.autograd.grad(grad.sum(), v)


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_torch_constructors_warn_under_create_graph(layout):
    """torch's own sparse constructors have no double backward: a second derivative through them is lost (COO) or
    fails inside torch (CSR); the op says so instead of returning a silently incomplete Hessian."""
    v = torch.tensor([2.0, 1.0, 3.0], dtype=DT, requires_grad=True)
    if layout == "coo":
        A = torch.sparse_coo_tensor(torch.tensor([[0, 1, 1], [0, 0, 1]]), v, (2, 2))
    else:
        A = torch.sparse_csr_tensor(torch.tensor([0, 1, 3]), torch.tensor([0, 0, 1]), v, (2, 2))
    x = torch.tensor([[1.0], [2.0]], dtype=DT, requires_grad=True)
    with pytest.warns(UserWarning, match="sparseprec.sparse_coo_tensor"):
        torch.autograd.grad(sparse_mm(A, x).square().sum(), v, create_graph=True)
    # first derivatives: no warning, and the maths: C = A x = (2, 1 + 6) = (2, 7), d|C|²/dA_ij = 2 C_i x_j
    (plain,) = torch.autograd.grad(sparse_mm(A, x).square().sum(), v)
    torch.testing.assert_close(plain, torch.tensor([2 * 2 * 1.0, 2 * 7 * 1.0, 2 * 7 * 2.0], dtype=DT))


def test_batched_csr_used_twice_from_values():
    """torch sums two batched CSR gradients wrongly; a matrix built by sparseprec.sparse_csr_tensor hands the
    gradient to its values directly, so using it twice (and its second derivatives) works."""
    crow = torch.tensor([[0, 1, 3], [0, 1, 3]])
    col = torch.tensor([[0, 0, 1], [0, 0, 1]])
    w = torch.tensor([[2.0, 1.0, 3.0], [4.0, 1.0, 5.0]], dtype=DT, requires_grad=True)
    B = torch.randn(2, 2, 2, dtype=DT, generator=torch.Generator().manual_seed(0), requires_grad=True)

    def twice(w, B):
        A = sparse_csr_tensor(crow, col, w, (2, 2, 2))
        return sparse_mm(A, B) + sparse_triangular_solve(A, B, upper=False)

    assert gradcheck(twice, (w, B))
    assert gradgradcheck(twice, (w, B))

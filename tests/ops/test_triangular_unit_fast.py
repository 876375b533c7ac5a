"""The fast paths of the triangular solve and its backward (issue 17, parts 4 and 5).

* a unit-triangular ``A`` is solved as the plain kernel of ``A + I``, whose index data is built once per pattern:
  it must agree with the dense unit-triangular solve, and its gradient must stay on ``A``'s stored (strictly
  triangular) entries;
* the zero-pivot check runs once per solve (on the solution for few columns, on the diagonal for many) and keeps
  its error;
* the sampled product writes into a fresh kernel matrix in place and must leave the cached index data untouched;
* ``SparseMultivariateNormal.rsample`` draws ε in the factor's column layout (Box–Muller in float64 on the CPU).
"""

from __future__ import annotations

import itertools

import pytest
import torch

import sparseprec
from sparseprec import SparseMultivariateNormal, sparse_triangular_solve
from sparseprec.distributions.sparse_mvn import _standard_normal_matrix
from sparseprec.ops._products import _sampled
from sparseprec.pattern import pattern_of
from tests.conftest import LAYOUTS, dense_grad_at_pattern, random_pattern, rebuild, sparse_from_dense, stored_values


def strictly_triangular(layout, batched, upper, dtype=torch.float64, n=7, p=3, density=0.5, seed=0):
    """A random strictly triangular sparse ``A`` (implied unit diagonal), its dense ``I + A`` and right-hand sides."""
    g = torch.Generator().manual_seed(seed)
    shape = (3, n, n) if batched else (n, n)
    mask = random_pattern(shape, density, g, triangle="strict_upper" if upper else "strict_lower")
    dense = 0.5 * torch.randn(shape, generator=g, dtype=dtype) * mask
    A = sparse_from_dense(dense, mask, layout)
    unit = dense + torch.eye(n, dtype=dtype)
    B = torch.randn(*shape[:-1], p, generator=g, dtype=dtype)
    return A, unit, B


def dense_unit_solve(unit, B, upper, transpose):
    M = unit.transpose(-2, -1) if transpose else unit
    return torch.linalg.solve_triangular(M, B, upper=upper != transpose, unitriangular=True)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("upper,transpose", list(itertools.product([True, False], repeat=2)))
@pytest.mark.parametrize("p", [1, 4])
def test_unit_solve_and_gradients_match_dense(layout, batched, upper, transpose, p):
    A, unit, B = strictly_triangular(layout, batched, upper, p=p)
    A.requires_grad_()
    B.requires_grad_()
    W = torch.randn_like(B)
    X = sparse_triangular_solve(A, B, upper=upper, unitriangular=True, transpose=transpose)
    (X * W).sum().backward()

    Ud = unit.clone().requires_grad_()
    Bd = B.detach().clone().requires_grad_()
    (dense_unit_solve(Ud, Bd, upper, transpose) * W).sum().backward()

    torch.testing.assert_close(X, dense_unit_solve(unit, B.detach(), upper, transpose), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(B.grad, Bd.grad, rtol=1e-12, atol=1e-12)
    # the gradient lives on A's stored entries only: the implied diagonal carries none
    assert A.grad.layout == A.layout
    assert stored_values(A.grad).numel() == pattern_of(A.detach()).nnz
    torch.testing.assert_close(stored_values(A.grad), dense_grad_at_pattern(Ud.grad, A.grad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("upper", [True, False])
@pytest.mark.parametrize("transpose", [True, False])
def test_unit_solve_float32(upper, transpose):
    A, unit, B = strictly_triangular("csr", False, upper, dtype=torch.float32, n=40, p=5, density=0.2)
    X = sparse_triangular_solve(A, B, upper=upper, unitriangular=True, transpose=transpose)
    assert X.dtype == torch.float32
    torch.testing.assert_close(X, dense_unit_solve(unit, B, upper, transpose), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("upper,transpose", list(itertools.product([True, False], repeat=2)))
def test_unit_solve_gradgradcheck(upper, transpose):
    A, _, B = strictly_triangular("csr", True, upper, n=4, p=2)
    values = stored_values(A).detach().clone().requires_grad_()
    B.requires_grad_()

    def f(v, b):
        return sparse_triangular_solve(rebuild(A, v), b, upper=upper, unitriangular=True, transpose=transpose)

    assert torch.autograd.gradcheck(f, (values, B))
    assert torch.autograd.gradgradcheck(f, (values, B))


def test_unit_kernel_index_data_is_built_once_per_pattern():
    A, unit, B = strictly_triangular("csr", False, False, n=30, density=0.3)
    sparse_triangular_solve(A, B, upper=False, unitriangular=True)
    before = sparseprec.cache_info()
    for scale in (2.0, 3.0):  # new values, same pattern: no new derived data, the same answer as a dense solve
        A2 = rebuild(A, stored_values(A) * scale)
        X = sparse_triangular_solve(A2, B, upper=False, unitriangular=True, transpose=True)
        expected = dense_unit_solve((unit - torch.eye(30, dtype=unit.dtype)) * scale + torch.eye(30), B, False, True)
        torch.testing.assert_close(X, expected)
    after = sparseprec.cache_info()
    assert after.misses == before.misses and after.derived == before.derived


def test_unit_solve_with_empty_rows_and_a_single_entry():
    # rows 0, 1 and 3 store nothing: the merged kernel holds only their implied diagonal
    A = torch.sparse_coo_tensor(torch.tensor([[2], [0]]), torch.tensor([0.5], dtype=torch.float64), (4, 4))
    B = torch.arange(8, dtype=torch.float64).reshape(4, 2)
    expected = B.clone()
    expected[2] -= 0.5 * B[0]
    torch.testing.assert_close(sparse_triangular_solve(A.coalesce(), B, upper=False, unitriangular=True), expected)
    torch.testing.assert_close(
        sparse_triangular_solve(A.coalesce().to_sparse_csr(), B, upper=False, unitriangular=True), expected
    )


@pytest.mark.parametrize("p", [1, 8])
def test_non_finite_right_hand_side_is_not_a_singular_matrix(p):
    A = torch.tensor([[2.0, 0.0], [1.0, 4.0]], dtype=torch.float64).to_sparse_csr()
    B = torch.full((2, p), float("nan"), dtype=torch.float64)
    assert torch.isnan(sparse_triangular_solve(A, B, upper=False)).all()


@pytest.mark.parametrize("p", [1, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampled_product_in_place_leaves_the_pattern_intact(p, dtype):
    g = torch.Generator().manual_seed(1)
    mask = random_pattern((9, 7), 0.4, g)
    A = sparse_from_dense(torch.randn(9, 7, generator=g, dtype=dtype) * mask, mask, "csr32")
    pattern = pattern_of(A)
    crow, col = pattern.crow.clone(), pattern.col.clone()
    U = torch.randn(9, p, generator=g, dtype=dtype)
    V = torch.randn(7, p, generator=g, dtype=dtype)
    expected = (U @ V.T)[pattern.row.long(), pattern.col.long()]
    for _ in range(2):
        torch.testing.assert_close(_sampled(pattern, U, V), expected)
        torch.testing.assert_close(_sampled(pattern, U.T.contiguous().T, V.T.contiguous().T), expected)
    assert torch.equal(pattern.crow, crow) and torch.equal(pattern.col, col)
    assert pattern_of(A) is pattern  # the user's index tensors were not written either


@pytest.mark.parametrize("rows,columns", [(7, 3), (5, 1), (1, 1), (0, 4), (4, 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_standard_normal_matrix_shapes(rows, columns, dtype):
    torch.manual_seed(0)
    Z = _standard_normal_matrix(rows, columns, dtype, torch.device("cpu"))
    assert Z.shape == (rows, columns) and Z.dtype == dtype and Z.is_contiguous()
    assert torch.isfinite(Z).all()
    torch.manual_seed(0)
    assert torch.equal(Z, _standard_normal_matrix(rows, columns, dtype, torch.device("cpu")))  # seeded


def test_standard_normal_matrix_moments():
    # 4·10⁵ draws: the standard errors of the mean, variance, 4th moment and of P(|z| > 2) are 0.0016, 0.0022,
    # 0.016 and 0.00034; the bounds below are about five of them.
    torch.manual_seed(0)
    z = _standard_normal_matrix(1000, 400, torch.float64, torch.device("cpu")).reshape(-1)
    assert abs(z.mean().item()) < 0.008
    assert abs(z.var().item() - 1.0) < 0.011
    assert abs(z.pow(4).mean().item() - 3.0) < 0.08
    assert abs((z.abs() > 2).double().mean().item() - 0.0455003) < 0.0017
    pairs = z.reshape(2, -1)  # the two halves of one Box–Muller pair are independent
    assert abs((pairs[0] * pairs[1]).mean().item()) < 0.011


@pytest.mark.parametrize("form", ["precision", "scale"])
@pytest.mark.parametrize("batched", [False, True])
def test_rsample_shapes_and_coloring(form, batched):
    """``rsample`` is ``loc + C ε`` with ε drawn in the kernel's column layout: check the shape and that whitening
    the sample (the inverse map) gives back standard-normal draws."""
    n, b = 6, 2
    g = torch.Generator().manual_seed(2)
    shape = (b, n, n) if batched else (n, n)
    mask = random_pattern(shape, 0.5, g, triangle="lower")
    dense = (0.3 * torch.randn(shape, generator=g, dtype=torch.float64) + 2 * torch.eye(n, dtype=torch.float64)) * mask
    L = sparse_from_dense(dense, mask, "csr")
    loc = torch.randn((3, b, n) if batched else (3, n), generator=g, dtype=torch.float64)
    d = SparseMultivariateNormal(loc, **{f"{form}_tril": L})
    torch.manual_seed(4)
    x = d.rsample((5, 2))
    assert x.shape == (5, 2) + loc.shape
    eps = d.coloring_transform().inv(x)
    torch.manual_seed(4)
    columns = 5 * 2 * 3
    E = _standard_normal_matrix(b * n if batched else n, columns, torch.float64, torch.device("cpu"))
    expected = E.reshape(b, n, columns).permute(2, 0, 1) if batched else E.T
    torch.testing.assert_close(eps, expected.reshape(x.shape), rtol=1e-10, atol=1e-10)

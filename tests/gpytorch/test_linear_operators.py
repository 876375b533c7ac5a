"""linear_operator's own conformance suite (LinearOperatorTestCase) for both sparse-precision operators, plus checks
of the exact paths (no CG/Lanczos, exact log-determinant and gradients) against dense torch.

The dense reference is built from the symmetrised stored values, ``½(D + Dᵀ)`` (the same matrix), so that every
gradient the suite compares w.r.t. the values is the symmetric convention of docs/concepts.md ("Gradients w.r.t. a
symmetric sparse matrix"), which both operators follow. (linear_operator's suite symmetrises the dense gradient of its
solve and log-determinant checks itself, but not that of its matmul checks.)
"""

from __future__ import annotations

import unittest

import gpytorch
import pytest
import torch
from linear_operator.test.linear_operator_test_case import LinearOperatorTestCase

from sparseprec.gpytorch import PrecisionInverseLinearOperator, SparsePrecisionLinearOperator
from sparseprec.structures import grid_laplacian


def _precision(batch=(), seed=0, dtype=torch.float32):
    """A random SPD precision on a 2 × 3 grid pattern (both triangles; batch of different values, same pattern)."""
    g = torch.Generator().manual_seed(seed)
    L = grid_laplacian((2, 3), dtype=torch.float64).detach()
    op = SparsePrecisionLinearOperator.from_sparse(L)
    pattern = op.pattern
    rows = torch.repeat_interleave(torch.arange(6), pattern.crow.diff())
    off = rows != pattern.col
    # symmetric random off-diagonal weights (tied through the entry's unordered pair) and a dominant diagonal
    key = torch.minimum(rows, pattern.col) * 6 + torch.maximum(rows, pattern.col)
    weights = torch.rand(*batch, 36, generator=g, dtype=torch.float64)[..., key] * 0.9 + 0.1
    values = torch.where(off, -weights, torch.zeros((), dtype=torch.float64))
    row_sums = torch.zeros(*batch, 6, dtype=torch.float64).index_add(-1, rows, -values)
    values = values.index_add(-1, pattern.diagonal_positions, row_sums + 0.5 + torch.rand(*batch, 6, generator=g))
    return values.to(dtype), pattern


def _symmetric_dense(linear_op):
    dense = linear_op.pattern.dense(linear_op.values)
    return 0.5 * (dense + dense.mT)


class _Base:
    seed = 0
    should_test_sample = True
    should_call_cg = False
    should_call_lanczos = False
    should_call_lanczos_diagonalization = True
    skip_slq_tests = False
    batch = ()
    operator = SparsePrecisionLinearOperator

    def create_linear_op(self):
        values, pattern = _precision(self.batch)
        return self.operator(values.requires_grad_(True), pattern)

    # their sampling check draws from an operator whose values require grad, without asking for a gradient
    @pytest.mark.filterwarnings("ignore:samples of a .* carry no gradient:UserWarning")
    def test_sample(self):
        super().test_sample()


class TestSparsePrecisionLinearOperator(_Base, LinearOperatorTestCase, unittest.TestCase):
    def evaluate_linear_op(self, linear_op):
        return _symmetric_dense(linear_op)


class TestSparsePrecisionLinearOperatorBatch(TestSparsePrecisionLinearOperator):
    batch = (2, 3)


class TestPrecisionInverseLinearOperator(_Base, LinearOperatorTestCase, unittest.TestCase):
    operator = PrecisionInverseLinearOperator

    def evaluate_linear_op(self, linear_op):
        return torch.linalg.inv(_symmetric_dense(linear_op))


class TestPrecisionInverseLinearOperatorBatch(TestPrecisionInverseLinearOperator):
    batch = (2, 3)


@pytest.mark.parametrize("operator", [SparsePrecisionLinearOperator, PrecisionInverseLinearOperator])
def test_rsample_says_its_draws_carry_no_gradient_and_sample_stays_quiet(operator):
    values, pattern = _precision(dtype=torch.float64)
    op = operator(values.requires_grad_(True), pattern)
    mvn = gpytorch.distributions.MultivariateNormal(torch.zeros(6, dtype=torch.float64), op)
    with pytest.warns(UserWarning, match="carry no gradient w.r.t. the precision's stored values"):
        draw = mvn.rsample()
    assert not draw.requires_grad
    assert mvn.sample(torch.Size([3])).shape == (3, 6)  # filterwarnings = error: no warning here

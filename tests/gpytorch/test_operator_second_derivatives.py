"""Second derivatives through the sparse-precision LinearOperators (their matmul and solve use the library's one solve
rule): exact w.r.t. the right-hand side and the stored values; the log-determinant is differentiable once."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradgradcheck

import sparseprec
from sparseprec.gpytorch import PrecisionInverseLinearOperator, SparsePrecisionLinearOperator
from sparseprec.structures import ar1

F64 = torch.float64


def _operator(operator, Q):
    return (operator.from_precision if operator is PrecisionInverseLinearOperator else operator.from_sparse)(Q)


def _tied(pattern, values):
    """Parameters ``w`` (the lower triangle's values) and the index map filling both triangles, so that perturbations
    keep the stored matrix symmetric (the operators check it)."""
    rows, cols = pattern.rows, pattern.col
    lower = rows >= cols
    position = torch.cumsum(lower.long(), 0) - 1
    key = {(int(r), int(c)): int(p) for r, c, p, keep in zip(rows, cols, position, lower, strict=True) if keep}
    take = torch.tensor([key[(max(int(r), int(c)), min(int(r), int(c)))] for r, c in zip(rows, cols, strict=True)])
    return values.detach()[lower].clone().requires_grad_(), take


@pytest.mark.parametrize("operator", [PrecisionInverseLinearOperator, SparsePrecisionLinearOperator])
@pytest.mark.parametrize("method", ["matmul", "solve"])
def test_gradgradcheck_wrt_values_and_rhs(operator, method):
    template = _operator(operator, ar1(5, 0.6, 1.5).detach())
    w, take = _tied(template.pattern, template.values)
    b = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0), requires_grad=True)

    def fn(w, b):
        op = operator(w[take], template.pattern)
        return op @ b if method == "matmul" else op.solve(b)

    assert gradgradcheck(fn, (w, b))


def test_hessian_of_inverse_quadratic_form_is_the_precision():
    """d²/db² of ½ bᵀ Σ b with Σ = Q⁻¹ given as PrecisionInverseLinearOperator: Q⁻¹ (both product-rule terms)."""
    Q = ar1(6, 0.8, 1.0).detach()
    Sigma = PrecisionInverseLinearOperator.from_precision(Q)
    b = torch.linspace(-1.0, 1.0, 6, dtype=F64)
    H = torch.autograd.functional.hessian(lambda b: 0.5 * b @ (Sigma @ b), b)
    torch.testing.assert_close(H, torch.linalg.inv(Q.to_dense()))


def test_logdet_second_derivative_raises():
    Q = ar1(4, 0.5, 1.0).detach()
    template = SparsePrecisionLinearOperator.from_sparse(Q)
    values = template.values.detach().clone().requires_grad_()
    (g,) = torch.autograd.grad(
        SparsePrecisionLinearOperator(values, template.pattern).logdet(), values, create_graph=True
    )
    with pytest.raises(sparseprec.NotTwiceDifferentiableError):
        torch.autograd.grad(g.sum(), values)


@pytest.mark.parametrize("operator", [PrecisionInverseLinearOperator, SparsePrecisionLinearOperator])
def test_matmul_hessian_wrt_values_matches_dense(operator):
    """gradgradcheck skips a detached derivative, so compare the Hessian itself with a dense reference (the generic
    linear_operator Matmul dropped it)."""
    template = _operator(operator, ar1(4, 0.5, 1.0).detach())
    w0, take = _tied(template.pattern, template.values)
    b = torch.linspace(-1.0, 2.0, 4, dtype=F64).unsqueeze(-1)
    rows, cols = template.pattern.rows, template.pattern.col

    def dense(w):
        Q = torch.zeros(4, 4, dtype=F64).index_put((rows, cols), w[take])
        return Q if operator is SparsePrecisionLinearOperator else torch.linalg.inv(Q)

    ours = torch.autograd.functional.hessian(lambda w: (operator(w[take], template.pattern) @ b).square().sum(), w0)
    torch.testing.assert_close(ours, torch.autograd.functional.hessian(lambda w: (dense(w) @ b).square().sum(), w0))

"""One convention per kind of operand for the gradient w.r.t. a sparse matrix's stored values (docs/concepts.md,
"Gradients w.r.t. a symmetric sparse matrix"), checked on every solve path of the library against dense torch.

Every case computes a scalar ``L`` of one SPD ``Q`` (3 × 3, one structural zero pair) and one ``b`` through a library
path, and the same ``L`` densely. With ``G = ∂L/∂Q`` from dense autograd (entries independent), the expected gradient
at stored ``(i, j)`` is

* ``G_ij`` for an operand not declared symmetric (``None``),
* ``½(G_ij + G_ji)`` for a symmetric operand with both triangles stored (``"full"``),
* ``G_ij + G_ji`` off the diagonal and ``G_ii`` on it for one stored triangle standing for both (``"lower"``).

``sparse_generic_solve`` has a ``symmetric=`` declaration: without it (its default) the stored values are independent
entries, with ``symmetric="full"`` or ``"lower"`` the symmetric convention holds; the Krylov solvers called directly
declare nothing (independent entries), so CG and MINRES appear both ways.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from sparseprec import sparse_csr_tensor, sparse_mm, sparse_triangular_solve
from sparseprec.cholesky import sparse_cholesky_solve, sparse_logdet
from sparseprec.gpytorch import PrecisionInverseLinearOperator, SparsePrecisionLinearOperator
from sparseprec.solvers import CG, MINRES, BiCGSTAB, sparse_generic_solve

F64 = torch.float64
Q_DENSE = torch.tensor([[4.0, 1.0, 0.0], [1.0, 3.0, -1.0], [0.0, -1.0, 2.0]], dtype=F64)
B = torch.tensor([1.0, 2.0, -1.0], dtype=F64)
W = torch.tensor([0.3, -1.2, 0.7], dtype=F64)  # L = w · X for a vector result: G = w Xᵀ-like, not symmetric
ITERATIVE = {"rtol": 1e-7, "atol": 1e-9}
EXACT = {"rtol": 1e-10, "atol": 1e-12}


def _lower_solve(A: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """A user solver that reads a lower-triangle storage as the symmetric matrix it stands for."""
    T = A.to_dense()
    return torch.linalg.solve(T + T.tril(-1).mT, rhs)


@dataclass(frozen=True)
class Case:
    """A path computing ``L(Q, b)``: ``run`` on the sparse ``Q`` (of ``storage``), ``dense`` on the dense ``Q``."""

    storage: str  # "full" (both triangles stored) or "lower"
    convention: str | None  # the convention the path documents
    run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    dense: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    tolerance: dict


def _spo(Q: torch.Tensor) -> SparsePrecisionLinearOperator:
    return SparsePrecisionLinearOperator.from_sparse(Q)


def _pio(Q: torch.Tensor) -> PrecisionInverseLinearOperator:
    return PrecisionInverseLinearOperator.from_precision(Q)


def _solve(Q: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return W @ torch.linalg.solve(Q, b)


def _inv_quad_logdet(Q: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return b @ torch.linalg.solve(Q, b) + torch.logdet(Q)


CASES = {
    # ---- symmetric operands, both triangles stored ------------------------------------------------------------------
    "cholesky-solve": Case("full", "full", lambda Q, b: W @ sparse_cholesky_solve(Q, b), _solve, EXACT),
    "cholesky-logdet": Case("full", "full", lambda Q, b: sparse_logdet(Q), lambda Q, b: torch.logdet(Q), EXACT),
    "generic-CG-symmetric": Case(
        "full", "full", lambda Q, b: W @ sparse_generic_solve(Q, b, CG(rtol=1e-12), symmetric="full"), _solve, ITERATIVE
    ),
    "generic-MINRES-symmetric": Case(
        "full",
        "full",
        lambda Q, b: W @ sparse_generic_solve(Q, b, MINRES(rtol=1e-12), symmetric="full"),
        _solve,
        ITERATIVE,
    ),
    "gpytorch-precision-solve": Case("full", "full", lambda Q, b: W @ _spo(Q).solve(b), _solve, EXACT),
    "gpytorch-precision-matmul": Case("full", "full", lambda Q, b: W @ (_spo(Q) @ b), lambda Q, b: W @ Q @ b, EXACT),
    "gpytorch-precision-inv_quad_logdet": Case(
        "full", "full", lambda Q, b: sum(_spo(Q).inv_quad_logdet(b, logdet=True)), _inv_quad_logdet, EXACT
    ),
    "gpytorch-precision-to_dense": Case(
        "full", "full", lambda Q, b: (_spo(Q).to_dense() @ b) @ W, lambda Q, b: (Q @ b) @ W, EXACT
    ),
    "gpytorch-covariance-matmul": Case("full", "full", lambda Q, b: W @ (_pio(Q) @ b), _solve, EXACT),
    "gpytorch-covariance-solve": Case("full", "full", lambda Q, b: W @ _pio(Q).solve(b), lambda Q, b: W @ Q @ b, EXACT),
    "gpytorch-covariance-inv_quad_logdet": Case(
        "full",
        "full",
        lambda Q, b: sum(_pio(Q).inv_quad_logdet(b, logdet=True)),
        lambda Q, b: b @ Q @ b - torch.logdet(Q),
        EXACT,
    ),
    # ---- symmetric operands, one triangle stored ---------------------------------------------------------------------
    "cholesky-solve-lower": Case(
        "lower", "lower", lambda Q, b: W @ sparse_cholesky_solve(Q, b, triangle="lower"), _solve, EXACT
    ),
    "cholesky-logdet-lower": Case(
        "lower", "lower", lambda Q, b: sparse_logdet(Q, triangle="lower"), lambda Q, b: torch.logdet(Q), EXACT
    ),
    "generic-user-solver-lower": Case(
        "lower", "lower", lambda Q, b: W @ sparse_generic_solve(Q, b, _lower_solve, symmetric="lower"), _solve, EXACT
    ),
    # ---- operands not declared symmetric: independent entries -------------------------------------------------------
    "generic-default": Case("full", None, lambda Q, b: W @ sparse_generic_solve(Q, b, rtol=1e-12), _solve, ITERATIVE),
    "CG-direct": Case("full", None, lambda Q, b: W @ CG(rtol=1e-12)(Q, b), _solve, ITERATIVE),
    "MINRES-direct": Case("full", None, lambda Q, b: W @ MINRES(rtol=1e-12)(Q, b), _solve, ITERATIVE),
    "BiCGSTAB-direct": Case("full", None, lambda Q, b: W @ BiCGSTAB(rtol=1e-12)(Q, b), _solve, ITERATIVE),
    "sparse_mm": Case("full", None, lambda Q, b: W @ sparse_mm(Q, b), lambda Q, b: W @ Q @ b, EXACT),
    "triangular-solve": Case(
        "lower",
        None,
        lambda Q, b: W @ sparse_triangular_solve(Q, b.unsqueeze(-1), upper=False).squeeze(-1),
        lambda Q, b: W @ torch.linalg.solve_triangular(Q.tril(), b.unsqueeze(-1), upper=False).squeeze(-1),
        EXACT,
    ),
}


def _stored(storage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows, columns and values (CSR order) of the stored entries of ``Q`` for ``storage``."""
    mask = Q_DENSE != 0
    if storage == "lower":
        mask = mask.tril()
    rows, cols = mask.nonzero(as_tuple=True)
    return rows, cols, Q_DENSE[rows, cols].clone()


def _ours(case: Case) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The path's gradient w.r.t. the stored values, with the stored entries' rows and columns."""
    rows, cols, values = _stored(case.storage)
    values.requires_grad_()
    crow = torch.zeros(4, dtype=torch.int64).index_add(0, rows + 1, torch.ones_like(rows)).cumsum(0)
    Q = sparse_csr_tensor(crow, cols, values, (3, 3))
    (grad,) = torch.autograd.grad(case.run(Q, B), values)
    return rows, cols, grad


def _dense_gradient(case: Case) -> torch.Tensor:
    """``G = ∂L/∂Q`` of the dense computation, every entry independent."""
    Q = Q_DENSE.clone().requires_grad_()
    (G,) = torch.autograd.grad(case.dense(Q, B), Q)
    return G


def _expected(G: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, convention: str | None) -> torch.Tensor:
    """The stated convention applied to the dense gradient, at the stored entries."""
    if convention is None:
        return G[rows, cols]
    pair = G[rows, cols] + G[cols, rows]
    if convention == "full":
        return 0.5 * pair
    return torch.where(rows == cols, G[rows, cols], pair)


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_per_stored_entry_follows_the_stated_convention(name):
    case = CASES[name]
    rows, cols, grad = _ours(case)
    expected = _expected(_dense_gradient(case), rows, cols, case.convention)
    torch.testing.assert_close(grad, expected, **case.tolerance)


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case.storage == "full"])
def test_sums_over_symmetric_pairs_match_the_dense_gradient(name):
    """Whatever the convention, a both-triangles storage gives each pair (i, j), (j, i) the dense G_ij + G_ji: the
    gradient of a symmetric parameterisation (one value behind both entries) is the same on every path."""
    case = CASES[name]
    rows, cols, grad = _ours(case)
    G = _dense_gradient(case)
    position = {(int(i), int(j)): k for k, (i, j) in enumerate(zip(rows, cols, strict=True))}
    mirror = torch.tensor([position[(int(j), int(i))] for i, j in zip(rows, cols, strict=True)])
    torch.testing.assert_close(grad + grad[mirror], G[rows, cols] + G[cols, rows], **case.tolerance)


def test_the_gpytorch_operators_agree_entry_by_entry_with_the_cholesky_solve():
    """The example of the issue: Q⁻¹ b by the precision operator's solve, the covariance operator's matmul and the
    Cholesky solve give the same gradient w.r.t. each stored value, not only the same sums over pairs."""
    grads = [_ours(CASES[name])[2] for name in ("gpytorch-precision-solve", "gpytorch-covariance-matmul")]
    grads.append(_ours(CASES["cholesky-solve"])[2])
    torch.testing.assert_close(grads[0], grads[1], **EXACT)
    torch.testing.assert_close(grads[0], grads[2], **EXACT)
    assert not torch.allclose(grads[0], _ours(CASES["CG-direct"])[2])  # (the independent convention differs)

"""A kept factor's linear maps (Q⁻¹, L⁻¹, L⁻ᵀ) carry gradients w.r.t. the right-hand side (they were detached)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from sparseprec.cholesky import available_backends, cholesky

DT = torch.float64
Q = torch.tensor([[4.0, 1.0, 0.0, 0.0], [1.0, 3.0, 1.0, 0.0], [0.0, 1.0, 2.0, 0.5], [0.0, 0.0, 0.5, 1.0]], dtype=DT)


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("shape", [(4,), (4, 3)])
def test_factor_maps_are_differentiable_in_b(backend, shape):
    factor = cholesky(Q.to_sparse_csr(), backend=backend)
    B = torch.randn(shape, dtype=DT, generator=torch.Generator().manual_seed(0), requires_grad=True)
    for fn in (factor.solve, factor.solve_L, factor.solve_Lt):
        assert gradcheck(fn, (B,))
        assert gradgradcheck(fn, (B,))
    # the maths: with P Q Pᵀ = L Lᵀ, Q⁻¹ = Pᵀ L⁻ᵀ L⁻¹ P
    perm = factor.perm
    via_triangles = torch.empty_like(B)
    via_triangles[perm] = factor.solve_Lt(factor.solve_L(B[perm]))
    torch.testing.assert_close(via_triangles, torch.linalg.solve(Q, B))
    torch.testing.assert_close(factor.solve(B), torch.linalg.solve(Q, B))

"""Random SparseMultivariateNormal problems with their dense torch references, in every parameterisation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import MultivariateNormal

from sparseprec.distributions import SparseMultivariateNormal
from tests.conftest import random_pattern, rebuild, sparse_from_dense, stored_values

FORMS = [("scale", False), ("scale", True), ("precision", False), ("precision", True)]
FORM_IDS = ["scale_tril", "scale_ldl", "precision_tril", "precision_ldl"]


@dataclass
class Case:
    form: str
    ldl: bool
    L: torch.Tensor  # sparse factor as given to the distribution
    L_dense: torch.Tensor  # dense L̃ (unit diagonal added in the LDL forms), ([b,] n, n)
    d: torch.Tensor | None
    loc: torch.Tensor

    @property
    def kwargs(self) -> dict:
        out = {f"{self.form}_tril": self.L}
        if self.ldl:
            out["diagonal"] = self.d
        return out

    def dist(self, **kwargs) -> SparseMultivariateNormal:
        return SparseMultivariateNormal(self.loc, **self.kwargs, **kwargs)

    def reference(self) -> MultivariateNormal:
        return dense_reference(self.form, self.L_dense, self.d, self.loc)


def dense_reference(form: str, L_dense: torch.Tensor, d: torch.Tensor | None, loc: torch.Tensor) -> MultivariateNormal:
    """torch's MultivariateNormal with Σ (or Q) = L̃ D L̃ᵀ, built densely and differentiably."""
    D = torch.ones(L_dense.shape[-1], dtype=L_dense.dtype) if d is None else d
    A = (L_dense * D.unsqueeze(-2)) @ L_dense.transpose(-1, -2)
    if form == "scale":
        return MultivariateNormal(loc, covariance_matrix=A)
    return MultivariateNormal(loc, precision_matrix=A)


def make_case(
    form: str,
    ldl: bool,
    layout: str = "csr",
    *,
    n: int = 7,
    batch: int | None = None,
    loc_batch: tuple[int, ...] = (),
    d_batch: tuple[int, ...] = (),
    density: float = 0.4,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> Case:
    g = torch.Generator().manual_seed(seed)
    shape = (n, n) if batch is None else (batch, n, n)
    mask = random_pattern(shape, density, g, triangle="strict_lower" if ldl else "lower")
    values = torch.randn(shape, generator=g, dtype=dtype) * 0.6
    eye = torch.eye(n, dtype=torch.bool)
    # a well-conditioned factor: diagonal in [0.8, 1.6]
    values = torch.where(eye, 0.8 + 0.8 * torch.rand(shape, generator=g, dtype=dtype), values)
    L = sparse_from_dense(values, mask, layout)
    dense = torch.where(mask, values, torch.zeros((), dtype=dtype))
    if ldl:
        dense = dense + torch.eye(n, dtype=dtype)
    d = 0.5 + torch.rand(d_batch + (n,), generator=g, dtype=dtype) if ldl else None
    factor_batch = () if batch is None else (batch,)
    loc = torch.randn(loc_batch + factor_batch + (n,), generator=g, dtype=dtype)
    return Case(form, ldl, L, dense, d, loc)


def dense_from_values(case: Case, values: torch.Tensor) -> torch.Tensor:
    """L̃ as a dense tensor built differentiably from ``case.L``'s stored values (duplicates summed)."""
    L = case.L
    coo = L.to_sparse_coo() if L.layout == torch.sparse_csr else L
    index = coo._indices()
    flat_values = values.reshape(-1)
    dense = torch.zeros(L.shape, dtype=values.dtype).index_put(tuple(index), flat_values, accumulate=True)
    if case.ldl:
        dense = dense + torch.eye(L.shape[-1], dtype=values.dtype)
    return dense


__all__ = ["FORMS", "FORM_IDS", "Case", "make_case", "dense_reference", "dense_from_values", "rebuild", "stored_values"]

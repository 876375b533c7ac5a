"""Fitting a sparse precision factor with the ops
==============================================

Fit a sparse precision factor by maximum likelihood with sparseprec's ops.

Model: an AR(1) chain of length n with precision ``Q = U^T U``, where ``U`` is upper bidiagonal with diagonal ``a`` and
superdiagonal ``b``: the innovations ``(U x)_i = a x_i + b x_{i+1}`` are i.i.d. N(0, 1), so ``x`` is an AR(1) chain
(read from the end) with coefficient ``-b / a``. Its log-density is ::

    log p(x) = sum_i log U_ii - 1/2 ||U x||^2 - n/2 log(2 pi).

We *sample* with a sparse triangular solve (``x = U^{-1} z``, ``z ~ N(0, I)``), then *learn* ``U``'s stored values
from the samples by gradient ascent on the log-density, the Mahalanobis term by one ``sparse_mm``. Every gradient
w.r.t. ``U`` lives on its ``2n - 1`` stored entries: nothing ``n x n`` is ever formed.

Run ``python examples/ops_demo.py`` (n = 200 000) or ``--quick`` for a small run.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from sparseprec import sparse_csr_tensor, sparse_mm, sparse_triangular_solve


def bidiagonal_pattern(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR row pointers and column indices of an upper bidiagonal n x n matrix."""
    counts = torch.full((n,), 2, dtype=torch.int64)
    counts[-1] = 1
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    col = torch.stack([torch.arange(n), torch.arange(1, n + 1)], 1).reshape(-1)[:-1]
    return crow, col


def factor_values(diag: torch.Tensor, offdiag: torch.Tensor, n: int) -> torch.Tensor:
    """Stored values of U (row by row: U_ii, U_i,i+1) from one diagonal and one off-diagonal value."""
    return torch.stack([diag.expand(n), offdiag.expand(n)], 1).reshape(-1)[:-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="small, fast run (used by the tests)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.steps = 2_000, 150
    torch.manual_seed(0)
    n, k = args.n, args.samples
    crow, col = bidiagonal_pattern(n)

    # the truth: AR(1) with coefficient 0.8 and unit innovation variance -> U_ii = 1, U_i,i+1 = -0.8
    U_true = sparse_csr_tensor(crow, col, factor_values(torch.tensor(1.0), torch.tensor(-0.8), n), (n, n))
    t0 = time.perf_counter()
    X = sparse_triangular_solve(U_true.detach(), torch.randn(n, k), upper=True)  # x = U^{-1} z ~ N(0, (U^T U)^{-1})
    print(f"sampled {k} AR(1) paths of length {n} with one sparse triangular solve in {time.perf_counter() - t0:.3f} s")

    # learn log U_ii and U_i,i+1 (2 scalars shared along the chain) by maximum likelihood
    log_diag = torch.zeros((), requires_grad=True)
    offdiag = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([log_diag, offdiag], lr=0.05)
    t0 = time.perf_counter()
    for step in range(args.steps):
        opt.zero_grad()
        U = sparse_csr_tensor(crow, col, factor_values(log_diag.exp(), offdiag, n), (n, n))
        Z = sparse_mm(U, X)  # whitened samples, (n, k)
        log_prob = k * n * log_diag - 0.5 * Z.square().sum() - 0.5 * k * n * math.log(2 * math.pi)
        loss = -log_prob / (n * k)
        loss.backward()
        opt.step()
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:4d}  -log p / (n k) = {loss.item():.4f}")
    elapsed = time.perf_counter() - t0
    phi = -(offdiag / log_diag.exp()).item()
    print(
        f"{args.steps} steps in {elapsed:.2f} s; learned U_ii = {log_diag.exp().item():.3f} (true 1.000), "
        f"AR coefficient = {phi:.3f} (true 0.800)"
    )
    if abs(phi - 0.8) > 0.05 or abs(log_diag.exp().item() - 1.0) > 0.05:
        raise SystemExit("the fit did not recover the true parameters")


if __name__ == "__main__":
    main()

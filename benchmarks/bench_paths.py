"""The library's own hot paths, timed alone (no peers): what a refactoring must not slow down.

Each row is one path on one problem, the median of ``--repeats`` calls after a warm-up (caches warm: the symbolic
analysis and pattern data are reused, as in a training loop). Used with ``benchmarks/compare_revisions.py`` to time two
source trees in one session; the paths use only API that is the same in both::

    python benchmarks/compare_revisions.py --a /tmp/base --b . --rounds 3 bench_paths.py

Paths (float64, 2-D grids of side s, n = s²):

- ``sparse_mm fwd+bwd``: ``L x`` for the 5-point Laplacian ``L`` (CSR) and 16 right-hand sides, gradient w.r.t. ``L``'s
  values and ``x``;
- ``triangular fwd+bwd``: ``sparse_triangular_solve`` with the lower triangle of ``I + L``, 16 right-hand sides;
- ``CG fwd+bwd``: ``CG(rtol=1e-8)`` on ``I + L`` with 16 right-hand sides (implicit gradients);
- ``sparse_logdet fwd+bwd``: exact log-det of ``I + L`` and its gradient (selected inverse), default backend;
- ``GMRF matern log_prob+bwd``: ``GMRF(0, matern_spde((s, s), kappa, tau)).log_prob(x)``, gradient w.r.t. (κ, τ);
- ``GMRF condition``: the posterior given every 10th node observed (sparse Cholesky), its log_prob and gradient;
- ``SMVN precision_tril log_prob+bwd``: ``SparseMultivariateNormal(0, precision_tril=L)`` with the Cholesky factor
  of ``I + L`` as a learnable sparse factor, 8 samples' log_prob and gradient.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_times  # noqa: E402

import sparseprec  # noqa: E402
from sparseprec.cholesky import cholesky, sparse_logdet  # noqa: E402
from sparseprec.distributions import GMRF, SparseMultivariateNormal  # noqa: E402
from sparseprec.solvers import CG  # noqa: E402
from sparseprec.structures import grid_laplacian, matern_spde  # noqa: E402

F64 = torch.float64


def shifted_laplacian(s: int) -> torch.Tensor:
    L = grid_laplacian((s, s), dtype=F64).detach()
    crow, col, values = L.crow_indices(), L.col_indices(), L.values().clone()
    rows = torch.repeat_interleave(torch.arange(s * s), crow[1:] - crow[:-1])
    values[rows == col] += 1.0
    return torch.sparse_csr_tensor(crow, col, values, L.shape)


def rows_for(s: int, repeats: int) -> list[dict]:
    n = s * s
    g = torch.Generator().manual_seed(0)
    Q = shifted_laplacian(s)
    X = torch.randn(n, 16, generator=g, dtype=F64)
    values = Q.values().clone().requires_grad_()
    A = sparseprec.sparse_csr_tensor(Q.crow_indices(), Q.col_indices(), values, Q.shape)
    lower_dense_free = Q.to_sparse_coo().coalesce()
    keep = lower_dense_free.indices()[0] >= lower_dense_free.indices()[1]
    T = (
        torch.sparse_coo_tensor(lower_dense_free.indices()[:, keep], lower_dense_free.values()[keep], Q.shape)
        .coalesce()
        .to_sparse_csr()
    )
    t_values = T.values().clone().requires_grad_()
    Tv = sparseprec.sparse_csr_tensor(T.crow_indices(), T.col_indices(), t_values, T.shape)
    x = X.clone().requires_grad_()
    out = []

    def add(path: str, fn) -> None:
        seconds, _ = median_times({path: fn}, repeats)[path]  # one warm-up call (caches filled), then the median
        out.append({"path": path, "size": f"s={s}", "seconds": seconds})
        print(out[-1], flush=True)

    def mm():
        values.grad = x.grad = None
        sparseprec.sparse_mm(A, x).square().sum().backward()

    def tri():
        t_values.grad = x.grad = None
        sparseprec.sparse_triangular_solve(Tv, x, upper=False).sum().backward()

    def cg():
        values.grad = x.grad = None
        CG(rtol=1e-8)(A, x).sum().backward()

    def logdet():
        values.grad = None
        sparse_logdet(A).backward()

    kappa = torch.tensor(0.3, dtype=F64, requires_grad=True)
    tau = torch.tensor(1.0, dtype=F64, requires_grad=True)
    sample = GMRF(torch.zeros(n, dtype=F64), matern_spde((s, s), 0.3, 1.0).detach()).sample((2,))

    def matern():
        kappa.grad = tau.grad = None
        GMRF(torch.zeros(n, dtype=F64), matern_spde((s, s), kappa, tau)).log_prob(sample).sum().backward()

    observed = torch.arange(0, n, 10)
    obs = torch.sparse_coo_tensor(
        torch.stack([torch.arange(observed.numel()), observed]), torch.ones(observed.numel(), dtype=F64),
        (observed.numel(), n),
    ).coalesce().to_sparse_csr()  # fmt: skip
    y = torch.randn(observed.numel(), generator=g, dtype=F64)

    def condition():
        kappa.grad = tau.grad = None
        prior = GMRF(torch.zeros(n, dtype=F64), matern_spde((s, s), kappa, tau))
        posterior = prior.condition(obs, y, 4.0)
        posterior.log_prob(sample).sum().backward()

    factor = cholesky(Q)
    L = factor.L.to_sparse_csr()
    l_values = L.values().clone().requires_grad_()
    Lv = sparseprec.sparse_csr_tensor(L.crow_indices(), L.col_indices(), l_values, L.shape)
    z = torch.randn(8, n, generator=g, dtype=F64)

    def smvn():
        l_values.grad = None
        SparseMultivariateNormal(torch.zeros(n, dtype=F64), precision_tril=Lv).log_prob(z).sum().backward()

    add("sparse_mm fwd+bwd", mm)
    add("triangular fwd+bwd", tri)
    add("CG fwd+bwd", cg)
    add("sparse_logdet fwd+bwd", logdet)
    add("GMRF matern log_prob+bwd", matern)
    add("GMRF condition", condition)
    add("SMVN precision_tril log_prob+bwd", smvn)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="accepted for compare_revisions.py (writes nothing)")
    args = parser.parse_args()
    for s in args.sizes:
        rows_for(s, args.repeats)


if __name__ == "__main__":
    main()

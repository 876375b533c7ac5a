"""Benchmark of SparseMultivariateNormal: rsample and log_prob+backward, vs torchsparsegradutils and dense torch.

Problem: the lower Cholesky factor ``L`` of ``Q = I + 5-point Laplacian`` on an ``s × s`` grid (fill-reducing
ordering; CHOLMOD when installed, else SciPy), float64, CSR, used as ``precision_tril`` (a GMRF: ``x = μ + L⁻ᵀ ε``,
Mahalanobis term ``‖Lᵀ(x − μ)‖²``) and as ``scale_tril`` (``x = μ + L ε``, Mahalanobis term ``‖L⁻¹(x − μ)‖²``).

Measured in one run per size, methods interleaved, medians over the repeats after one warm-up call:

* ``rsample`` of 1 and of 16 samples: sparseprec vs ``torchsparsegradutils.distributions.SparseMultivariateNormal``
  (which only samples; given a CSR factor, its faster input), each distribution built from the values on every call
  as in a training loop (sparseprec with its default validation of the factor, and with ``validate_args=False``;
  torchsparsegradutils validates no sparse argument) vs torch's dense ``MultivariateNormal(scale_tril=dense L)``
  (``s = 100`` only, one timed run without warm-up: a dense n × n factor);
* ``log_prob + backward`` of one sample (gradients w.r.t. the factor's values, given as the parameter of
  ``sparseprec.sparse_csr_tensor``, and ``loc``) vs the ops layer's ``sparse_triangular_solve`` forward+backward with
  one right-hand side on the same factor (the target: within 3× of it at n = 10⁶), and vs dense torch at ``s = 100``;
* the peak resident memory added by one ``log_prob + backward`` in steady state (a fresh process per method with
  glibc's mmap threshold pinned, one warm-up call, ``VmHWM`` reset through ``/proc/self/clear_refs``, one call),
  against the bytes of the factor's values and indices plus a few n-vectors.

Run ``python benchmarks/bench_distributions.py`` (~5 min on 2 cores) or ``--sizes 100 300``; the table is written to
``docs/benchmarks.md`` between markers.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, median_times, package_version, peak_extra_bytes, write_section  # noqa: E402
from problems import cholesky_factor, grid_precision  # noqa: E402

import sparseprec  # noqa: E402
from sparseprec import SparseMultivariateNormal, sparse_csr_tensor, sparse_triangular_solve  # noqa: E402

try:
    from torchsparsegradutils.distributions import SparseMultivariateNormal as TsguMVN
except ImportError:  # pragma: no cover - the comparison needs the `test` extra
    TsguMVN = None

BEGIN, END = "<!-- bench_distributions:begin -->", "<!-- bench_distributions:end -->"
DENSE_MAX_N = 10_000
DENSE = "torch dense MultivariateNormal (scale_tril)"


def cases(s: int) -> tuple[dict[str, Callable[[], object]], dict]:
    L_sp, how = cholesky_factor(grid_precision(s))
    n, nnz = L_sp.shape[0], L_sp.nnz
    crow = torch.from_numpy(L_sp.indptr.astype(np.int64))
    col = torch.from_numpy(L_sp.indices.astype(np.int64))
    values = torch.from_numpy(L_sp.data).clone().requires_grad_()
    loc = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    x = torch.randn(n, dtype=torch.float64)
    fns: dict[str, Callable[[], object]] = {}

    def ours(form: str, validate: bool | None = None) -> SparseMultivariateNormal:
        L = sparse_csr_tensor(crow, col, values, (n, n))
        return SparseMultivariateNormal(loc, **{f"{form}_tril": L}, validate_args=validate)

    def theirs(form: str):
        return TsguMVN(loc, **{f"{form}_tril": torch.sparse_csr_tensor(crow, col, values, (n, n))})

    def clear() -> None:
        values.grad = loc.grad = None

    ours_no_validation = "sparseprec, validate_args=False"
    for form in ("precision", "scale"):
        for k in (1, 16):
            fns[(form, f"rsample {k}", "sparseprec")] = lambda f=form, k=k: ours(f).rsample((k,))
            fns[(form, f"rsample {k}", ours_no_validation)] = lambda f=form, k=k: ours(f, False).rsample((k,))
            if TsguMVN is not None:
                fns[(form, f"rsample {k}", "torchsparsegradutils")] = lambda f=form, k=k: theirs(f).rsample((k,))

        def log_prob_backward(f=form, validate=None) -> None:
            clear()
            ours(f, validate).log_prob(x).backward()

        fns[(form, "log_prob + backward", "sparseprec")] = log_prob_backward
        fns[(form, "log_prob + backward", ours_no_validation)] = lambda f=form: log_prob_backward(f, False)

    def solve_backward() -> None:
        clear()
        L = sparse_csr_tensor(crow, col, values, (n, n))
        sparse_triangular_solve(L, x.unsqueeze(-1), upper=False).sum().backward()

    fns[("—", "log_prob + backward", "ops: one triangular solve + backward (p = 1)")] = solve_backward

    if n <= DENSE_MAX_N:
        # torch's dense MVN given the same factor: as scale_tril (its cheapest form; a precision_matrix argument
        # would add an O(n³) inversion per construction). Timed once each (seconds per call at n = 10⁴).
        dense_L = torch.from_numpy(L_sp.toarray()).requires_grad_()
        dense = torch.distributions.MultivariateNormal(loc.detach(), scale_tril=dense_L.detach())
        for k in (1, 16):
            fns[("scale", f"rsample {k}", DENSE)] = lambda k=k: dense.rsample((k,))

        def dense_backward() -> None:
            dense_L.grad = loc.grad = None
            torch.distributions.MultivariateNormal(loc, scale_tril=dense_L).log_prob(x).backward()

        fns[("scale", "log_prob + backward", DENSE)] = dense_backward
    info = dict(n=n, nnz=nnz, how=how, model_bytes=nnz * (8 + 8) + (n + 1) * 8 + 4 * n * 8)
    return fns, info


def run_size(rows: list[dict], s: int, repeats: int, memory: bool) -> dict:
    fns, info = cases(s)
    med = median_times(fns, repeats, once={key for key in fns if key[2] == DENSE})
    solve = med[("—", "log_prob + backward", "ops: one triangular solve + backward (p = 1)")][0]
    for (form, what, method), (t, runs) in med.items():
        ours = med.get((form, what, "sparseprec"), (None,))[0]
        mem = None
        if memory and what == "log_prob + backward" and method != DENSE:
            mem = measure_memory(s, form, method)
        rows.append(
            dict(
                s=s, n=info["n"], nnz=info["nnz"], form=form, what=what, method=method, ms=1e3 * t,
                runs=runs,
                vs_ours=None if ours is None or method == "sparseprec" else t / ours,
                vs_solve=t / solve if what == "log_prob + backward" else None, mem=mem,
                model_mib=info["model_bytes"] / 2**20,
            )
        )  # fmt: skip
        print(rows[-1], flush=True)
    return info


def write_table(rows: list[dict], hows: set[str], argv: list[str]) -> None:
    lines = [
        BEGIN,
        "## SparseMultivariateNormal (`benchmarks/bench_distributions.py`)",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, {platform.platform()}; Python "
        f"{platform.python_version()}; torch {torch.__version__}, SciPy {scipy.__version__}, torchsparsegradutils "
        f"{package_version('torchsparsegradutils')}, sparseprec {sparseprec.__version__}. "
        f"Factor: {', '.join(sorted(hows))}. "
        f"Command: `python benchmarks/bench_distributions.py {' '.join(argv)}`.",
        "",
        "Problem: the Cholesky factor `L` of `Q = I + 5-point Laplacian` on an s × s grid (float64, CSR), used as "
        "`precision_tril` (GMRF) or `scale_tril`. Medians over interleaved rounds after a warm-up, in ms. "
        "`× ours`: the method's time divided by sparseprec's on the same row kind (> 1: sparseprec is faster). "
        "`× solve`: divided by one `sparse_triangular_solve` forward+backward with one right-hand side on the same "
        "factor. Peak MiB: resident memory added by one log_prob+backward; `model MiB` is the factor's values and "
        "indices plus four n-vectors.",
        "",
        "| s | n | nnz(L) | form | what | method | ms | × ours | × solve | peak MiB | model MiB | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['s']} | {r['n']:,} | {r['nnz']:,} | {r['form']} | {r['what']} | {r['method']} | {fmt(r['ms'], 1)} "
            f"| {fmt(r['vs_ours'])} | {fmt(r['vs_solve'])} | {fmt(r['mem'], 0)} | {fmt(r['model_mib'], 0)} "
            f"| {r['runs']} |"
        )
    lines.append(END)
    write_section(BEGIN, END, "\n".join(lines))


def memory_child(s: int, form: str, method: str) -> None:
    """Child-process mode: print the peak extra bytes of one log_prob+backward (after a warm-up call)."""
    fns, _ = cases(s)
    fn = fns[(form, "log_prob + backward", method)]
    fn()
    print(peak_extra_bytes(fn))


def measure_memory(s: int, form: str, method: str) -> float:
    """Peak extra MiB in a fresh process whose large blocks come straight from mmap (so freed memory leaves it)."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    command = [sys.executable, __file__, "--memory-child", str(s), form, method]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1]) / 2**20


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        memory_child(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows: list[dict] = []
    hows = set()
    for s in args.sizes:
        hows.add(run_size(rows, s, args.repeats if s <= 300 else 5, not args.no_memory)["how"])
    if not args.no_write:
        write_table(rows, hows, sys.argv[1:])


if __name__ == "__main__":
    main()

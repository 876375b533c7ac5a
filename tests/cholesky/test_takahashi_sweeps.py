"""The two sweeps of the supernodal Takahashi recursions (compiled and NumPy) against the dense inverse.

Every entry of ``Z = A⁻¹`` on the filled pattern of ``L`` (``A = L Lᵀ``, permuted ordering) is read through
``SupernodalStructure.locate`` and compared with ``inv(L Lᵀ)`` computed densely: supernodes of width 1 (a chain, an
arrow), wide dense blocks (a dense matrix, a block-diagonal matrix), 2-D and 3-D grids (many supernodes with rows
shared between ancestors), random patterns, and a graph whose factor has several elimination trees.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from sparseprec.cholesky.takahashi import SupernodalStructure, _compiled_sweep, takahashi


def _grid(shape: tuple[int, ...]) -> sp.csc_matrix:
    n = int(np.prod(shape))
    A = sp.csr_matrix((n, n))
    for axis, size in enumerate(shape):
        T = sp.diags([np.ones(size - 1), np.ones(size - 1)], [-1, 1])
        parts = [sp.identity(s) if d != axis else T for d, s in enumerate(shape)]
        K = parts[0]
        for P in parts[1:]:
            K = sp.kron(K, P)
        A = A + K
    return (-A + sp.diags(np.asarray(abs(A).sum(axis=1)).ravel() + 0.5)).tocsc()


def _random(n: int, density: float, seed: int) -> sp.csc_matrix:
    rng = np.random.default_rng(seed)
    B = sp.random(n, n, density=density, random_state=rng, format="csr")
    B.data = rng.uniform(-1.0, 1.0, B.nnz)
    S = B + B.T
    return (S + sp.diags(np.asarray(abs(S).sum(axis=1)).ravel() + 1.0)).tocsc()


def _arrow(n: int) -> sp.csc_matrix:
    A = sp.lil_matrix((n, n))
    A.setdiag(4.0 + np.arange(n) % 3)
    A[n - 1, : n - 1] = 0.3
    A[: n - 1, n - 1] = 0.3
    return A.tocsc()


def _blocks() -> sp.csc_matrix:
    rng = np.random.default_rng(4)
    blocks = []
    for size in (1, 7, 30, 2):
        M = rng.standard_normal((size, size))
        blocks.append(M @ M.T + size * np.eye(size))
    return sp.block_diag(blocks, format="csc")


def _chain(n: int) -> sp.csc_matrix:
    return sp.diags([-np.ones(n - 1), 2.5 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csc")


def _dense(n: int) -> sp.csc_matrix:
    M = np.random.default_rng(9).standard_normal((n, n))
    return sp.csc_matrix(M @ M.T + n * np.eye(n))


PROBLEMS = {
    "chain": lambda: _chain(40),
    "arrow": lambda: _arrow(25),
    "dense": lambda: _dense(60),
    "blocks": _blocks,
    "grid2d": lambda: _grid((17, 13)),
    "grid3d": lambda: _grid((7, 6, 5)),
    "random": lambda: _random(150, 0.02, 1),
    "random_dense": lambda: _random(90, 0.15, 2),
}


def _factor(A: sp.csc_matrix, ordering: str) -> sp.csc_matrix:
    """A lower Cholesky factor of ``A[p][:, p]`` with its full symbolic fill (stored zeros kept), by dense Cholesky
    on a fill pattern from a symbolic elimination (no scikit-sparse needed)."""
    n = A.shape[0]
    if ordering == "rcm":
        from scipy.sparse.csgraph import reverse_cuthill_mckee

        p = reverse_cuthill_mckee(sp.csr_matrix(A), symmetric_mode=True)
    else:
        p = np.arange(n)
    Ap = A[p][:, p].toarray()
    # symbolic fill: the pattern of L is the transitive closure along the elimination (dense boolean on small n)
    fill = Ap != 0
    for j in range(n):
        below = np.flatnonzero(fill[j + 1 :, j]) + j + 1
        fill[np.ix_(below, below)] = True
    Ldense = np.linalg.cholesky(Ap)
    mask = np.tril(fill)  # explicit CSC arrays keep the stored zeros of the fill
    indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=0))])
    indices = np.concatenate([np.flatnonzero(mask[:, j]) for j in range(n)])
    data = Ldense[indices, np.repeat(np.arange(n), np.diff(indptr))]
    L = sp.csc_matrix((data, indices, indptr), shape=(n, n))
    return L, Ap


def _check(L: sp.csc_matrix, Ap: np.ndarray, compiled: bool) -> None:
    structure = SupernodalStructure(L)
    Z = takahashi(structure, L.data, compiled=compiled)
    Lc = L.tocoo()
    i, j = Lc.row.astype(np.int64), Lc.col.astype(np.int64)
    expected = np.linalg.inv(Ap)[i, j]
    np.testing.assert_allclose(Z[structure.locate(i, j)], expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())


requires_numba = pytest.mark.skipif(_compiled_sweep() is None, reason="Numba is not installed")


@pytest.mark.parametrize("ordering", ["natural", "rcm"])
@pytest.mark.parametrize("name", sorted(PROBLEMS))
@pytest.mark.parametrize("compiled", [pytest.param(True, marks=requires_numba), False], ids=["compiled", "numpy"])
def test_sweep_matches_dense_inverse_on_the_filled_pattern(name, ordering, compiled):
    L, Ap = _factor(PROBLEMS[name](), ordering)
    _check(L, Ap, compiled)


@requires_numba
def test_compiled_and_numpy_sweeps_agree_on_a_cholmod_factor():
    cholmod = pytest.importorskip("sksparse.cholmod")
    A = _grid((30, 30))
    factor = cholmod.analyze(sp.tril(A).tocsc(), mode="supernodal").cholesky(sp.tril(A).tocsc())
    L = sp.csc_matrix(factor.L())
    L.sort_indices()
    structure = SupernodalStructure(L)
    assert structure.starts.size < A.shape[0]  # genuine supernodes of several columns
    compiled, loop = takahashi(structure, L.data), takahashi(structure, L.data, compiled=False)
    np.testing.assert_allclose(compiled, loop, rtol=1e-12, atol=1e-15)
    P = factor.P()
    Ap = A[P][:, P].toarray()
    j = np.arange(A.shape[0])
    np.testing.assert_allclose(compiled[structure.locate(j, j)], np.diag(np.linalg.inv(Ap)), rtol=1e-11)


@pytest.mark.parametrize("compiled", [pytest.param(True, marks=requires_numba), False], ids=["compiled", "numpy"])
def test_a_zero_pivot_is_reported_with_its_column(compiled):
    L, _ = _factor(_chain(12), "natural")
    L = L.copy()
    column = 7
    L.data[L.indptr[column]] = 0.0  # L_77 = 0: singular diagonal block
    with pytest.raises(ValueError, match=f"singular diagonal block in the factor at column {column}"):
        takahashi(SupernodalStructure(L), L.data, compiled=compiled)


def test_numba_is_imported_on_first_use_not_with_the_library():
    """Numba's import costs about 0.3 s: ``import sparseprec`` must not pay it (a fresh interpreter)."""
    code = "import sys, sparseprec, sparseprec.cholesky, sparseprec.laplace\nassert 'numba' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr

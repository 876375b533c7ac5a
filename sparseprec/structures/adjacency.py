"""Adjacency matrices of undirected graphs: construction, validation and connected components.

An adjacency here is a torch sparse CSR ``(n, n)`` float64 matrix with ``W_ij = 1`` for each edge ``i ~ j`` (both
``(i, j)`` and ``(j, i)`` stored), no self-loops. The builders of :mod:`sparseprec.structures` accept such a tensor,
any other symmetric torch sparse/dense 0/1 matrix, or a SciPy sparse matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import torch

from ._assemble import as_int

__all__ = ["adjacency_from_pairs", "adjacency_from_scipy", "connected_components", "as_scipy_adjacency"]


def _to_torch(W: sp.csr_matrix) -> torch.Tensor:
    W = W.tocsr()
    W.sort_indices()
    return torch.sparse_csr_tensor(
        torch.from_numpy(W.indptr.astype(np.int64)),
        torch.from_numpy(W.indices.astype(np.int64)),
        torch.from_numpy(W.data.astype(np.float64)),
        W.shape,
    )


def adjacency_from_pairs(pairs: object, n: int | None = None) -> torch.Tensor:
    """Adjacency of the undirected graph with the given edges.

    Parameters
    ----------
    pairs : array-like of shape ``(m, 2)``
        Edges ``(i, j)``, 0-based; each edge may be listed once or in both directions (duplicates are merged).
    n : int, optional
        Number of nodes (default: largest index + 1); nodes without edges are allowed (islands).

    Returns
    -------
    torch.Tensor
        Symmetric 0/1 sparse CSR ``(n, n)`` float64, no diagonal.

    Raises
    ------
    ValueError
        Wrong shape, non-integer, negative or out-of-range indices, self-loops, ``n < 0``.
    TypeError
        ``n`` not an int (``2.5`` is refused, not truncated).

    Examples
    --------
    >>> from sparseprec.structures import adjacency_from_pairs
    >>> adjacency_from_pairs([(0, 1), (1, 2)]).to_dense()
    tensor([[0., 1., 0.],
            [1., 0., 1.],
            [0., 1., 0.]], dtype=torch.float64)
    >>> adjacency_from_pairs([], n=3).to_dense().abs().sum()  # three isolated nodes
    tensor(0., dtype=torch.float64)
    """
    e = torch.as_tensor(pairs).detach().cpu().numpy() if isinstance(pairs, torch.Tensor) else np.asarray(pairs)
    if e.size == 0:
        # no edges: an empty list has no dtype of its own (NumPy makes it float64), so any empty input is accepted
        e = np.zeros((0, 2), dtype=np.int64)
    if e.ndim != 2 or e.shape[1] != 2:
        raise ValueError(f"pairs must have shape (m, 2), got {tuple(e.shape)}")
    if not np.issubdtype(e.dtype, np.integer):
        raise ValueError(f"pairs must hold integer node indices, got dtype {e.dtype}")
    if e.size and e.min() < 0:
        raise ValueError(f"pairs must hold non-negative node indices, got {int(e.min())}")
    size = int(e.max()) + 1 if e.size else 0
    if n is None:
        n = size
    else:
        n = as_int(n, "n", 0)
    if size > n:
        raise ValueError(f"pairs refer to node {size - 1} but n = {n}")
    loops = e[:, 0] == e[:, 1]
    if loops.any():
        raise ValueError(f"pairs must not contain self-loops, got ({e[loops][0, 0]}, {e[loops][0, 1]})")
    rows = np.concatenate([e[:, 0], e[:, 1]])
    cols = np.concatenate([e[:, 1], e[:, 0]])
    W = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n)).tocsr()
    W.data[:] = 1.0  # duplicates merged to one edge
    return _to_torch(W)


def as_scipy_adjacency(adjacency: object, name: str = "adjacency") -> sp.csr_matrix:
    """Validate an adjacency (torch sparse/dense or SciPy) and return it as a SciPy CSR 0/1 matrix."""
    if sp.issparse(adjacency):
        W = sp.csr_matrix(adjacency, dtype=np.float64)
    elif isinstance(adjacency, torch.Tensor):
        A = adjacency.detach().cpu()
        if A.layout == torch.strided:
            W = sp.csr_matrix(A.to(torch.float64).numpy())
        else:
            coo = A.to_sparse_coo().coalesce()
            idx = coo.indices().numpy()
            W = sp.csr_matrix((coo.values().to(torch.float64).numpy(), (idx[0], idx[1])), shape=tuple(A.shape))
    else:
        raise TypeError(f"{name} must be a torch tensor or a SciPy sparse matrix, got {type(adjacency).__name__}")
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"{name} must be square (n, n), got shape {W.shape}")
    W.eliminate_zeros()
    if not np.all(W.data == 1.0):
        raise ValueError(
            f"{name} must hold 0/1 entries (a graph's adjacency), got values such as {W.data[W.data != 1][0]}"
        )
    if W.diagonal().any():
        i = int(np.flatnonzero(W.diagonal())[0])
        raise ValueError(f"{name} must have no self-loops, got a nonzero diagonal entry at ({i}, {i})")
    asymmetric = W - W.T
    asymmetric.eliminate_zeros()
    if asymmetric.nnz:
        r, c = asymmetric.nonzero()
        raise ValueError(f"{name} must be symmetric (an undirected graph), but ({r[0]}, {c[0]}) has no mirror entry")
    W.sort_indices()
    return W


def adjacency_from_scipy(matrix: sp.spmatrix) -> torch.Tensor:
    """The torch CSR adjacency of a SciPy sparse 0/1 symmetric matrix (validated as in :func:`as_scipy_adjacency`).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from sparseprec.structures import adjacency_from_scipy
    >>> adjacency_from_scipy(sp.csr_matrix([[0, 1], [1, 0]])).values()
    tensor([1., 1.], dtype=torch.float64)
    """
    return _to_torch(as_scipy_adjacency(matrix, "matrix"))


def connected_components(adjacency: object) -> tuple[int, torch.Tensor]:
    """Connected components of an undirected graph: their number and each node's component label (int64, ``(n,)``).

    Labels are numbered in order of each component's smallest node.

    Examples
    --------
    >>> from sparseprec.structures import adjacency_from_pairs, connected_components
    >>> connected_components(adjacency_from_pairs([(0, 1), (2, 3)], n=5))
    (3, tensor([0, 0, 1, 1, 2]))
    """
    W = as_scipy_adjacency(adjacency)
    count, labels = csgraph.connected_components(W, directed=False)
    return int(count), torch.from_numpy(labels.astype(np.int64))

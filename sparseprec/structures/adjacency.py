"""Adjacency matrices of undirected graphs: the one conversion of every graph input, validation, components.

An adjacency here is a torch sparse CSR ``(n, n)`` float64 matrix with ``W_ij = 1`` for each edge ``i ~ j`` (both
``(i, j)`` and ``(j, i)`` stored), no self-loops. Every function of sparseprec that takes an adjacency (``icar``,
``car``, ``graph_laplacian``, ``bym2_scaling``, ``connected_components``, the ``ICAR`` and ``CAR`` distributions ...)
reads it through :func:`as_adjacency`, so each accepts the same inputs: such a tensor, any symmetric 0/1 torch
sparse/dense or SciPy sparse matrix, an edge list, a ``libpysal.weights.W`` (``Queen``, ``Rook``, ...), a
``libpysal.graph.Graph`` or a networkx graph (:mod:`sparseprec.structures.graphs` reads the last three).
:func:`contiguity` builds the queen or rook graph of a GeoDataFrame's polygons through libpysal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import torch

from .._validation import check_flag
from ._assemble import as_int
from .graphs import contiguity_weights, read_foreign_graph

__all__ = [
    "adjacency_from_pairs",
    "adjacency_from_scipy",
    "as_adjacency",
    "contiguity",
    "connected_components",
    "as_scipy_adjacency",
]


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
    e = pairs.detach().cpu().numpy() if isinstance(pairs, torch.Tensor) else np.asarray(pairs)
    return _to_torch(_pairs_matrix(e, n, "pairs"))


def _pairs_matrix(e: np.ndarray, n: int | None, name: str) -> sp.csr_matrix:
    """The symmetric 0/1 SciPy CSR adjacency of the edge list ``e`` (``(m, 2)``), validated."""
    if e.size == 0:
        # no edges: an empty list has no dtype of its own (NumPy makes it float64), so any empty input is accepted
        e = np.zeros((0, 2), dtype=np.int64)
    if e.ndim != 2 or e.shape[1] != 2:
        raise ValueError(f"{name} must have shape (m, 2), got {tuple(e.shape)}")
    if not np.issubdtype(e.dtype, np.integer):
        raise ValueError(f"{name} must hold integer node indices, got dtype {e.dtype}")
    if e.size and e.min() < 0:
        raise ValueError(f"{name} must hold non-negative node indices, got {int(e.min())}")
    size = int(e.max()) + 1 if e.size else 0
    n = size if n is None else as_int(n, "n", 0)
    if size > n:
        raise ValueError(f"{name} refer to node {size - 1} but n = {n}")
    loops = e[:, 0] == e[:, 1]
    if loops.any():
        raise ValueError(f"{name} must not contain self-loops, got ({e[loops][0, 0]}, {e[loops][0, 1]})")
    rows = np.concatenate([e[:, 0], e[:, 1]])
    cols = np.concatenate([e[:, 1], e[:, 0]])
    W = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n)).tocsr()
    W.data[:] = 1.0  # duplicates merged to one edge
    W.sort_indices()
    return W


def _is_edge_list(array: np.ndarray | torch.Tensor) -> bool:
    """A dense 2-D integer array with two columns is an edge list; any other dense array is a matrix."""
    if isinstance(array, torch.Tensor):
        integer = not (array.dtype.is_floating_point or array.dtype.is_complex or array.dtype == torch.bool)
    else:
        integer = np.issubdtype(array.dtype, np.integer)
    return array.ndim == 2 and array.shape[1] == 2 and integer


def _read(
    graph: object, ids: Sequence[object] | None, name: str
) -> tuple[sp.csr_matrix | None, list[object] | None, str]:
    """The graph's weight matrix (unvalidated; ``None`` for an edge list), its node labels (``None``: ``0..n-1``)
    and its kind."""
    if sp.issparse(graph):
        return sp.csr_matrix(graph, dtype=np.float64), None, "SciPy sparse matrix"
    if isinstance(graph, torch.Tensor):
        A = graph.detach().cpu()
        if A.layout == torch.strided:
            if _is_edge_list(A):
                return None, None, "edge list"
            if A.dim() != 2 or A.shape[0] != A.shape[1]:
                raise ValueError(
                    f"{name} must be a square (n, n) adjacency matrix or an integer (m, 2) edge list, got a dense "
                    f"tensor of shape {tuple(A.shape)} and dtype {A.dtype}"
                )
            return sp.csr_matrix(A.to(torch.float64).numpy()), None, "dense tensor"
        if A.dim() != 2:
            raise ValueError(
                f"{name} must be a square (n, n) adjacency matrix, got a sparse tensor of shape {tuple(A.shape)}"
            )
        coo = A.to_sparse_coo().coalesce()
        idx = coo.indices().numpy()
        values = coo.values().to(torch.float64).numpy()
        return sp.csr_matrix((values, (idx[0], idx[1])), shape=tuple(A.shape)), None, "sparse tensor"
    foreign = read_foreign_graph(graph, ids, name)
    if foreign is not None:
        return foreign
    if isinstance(graph, np.ndarray) and not _is_edge_list(graph):
        if graph.ndim != 2 or graph.shape[0] != graph.shape[1] or graph.dtype == object:
            raise ValueError(
                f"{name} must be a square (n, n) adjacency matrix or an integer (m, 2) edge list, got an array of "
                f"shape {graph.shape} and dtype {graph.dtype}"
            )
        return sp.csr_matrix(graph, dtype=np.float64), None, "dense array"
    if isinstance(graph, np.ndarray) or (isinstance(graph, list | tuple) and not isinstance(graph, str)):
        return None, None, "edge list"
    raise TypeError(
        f"{name} must be a graph: a torch or SciPy sparse matrix, a dense tensor/array, an edge list (m, 2), a "
        f"libpysal W or Graph, or a networkx graph; got {type(graph).__name__}"
    )


def _label(labels: list[object] | None, i: int) -> str:
    return str(i) if labels is None or labels[i] == i else f"{i} ({labels[i]!r})"


def _reorder(
    W: sp.csr_matrix, labels: list[object] | None, ids: Sequence[object], kind: str
) -> tuple[sp.csr_matrix, list[object]]:
    """``W`` with node ``i`` the input's node labelled ``ids[i]``; ``ids`` must list every label once."""
    if isinstance(ids, str | bytes) or not hasattr(ids, "__iter__"):
        raise TypeError(f"ids must be a sequence of node labels, got {type(ids).__name__}")
    ids = [v.item() if isinstance(v, np.generic) else v for v in ids]
    n = W.shape[0]
    labels = list(range(n)) if labels is None else labels
    position = {label: i for i, label in enumerate(labels)}
    try:
        perm = np.array([position.get(v, -1) for v in ids], dtype=np.int64)
    except TypeError as error:
        raise TypeError(f"ids must hold hashable node labels: {error}") from error
    missing_id = next((v for v, p in zip(ids, perm, strict=True) if p < 0), None)
    if (perm < 0).any():
        raise ValueError(f"ids must list the nodes of the {kind}, but {missing_id!r} is not one of them")
    if len(set(perm.tolist())) != len(ids):
        repeated = next(v for k, v in enumerate(ids) if ids.index(v) != k)
        raise ValueError(f"ids must list every node once, but {repeated!r} is repeated")
    if len(ids) != n:
        absent = next(label for label in labels if label not in set(ids))
        raise ValueError(f"ids must list all {n} nodes of the {kind}, got {len(ids)}; {absent!r} is missing")
    return W[perm][:, perm].tocsr(), ids


def as_scipy_adjacency(
    adjacency: object,
    name: str = "adjacency",
    *,
    n: int | None = None,
    symmetrize: bool = False,
    ids: Sequence[object] | None = None,
) -> sp.csr_matrix:
    """The one conversion of every graph input to a validated SciPy CSR 0/1 adjacency (see :func:`as_adjacency`)."""
    symmetrize = check_flag(symmetrize, "symmetrize")
    W, labels, kind = _read(adjacency, ids, name)
    if W is None:  # an edge list
        pairs = adjacency.detach().cpu().numpy() if isinstance(adjacency, torch.Tensor) else np.asarray(adjacency)
        W = _pairs_matrix(pairs, n, name)
    elif n is not None and as_int(n, "n", 0) != W.shape[0]:
        raise ValueError(f"n must be the number of nodes of the {kind} ({W.shape[0]}) when given, got {n}")
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"{name} must be square (n, n), got shape {W.shape}")
    if ids is not None:
        W, labels = _reorder(W, labels, ids, kind)
    W.sum_duplicates()
    W.eliminate_zeros()  # a zero weight is no edge (libpysal's Graph stores its isolates as zero self-weights)
    if not np.all(np.isfinite(W.data)) or (W.data < 0).any():
        bad = W.data[~np.isfinite(W.data) | (W.data < 0)][0]
        raise ValueError(f"{name} must hold non-negative finite weights, got {bad}")
    if W.diagonal().any():
        i = int(np.flatnonzero(W.diagonal())[0])
        raise ValueError(f"{name} must have no self-loops, got a nonzero diagonal entry at node {_label(labels, i)}")
    if symmetrize:
        W = ((W + W.T) != 0).astype(np.float64).tocsr()
    else:
        if not np.all(W.data == 1.0):
            rows = np.repeat(np.arange(W.shape[0]), np.diff(W.indptr))
            k = int(np.flatnonzero(W.data != 1.0)[0])
            raise ValueError(
                f"{name} must hold 0/1 entries (a graph's adjacency), got the weight {W.data[k]:g} at "
                f"({_label(labels, int(rows[k]))}, {_label(labels, int(W.indices[k]))}) of the {kind} (a "
                "row-standardised or weighted graph): pass symmetrize=True to as_adjacency to keep its edges with "
                "weight 1, or a binary graph (libpysal: W.transform = 'B')"
            )
        asymmetric = W - W.T  # +1 where (r, c) is an edge and (c, r) is not
        asymmetric.data[asymmetric.data < 0] = 0
        asymmetric.eliminate_zeros()
        if asymmetric.nnz:
            r, c = asymmetric.nonzero()
            raise ValueError(
                f"{name} must be symmetric (an undirected graph), but ({_label(labels, int(r[0]))}, "
                f"{_label(labels, int(c[0]))}) of the {kind} has no mirror entry (a directed graph such as libpysal's "
                "KNN): pass symmetrize=True to as_adjacency for the graph of A + Aᵀ (i ~ j if either lists the other)"
            )
    W.sort_indices()
    return W


def as_adjacency(
    graph: object,
    n: int | None = None,
    *,
    symmetrize: bool = False,
    ids: Sequence[object] | None = None,
) -> torch.Tensor:
    r"""The adjacency of a graph given in any of the forms spatial statisticians use: torch CSR, float64, 0/1.

    The one conversion behind every sparseprec function that takes an adjacency. An edge ``i ~ j`` is a nonzero
    weight :math:`w_{ij}`; the result is :math:`W_{ij} = 1` for the edges, ``0`` elsewhere, no diagonal.

    Parameters
    ----------
    graph
        One of

        * a ``libpysal.weights.W`` (``Queen``, ``Rook``, ``KNN``, read from a GAL/GWT file, ...): nodes in
          ``W.id_order``; islands (ids without neighbours) are kept as nodes without edges, so ``n == W.n``;
        * a ``libpysal.graph.Graph``: nodes in ``Graph.unique_ids`` (isolates kept likewise);
        * a networkx graph (``Graph``, ``DiGraph``, ...): node ``i`` is the node labelled ``i``, so the labels must
          be the integers ``0..n-1`` unless ``ids`` is given; an edge's weight is its ``"weight"`` attribute, 1 if
          absent; nodes without edges are kept;
        * a SciPy sparse matrix, a torch sparse (COO/CSR) tensor or a dense float/bool tensor or NumPy array
          ``(n, n)``;
        * an edge list: a sequence of pairs ``(i, j)`` or an integer ``(m, 2)`` tensor/array of 0-based node indices,
          each edge once or in both directions (as :func:`adjacency_from_pairs`). A dense *integer* array with two
          columns is always read as an edge list: give a dense adjacency matrix as float or bool.
    n : int, optional
        The number of nodes. For an edge list, nodes beyond its largest index are nodes without edges (default:
        largest index + 1); for any other input it must equal the input's own number of nodes.
    symmetrize : bool
        ``False`` (default): the input must already be an undirected 0/1 graph: symmetric, every weight 0 or 1;
        anything else is a ``ValueError`` that names the first offending entry. ``True``: use the graph of
        :math:`A + A^	op` with every weight set to 1 — ``i ~ j`` if ``i`` lists ``j`` *or* ``j`` lists ``i`` — for
        directed graphs (libpysal's ``KNN``, whose ``i`` lists its ``k`` nearest ``j`` but not always the converse)
        and weighted ones (a row-standardised ``W`` with ``transform = 'R'``, whose weights are ``1/d_i``).
    ids : sequence, optional
        The node order: node ``i`` of the result is the input's node labelled ``ids[i]`` (a W's or Graph's ids, a
        networkx node label; ``0..n-1`` for matrices and edge lists). Every label exactly once. E.g. a W read from a
        GAL file keyed by FIPS codes, in the rows' order of a GeoDataFrame: ``as_adjacency(W, ids=gdf["FIPS"])``.

    Returns
    -------
    torch.Tensor
        Symmetric 0/1 sparse CSR ``(n, n)`` float64, no diagonal, sorted column indices.

    Raises
    ------
    ValueError
        A weight other than 0/1 or an asymmetric matrix without ``symmetrize=True``; negative or non-finite weights;
        a self-loop (also with ``symmetrize``: a node is not its own neighbour in a CAR model); a non-square matrix;
        edge-list errors (see :func:`adjacency_from_pairs`); networkx node labels other than ``0..n-1`` without
        ``ids``; ``ids`` that miss, repeat or add a node; ``n`` different from a graph object's size.
    TypeError
        An input of another type (a GeoDataFrame: use :func:`contiguity`), ``symmetrize`` not a bool, ``n`` not an
        int.

    Examples
    --------
    >>> import networkx as nx
    >>> from sparseprec.structures import as_adjacency
    >>> path = nx.path_graph(3)                   # 0 - 1 - 2
    >>> path.add_node(3)                          # an island
    >>> as_adjacency(path).to_dense()
    tensor([[0., 1., 0., 0.],
            [1., 0., 1., 0.],
            [0., 1., 0., 0.],
            [0., 0., 0., 0.]], dtype=torch.float64)
    >>> import torch
    >>> torch.equal(as_adjacency([(0, 1), (1, 2)], n=4).to_dense(), as_adjacency(path).to_dense())  # edge list
    True
    >>> knn = nx.DiGraph([(0, 1), (1, 0), (2, 1)])  # 2 lists 1 as a neighbour, 1 does not list 2
    >>> as_adjacency(knn, symmetrize=True).to_dense()
    tensor([[0., 1., 0.],
            [1., 0., 1.],
            [0., 1., 0.]], dtype=torch.float64)
    """
    return _to_torch(as_scipy_adjacency(graph, "graph", n=n, symmetrize=symmetrize, ids=ids))


def contiguity(gdf: object, kind: str = "queen", ids: Sequence[object] | None = None) -> torch.Tensor:
    """The queen or rook contiguity adjacency of a GeoDataFrame's polygons, through libpysal.

    ``kind="queen"``: two polygons are neighbours when they share at least one boundary vertex;
    ``kind="rook"``: when they share a boundary edge (two consecutive vertices). libpysal decides this from the
    polygons' vertices (``libpysal.weights.Queen`` / ``Rook.from_dataframe``), so polygons that touch along a border
    digitised with different vertices on each side are not rook neighbours, and polygons separated by water are not
    neighbours at all: add such links by hand if the model needs them (the Scottish lip cancer graph does; see
    ``docs/structures.md``). A polygon without neighbours (an island) is kept as a node without edges.
    The same as ``as_adjacency(Queen.from_dataframe(gdf, use_index=False))`` (``Rook``), node ``i`` the ``i``-th row.

    Parameters
    ----------
    gdf : geopandas.GeoDataFrame or geopandas.GeoSeries
        Polygons or MultiPolygons, one per area, none missing or empty.
    kind : {"queen", "rook"}
    ids : sequence, optional
        Index labels of ``gdf`` giving the node order: node ``i`` is the row labelled ``ids[i]`` (every row exactly
        once). Default: the rows' order. E.g. ``contiguity(gdf.set_index("District"), ids=range(1, 57))``.

    Returns
    -------
    torch.Tensor
        Symmetric 0/1 sparse CSR ``(n, n)`` float64, ``n = len(gdf)``.

    Raises
    ------
    ImportError
        libpysal (or geopandas) is not installed: ``pip install 'sparseprec[spatial]'``.
    TypeError
        ``gdf`` not a GeoDataFrame or GeoSeries.
    ValueError
        ``kind`` not ``"queen"``/``"rook"``; a missing, empty or non-polygon geometry (named by its row); ``ids``
        that miss or repeat a row or name a label that is not in the index.

    Examples
    --------
    >>> import geopandas
    >>> from shapely.geometry import box
    >>> from sparseprec.structures import contiguity
    >>> squares = geopandas.GeoSeries([box(0, 0, 1, 1), box(1, 0, 2, 1), box(1, 1, 2, 2), box(5, 5, 6, 6)])
    >>> contiguity(squares).to_dense()            # 0 and 2 touch at a corner; 3 is an island
    tensor([[0., 1., 1., 0.],
            [1., 0., 1., 0.],
            [1., 1., 0., 0.],
            [0., 0., 0., 0.]], dtype=torch.float64)
    >>> contiguity(squares, kind="rook").to_dense()[0]
    tensor([0., 1., 0., 0.], dtype=torch.float64)
    """
    weights = contiguity_weights(gdf, kind)
    if ids is None:
        return as_adjacency(weights)
    index = gdf.index
    if isinstance(ids, str | bytes) or not hasattr(ids, "__iter__"):
        raise TypeError(f"ids must be a sequence of index labels of gdf, got {type(ids).__name__}")
    ids = list(ids)
    if not index.is_unique:
        raise ValueError("ids needs gdf's index labels to be unique, but its index has repeated labels")
    rows = index.get_indexer(ids)
    if (rows < 0).any():
        raise ValueError(f"ids must be index labels of gdf, but {ids[int(np.flatnonzero(rows < 0)[0])]!r} is not")
    return as_adjacency(weights, ids=rows.tolist())


def adjacency_from_scipy(matrix: sp.spmatrix) -> torch.Tensor:
    """The torch CSR adjacency of a SciPy sparse 0/1 symmetric matrix (validated as in ``as_scipy_adjacency``).

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

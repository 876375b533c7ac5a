"""Graphs held by other libraries, read as SciPy matrices: libpysal (``W``, ``Graph``), networkx, GeoDataFrames.

These readers only translate: each returns the graph's weight matrix as a SciPy CSR matrix in the library's own node
order, with the node labels in that order. Validation (0/1 weights, symmetry, no self-loops), symmetrisation and
reordering by ``ids=`` happen in one place, :func:`sparseprec.structures.as_adjacency`, which every builder that takes
an adjacency goes through.

None of these libraries is imported by ``import sparseprec``: an object is recognised by its class's module and name
(so it must come from the library, which is then importable), and :func:`contiguity_weights` imports libpysal when
called, raising an :class:`ImportError` that names the ``spatial`` extra if it is missing.

Node order
----------
* ``libpysal.weights.W``: ``W.id_order`` (the order of ``W.sparse``; libpysal's contiguity builders use the rows'
  order of the data frame, or the ``ids`` they were given).
* ``libpysal.graph.Graph``: ``Graph.unique_ids`` (the order of ``Graph.sparse``).
* ``networkx`` graphs: node ``i`` is the node labelled with the integer ``i``; the labels must be ``0 .. n-1`` (any
  insertion order), else the labels are given by ``ids=``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["library_of", "read_foreign_graph", "contiguity_weights", "SPATIAL_EXTRA"]

SPATIAL_EXTRA = "pip install 'sparseprec[spatial]'"

# (module prefix, class name) -> the kind of graph; a subclass counts as its base (e.g. libpysal's Queen is a W,
# networkx's DiGraph and MultiGraph are Graphs)
_CLASSES = {
    ("libpysal.weights", "W"): "libpysal.weights.W",
    ("libpysal.graph", "Graph"): "libpysal.graph.Graph",
    ("networkx", "Graph"): "networkx graph",
    ("geopandas", "GeoDataFrame"): "GeoDataFrame",
    ("geopandas", "GeoSeries"): "GeoSeries",
    ("pandas", "DataFrame"): "DataFrame",
    ("pandas", "Series"): "Series",
}


def library_of(obj: object) -> str | None:
    """The kind of a foreign graph-like object (``"libpysal.weights.W"``, ``"networkx graph"``, ...), else ``None``.

    Recognised by the module and name of its class or of one of its base classes, without importing any library.
    """
    for cls in type(obj).__mro__:
        module = getattr(cls, "__module__", "") or ""
        for (prefix, name), kind in _CLASSES.items():
            if cls.__name__ == name and (module == prefix or module.startswith(prefix + ".")):
                return kind
    return None


def _weights_matrix(matrix: object) -> sp.csr_matrix:
    """A float64 SciPy CSR copy (the libraries cache their matrices: never modify theirs)."""
    return sp.csr_matrix(matrix, dtype=np.float64, copy=True)


def _read_networkx(graph: object, ids: Sequence[object] | None, name: str) -> tuple[sp.csr_matrix, list[object]]:
    import networkx as nx  # the object is a networkx graph, so networkx is importable

    nodes = list(graph.nodes)
    n = len(nodes)
    if ids is None:
        if not all(_is_int(v) for v in nodes) or sorted(int(v) for v in nodes) != list(range(n)):
            example = next((v for v in nodes if not _is_int(v) or not 0 <= int(v) < n), nodes[-1])
            raise ValueError(
                f"{name}: a networkx graph's nodes must be the integers 0..n-1 (n = {n}) to be numbered without ids=, "
                f"got node {example!r}; pass ids=[...] with every node label in the order wanted"
            )
        nodelist = list(range(n))
    else:
        nodelist = nodes  # reordered by the caller with ids
    matrix = nx.to_scipy_sparse_array(graph, nodelist=nodelist, weight="weight", dtype=np.float64, format="csr")
    return _weights_matrix(matrix), list(nodelist)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def read_foreign_graph(
    graph: object, ids: Sequence[object] | None = None, name: str = "graph"
) -> tuple[sp.csr_matrix, list[object], str] | None:
    """The weight matrix (SciPy CSR float64, unvalidated), the node labels in its order and the kind of a libpysal
    ``W``/``Graph`` or networkx graph; ``None`` for any other object.

    Raises
    ------
    TypeError
        A GeoDataFrame, GeoSeries or pandas object (use :func:`sparseprec.structures.contiguity` for polygons).
    ValueError
        A networkx graph whose nodes are not ``0..n-1`` and no ``ids``.
    """
    kind = library_of(graph)
    if kind is None:
        return None
    if kind == "libpysal.weights.W":
        return _weights_matrix(graph.sparse), list(graph.id_order), kind
    if kind == "libpysal.graph.Graph":
        return _weights_matrix(graph.sparse), list(graph.unique_ids), kind
    if kind == "networkx graph":
        matrix, labels = _read_networkx(graph, ids, name)
        return matrix, labels, kind
    raise TypeError(
        f"{name} must be a graph, got a {kind}: for the contiguity graph of a GeoDataFrame's polygons use "
        "sparseprec.structures.contiguity(gdf, kind='queen' or 'rook')"
    )


def _import_spatial() -> tuple[object, object]:
    """libpysal.weights and geopandas, or an ImportError naming the extra."""
    try:
        import geopandas
        import libpysal.weights
    except ImportError as error:
        raise ImportError(
            f"contiguity graphs of polygons are built by libpysal and GeoPandas, not installed here: {SPATIAL_EXTRA}"
        ) from error
    return libpysal.weights, geopandas


def contiguity_weights(frame: object, kind: str, name: str = "gdf") -> object:
    """The libpysal contiguity ``W`` of the polygons of a GeoDataFrame or GeoSeries, ids ``0..n-1`` in row order.

    Checks that every geometry is a non-empty Polygon or MultiPolygon; island polygons (no neighbour) are kept as
    ids without neighbours.
    """
    frame_kind = library_of(frame)
    if frame_kind not in ("GeoDataFrame", "GeoSeries"):
        raise TypeError(f"{name} must be a geopandas GeoDataFrame or GeoSeries, got {type(frame).__name__}")
    if kind not in ("queen", "rook"):
        raise ValueError(f"kind must be 'queen' or 'rook', got {kind!r}")
    weights, geopandas = _import_spatial()
    geometry = frame.geometry if frame_kind == "GeoDataFrame" else frame
    for row, geom in enumerate(geometry.values):
        if geom is None or geom.is_empty:
            raise ValueError(f"{name} must have a polygon in every row, but row {row} has no geometry")
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise ValueError(f"{name} must hold Polygons or MultiPolygons, but row {row} is a {geom.geom_type}")
    polygons = geopandas.GeoDataFrame(geometry=np.asarray(geometry.values), crs=geometry.crs)  # index 0..n-1
    builder = weights.Queen if kind == "queen" else weights.Rook
    # silence_warnings: libpysal's warnings about islands and disconnected components (kept, and documented)
    return builder.from_dataframe(polygons, use_index=False, silence_warnings=True)

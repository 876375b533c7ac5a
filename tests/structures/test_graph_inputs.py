"""Graphs in: every input kind of ``as_adjacency`` (edge lists, matrices, libpysal W and Graph, networkx) gives the
CSR of the edge-list route; ``contiguity`` of GeoDataFrames against libpysal; the documented differences between the
lip cancer polygons' contiguity and the shipped graph; NC SIDS (libpysal's ``sids2``); errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sparseprec.datasets import load_scotland_lip_cancer
from sparseprec.distributions import CAR, ICAR
from sparseprec.structures import (
    adjacency_from_pairs,
    as_adjacency,
    bym2_scaling,
    bym2_scaling_per_node,
    car,
    connected_components,
    constrained_icar_variances,
    contiguity,
    graph_laplacian,
    icar,
)

F64 = torch.float64


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def needs(*modules: str) -> pytest.MarkDecorator:
    missing = [m for m in modules if not _has(m)]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} (the spatial extra)")


SPATIAL = needs("libpysal", "geopandas", "shapely")


# ---- the graphs: (pairs, n), the reference route is adjacency_from_pairs ------------------------------------------
def _graphs() -> dict[str, tuple[np.ndarray, int]]:
    lip = load_scotland_lip_cancer()
    islands = load_scotland_lip_cancer(islands=True)
    return {
        "lip_cancer": (lip.pairs.numpy(), 56),
        "lip_cancer_islands": (islands.pairs.numpy(), 56),  # three nodes without neighbours
        "toy_trailing_island": (np.array([[0, 1], [1, 2], [2, 0], [2, 3]]), 5),
    }


GRAPHS = _graphs()


def _neighbours(pairs: np.ndarray, n: int) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {i: [] for i in range(n)}
    for i, j in pairs.tolist():
        out[i].append(j)
        out[j].append(i)
    return out


def _libpysal_w(pairs: np.ndarray, n: int, order: list[int] | None = None):
    from libpysal.weights import W

    neighbours = _neighbours(pairs, n)
    order = list(range(n)) if order is None else order
    return W({i: neighbours[i] for i in order}, id_order=order, silence_warnings=True)


def _networkx(pairs: np.ndarray, n: int, directed: bool = False):
    import networkx as nx

    graph = nx.DiGraph() if directed else nx.Graph()
    graph.add_nodes_from(np.random.default_rng(0).permutation(n).tolist())  # insertion order is not the numbering
    graph.add_edges_from(pairs.tolist())
    if directed:
        graph.add_edges_from(pairs[:, ::-1].tolist())
    return graph


def _dense(pairs: np.ndarray, n: int) -> np.ndarray:
    A = np.zeros((n, n))
    A[pairs[:, 0], pairs[:, 1]] = A[pairs[:, 1], pairs[:, 0]] = 1.0
    return A


@dataclass(frozen=True)
class Kind:
    """An input kind: how to build it from (pairs, n) and what as_adjacency needs besides it."""

    build: Callable[[np.ndarray, int], tuple[object, dict]]
    marks: tuple = ()


def _shuffled_w(pairs, n):
    order = np.random.default_rng(1).permutation(n).tolist()
    return _libpysal_w(pairs, n, order), {"ids": range(n)}


def _relabelled_networkx(pairs, n):
    import networkx as nx

    names = [f"area {i}" for i in range(n)]
    graph = nx.relabel_nodes(_networkx(pairs, n), dict(enumerate(names)))
    return graph, {"ids": names}


def _graph_api(pairs, n):
    from libpysal.graph import Graph

    return Graph.from_W(_libpysal_w(pairs, n)), {}


KINDS = {
    "pairs_list": Kind(lambda p, n: (p.tolist(), {"n": n})),
    "pairs_reversed_and_repeated": Kind(lambda p, n: (np.concatenate([p, p[:, ::-1]]), {"n": n})),
    "pairs_tensor": Kind(lambda p, n: (torch.from_numpy(p), {"n": n})),
    "scipy_csr": Kind(lambda p, n: (sp.csr_matrix(_dense(p, n)), {})),
    "scipy_coo_array_int": Kind(lambda p, n: (sp.coo_array(_dense(p, n).astype(np.int64)), {})),
    "torch_csr": Kind(lambda p, n: (torch.from_numpy(_dense(p, n)).to_sparse_csr(), {})),
    "torch_coo_float32": Kind(lambda p, n: (torch.from_numpy(_dense(p, n)).float().to_sparse(), {})),
    "torch_dense": Kind(lambda p, n: (torch.from_numpy(_dense(p, n)), {})),
    "torch_dense_bool": Kind(lambda p, n: (torch.from_numpy(_dense(p, n)).bool(), {})),
    "numpy_dense": Kind(lambda p, n: (_dense(p, n), {})),
    "libpysal_W": Kind(lambda p, n: (_libpysal_w(p, n), {}), (needs("libpysal"),)),
    "libpysal_W_shuffled_ids": Kind(_shuffled_w, (needs("libpysal"),)),
    "libpysal_Graph": Kind(_graph_api, (needs("libpysal"),)),
    "networkx_Graph": Kind(lambda p, n: (_networkx(p, n), {}), (needs("networkx"),)),
    "networkx_DiGraph_both_ways": Kind(lambda p, n: (_networkx(p, n, directed=True), {}), (needs("networkx"),)),
    "networkx_labels_with_ids": Kind(_relabelled_networkx, (needs("networkx"),)),
}


def _assert_same_csr(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.layout == torch.sparse_csr and actual.dtype == F64
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual.crow_indices(), expected.crow_indices(), rtol=0, atol=0)
    torch.testing.assert_close(actual.col_indices(), expected.col_indices(), rtol=0, atol=0)
    torch.testing.assert_close(actual.values(), expected.values(), rtol=0, atol=0)


@pytest.mark.parametrize("graph", GRAPHS)
@pytest.mark.parametrize("kind", [pytest.param(k, marks=v.marks) for k, v in KINDS.items()])
def test_every_input_kind_gives_the_edge_list_csr(kind, graph):
    pairs, n = GRAPHS[graph]
    value, options = KINDS[kind].build(pairs, n)
    _assert_same_csr(as_adjacency(value, **options), adjacency_from_pairs(pairs, n=n))


@needs("libpysal")
def test_libpysal_node_order_is_id_order():
    pairs, n = GRAPHS["lip_cancer"]
    order = np.random.default_rng(2).permutation(n)
    w = _libpysal_w(pairs, n, order.tolist())
    assert w.id_order == order.tolist()
    reference = torch.from_numpy(_dense(pairs, n))
    torch.testing.assert_close(as_adjacency(w).to_dense(), reference[order][:, order], rtol=0, atol=0)


@needs("libpysal")
def test_libpysal_islands_are_kept_as_nodes_without_neighbours():
    pairs, n = GRAPHS["lip_cancer_islands"]
    w = _libpysal_w(pairs, n)
    assert sorted(w.islands) == [5, 7, 10]
    A = as_adjacency(w)
    assert A.shape == (w.n, w.n) == (56, 56)
    degree = A.to_dense().sum(1)
    assert degree[[5, 7, 10]].tolist() == [0.0, 0.0, 0.0] and bool((degree[degree != 0] > 0).all())
    count, labels = connected_components(w)  # the builders take the W itself
    assert count == 4 and len({labels[5].item(), labels[7].item(), labels[10].item()}) == 3


# ---- every function that takes an adjacency takes the foreign graphs through the one conversion -------------------
FUNCTIONS = {
    "icar": lambda A: icar(A, tau=1.7).to_dense(),
    "car": lambda A: car(A, 0.4, tau=2.0).to_dense(),
    "graph_laplacian": lambda A: graph_laplacian(A).to_dense(),
    "bym2_scaling": lambda A: torch.tensor(bym2_scaling(A), dtype=F64),
    "bym2_scaling_per_node": bym2_scaling_per_node,
    "constrained_icar_variances": constrained_icar_variances,
    "connected_components": lambda A: connected_components(A)[1],
    "ICAR_log_prob": lambda A: ICAR(A, 1.3).log_prob(torch.linspace(-1, 1, 56, dtype=F64) - 0.0),
    "CAR_log_prob": lambda A: CAR(A, 0.6, tau=1.3).log_prob(torch.linspace(-1, 1, 56, dtype=F64)),
}


@needs("libpysal", "networkx")
@pytest.mark.parametrize("function", FUNCTIONS)
def test_builders_and_distributions_take_a_libpysal_w_or_networkx_graph(function):
    pairs, n = GRAPHS["lip_cancer"]
    expected = FUNCTIONS[function](adjacency_from_pairs(pairs, n=n))
    for graph in (_libpysal_w(pairs, n), _networkx(pairs, n), _graph_api(pairs, n)[0], pairs.tolist()):
        torch.testing.assert_close(FUNCTIONS[function](graph), expected, rtol=1e-12, atol=1e-12)


@needs("libpysal")
def test_icar_of_as_adjacency_of_w_has_the_edge_list_log_prob():
    pairs, n = GRAPHS["lip_cancer"]
    tau = torch.tensor(2.5, dtype=F64, requires_grad=True)
    x = torch.randn(3, n, dtype=F64, generator=torch.Generator().manual_seed(0))
    x = x - x.mean(-1, keepdim=True)
    expected = ICAR(adjacency_from_pairs(pairs, n=n), tau).log_prob(x)
    actual = ICAR(as_adjacency(_libpysal_w(pairs, n)), tau).log_prob(x)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(actual.sum(), tau)
    torch.testing.assert_close(
        grad, ((n - 1) / 2 / tau - 0.5 * (x @ icar(pairs.tolist()).to_dense() * x).sum(-1)).sum()
    )


# ---- asymmetric and weighted graphs: errors, or symmetrize=True -----------------------------------------------------
def _centroids() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.uniform(size=(30, 2))


@needs("libpysal")
def test_knn_is_asymmetric_refused_and_symmetrized_to_the_union_of_both_directions():
    from libpysal.weights import KNN

    knn = KNN.from_array(_centroids(), k=3)
    assert not knn.asymmetries == []  # KNN is directed here: the test needs an asymmetric case
    with pytest.raises(ValueError, match=r"graph must be symmetric .* KNN\): pass symmetrize=True"):
        as_adjacency(knn)
    with pytest.raises(ValueError, match="adjacency must be symmetric"):
        ICAR(knn)
    union = {(min(i, j), max(i, j)) for i, js in knn.neighbors.items() for j in js}
    expected = adjacency_from_pairs(sorted(union), n=knn.n)
    _assert_same_csr(as_adjacency(knn, symmetrize=True), expected)
    A = torch.from_numpy(knn.sparse.toarray())  # the definition: the pattern of A + Aᵀ, weights 1
    torch.testing.assert_close(as_adjacency(knn, symmetrize=True).to_dense(), ((A + A.T) != 0).to(F64))


@needs("libpysal")
def test_row_standardised_w_is_refused_and_symmetrize_sets_the_weights_to_one():
    pairs, n = GRAPHS["lip_cancer"]
    w = _libpysal_w(pairs, n)
    w.transform = "r"
    with pytest.raises(
        ValueError,
        match=r"graph must hold 0/1 entries .* got the weight 0\.25 at \(0, 4\) of the libpysal.weights.W .*'B'\)",
    ):
        as_adjacency(w)
    with pytest.raises(ValueError, match="adjacency must hold 0/1 entries"):
        icar(w)
    _assert_same_csr(as_adjacency(w, symmetrize=True), adjacency_from_pairs(pairs, n=n))
    w.transform = "b"
    _assert_same_csr(as_adjacency(w), adjacency_from_pairs(pairs, n=n))


@needs("networkx")
def test_weighted_and_directed_networkx_graphs():
    import networkx as nx

    weighted = nx.Graph()
    weighted.add_edge(0, 1, weight=2.5)
    weighted.add_edge(1, 2)
    with pytest.raises(ValueError, match=r"got the weight 2\.5 at \(0, 1\) of the networkx graph"):
        as_adjacency(weighted)
    _assert_same_csr(as_adjacency(weighted, symmetrize=True), adjacency_from_pairs([(0, 1), (1, 2)]))
    directed = nx.DiGraph([(0, 1), (1, 2), (2, 1)])
    with pytest.raises(ValueError, match=r"\(0, 1\) of the networkx graph has no mirror entry"):
        as_adjacency(directed)
    _assert_same_csr(as_adjacency(directed, symmetrize=True), adjacency_from_pairs([(0, 1), (1, 2)]))


# ---- GeoDataFrames: the lip cancer polygons --------------------------------------------------------------------------
# Queen contiguity of the shipped polygons against the shipped graph (132 pairs, island links included). Exactly:
#   queen(polygons) = relabel(shipped, 54 <-> 55) - SHIPPED_ONLY + QUEEN_ONLY
SWAPPED = (54, 55)  # Tweeddale and Annandale by the shapefile's names: their neighbourhoods are exchanged
STRAY_RINGS = [(0, 21), (4, 21), (2, 8), (2, 22), (6, 22)]  # rings under 1 km² of Aberdeen/Caithness/Moray elsewhere
TOUCHING_NOT_LINKED = [(29, 32), (38, 51), (41, 43)]  # polygons that share a border, not neighbours in the graph
ISLAND_LINKS_NOT_TOUCHING = [(4, 10), (8, 10), (10, 11)]  # (0, 10), (2, 5), (5, 7) do touch in the polygons
LINKED_ACROSS_GAPS = [(4, 12), (13, 30), (14, 49), (22, 35), (25, 41), (27, 44), (29, 37), (33, 39), (44, 54)]
QUEEN_ONLY = STRAY_RINGS + TOUCHING_NOT_LINKED
SHIPPED_ONLY = ISLAND_LINKS_NOT_TOUCHING + LINKED_ACROSS_GAPS


def _edges(A: torch.Tensor) -> set[tuple[int, int]]:
    coo = A.to_sparse_coo().coalesce().indices().T.tolist()
    return {(i, j) for i, j in coo if i < j}


def _lip_geodataframe():
    import geopandas
    from shapely.geometry import MultiPolygon, Polygon

    data = load_scotland_lip_cancer()
    geometry = []
    for rings in data.district_polygons():  # every ring an outer ring, as the shapefile gives them
        polygons = [Polygon(ring) for ring in rings]
        geometry.append(polygons[0] if len(polygons) == 1 else MultiPolygon(polygons))
    return geopandas.GeoDataFrame({"name": data.district_names()}, geometry=geometry)


@pytest.fixture(scope="module")
def lip_gdf():
    if not _has("libpysal") or not _has("geopandas"):
        pytest.skip("needs libpysal and geopandas (the spatial extra)")
    return _lip_geodataframe()


@SPATIAL
def test_contiguity_is_libpysal_queen_and_rook(lip_gdf):
    from libpysal.weights import Queen, Rook

    _assert_same_csr(contiguity(lip_gdf), as_adjacency(Queen.from_dataframe(lip_gdf, use_index=False)))
    rook = Rook.from_dataframe(lip_gdf, use_index=False, silence_warnings=True)
    _assert_same_csr(contiguity(lip_gdf, kind="rook"), as_adjacency(rook))
    assert _edges(contiguity(lip_gdf, kind="rook")) <= _edges(contiguity(lip_gdf))


@SPATIAL
def test_lip_cancer_queen_contiguity_differs_from_the_shipped_graph_exactly_as_documented(lip_gdf):
    shipped = load_scotland_lip_cancer()
    relabel = np.arange(56)
    relabel[list(SWAPPED)] = SWAPPED[::-1]
    swapped = {tuple(sorted((int(relabel[i]), int(relabel[j])))) for i, j in shipped.pairs.tolist()}
    assert set(SHIPPED_ONLY) <= swapped and not set(QUEEN_ONLY) & swapped
    expected = sorted((swapped - set(SHIPPED_ONLY)) | set(QUEEN_ONLY))
    queen = contiguity(lip_gdf)
    _assert_same_csr(queen, adjacency_from_pairs(expected, n=56))
    assert len(expected) == 128 and connected_components(queen)[0] == 1  # islands reached through touching rings
    names = lip_gdf["name"].tolist()
    assert [names[i] for i in SWAPPED] == ["Tweeddale", "Annandale"]
    for i, j in STRAY_RINGS:  # the link runs through a small ring of one district lying inside the other
        parts = [p for k in (i, j) for p in getattr(lip_gdf.geometry[k], "geoms", [lip_gdf.geometry[k]])]
        touching = [p for p in parts if p.intersects(lip_gdf.geometry[j]) and p.intersects(lip_gdf.geometry[i])]
        assert min(p.area for p in touching) < 1e6
    for i, j in SHIPPED_ONLY:
        assert lip_gdf.geometry[i].distance(lip_gdf.geometry[j]) > 200.0  # metres: separated by water or a gap


@SPATIAL
def test_lip_cancer_rook_contiguity_keeps_an_island_as_a_node(lip_gdf):
    rook = contiguity(lip_gdf, kind="rook")
    assert rook.shape == (56, 56)
    degree = rook.to_dense().sum(1)
    assert torch.nonzero(degree == 0).flatten().tolist() == [44]  # Edinburgh: its borders share no vertex pair
    assert connected_components(rook)[0] == 2


@SPATIAL
def test_icar_takes_a_queen_w_directly_and_matches_the_edge_list_route(lip_gdf):
    from libpysal.weights import Queen

    tau = torch.tensor(1.7, dtype=F64)
    queen = Queen.from_dataframe(lip_gdf, use_index=False)
    pairs = sorted(_edges(contiguity(lip_gdf)))
    x = torch.randn(2, 56, dtype=F64, generator=torch.Generator().manual_seed(1))
    x = x - x.mean(-1, keepdim=True)
    torch.testing.assert_close(
        ICAR(queen, tau).log_prob(x), ICAR(adjacency_from_pairs(pairs, n=56), tau).log_prob(x), rtol=1e-12, atol=0
    )


@SPATIAL
def test_contiguity_ids_reorder_by_index_labels(lip_gdf):
    order = np.random.default_rng(4).permutation(56)
    shuffled = lip_gdf.iloc[order].set_index(lip_gdf.index[order] + 1)  # labels 1..56, rows shuffled
    _assert_same_csr(contiguity(shuffled, ids=range(1, 57)), contiguity(lip_gdf))
    reference = contiguity(lip_gdf).to_dense()
    torch.testing.assert_close(contiguity(shuffled).to_dense(), reference[order][:, order], rtol=0, atol=0)


@SPATIAL
def test_contiguity_of_the_dataset_geodataframe():
    data = load_scotland_lip_cancer()
    if not hasattr(data, "to_geodataframe"):
        pytest.skip("LipCancerData.to_geodataframe is not there yet (DATA helper)")
    _assert_same_csr(contiguity(data.to_geodataframe()), contiguity(_lip_geodataframe()))


# ---- NC SIDS: libpysal's sids2 example ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sids():
    if not _has("libpysal") or not _has("geopandas"):
        pytest.skip("needs libpysal and geopandas (the spatial extra)")
    import geopandas
    import libpysal
    from libpysal import examples

    gdf = geopandas.read_file(examples.get_path("sids2.shp"))
    gal_file = libpysal.io.open(examples.get_path("sids2.gal"))
    try:
        gal = gal_file.read()
    finally:
        gal_file.close()
    return gdf, gal


@SPATIAL
def test_nc_sids_queen_routes_agree(sids):
    from libpysal.weights import Queen

    gdf, _ = sids
    queen = Queen.from_dataframe(gdf, use_index=False)
    pairs = sorted({(min(i, j), max(i, j)) for i, js in queen.neighbors.items() for j in js})
    reference = adjacency_from_pairs(pairs, n=100)
    assert len(pairs) == 245 and queen.islands == []
    _assert_same_csr(as_adjacency(queen), reference)
    _assert_same_csr(contiguity(gdf), reference)
    tau = torch.tensor(0.8, dtype=F64)
    x = torch.randn(100, dtype=F64, generator=torch.Generator().manual_seed(2))
    x = x - x.mean()
    torch.testing.assert_close(ICAR(queen, tau).log_prob(x), ICAR(reference, tau).log_prob(x), rtol=1e-12, atol=0)


@SPATIAL
def test_nc_sids_shipped_gal_is_rook_contiguity_in_fips_order(sids):
    gdf, gal = sids
    assert gal.id_order == gdf["FIPS"].tolist()  # its ids are the FIPS codes, in the rows' order
    rook = contiguity(gdf, kind="rook")
    _assert_same_csr(as_adjacency(gal), rook)  # 231 pairs
    _assert_same_csr(as_adjacency(gal, ids=gdf["FIPS"]), rook)
    by_code = sorted(gdf["FIPS"])  # another node order, given by the ids
    order = [gdf["FIPS"].tolist().index(fips) for fips in by_code]
    torch.testing.assert_close(as_adjacency(gal, ids=by_code).to_dense(), rook.to_dense()[order][:, order])
    queen_only = _edges(contiguity(gdf)) - _edges(rook)  # counties meeting at a corner only
    assert len(queen_only) == 14 and _edges(rook) <= _edges(contiguity(gdf))


@SPATIAL
def test_nc_sids_dataset_adjacency_is_the_queen_graph(sids):
    import sparseprec.datasets as datasets

    if not hasattr(datasets, "load_nc_sids"):
        pytest.skip("sparseprec.datasets.load_nc_sids is not there yet (DATA helper)")
    gdf, _ = sids
    _assert_same_csr(datasets.load_nc_sids().adjacency, contiguity(gdf))


# ---- errors ---------------------------------------------------------------------------------------------------------
ERRORS = [
    (lambda: as_adjacency({0: [1]}), TypeError, "graph must be a graph: .* got dict"),
    (lambda: as_adjacency("0-1"), TypeError, "graph must be a graph"),
    (lambda: as_adjacency([(0, 1)], symmetrize="yes"), TypeError, "symmetrize"),
    (lambda: as_adjacency(torch.zeros(2, 3)), ValueError, r"square \(n, n\) adjacency matrix .* shape \(2, 3\)"),
    (lambda: as_adjacency(sp.csr_matrix(np.ones((2, 3)))), ValueError, "must be square"),
    (lambda: as_adjacency(torch.tensor([[0.0, -1.0], [-1.0, 0.0]])), ValueError, "non-negative finite weights"),
    (lambda: as_adjacency(torch.tensor([[0.0, np.nan], [np.nan, 0.0]])), ValueError, "finite weights, got nan"),
    (lambda: as_adjacency(torch.eye(2), symmetrize=True), ValueError, "no self-loops"),
    (lambda: as_adjacency(torch.eye(3).to_sparse(), n=4), ValueError, r"n must be the number of nodes .* \(3\)"),
    (lambda: as_adjacency([(0, 3)], n=2), ValueError, "refer to node 3 but n = 2"),
    (lambda: as_adjacency([(0, 1)], ids=[0, 0]), ValueError, "0 is repeated"),
    (lambda: as_adjacency([(0, 1)], ids=[0, 2]), ValueError, "2 is not one of them"),
    (lambda: as_adjacency([(0, 1)], n=3, ids=[0, 1]), ValueError, "ids must list all 3 nodes .* 2 is missing"),
    (lambda: as_adjacency([(0, 1)], ids=5), TypeError, "ids must be a sequence"),
]


@pytest.mark.parametrize("call, error, match", ERRORS, ids=[e[2][:30] for e in ERRORS])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@needs("networkx")
def test_networkx_labels_other_than_integers_need_ids():
    import networkx as nx

    with pytest.raises(ValueError, match="nodes must be the integers 0..n-1 .* got node 'a'; pass ids="):
        as_adjacency(nx.Graph([("a", "b")]))
    with pytest.raises(ValueError, match="got node 5"):
        as_adjacency(nx.Graph([(0, 5)]))
    with pytest.raises(ValueError, match="no self-loops, got a nonzero diagonal entry at node 1 \\('b'\\)"):
        as_adjacency(nx.Graph([("a", "b"), ("b", "b")]), ids=["a", "b"])


@SPATIAL
def test_geodataframe_errors(lip_gdf):
    import geopandas
    from shapely.geometry import Point, box

    with pytest.raises(TypeError, match="got a GeoDataFrame: .* use sparseprec.structures.contiguity"):
        as_adjacency(lip_gdf)
    with pytest.raises(ValueError, match="kind must be 'queen' or 'rook', got 'bishop'"):
        contiguity(lip_gdf, kind="bishop")
    with pytest.raises(TypeError, match="gdf must be a geopandas GeoDataFrame or GeoSeries, got list"):
        contiguity([box(0, 0, 1, 1)])
    with pytest.raises(ValueError, match="row 1 is a Point"):
        contiguity(geopandas.GeoSeries([box(0, 0, 1, 1), Point(0, 0)]))
    with pytest.raises(ValueError, match="row 1 has no geometry"):
        contiguity(geopandas.GeoSeries([box(0, 0, 1, 1), None]))
    with pytest.raises(ValueError, match="'x' is not"):
        contiguity(lip_gdf, ids=["x"])
    with pytest.raises(ValueError, match="ids must list all 56 nodes"):
        contiguity(lip_gdf, ids=[0, 1])


def test_contiguity_without_libpysal_names_the_extra(monkeypatch):
    geopandas = pytest.importorskip("geopandas")
    from shapely.geometry import box

    monkeypatch.setitem(sys.modules, "libpysal", None)
    monkeypatch.setitem(sys.modules, "libpysal.weights", None)
    with pytest.raises(ImportError, match=r"pip install 'sparseprec\[spatial\]'"):
        contiguity(geopandas.GeoSeries([box(0, 0, 1, 1)]))


def test_the_core_imports_no_spatial_library():
    code = (
        "import sys, sparseprec\n"
        "from sparseprec.structures import as_adjacency, icar\n"
        "icar(as_adjacency([(0, 1), (1, 2)]))\n"
        "loaded = [m for m in ('libpysal', 'geopandas', 'networkx', 'shapely') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]

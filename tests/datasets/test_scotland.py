"""The shipped Scottish lip cancer data: sizes, totals and the two neighbourhood graphs."""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest
import torch

from sparseprec.datasets import load_scotland_lip_cancer
from sparseprec.distributions import ICAR
from sparseprec.structures import bym2_scaling, bym2_scaling_per_node, connected_components


def test_counts_and_covariate():
    data = load_scotland_lip_cancer()
    assert data.num_districts == 56
    assert data.observed.dtype == torch.int64 and int(data.observed.sum()) == 536
    assert abs(float(data.expected.sum()) - 536.2) < 1e-9
    assert (data.expected > 0).all() and (data.aff_percent >= 0).all() and float(data.aff_percent.max()) <= 100
    assert data.shapefile.exists() and data.shapefile.with_suffix(".dbf").exists()


def test_graphs():
    connected = load_scotland_lip_cancer()
    assert connected.pairs.shape == (132, 2)
    W = connected.adjacency.to_dense()
    assert torch.equal(W, W.T) and float(W.sum()) == 2 * 132 and float(W.diagonal().abs().sum()) == 0
    assert connected_components(connected.adjacency)[0] == 1
    islands = load_scotland_lip_cancer(islands=True)
    assert islands.pairs.shape == (126, 2)
    count, labels = connected_components(islands.adjacency)
    assert count == 4
    degree = islands.adjacency.to_dense().sum(1)
    assert torch.nonzero(degree == 0).reshape(-1).tolist() == [5, 7, 10]
    assert labels[5] != labels[7] != labels[10]


def test_the_graph_feeds_the_icar_and_bym2_scaling():
    data = load_scotland_lip_cancer()
    scaling = bym2_scaling(data.adjacency)
    assert 0 < scaling < 1  # the ICAR's marginal variances are below 1 on average (unit precision)
    icar = ICAR(data.adjacency, tau=scaling)  # s·(D − W): geometric-mean marginal variance 1
    torch.testing.assert_close(icar.variance.log().mean(), torch.zeros((), dtype=torch.float64))
    per_node = bym2_scaling_per_node(load_scotland_lip_cancer(islands=True).adjacency)
    assert per_node[[5, 7, 10]].tolist() == [1.0, 1.0, 1.0]


# SHA-256 of the district polygons as the hand-written shapefile reader (sparseprec/datasets/shapes.py, removed in
# favour of pyshp) returned them: per district, its ring count (4 bytes, little-endian) then each ring's float64 points
OLD_READER_POLYGONS = "0c860fecac573e7c9888f85a0e9a8a71b4d45ef221047b796f188dd13dc147e3"


def _fingerprint(polygons: list[list[np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for rings in polygons:
        digest.update(len(rings).to_bytes(4, "little"))
        for ring in rings:
            digest.update(np.ascontiguousarray(ring, dtype="<f8").tobytes())
    return digest.hexdigest()


def test_district_polygons_and_names_follow_the_district_order():
    import shapefile  # pyshp, a core dependency

    data = load_scotland_lip_cancer()
    with shapefile.Reader(str(data.shapefile)) as reader:
        table = [record.as_dict() for record in reader.records()]
    # the shapefile's own attribute table agrees with districts.csv, district by district
    for row in table:
        district = int(row["District"]) - 1
        assert int(row["Observed"]) == int(data.observed[district])
        assert float(row["Expected"]) == pytest.approx(float(data.expected[district]))
    names = data.district_names()
    assert names[0] == "Skye-Lochalsh" and len(set(names)) == 56
    polygons = data.district_polygons()
    assert len(polygons) == 56 and all(len(rings) >= 1 for rings in polygons)
    for rings in polygons:
        for ring in rings:
            assert ring.dtype == np.float64 and ring.shape[1] == 2 and ring.shape[0] >= 4
            assert np.array_equal(ring[0], ring[-1])  # rings are closed
    # neighbours touch: the closest vertices of two adjacent mainland districts are within 2 km
    a, b = (int(v) for v in data.pairs[0])
    pa, pb = np.concatenate(polygons[a]), np.concatenate(polygons[b])
    closest = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1)).min()
    assert closest < 2000.0


def test_pyshp_reads_the_polygons_the_old_reader_read():
    polygons = load_scotland_lip_cancer().district_polygons()
    assert sum(len(rings) for rings in polygons) == 110
    assert _fingerprint(polygons) == OLD_READER_POLYGONS


def test_a_file_that_is_not_a_polygon_shapefile_is_refused(tmp_path):
    from sparseprec.datasets._shapefiles import read_shapefile

    bad = tmp_path / "not_a_shapefile.shp"
    bad.write_bytes(b"\0" * 120)
    with pytest.raises(ValueError, match="path must be an ESRI shapefile"):
        read_shapefile(bad)


def test_to_geodataframe():
    pytest.importorskip("geopandas")
    data = load_scotland_lip_cancer()
    gdf = data.to_geodataframe()
    assert list(gdf.columns) == ["name", "observed", "expected", "aff_percent", "geometry"]
    assert gdf.crs is None and gdf.index.tolist() == list(range(56))
    assert gdf["name"].tolist() == data.district_names()
    assert np.array_equal(gdf["observed"].to_numpy(), data.observed.numpy())
    assert np.array_equal(gdf["aff_percent"].to_numpy(), data.aff_percent.numpy())
    assert bool(gdf.geometry.is_valid.all())
    # every ring of district_polygons is a boundary of the district's geometry, and nothing else is
    for geometry, rings in zip(gdf.geometry, data.district_polygons(), strict=True):
        parts = list(getattr(geometry, "geoms", [geometry]))
        boundaries = [np.asarray(p.exterior.coords) for p in parts] + [
            np.asarray(hole.coords) for p in parts for hole in p.interiors
        ]
        assert len(boundaries) == len(rings)
        for ring in rings:
            assert any(b.shape == ring.shape and np.allclose(b, ring, rtol=0, atol=0) for b in boundaries)


def test_to_geodataframe_names_the_extra_when_geopandas_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "geopandas", None)  # import geopandas now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'sparseprec\[spatial\]'"):
        load_scotland_lip_cancer().to_geodataframe()

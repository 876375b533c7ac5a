"""The shipped Scottish lip cancer data: sizes, totals and the two neighbourhood graphs."""

from __future__ import annotations

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


def test_district_polygons_and_names_follow_the_district_order(tmp_path):
    from sparseprec.datasets import read_dbf, read_polygons

    data = load_scotland_lip_cancer()
    table = read_dbf(data.shapefile.with_suffix(".dbf"))
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
            assert ring.shape[1] == 2 and ring.shape[0] >= 4
            assert np.allclose(ring[0], ring[-1])  # rings are closed
    # neighbours touch: the closest vertices of two adjacent mainland districts are within 2 km
    a, b = (int(v) for v in data.pairs[0])
    pa, pb = np.concatenate(polygons[a]), np.concatenate(polygons[b])
    closest = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1)).min()
    assert closest < 2000.0
    assert len(read_polygons(data.shapefile)) == 56
    bad = tmp_path / "not_a_shapefile.shp"
    bad.write_bytes(b"\0" * 120)
    with pytest.raises(ValueError, match="path must be an ESRI shapefile"):
        read_polygons(bad)

"""The Scottish lip cancer data (56 districts, 1975–1980), shipped with the package."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._validation import check_flag
from ..structures import adjacency_from_pairs
from ._shapefiles import ShapefileTable, geodataframe, read_shapefile

__all__ = ["LipCancerData", "load_scotland_lip_cancer"]

_PACKAGE = "sparseprec.datasets"
_FOLDER = "data/scotland_lip_cancer"


@dataclass(frozen=True)
class LipCancerData:
    """The Scottish lip cancer data as tensors.

    Attributes
    ----------
    observed : torch.Tensor
        int64 ``(56,)``: lip cancer cases per district, 1975–1980 (536 in all).
    expected : torch.Tensor
        float64 ``(56,)``: age-standardised expected cases.
    aff_percent : torch.Tensor
        float64 ``(56,)``: % of the workforce in agriculture, fishing and forestry (the usual covariate).
    adjacency : torch.Tensor
        Sparse CSR ``(56, 56)`` float64 0/1 neighbourhood matrix (:func:`sparseprec.structures.adjacency_from_pairs`).
    pairs : torch.Tensor
        int64 ``(m, 2)``: the neighbour pairs, 0-based, each once (132 with the island links, 126 without).
    islands : bool
        Whether the three island districts (0-based 5, 7, 10) are left without neighbours.
    shapefile : pathlib.Path
        The district polygons (``scotland.shp`` with ``.shx``/``.dbf``; the dbf field ``District`` is ``district + 1``),
        read with pyshp by :meth:`district_polygons` and :meth:`district_names`, and with GeoPandas by
        :meth:`to_geodataframe`.
    """

    observed: torch.Tensor
    expected: torch.Tensor
    aff_percent: torch.Tensor
    adjacency: torch.Tensor
    pairs: torch.Tensor
    islands: bool
    shapefile: Path

    @property
    def num_districts(self) -> int:
        return self.observed.numel()

    def _shapes(self) -> tuple[ShapefileTable, list[int]]:
        """The shapefile (read with pyshp) and, per district, the index of its record."""
        table = read_shapefile(self.shapefile)
        district_of_record = [int(record["District"]) - 1 for record in table.records]
        if sorted(district_of_record) != list(range(self.num_districts)):
            raise RuntimeError("the shipped scotland.dbf does not number the districts 1..56: package data damaged")
        record_of_district = [0] * self.num_districts
        for k, district in enumerate(district_of_record):
            record_of_district[district] = k
        return table, record_of_district

    def district_names(self) -> list[str]:
        """The district names, in district order (from the shapefile's table)."""
        table, order = self._shapes()
        return [str(table.records[k]["NAME"]) for k in order]

    def district_polygons(self) -> list[list[np.ndarray]]:
        """The rings of every district's polygon, in district order.

        ``(m, 2)`` float64 arrays of British National Grid coordinates (metres), each ring closed (its first point
        repeated last); a district on several islands has several rings. Read with pyshp, no GeoPandas needed.
        """
        table, order = self._shapes()
        return [table.polygons[k] for k in order]

    def to_geodataframe(self) -> Any:
        """The districts as a :class:`geopandas.GeoDataFrame`, one row per district in district order (index 0–55).

        Columns ``name``, ``observed``, ``expected``, ``aff_percent`` and ``geometry`` (the polygons of
        :meth:`district_polygons` as shapely (Multi)Polygons). The shipped shapefile has no ``.prj``, so the CRS is
        None; the coordinates are British National Grid metres (``gdf.set_crs("EPSG:27700")`` declares it).

        Raises
        ------
        ImportError
            GeoPandas is not installed (``pip install 'sparseprec[spatial]'``).

        Examples
        --------
        >>> from sparseprec.datasets import load_scotland_lip_cancer
        >>> gdf = load_scotland_lip_cancer().to_geodataframe()
        >>> list(gdf.columns), len(gdf), gdf.crs is None
        (['name', 'observed', 'expected', 'aff_percent', 'geometry'], 56, True)
        >>> gdf.loc[0, "name"], int(gdf.loc[0, "observed"])
        ('Skye-Lochalsh', 9)
        """
        table, order = self._shapes()
        columns = {
            "name": [str(table.records[k]["NAME"]) for k in order],
            "observed": self.observed.cpu().numpy(),
            "expected": self.expected.cpu().numpy(),
            "aff_percent": self.aff_percent.cpu().numpy(),
        }
        return geodataframe(columns, table, order, "LipCancerData.to_geodataframe")


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files(_PACKAGE).joinpath(f"{_FOLDER}/{name}").read_text()
    return list(csv.DictReader(text.splitlines()))


def load_scotland_lip_cancer(islands: bool = False) -> LipCancerData:
    """Load the Scottish lip cancer data (Clayton & Kaldor 1987) shipped with sparseprec.

    Counts, expected counts and the AFF covariate of the 56 districts of Scotland, 1975–1980, with their
    neighbourhood graph, as used by the Stan case study "Spatial Models in Stan: Intrinsic Auto-Regressive Models for
    Areal Data" (stan-dev/example-models, ``knitr/car-iar-poisson/update_2021_02``); district polygons from
    mbjoseph/CARstan (BSD-style licence). Sources: Clayton, D. & Kaldor, J. (1987), *Empirical Bayes estimates of
    age-standardized relative risks for use in disease mapping*, Biometrics 43, 671–681; Breslow, N. & Clayton, D.
    (1993), JASA 88, 9–25.

    Parameters
    ----------
    islands : bool
        ``False`` (default): the graph links the three island districts to the mainland (one connected component,
        132 pairs). ``True``: the graph without those links (126 pairs): a 53-district mainland and three districts
        without neighbours — the case that needs per-component constraints and scaling.

    Returns
    -------
    LipCancerData

    Raises
    ------
    TypeError
        ``islands`` not a bool (a string such as ``"no"`` is not read as true).

    Examples
    --------
    >>> from sparseprec.datasets import load_scotland_lip_cancer
    >>> data = load_scotland_lip_cancer()
    >>> data.num_districts, int(data.observed.sum()), data.pairs.shape
    (56, 536, torch.Size([132, 2]))
    """
    islands = check_flag(islands, "islands")
    districts = _rows("districts.csv")
    if [int(r["district"]) for r in districts] != list(range(len(districts))):
        raise RuntimeError("the shipped districts.csv is not numbered 0, 1, ...: the package data are damaged")
    pairs_rows = _rows("adjacency_islands.csv" if islands else "adjacency.csv")
    pairs = torch.tensor([[int(r["district_a"]), int(r["district_b"])] for r in pairs_rows], dtype=torch.int64)
    n = len(districts)
    shapefile = Path(str(resources.files(_PACKAGE).joinpath(f"{_FOLDER}/scotland.shp")))
    return LipCancerData(
        observed=torch.tensor([int(r["observed"]) for r in districts], dtype=torch.int64),
        expected=torch.tensor([float(r["expected"]) for r in districts], dtype=torch.float64),
        aff_percent=torch.tensor([float(r["aff_percent"]) for r in districts], dtype=torch.float64),
        adjacency=adjacency_from_pairs(pairs, n=n),
        pairs=pairs,
        islands=islands,
        shapefile=shapefile,
    )

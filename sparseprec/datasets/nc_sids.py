"""The North Carolina SIDS data (100 counties, 1974–78), read from libpysal's built-in example ``sids2``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..structures import adjacency_from_pairs
from ._shapefiles import geodataframe, read_shapefile, require_spatial

__all__ = ["NCSIDSData", "load_nc_sids"]

_EXAMPLE = "sids2"
_COUNTIES = 100


@dataclass(frozen=True, eq=False)
class NCSIDSData:
    r"""The North Carolina sudden infant death syndrome (SIDS) data, 1974–78, as tensors (see :func:`load_nc_sids`).

    Every per-county tensor is in the order of the shapefile's records (county ``i`` is record ``i``).

    Attributes
    ----------
    observed : torch.Tensor
        int64 ``(100,)``: SIDS deaths per county, 1974–78 (``SID74``; 667 in all).
    births : torch.Tensor
        float64 ``(100,)``: live births, 1974–78 (``BIR74``; 329,962 in all).
    nonwhite_births : torch.Tensor
        float64 ``(100,)``: non-white live births, 1974–78 (``NWBIR74``).
    expected : torch.Tensor
        float64 ``(100,)``: expected deaths at the state-wide rate, :math:`E_i = B_i \sum_j y_j / \sum_j B_j` (births
        :math:`B`, deaths :math:`y`), so :math:`\sum_i E_i = \sum_i y_i`.
    covariate : torch.Tensor
        float64 ``(100,)``: the standardised share of non-white births, :math:`(p_i - \bar p) / s_p` with
        :math:`p_i = \mathrm{NWBIR74}_i / \mathrm{BIR74}_i`, :math:`\bar p` their mean and :math:`s_p` their sample
        standard deviation (divisor 99, as R's ``scale``): a regression coefficient on it is an effect per s.d.
    names : list of str
        County names.
    fips : list of str
        Five-digit FIPS county codes (``"37001"`` …).
    adjacency : torch.Tensor
        Sparse CSR ``(100, 100)`` float64 0/1 queen-contiguity matrix (counties sharing a boundary point), built
        through libpysal from the polygons.
    pairs : torch.Tensor
        int64 ``(245, 2)``: the neighbour pairs ``(i, j)``, ``i < j``, each once, sorted.
    polygons : list of list of numpy.ndarray
        Per county, the rings of its polygon as ``(m, 2)`` float64 arrays of (longitude, latitude) in degrees, each
        closed (first point repeated last); counties on barrier islands have several rings.
    shapefile : pathlib.Path
        libpysal's ``sids2.shp`` (with ``.shx``/``.dbf``; no ``.prj``: the coordinates are NAD27 longitudes and
        latitudes).
    """

    observed: torch.Tensor
    births: torch.Tensor
    nonwhite_births: torch.Tensor
    expected: torch.Tensor
    covariate: torch.Tensor
    names: list[str]
    fips: list[str]
    adjacency: torch.Tensor
    pairs: torch.Tensor
    polygons: list[list[np.ndarray]]
    shapefile: Path

    @property
    def num_counties(self) -> int:
        return self.observed.numel()

    @property
    def nonwhite_share(self) -> torch.Tensor:
        """float64 ``(100,)``: non-white births / births, the covariate before standardisation."""
        return self.nonwhite_births / self.births

    def to_geodataframe(self) -> Any:
        """The counties as a :class:`geopandas.GeoDataFrame`, one row per county in data order (index 0–99).

        Columns ``name``, ``fips``, ``observed``, ``births``, ``nonwhite_births``, ``expected``, ``covariate`` and
        ``geometry`` (shapely (Multi)Polygons). The example ships no ``.prj``, so the CRS is None (the coordinates
        are NAD27 longitudes and latitudes: ``gdf.set_crs("EPSG:4267")`` declares it).

        Raises
        ------
        ImportError
            GeoPandas is not installed (``pip install 'sparseprec[spatial]'``).

        Examples
        --------
        >>> from sparseprec.datasets import load_nc_sids
        >>> gdf = load_nc_sids().to_geodataframe()
        >>> len(gdf), gdf.loc[0, "name"], list(gdf.columns)[:3]
        (100, 'Ashe', ['name', 'fips', 'observed'])
        """
        table = read_shapefile(self.shapefile)
        columns = {
            "name": list(self.names),
            "fips": list(self.fips),
            "observed": self.observed.cpu().numpy(),
            "births": self.births.cpu().numpy(),
            "nonwhite_births": self.nonwhite_births.cpu().numpy(),
            "expected": self.expected.cpu().numpy(),
            "covariate": self.covariate.cpu().numpy(),
        }
        return geodataframe(columns, table, range(self.num_counties), "NCSIDSData.to_geodataframe")


def _sids2_path() -> Path:
    """The path of libpysal's built-in ``sids2.shp``, without a download."""
    examples = require_spatial("libpysal.examples", "load_nc_sids")
    table = examples.available()
    row = table[table["Name"] == _EXAMPLE]
    if row.empty or not bool(row["Installed"].iloc[0]):
        raise RuntimeError(
            f"libpysal does not list its built-in example {_EXAMPLE!r} as installed (libpysal "
            f"{getattr(require_spatial('libpysal', 'load_nc_sids'), '__version__', '?')}); "
            "load_nc_sids reads that example and downloads nothing"
        )
    path = examples.load_example(_EXAMPLE).get_path("sids2.shp", verbose=False)
    if not path:
        raise RuntimeError(f"libpysal's example {_EXAMPLE!r} has no sids2.shp: the installed libpysal is damaged")
    return Path(path)


def _queen_pairs(table: Any) -> np.ndarray:
    """``(m, 2)`` int64 queen-contiguity pairs ``i < j`` of the shapefile's polygons, through libpysal's ``Graph``."""
    graph_module = require_spatial("libpysal.graph", "load_nc_sids")
    geopandas = require_spatial("geopandas", "load_nc_sids")
    shapely_geometry = require_spatial("shapely.geometry", "load_nc_sids")
    geometry = geopandas.GeoSeries([shapely_geometry.shape(shape) for shape in table.shapes])
    adjacency = graph_module.Graph.build_contiguity(geometry, rook=False).adjacency
    focal = adjacency.index.get_level_values("focal").to_numpy(dtype=np.int64)
    neighbor = adjacency.index.get_level_values("neighbor").to_numpy(dtype=np.int64)
    links = (focal != neighbor) & (adjacency.to_numpy() != 0)  # an isolate is a zero-weight self-loop in a Graph
    pairs = np.stack([focal[links], neighbor[links]], axis=1)
    upper = np.unique(np.sort(pairs, axis=1), axis=0)
    if 2 * len(upper) != len(pairs):
        raise RuntimeError("libpysal's queen contiguity of the sids2 polygons is not symmetric")
    return upper


def load_nc_sids() -> NCSIDSData:
    r"""Load the North Carolina SIDS data (Cressie 1993) from libpysal's built-in example ``sids2`` (no download).

    Sudden infant deaths, live births and non-white live births in the 100 counties of North Carolina, 1974–78, with
    the county polygons, queen contiguity between them, expected deaths at the state-wide rate and the standardised
    share of non-white births (the usual covariate). libpysal ships the data with the package
    (``libpysal/examples/sids2``: ``sids2.shp``/``.dbf``); the shapefile is read with pyshp and the contiguity is
    built by ``libpysal.graph.Graph.build_contiguity(..., rook=False)`` (245 pairs; the example's own ``sids2.gal``
    is rook contiguity, 231 pairs). Sources: Cressie, N. (1993), *Statistics for Spatial Data*, Wiley, pp. 386–389;
    Cressie, N. & Chan, N. H. (1989), *Spatial modeling of regional variables*, JASA 84, 393–401.

    Returns
    -------
    NCSIDSData

    Raises
    ------
    ImportError
        libpysal or GeoPandas is not installed (``pip install 'sparseprec[spatial]'``).
    RuntimeError
        The installed libpysal lacks the built-in example, or its data are not the 100 counties expected.

    Examples
    --------
    >>> from sparseprec.datasets import load_nc_sids
    >>> data = load_nc_sids()
    >>> data.num_counties, int(data.observed.sum()), int(data.births.sum()), data.pairs.shape
    (100, 667, 329962, torch.Size([245, 2]))
    >>> data.names[:3]
    ['Ashe', 'Alleghany', 'Surry']
    """
    table = read_shapefile(_sids2_path())
    records = table.records
    if len(records) != _COUNTIES or any(not rings for rings in table.polygons):
        raise RuntimeError(f"libpysal's sids2 example should hold {_COUNTIES} county polygons, found {len(records)}")
    column = {name: np.array([float(r[name]) for r in records]) for name in ("SID74", "BIR74", "NWBIR74")}
    deaths = column["SID74"]
    if not (np.all(deaths == np.round(deaths)) and np.all(deaths >= 0) and np.all(column["BIR74"] > 0)):
        raise RuntimeError("libpysal's sids2 example: SID74 must hold whole counts and BIR74 positive births")
    observed = torch.tensor(deaths.astype(np.int64))
    births = torch.tensor(column["BIR74"], dtype=torch.float64)
    nonwhite = torch.tensor(column["NWBIR74"], dtype=torch.float64)
    expected = births * (observed.sum().double() / births.sum())
    share = nonwhite / births
    pairs = torch.from_numpy(_queen_pairs(table))
    return NCSIDSData(
        observed=observed,
        births=births,
        nonwhite_births=nonwhite,
        expected=expected,
        covariate=(share - share.mean()) / share.std(),
        names=[str(r["NAME"]) for r in records],
        fips=[str(r["FIPS"]) for r in records],
        adjacency=adjacency_from_pairs(pairs, n=_COUNTIES),
        pairs=pairs,
        polygons=table.polygons,
        shapefile=table.path,
    )

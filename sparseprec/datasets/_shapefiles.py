"""Polygon shapefiles through pyshp, and their GeoDataFrames through GeoPandas (the ``spatial`` extra).

Private to :mod:`sparseprec.datasets`: the loaders read their polygons here, in the data set's own row order.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["ShapefileTable", "read_shapefile", "require_spatial", "geodataframe"]

_FILE_CODE = (9994).to_bytes(4, "big")  # the first four bytes of every .shp
_POLYGON_TYPES = (5, 15, 25)  # POLYGON, POLYGONZ, POLYGONM: the (x, y) of every point is read


@dataclass(frozen=True)
class ShapefileTable:
    """The records, polygon rings and geometries of a shapefile, in file order.

    ``records[k]`` is record ``k``'s attributes (pyshp's values: ``str``, ``int``, ``float``); ``polygons[k]`` its
    rings as ``(m, 2)`` float64 arrays of ``(x, y)``, closed (the first point repeated last, as the format stores
    them); ``shapes[k]`` its ``__geo_interface__`` mapping (pyshp sorts the rings into outer boundaries and holes by
    their orientation; None for a null shape, whose ``polygons[k]`` is empty); ``crs`` the ``.prj`` file's WKT text,
    or None without one.
    """

    path: Path
    records: list[dict[str, Any]]
    polygons: list[list[np.ndarray]]
    shapes: list[dict[str, Any] | None]
    crs: str | None


def read_shapefile(path: str | Path) -> ShapefileTable:
    """Read a polygon shapefile (``.shp`` with its ``.shx`` and ``.dbf``) with pyshp.

    Raises
    ------
    ValueError
        The file is not a polygon shapefile (no shapefile file code, pyshp cannot read it or its ``.dbf``, or its
        shape type is not a polygon type).
    FileNotFoundError
        No file at ``path``.
    """
    import shapefile  # pyshp, a core dependency; imported here so that `import sparseprec` does not load it

    path = Path(path)
    with open(path, "rb") as file:
        head = file.read(4)
    if head != _FILE_CODE:  # pyshp reads on (with a warning) where this magic number is wrong
        raise ValueError(f"path must be an ESRI shapefile (.shp, file code 9994), got {str(path)!r}")
    try:
        reader = shapefile.Reader(str(path))
    except shapefile.ShapefileException as error:
        raise ValueError(f"path must be an ESRI shapefile with its .dbf, got {str(path)!r}: {error}") from error
    with reader:
        if reader.shapeType not in _POLYGON_TYPES:
            raise ValueError(
                f"path must be a polygon shapefile (shape type 5, 15 or 25), {str(path)!r} has shape type "
                f"{reader.shapeType} ({reader.shapeTypeName})"
            )
        records, polygons, shapes = [], [], []
        for item in reader.iterShapeRecords():
            shape = item.shape
            records.append(item.record.as_dict())
            if shape.shapeType == shapefile.NULL:  # a record without a polygon
                polygons.append([])
                shapes.append(None)
                continue
            points = np.asarray(shape.points, dtype=np.float64).reshape(-1, 2)
            ends = [*list(shape.parts)[1:], len(points)]
            polygons.append([points[a:b].copy() for a, b in zip(shape.parts, ends, strict=True)])
            shapes.append(shape.__geo_interface__)
    projection = path.with_suffix(".prj")
    crs = projection.read_text().strip() if projection.is_file() else None
    return ShapefileTable(path, records, polygons, shapes, crs or None)


def require_spatial(module: str, what: str) -> ModuleType:
    """Import ``module`` (a package of the ``spatial`` extra), or raise an ImportError that names the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        root = module.split(".")[0]
        raise ImportError(
            f"{what} needs {root}, which is not installed: pip install 'sparseprec[spatial]' "
            "(libpysal, geopandas and networkx)"
        ) from error


def geodataframe(
    columns: Mapping[str, Sequence[Any] | np.ndarray], table: ShapefileTable, order: Sequence[int], what: str
) -> Any:
    """A GeoDataFrame of ``columns`` (row ``i`` of each) whose geometry ``i`` is record ``order[i]`` of ``table``, with
    ``table``'s CRS (None without a ``.prj``); index ``0 … n−1``."""
    geopandas = require_spatial("geopandas", what)
    shapely_geometry = require_spatial("shapely.geometry", what)
    shapes = [table.shapes[k] for k in order]
    geometry = geopandas.GeoSeries([None if g is None else shapely_geometry.shape(g) for g in shapes], crs=table.crs)
    return geopandas.GeoDataFrame(dict(columns), geometry=geometry, crs=table.crs)

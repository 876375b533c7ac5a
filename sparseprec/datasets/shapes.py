"""A minimal reader for ESRI shapefiles of polygons (``.shp`` + ``.dbf``), enough to draw district maps.

Format (ESRI Shapefile Technical Description, July 1998): a 100-byte header, then records, each an 8-byte big-endian
header (number, content length in 16-bit words) and a little-endian content; a polygon (shape type 5) stores its
bounding box, the number of parts and points, the start index of every part (ring) and the ``(x, y)`` points. The
``.dbf`` (dBase III) table holds one row of attributes per record.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["read_polygons", "read_dbf"]

_POLYGON = 5
_NULL = 0


def read_polygons(path: str | Path) -> list[list[np.ndarray]]:
    """The rings of every record of a polygon shapefile, in file order.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.shp`` file.

    Returns
    -------
    list of list of numpy.ndarray
        Per record, its rings as ``(m, 2)`` arrays of ``(x, y)`` (an empty list for a null shape).

    Examples
    --------
    >>> from sparseprec.datasets import load_scotland_lip_cancer, read_polygons
    >>> rings = read_polygons(load_scotland_lip_cancer().shapefile)
    >>> len(rings), rings[0][0].shape[1]
    (56, 2)
    """
    data = Path(path).read_bytes()
    if len(data) < 100 or struct.unpack(">i", data[:4])[0] != 9994:
        raise ValueError(f"path must be an ESRI shapefile (.shp, file code 9994), got {str(path)!r}")
    shape_type = struct.unpack("<i", data[32:36])[0]
    if shape_type != _POLYGON:
        raise ValueError(f"only polygon shapefiles (shape type 5) are read, {str(path)!r} has shape type {shape_type}")
    records, offset = [], 100
    while offset + 8 <= len(data):
        length = 2 * struct.unpack(">i", data[offset + 4 : offset + 8])[0]
        content = data[offset + 8 : offset + 8 + length]
        offset += 8 + length
        kind = struct.unpack("<i", content[:4])[0]
        if kind == _NULL:
            records.append([])
            continue
        if kind != _POLYGON:
            raise ValueError(f"record {len(records)} of {str(path)!r} has shape type {kind}, expected 5 (polygon)")
        num_parts, num_points = struct.unpack("<ii", content[36:44])
        starts = np.frombuffer(content, "<i4", num_parts, 44)
        points = np.frombuffer(content, "<f8", 2 * num_points, 44 + 4 * num_parts).reshape(num_points, 2)
        ends = np.append(starts[1:], num_points)
        records.append([points[a:b].copy() for a, b in zip(starts, ends, strict=True)])
    return records


def read_dbf(path: str | Path) -> list[dict[str, str]]:
    """The rows of a dBase III table (a shapefile's ``.dbf``) as strings, stripped, in file order.

    Examples
    --------
    >>> from sparseprec.datasets import load_scotland_lip_cancer, read_dbf
    >>> rows = read_dbf(load_scotland_lip_cancer().shapefile.with_suffix(".dbf"))
    >>> len(rows), "District" in rows[0]
    (56, True)
    """
    data = Path(path).read_bytes()
    if len(data) < 32:
        raise ValueError(f"path must be a dBase table (.dbf), got {str(path)!r} ({len(data)} bytes)")
    num_records, header_length, record_length = struct.unpack("<IHH", data[4:12])
    fields, position = [], 32
    while data[position] != 0x0D:
        name = data[position : position + 11].split(b"\0", 1)[0].decode("ascii")
        fields.append((name, data[position + 16]))
        position += 32
    rows = []
    for r in range(num_records):
        start = header_length + r * record_length
        if data[start : start + 1] == b"*":  # deleted record
            continue
        row, cursor = {}, start + 1
        for name, width in fields:
            row[name] = data[cursor : cursor + width].decode("latin-1").strip()
            cursor += width
        rows.append(row)
    return rows

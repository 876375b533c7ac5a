"""Real data shipped with sparseprec (package data; no download)."""

from .scotland import LipCancerData, load_scotland_lip_cancer
from .shapes import read_dbf, read_polygons

__all__ = ["LipCancerData", "load_scotland_lip_cancer", "read_polygons", "read_dbf"]

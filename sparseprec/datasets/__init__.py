"""Real data for the examples: the Scottish lip cancer data (shipped as package data) and the North Carolina SIDS data
(libpysal's built-in example ``sids2``; the ``spatial`` extra). Nothing is downloaded."""

from .nc_sids import NCSIDSData, load_nc_sids
from .scotland import LipCancerData, load_scotland_lip_cancer

__all__ = ["LipCancerData", "load_scotland_lip_cancer", "NCSIDSData", "load_nc_sids"]

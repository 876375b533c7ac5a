"""Real data shipped with sparseprec (package data; no download)."""

from .scotland import LipCancerData, load_scotland_lip_cancer

__all__ = ["LipCancerData", "load_scotland_lip_cancer"]

"""Runnable examples shipped with the package (``python -m sparseprec.examples.<name>``)."""

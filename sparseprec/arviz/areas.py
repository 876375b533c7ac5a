"""Coordinates naming the areas of a spatial model (districts, counties) for :mod:`sparseprec.arviz`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["area_coords"]


def area_coords(
    names: Sequence[str], sites: Iterable[str], *, dim: str = "district"
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``coords`` and ``dims`` for :func:`~sparseprec.arviz.from_mcmc` / :func:`~sparseprec.arviz.from_draws`
    naming one area per entry of each site in ``sites``.

    A site whose value is ``(n,)`` per draw (a random effect per area, a relative risk, the observations) gets the
    dimension ``dim``, labelled by the area names: ``coords = {dim: names}``, ``dims = {site: [dim] for site in
    sites}``. Pass the same pair to every route (sites a route lacks are ignored), so that their summaries line up
    and ``arviz.summary(idata, coords={dim: [...]})`` selects areas by name.

    Parameters
    ----------
    names : sequence of str
        The ``n`` area names, in the order of the model's vectors (e.g. ``data.district_names()`` of the lip cancer
        data). Must be distinct, so that a name selects one area.
    sites : iterable of str
        The names of the sites (sample, deterministic, observed) with one entry per area.
    dim : str
        The dimension's name (default ``"district"``); not ``"chain"`` or ``"draw"``.

    Returns
    -------
    coords : dict
        ``{dim: list(names)}``.
    dims : dict
        ``{site: [dim]}`` for every site.

    Raises
    ------
    TypeError
        If a name, a site or ``dim`` is not a string.
    ValueError
        If ``names`` is empty or has duplicates, or ``dim`` is ``"chain"``/``"draw"``.

    Examples
    --------
    >>> from sparseprec.arviz import area_coords
    >>> area_coords(["Skye-Lochalsh", "Banff-Buchan"], ["relative_risk", "cases"])
    ({'district': ['Skye-Lochalsh', 'Banff-Buchan']}, {'relative_risk': ['district'], 'cases': ['district']})
    """
    if not isinstance(dim, str):
        raise TypeError(f"dim must be a string, got {type(dim).__name__} {dim!r}")
    if dim in ("chain", "draw"):
        raise ValueError(f"dim must not be 'chain' or 'draw' (ArviZ's own dimensions), got {dim!r}")
    if isinstance(names, str):
        raise TypeError(f"names must be a sequence of strings, got the string {names!r}")
    names = list(names)
    if not names:
        raise ValueError("names must name at least one area, got an empty sequence")
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"names must be strings, got {type(name).__name__} {name!r} at position {i}")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise ValueError(f"names must be distinct, got {name!r} at positions {seen[name]} and {i}")
        seen[name] = i
    if isinstance(sites, str):
        raise TypeError(f"sites must be an iterable of site names, got the string {sites!r}")
    dims = {}
    for site in sites:
        if not isinstance(site, str):
            raise TypeError(f"sites must be strings, got {type(site).__name__} {site!r}")
        dims[site] = [dim]
    return {dim: names}, dims

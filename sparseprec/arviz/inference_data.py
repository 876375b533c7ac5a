r"""Posterior draws of every inference route as :class:`arviz.InferenceData`.

ArviZ stores a posterior as arrays of shape ``(chain, draw, *event)``. :func:`from_mcmc` takes Pyro's ``MCMC``
through ArviZ's own converter; :func:`from_draws` takes a dictionary of draws ``(S, *event)`` and splits the leading
dimension into ``chains`` consecutive blocks: draw ``s`` of chain ``c`` is row :math:`c\,D + s` with
:math:`D = S / \text{chains}` (the order of ``MCMC.get_samples()``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import arviz as az
import numpy as np
import torch

__all__ = ["from_mcmc", "from_draws"]

_RESERVED = ("chain", "draw")


def from_draws(
    draws: Mapping[str, torch.Tensor | np.ndarray],
    *,
    coords: Mapping[str, Sequence] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    chains: int = 1,
    log_likelihood: Mapping[str, torch.Tensor | np.ndarray] | None = None,
    observed_data: Mapping[str, torch.Tensor | np.ndarray] | None = None,
) -> az.InferenceData:
    r"""An :class:`arviz.InferenceData` holding the draws ``draws`` as its posterior.

    For draws that do not come from a Pyro ``MCMC`` object: a fitted guide's draws (``pyro.infer.Predictive`` with
    ``guide=``), Laplace draws (:func:`sparseprec.laplace.posterior_draws`, split into named blocks of the latent
    field), draws from an INLA mixture, or any other sampler. Every value is ``(S, *event)``, the same number ``S``
    of draws for all; ``chains`` splits them into ``chains`` blocks of :math:`D = S / \text{chains}` consecutive
    draws, so value ``[c D + s]`` is draw ``s`` of chain ``c`` (the order of ``MCMC.get_samples()``). Independent
    draws (SVI, Laplace) are one chain; the ``mean``, ``sd`` and HDI of ``arviz.summary`` apply to them
    (``kind="stats"``), while its R-hat compares chains and needs at least two.

    Parameters
    ----------
    draws : mapping of str to Tensor or ndarray
        Site name → ``(S, *event)`` draws. Tensors are detached and copied to the CPU; dtypes are kept (``bfloat16``
        becomes ``float32``, which NumPy lacks).
    coords : mapping of str to sequence, optional
        Dimension name → labels, e.g. ``{"district": names}`` (:func:`~sparseprec.arviz.area_coords`). A dimension
        without labels is numbered from 0.
    dims : mapping of str to sequence of str, optional
        Site name → names of its event dimensions (``len(dims[name])`` = number of dimensions after the draw one).
        Names of sites absent from every group are ignored, so one ``dims`` serves several routes. Unnamed event
        dimensions are called ``{name}_dim_0``, ... (ArviZ's default).
    chains : int
        Number of chains, dividing ``S`` (default 1).
    log_likelihood : mapping of str to Tensor or ndarray, optional
        Observed site name → pointwise log-likelihood ``(S, *event)`` at each draw (for ``arviz.loo`` and
        ``arviz.compare``); same ``S`` and chain layout as ``draws``.
    observed_data : mapping of str to Tensor or ndarray, optional
        Observed site name → its value (no draw dimension).

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior`` (and ``log_likelihood``, ``observed_data`` when given); variables ``(chain, draw,
        *event)``, equal to the given draws.

    Raises
    ------
    TypeError
        If ``draws`` (or another group) is not a mapping of names to tensors/arrays, or ``chains`` is not an integer.
    ValueError
        If a group is empty, the values' draw counts differ, a value has no draw dimension, ``chains`` does not divide
        ``S``, ``dims`` gives a site the wrong number of dimensions or uses ``"chain"``/``"draw"``, or ``coords``
        gives a dimension the wrong number of labels.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.arviz import from_draws
    >>> draws = {"intercept": torch.zeros(100), "effect": torch.ones(100, 3)}
    >>> idata = from_draws(draws, coords={"area": ["a", "b", "c"]}, dims={"effect": ["area"]}, chains=2)
    >>> idata.posterior["effect"].dims, idata.posterior["effect"].shape
    (('chain', 'draw', 'area'), (2, 50, 3))
    """
    if isinstance(chains, bool) or not isinstance(chains, numbers.Integral):
        raise TypeError(f"chains must be an integer >= 1, got {type(chains).__name__} {chains!r}")
    if chains < 1:
        raise ValueError(f"chains must be an integer >= 1, got {chains}")
    posterior = _arrays(draws, "draws", with_draws=True)
    total = next(iter(posterior.values())).shape[0]
    if total % chains:
        raise ValueError(f"chains ({chains}) must divide the number of draws ({total})")
    groups = {"posterior": posterior}
    if log_likelihood is not None:
        groups["log_likelihood"] = _arrays(log_likelihood, "log_likelihood", with_draws=True, draws=total)
    if observed_data is not None:
        groups["observed_data"] = _arrays(observed_data, "observed_data", with_draws=False)
    coords, dims = _check_labels(groups, coords, dims)
    per_chain = total // chains
    for group in ("posterior", "log_likelihood"):
        if group in groups:
            groups[group] = {k: v.reshape(chains, per_chain, *v.shape[1:]) for k, v in groups[group].items()}
    library = {f"{group}_attrs": {"inference_library": "sparseprec"} for group in groups}
    return az.from_dict(**groups, coords=coords, dims=dims, **library)


def from_mcmc(
    mcmc: object,
    *,
    coords: Mapping[str, Sequence] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    log_likelihood: bool | None = None,
    parallel: bool = False,
) -> az.InferenceData:
    """An :class:`arviz.InferenceData` from a Pyro ``MCMC`` run (NUTS, HMC), through ArviZ's own converter
    (``arviz.from_pyro``), with the model's deterministic sites added to the posterior.

    ArviZ's converter gives the groups ``posterior`` (the sampled sites, ``(chain, draw, *event)``),
    ``sample_stats`` (``diverging``: Pyro records no other per-draw statistic), ``observed_data`` and, when
    ``log_likelihood`` is true, ``log_likelihood`` (each observed site's ``log_prob`` at every draw, from one
    vectorised run of the model: the model must accept a batch of draws, as for ``Predictive(parallel=True)``; a site
    with ``.to_event(...)`` contributes one value per draw, a site in a ``pyro.plate`` one per plate entry). Pyro's
    ``MCMC`` keeps no ``pyro.deterministic`` site and ArviZ's converter files them under ``observed_data`` (and
    their ``log_prob`` of 0 under ``log_likelihood``): here they are recomputed from the draws with
    ``pyro.infer.Predictive`` and moved to ``posterior``, so a derived quantity (e.g. a relative risk) is summarised
    like the sampled ones.

    Several runs of the same model (e.g. one chain each, run one after the other; Pyro runs the chains of one ``MCMC``
    in parallel processes, or sequentially with a warning where there are fewer spare CPUs than chains) are
    concatenated as chains, in the order given.

    Parameters
    ----------
    mcmc : pyro.infer.MCMC or sequence of them
        Runs whose ``run(...)`` has returned.
    coords, dims
        As for :func:`from_draws` (``dims`` may name the deterministic and observed sites too).
    log_likelihood : bool, optional
        Whether ArviZ's converter computes the ``log_likelihood`` group (default: ArviZ's ``rcParams
        ["data.log_likelihood"]``).
    parallel : bool
        Recompute the deterministic sites in one vectorised model run (``Predictive(parallel=True)``) instead of
        one run per draw; for models written for a batch of draws.

    Returns
    -------
    arviz.InferenceData

    Raises
    ------
    TypeError
        If ``mcmc`` is not a Pyro ``MCMC`` (or a non-empty sequence of them).
    ValueError
        If a run has not been run, or ``coords``/``dims`` do not fit the sites (see :func:`from_draws`).

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> from pyro.infer import MCMC, NUTS
    >>> from sparseprec.arviz import from_mcmc
    >>> def model():
    ...     mu = pyro.sample("mu", dist.Normal(torch.zeros(3), 1.0).to_event(1))
    ...     pyro.deterministic("exp_mu", mu.exp(), event_dim=1)
    ...     pyro.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=torch.tensor([0.5, -1.0, 2.0]))
    >>> pyro.set_rng_seed(0)
    >>> mcmc = MCMC(NUTS(model), num_samples=20, warmup_steps=20, disable_progbar=True)
    >>> mcmc.run()
    >>> idata = from_mcmc(mcmc, coords={"site": ["a", "b", "c"]}, dims={"mu": ["site"], "exp_mu": ["site"]})
    >>> sorted(idata.posterior.data_vars), idata.posterior["exp_mu"].dims, idata.sample_stats["diverging"].shape
    (['exp_mu', 'mu'], ('chain', 'draw', 'site'), (1, 20))
    """
    from pyro.infer import MCMC

    runs = list(mcmc) if isinstance(mcmc, Sequence) and not isinstance(mcmc, str) else [mcmc]
    if not runs:
        raise ValueError("mcmc must be a Pyro MCMC or a non-empty sequence of them, got an empty sequence")
    for i, run in enumerate(runs):
        where = "mcmc" if len(runs) == 1 and run is mcmc else f"mcmc[{i}]"
        if not isinstance(run, MCMC):
            raise TypeError(f"{where} must be a pyro.infer.MCMC, got {type(run).__name__}")
        if run._samples is None:  # set by MCMC.run
            raise ValueError(f"{where} has not been run: call its run(...) before converting it")
    if log_likelihood is not None and not isinstance(log_likelihood, (bool, np.bool_)):
        raise TypeError(f"log_likelihood must be a bool or None, got {type(log_likelihood).__name__}")
    if not isinstance(parallel, (bool, np.bool_)):
        raise TypeError(f"parallel must be a bool, got {type(parallel).__name__}")
    coords = None if coords is None else {k: list(v) for k, v in coords.items()}
    dims = None if dims is None else {k: list(v) for k, v in dims.items()}
    parts = [_from_one_run(run, coords, dims, log_likelihood, bool(parallel)) for run in runs]
    return parts[0] if len(parts) == 1 else az.concat(*parts, dim="chain")


def _from_one_run(
    mcmc: object,
    coords: dict[str, list] | None,
    dims: dict[str, list[str]] | None,
    log_likelihood: bool | None,
    parallel: bool,
) -> az.InferenceData:
    import pyro
    from pyro.infer import Predictive

    model, args, kwargs = getattr(mcmc.kernel, "model", None), mcmc._args, mcmc._kwargs  # as ArviZ's converter
    deterministic: dict[str, tuple[int, ...]] = {}
    if model is not None:  # a kernel built from a potential function has no model (and no deterministic site)
        with torch.no_grad(), pyro.poutine.block():
            trace = pyro.poutine.trace(model).get_trace(*args, **kwargs)
        deterministic = {
            name: tuple(site["value"].shape)
            for name, site in trace.nodes.items()
            if site["type"] == "sample" and site["infer"].get("_deterministic", False)
        }
    first_draws = {k: _numpy(v[:1]) for k, v in mcmc.get_samples().items()}
    _check_labels(
        {"posterior": first_draws, "deterministic": {k: np.zeros((1, *shape)) for k, shape in deterministic.items()}},
        coords,
        dims,
    )
    idata = az.from_pyro(mcmc, coords=coords, dims=dims, log_likelihood=log_likelihood)
    for group in ("observed_data", "log_likelihood"):  # ArviZ files deterministic sites as observed ones
        if group in idata.groups():
            kept = idata[group].drop_vars([name for name in deterministic if name in idata[group].data_vars])
            if kept.data_vars:
                idata[group] = kept
            else:
                del idata[group]
    if deterministic:
        predictive = Predictive(
            model, posterior_samples=mcmc.get_samples(), return_sites=list(deterministic), parallel=parallel
        )
        with torch.no_grad():
            values = predictive(*args, **kwargs)
        chains, draws = mcmc.num_chains, mcmc.num_samples
        arrays = {}
        for name, shape in deterministic.items():
            value = _numpy(values[name])
            if value.size != chains * draws * int(np.prod(shape, dtype=np.int64)):
                raise ValueError(
                    f"the deterministic site {name!r} has shape {shape} in one model run but {value.shape} over "
                    f"{chains * draws} draws: write the model for a batch of draws or pass parallel=False"
                )
            arrays[name] = value.reshape(chains, draws, *shape)
        extra = az.dict_to_dataset(arrays, library=pyro, coords=coords, dims=dims)
        idata.posterior = idata.posterior.assign(extra.data_vars)
    return idata


def _numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    value = value.detach()
    if value.dtype == torch.bfloat16:  # NumPy has no bfloat16
        value = value.float()
    return value.cpu().resolve_conj().resolve_neg().numpy()


def _arrays(values: object, name: str, *, with_draws: bool, draws: int | None = None) -> dict[str, np.ndarray]:
    """The group ``name`` as NumPy arrays, checked: a non-empty mapping of site names to tensors/arrays, each with a
    leading draw dimension of the same size (``draws`` when given) if ``with_draws``."""
    if not isinstance(values, Mapping):
        raise TypeError(f"{name} must be a mapping of site names to tensors, got {type(values).__name__}")
    if not values:
        raise ValueError(f"{name} must hold at least one site, got an empty mapping")
    out: dict[str, np.ndarray] = {}
    first: str | None = None
    for key, value in values.items():
        if not isinstance(key, str):
            raise TypeError(f"{name} must be keyed by site names (str), got the key {key!r}")
        if not isinstance(value, (torch.Tensor, np.ndarray)):
            raise TypeError(f"{name}[{key!r}] must be a torch.Tensor or a numpy.ndarray, got {type(value).__name__}")
        if isinstance(value, torch.Tensor) and value.layout != torch.strided:
            raise TypeError(f"{name}[{key!r}] must be a dense (strided) tensor, got layout {value.layout}")
        array = _numpy(value)
        if with_draws:
            if array.ndim == 0:
                raise ValueError(f"{name}[{key!r}] must have a leading draw dimension, got a 0-D value")
            if draws is None:
                draws, first = array.shape[0], key
            elif array.shape[0] != draws:
                against = f"{first!r} has {draws}" if first is not None else f"draws have {draws}"
                raise ValueError(
                    f"{name}[{key!r}] has {array.shape[0]} draws (shape {array.shape}), but {against}: every value "
                    "must have the same leading draw dimension"
                )
        out[key] = array
    return out


def _check_labels(
    groups: Mapping[str, Mapping[str, np.ndarray]],
    coords: Mapping[str, Sequence] | None,
    dims: Mapping[str, Sequence[str]] | None,
) -> tuple[dict[str, list] | None, dict[str, list[str]] | None]:
    """Check ``coords`` and ``dims`` against the groups' arrays (all but ``observed_data`` with a leading draw
    dimension), naming the site and the dimension at fault; return them as plain dicts of lists."""
    if coords is not None:
        if not isinstance(coords, Mapping):
            raise TypeError(f"coords must be a mapping of dimension names to labels, got {type(coords).__name__}")
        coords = {k: list(v) for k, v in coords.items()}
    if dims is not None:
        if not isinstance(dims, Mapping):
            raise TypeError(f"dims must be a mapping of site names to dimension names, got {type(dims).__name__}")
        dims = {k: [v] if isinstance(v, str) else list(v) for k, v in dims.items()}
        for site, names in dims.items():
            reserved = [d for d in names if d in _RESERVED]
            if reserved:
                raise ValueError(f"dims[{site!r}] must not use ArviZ's own dimension {reserved[0]!r}: give only the "
                                 "dimensions after the draw one")  # fmt: skip
    sizes: dict[str, tuple[int, str]] = {}
    for group, arrays in groups.items():
        lead = 0 if group == "observed_data" else 1
        for site, array in arrays.items():
            event = array.shape[lead:]
            names = (dims or {}).get(site)
            if names is None:
                continue
            if len(names) != len(event):
                raise ValueError(
                    f"dims[{site!r}] names {len(names)} dimension(s) {names}, but {site!r} has {len(event)} after "
                    f"the draw dimension (event shape {tuple(event)})"
                )
            for dim, size in zip(names, event, strict=True):
                if coords is not None and dim in coords and len(coords[dim]) != size:
                    raise ValueError(
                        f"coords[{dim!r}] has {len(coords[dim])} labels, but {site!r} has {size} entries along {dim!r}"
                    )
                if dim in sizes and sizes[dim][0] != size:
                    raise ValueError(
                        f"dimension {dim!r} has {sizes[dim][0]} entries in {sizes[dim][1]!r} but {size} in {site!r}"
                    )
                sizes[dim] = (size, site)
    return coords, dims

"""Map a fit over many outcomes: serially, or as batched tasks on a ``dask.distributed`` client.

:func:`fit_many` validates every outcome first (a bad input raises before anything is submitted), then

* with ``client=None``: fits them one by one in this process, under :func:`~sparseprec.distributed.thread_limits`;
* with a client: registers :class:`~sparseprec.distributed.ThreadLimits` on it, scatters the specification to every
  worker once (``client.scatter(spec, broadcast=True)``: the graph travels once per worker, not once per task),
  submits one task per chunk of ``chunk_size`` outcomes (:func:`~sparseprec.distributed.fitting.fit_chunk`) and
  gathers the small results, in input order.

Both paths run the same function on the same inputs with the same thread pools, so they give the same floats.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

from .fitting import fit_chunk, fit_outcome
from .results import AtlasResults
from .specs import BYM2Poisson, Outcome
from .threads import thread_limits

__all__ = ["fit_many", "submit_many", "chunked", "default_chunk_size"]


def default_chunk_size(num_outcomes: int, task_threads: int) -> int:
    """Outcomes per task when none is given: about four tasks per task thread of the cluster (so that the load
    balances when fits take unequal times), at most 16 outcomes per task (a task then takes a few seconds, so Dask's
    per-task cost of a few milliseconds is well below 1 %), at least 1.

    Examples
    --------
    >>> from sparseprec.distributed import default_chunk_size
    >>> default_chunk_size(2000, 2), default_chunk_size(50, 2), default_chunk_size(3, 8)
    (16, 7, 1)
    """
    return max(1, min(16, math.ceil(num_outcomes / (4 * max(task_threads, 1)))))


def chunked(outcomes: Sequence[Outcome], chunk_size: int) -> list[list[tuple[int, Outcome]]]:
    """``[(index, outcome), ...]`` in consecutive chunks of ``chunk_size`` (the last may be shorter).

    Examples
    --------
    >>> from sparseprec.distributed.mapping import chunked
    >>> [[i for i, _ in chunk] for chunk in chunked("abcde", 2)]
    [[0, 1], [2, 3], [4]]
    """
    items = list(enumerate(outcomes))
    return [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]


def _checked(spec: BYM2Poisson, outcomes: Sequence[Outcome], chunk_size: int | None) -> list[Outcome]:
    if not isinstance(spec, BYM2Poisson):
        raise TypeError(f"spec must be a sparseprec.distributed.BYM2Poisson, got {type(spec).__name__}")
    if isinstance(outcomes, (str, bytes)) or not isinstance(outcomes, Sequence):
        raise TypeError(f"outcomes must be a sequence of Outcome, got {type(outcomes).__name__}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be an integer >= 1 or None, got {chunk_size!r}")
    return [spec.check_outcome(outcome, f"outcomes[{i}]") for i, outcome in enumerate(outcomes)]


def submit_many(
    spec: BYM2Poisson,
    outcomes: Sequence[Outcome],
    client,
    *,
    chunk_size: int | None = None,
    threads: int | None = 1,
    retries: int = 0,
) -> list:
    """The tasks of :func:`fit_many` without waiting: a list of ``distributed.Future``, one per chunk, each resolving
    to a list of :class:`~sparseprec.distributed.OutcomeFit` (for ``distributed.as_completed``, ``progress``, or
    writing results as they arrive). Arguments as for :func:`fit_many`."""
    outcomes = _checked(spec, outcomes, chunk_size)
    if threads is not None:
        from .threads import ThreadLimits

        client.register_plugin(ThreadLimits(threads))
    if chunk_size is None:
        chunk_size = default_chunk_size(len(outcomes), sum(client.nthreads().values()))
    shared = client.scatter(spec, broadcast=True, hash=False)
    batch = uuid.uuid4().hex[:12]
    return [
        client.submit(fit_chunk, shared, chunk, key=f"sparseprec-fit-chunk-{batch}-{i}", pure=False, retries=retries)
        for i, chunk in enumerate(chunked(outcomes, chunk_size))
    ]


def fit_many(
    spec: BYM2Poisson,
    outcomes: Sequence[Outcome],
    *,
    client=None,
    chunk_size: int | None = None,
    threads: int | None = 1,
    retries: int = 0,
) -> AtlasResults:
    """Fit ``spec``'s model to every outcome, serially (``client=None``) or on a ``dask.distributed`` client.

    Parameters
    ----------
    spec : BYM2Poisson
        The model and method (the graph inside it is sent to each worker once).
    outcomes : sequence of Outcome
        The data sets; all are validated before any fit starts.
    client : distributed.Client, optional
        Where to run; ``None`` runs in this process.
    chunk_size : int, optional
        Outcomes per task (default :func:`default_chunk_size`: about four tasks per task thread, at most 16 outcomes
        per task). Larger chunks amortise Dask's per-task cost (milliseconds) further; smaller ones balance the load
        better. Results do not depend on it.
    threads : int, optional
        Threads per pool in each task (torch, BLAS, OpenMP): 1 by default; ``None`` leaves every setting alone (and
        registers no plugin). With a client, applied by the :class:`~sparseprec.distributed.ThreadLimits` plugin;
        serially, within :func:`~sparseprec.distributed.thread_limits`.
    retries : int
        Dask's retries of a task whose worker died (numerical failures are results, not task failures).

    Returns
    -------
    AtlasResults
        One :class:`~sparseprec.distributed.OutcomeFit` per outcome, in input order (failed ones marked, with the
        reason).

    Raises
    ------
    TypeError, ValueError
        A bad specification, outcome (named by its index), ``chunk_size`` or ``threads``.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributed import BYM2Poisson, Graph, Outcome, fit_many
    >>> spec = BYM2Poisson(Graph(5, [(0, 1), (1, 2), (2, 3), (3, 4)]))
    >>> g = torch.Generator().manual_seed(0)
    >>> outcomes = [Outcome(torch.poisson(torch.full((5,), 6.0), generator=g), torch.full((5,), 5.0)) for _ in range(3)]
    >>> results = fit_many(spec, outcomes)  # client=None: in this process
    >>> results, results.to_tensors()["exceedance"].shape
    (AtlasResults(3 outcomes, 0 failed), torch.Size([3, 5]))
    """
    if client is None:
        outcomes = _checked(spec, outcomes, chunk_size)
        with thread_limits(threads):
            return AtlasResults([fit_outcome(spec, outcome, i) for i, outcome in enumerate(outcomes)])
    futures = submit_many(spec, outcomes, client, chunk_size=chunk_size, threads=threads, retries=retries)
    fits = [fit for chunk in client.gather(futures) for fit in chunk]
    return AtlasResults(sorted(fits, key=lambda fit: fit.index))

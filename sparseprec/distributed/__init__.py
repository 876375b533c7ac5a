"""Atlas-scale work: many Laplace fits of one model on one graph, serially or across processes and machines with Dask.

Import explicitly (``import sparseprec.distributed``); the core package never imports it, and it imports Dask only
when a client is used (``pip install 'sparseprec[distributed]'``). See docs/distributed.md.

* :class:`BYM2Poisson` (with :class:`Graph`, :class:`EmpiricalBayes` or :class:`INLA`): what to fit, a small
  picklable specification; :class:`Outcome`: one data set.
* :func:`fit_many` (``client=None`` or a ``distributed.Client``), :func:`submit_many`, :func:`fit_outcome`: the
  fits; :class:`OutcomeFit` and :class:`AtlasResults`: posterior summaries, failures marked with their reason.
* :func:`limit_threads`, :func:`thread_limits`, :class:`ThreadLimits` (a ``distributed.WorkerPlugin``): thread pools
  so that workers × threads ≤ cores.
"""

from .bym2 import worker_state
from .fitting import fit_outcome
from .mapping import default_chunk_size, fit_many, submit_many
from .results import AtlasResults, OutcomeFit
from .specs import INLA, BYM2Poisson, EmpiricalBayes, Graph, Outcome
from .threads import limit_threads, thread_limits

__all__ = [
    "Graph",
    "Outcome",
    "EmpiricalBayes",
    "INLA",
    "BYM2Poisson",
    "OutcomeFit",
    "AtlasResults",
    "fit_outcome",
    "fit_many",
    "submit_many",
    "default_chunk_size",
    "limit_threads",
    "thread_limits",
    "ThreadLimits",
    "worker_state",
]


def __getattr__(name: str) -> object:
    # ThreadLimits subclasses distributed.WorkerPlugin: created (importing Dask) on first access only
    if name == "ThreadLimits":
        from . import threads

        return threads.ThreadLimits
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

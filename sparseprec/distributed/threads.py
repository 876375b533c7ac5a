"""Thread pools of a worker process: torch's intra-op pool, the BLAS that CHOLMOD calls, SciPy's BLAS, OpenMP.

A Dask worker runs ``threads_per_worker`` tasks at once; each task's sparse Cholesky, BLAS calls and torch operations
may start threads of their own. The rule is *workers × task threads × pool threads ≤ cores*: with one pool thread per
task thread (:class:`ThreadLimits` with ``threads=1``, the default) a ``LocalCluster(n_workers=w,
threads_per_worker=t)`` with ``w · t = cores`` uses every core once. (Dask's nanny already starts worker processes with
``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1``; the plugin makes the setting explicit, applies it to torch
and to BLAS libraries loaded since, and to workers started without a nanny.)

:func:`limit_threads` sets every pool of the calling process (torch, and every BLAS/OpenMP library loaded, through
threadpoolctl, after loading the ones sparseprec uses); :data:`ThreadLimits` is a ``distributed.WorkerPlugin`` that
calls it in every worker, present and future, once registered with ``client.register_plugin(ThreadLimits(1))``
(:func:`~sparseprec.distributed.fit_many` registers it itself). Its class is created on first access, so importing
this module does not import Dask.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["limit_threads", "thread_limits", "ThreadLimits"]  # noqa: F822 (ThreadLimits: module __getattr__)

_ENVIRONMENT = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _check(threads: object) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    return threads


def _load_native_libraries() -> None:
    """Load the BLAS libraries sparseprec uses (CHOLMOD's via scikit-sparse, SciPy's), so threadpoolctl sees them."""
    import scipy.linalg  # noqa: F401  (SciPy's OpenBLAS)

    from ..cholesky import available_backends

    available_backends()  # imports scikit-sparse, and with it CHOLMOD's BLAS, where installed


def limit_threads(threads: int = 1) -> None:
    """Set this process's thread pools to ``threads`` each, for good: torch's intra-op pool, every BLAS and OpenMP
    library loaded (threadpoolctl), and ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS`` for libraries
    loaded later.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributed import limit_threads
    >>> before = torch.get_num_threads()
    >>> limit_threads(1); torch.get_num_threads()
    1
    >>> limit_threads(before)
    """
    from threadpoolctl import threadpool_limits

    threads = _check(threads)
    for name in _ENVIRONMENT:
        os.environ[name] = str(threads)
    _load_native_libraries()
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


@contextlib.contextmanager
def thread_limits(threads: int | None = 1) -> Iterator[None]:
    """Within the block, torch and every loaded BLAS/OpenMP pool run ``threads`` threads each (restored after);
    ``None`` changes nothing. The serial path of :func:`~sparseprec.distributed.fit_many` runs under it, so that it
    uses the same pools as the workers.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributed import thread_limits
    >>> before = torch.get_num_threads()
    >>> with thread_limits(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    threads = _check(threads)
    _load_native_libraries()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(previous)


def _setup(self, worker) -> None:
    limit_threads(self.threads)


def _init(self, threads: int = 1) -> None:
    self.threads = _check(threads)
    self.name = f"sparseprec-thread-limits-{self.threads}"  # registering the same setting twice replaces it


def _repr(self) -> str:
    return f"ThreadLimits(threads={self.threads})"


def _plugin_class() -> type:
    from distributed import WorkerPlugin

    doc = """A ``distributed.WorkerPlugin`` that runs :func:`limit_threads` (``threads`` per pool, default 1) in every
    worker when it starts, or at once in the workers running when it is registered.

    Examples
    --------
    >>> from sparseprec.distributed import ThreadLimits
    >>> ThreadLimits(1)
    ThreadLimits(threads=1)
    """
    namespace = {"__init__": _init, "setup": _setup, "__repr__": _repr, "__doc__": doc, "__module__": __name__}
    return type("ThreadLimits", (WorkerPlugin,), namespace)


def __getattr__(name: str) -> object:
    # ThreadLimits subclasses distributed.WorkerPlugin: built on first access (importing Dask then), and kept as a
    # module attribute so that pickle finds it by name in the workers
    if name == "ThreadLimits":
        cls = _plugin_class()
        globals()["ThreadLimits"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Helpers shared by the benchmark scripts: versions, number formatting, timing, peak memory, the docs table."""

from __future__ import annotations

import gc
import importlib.metadata
import os
import statistics
import time
from collections.abc import Callable, Hashable
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def package_version(name: str) -> str:
    """The installed version of a distribution, or ``"not installed"``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def fmt(x: float | None, digits: int = 2) -> str:
    """``x`` with thousands separators and ``digits`` decimals; ``—`` for a missing value."""
    return "—" if x is None else f"{x:,.{digits}f}"


def round_times(
    fns: dict[Hashable, Callable[[], object]], repeats: int, once: set = frozenset()
) -> dict[Hashable, list[float]]:
    """``name -> list of seconds``: one warm-up call each, then ``repeats`` interleaved rounds; the names in ``once``
    are timed in the first round only and not warmed up (calls of seconds to minutes)."""
    times: dict = {name: [] for name in fns}
    for name, fn in fns.items():
        if name not in once:
            fn()
    for r in range(repeats):
        for name, fn in fns.items():
            if name in once and r > 0:
                continue
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median_times(
    fns: dict[Hashable, Callable[[], object]], repeats: int, once: set = frozenset()
) -> dict[Hashable, tuple[float, int]]:
    """``name -> (median seconds, runs)`` of :func:`round_times`."""
    return {name: (statistics.median(t), len(t)) for name, t in round_times(fns, repeats, once).items()}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset this process's resident high-water mark to its current size; False where /proc cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """This process's resident high-water mark (``VmHWM``) since start or the last :func:`reset_peak_rss`."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


def peak_extra_bytes(fn: Callable[[], object], setup: Callable[[], object] = gc.collect) -> float:
    """Peak resident memory added by one call of ``fn`` after ``setup`` (NaN where /proc cannot reset the
    high-water mark)."""
    setup()
    if not reset_peak_rss():
        return float("nan")
    before = rss_bytes()
    fn()
    return max(peak_rss_bytes() - before, 0)


def write_section(begin: str, end: str, block: str, docs: Path = DOCS) -> None:
    """Put ``block`` (which starts with ``begin`` and ends with ``end``) into ``docs``, replacing the previous one."""
    text = docs.read_text() if docs.exists() else "# Benchmarks\n\n"
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    docs.write_text(text)

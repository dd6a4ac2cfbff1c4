"""Shared bits of the worker processes: the result line, optional profiling, fd limits, stop signals."""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import json
import pstats
import resource
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["emit", "profiled", "raise_fd_limit", "run_and_emit", "wait_for_stop_signal"]


def emit(doc: dict[str, Any]) -> None:
    """The worker's result: one JSON line on stdout, last."""
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def run_and_emit(run: Callable[[], dict[str, Any]], *, ready: str | None = None) -> None:
    """Run one measurement and emit its result; a missing library is a skip, any other failure an error.

    ``ready``: the line a parent waits for before it starts its clock, printed on
    failure too so the parent never waits for a worker that is gone.
    """
    try:
        doc = run()
    except ImportError as exc:
        doc = {"skipped": f"not available: {exc}"}
    except Exception as exc:
        doc = {"error": f"{type(exc).__name__}: {exc}"}
    else:
        emit(doc)
        return
    if ready is not None:
        print(ready, flush=True)
    emit(doc)


async def wait_for_stop_signal() -> None:
    """Return on SIGTERM or SIGINT: how the harness stops a server it started."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@contextlib.contextmanager
def profiled(path: str | None, top: int = 30) -> Iterator[None]:
    """cProfile the block when ``path`` is given; writes the top functions by own time there."""
    if not path:
        yield
        return
    prof = cProfile.Profile()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(top)
        out.write("\n\nby cumulative time:\n")
        stats.sort_stats("cumulative").print_stats(top)
        with open(path, "w") as f:
            f.write(out.getvalue())


def raise_fd_limit(want: int) -> int:
    """Raise the soft open-file limit towards ``want`` (a fleet needs one socket per device)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, want)) if hard != resource.RLIM_INFINITY else max(soft, want)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target

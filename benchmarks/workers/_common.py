"""Shared bits of the worker processes: the result line, optional profiling, fd limits."""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import pstats
import resource
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["emit", "profiled", "raise_fd_limit"]


def emit(doc: dict[str, Any]) -> None:
    """The worker's result: one JSON line on stdout, last."""
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


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

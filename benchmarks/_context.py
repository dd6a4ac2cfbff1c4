"""What every case is handed: options, the servers started for it, and helpers to run contenders."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._harness import Contender
from benchmarks._infra import BENCH_DIR, Broker, OfficialEnv

__all__ = ["Context", "record"]


@dataclass
class Context:
    runs: int
    quick: bool
    profile: bool
    official: OfficialEnv
    wrk: str | None
    mosquitto_pub: str | None
    fleet_sizes: list[int] | None = None
    scale_rate: float = 1.0
    broker: Broker | None = None
    http_url: str | None = None
    results_dir: Path = field(default_factory=lambda: BENCH_DIR / "results")
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr, flush=True))

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full

    def plan(self, runs: int | None = None) -> list[tuple[int, bool]]:
        """(run index, profiling) pairs: the measured runs, then one profiling run when asked.

        The profiled run is extra and never recorded: a profiler slows what it watches.
        """
        n = self.runs if runs is None else runs
        return [(i, False) for i in range(n)] + ([(n, True)] if self.profile else [])

    def profile_path(self, name: str) -> str | None:
        if not self.profile:
            return None
        self.results_dir.mkdir(parents=True, exist_ok=True)
        return str(self.results_dir / f"profile-{name}.txt")


def record(c: Contender, run: int, doc: dict[str, Any], value: float | None, **extra: float | None) -> None:
    """File one run's outcome: a skip ends the contender, an error is noted, a value is kept."""
    if "skipped" in doc:
        c.skipped = str(doc["skipped"])
        return
    if "error" in doc or value is None or not math.isfinite(value):
        c.notes.append(f"run {run + 1}: {doc.get('error', 'no figure')}")
        if len(c.notes) >= 2 and not c.values:
            c.skipped = f"FAILED: {c.notes[0]}"
        return
    c.values.append(value)
    for k, v in extra.items():
        if v is not None and math.isfinite(v):
            c.add_extra(k, v)

"""Case 7 fleet: ``losant-async simulate`` against its embedded emulator, in this process, timing commands.

Runs the CLI exactly as a user would (``losant_async.cli.main`` with the given
arguments, which must include ``--json PATH``), then emits its JSON report plus
what this worker measured itself: the latency of every command the simulated
devices received (receive time minus the command's ``time``, which the
emulator stamps when it sends it; both clocks are this process's), and the
process's peak RSS. Usage: ``python -m benchmarks.workers.simulate -- <simulate args>``.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.workers._common import emit, raise_fd_limit


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _watch_commands(latencies: list[float]) -> str | None:
    """Wrap the simulator's command callback; returns why it could not, or None."""
    try:
        from losant_async import simulator
    except ImportError as exc:
        return f"simulator not importable: {exc}"
    engine: Any = getattr(simulator, "Simulation", None)
    original = getattr(engine, "_on_command", None)
    if original is None:
        return "Simulation._on_command not found: no latency of our own"

    def on_command(self: Any, command: Any) -> None:
        sent = getattr(command, "time", None)
        if sent is not None:
            latencies.append((time.time() - sent.timestamp()) * 1000.0)
        original(self, command)

    engine._on_command = on_command
    return None


def main(argv: list[str]) -> dict[str, Any]:
    if "--json" not in argv:
        return {"error": "the simulate arguments need --json PATH"}
    report_path = Path(argv[argv.index("--json") + 1])
    devices = int(argv[argv.index("--devices") + 1]) if "--devices" in argv else 10
    raise_fd_limit(devices * 3 + 200)
    latencies: list[float] = []
    note = _watch_commands(latencies)
    from losant_async.cli import main as cli_main

    # The command's one-line error (if any) goes into the result too, not only to stderr.
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        code = cli_main(["simulate", *argv])
    sys.stderr.write(errors.getvalue())
    sys.stdout.flush()
    if not report_path.exists():
        last = errors.getvalue().strip().splitlines()[-1:] or [""]
        return {"error": f"simulate wrote no report (exit {code}): {last[0][:300]}"}
    doc: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
    doc["exit_code"] = code
    doc["bench_commands_timed"] = len(latencies)
    doc["bench_command_latency_p50_ms"] = _percentile(latencies, 0.50)
    doc["bench_command_latency_p99_ms"] = _percentile(latencies, 0.99)
    doc["bench_command_latency_max_ms"] = max(latencies) if latencies else None
    # The simulator's own CPU (its embedded emulator is a child process: not in RUSAGE_SELF).
    usage = resource.getrusage(resource.RUSAGE_SELF)
    doc["bench_cpu_seconds"] = usage.ru_utime + usage.ru_stime
    # ru_maxrss is KiB on Linux
    doc["bench_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # The embedded emulator is this process's child (joined by now): the largest child's peak is its.
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    if children and "emulator_peak_rss_bytes" not in doc:
        doc["emulator_peak_rss_bytes"] = children
    if note:
        doc["bench_note"] = note
    return doc


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--":
        args = args[1:]
    try:
        result = main(args)
    except Exception as exc:  # the harness wants one JSON line whatever happens
        result = {"error": f"{type(exc).__name__}: {exc}"}
    emit(result)

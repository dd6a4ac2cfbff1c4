"""Case scale: the largest fleet ``losant-async simulate`` sustains at 1 state/s with nothing lost, per engine.

Against loopback mosquitto (so the broker is not the limit): one process, then
``--processes 2``, then a local Ray with 2 actors. A size is sustained when every
scheduled state was sent (at most 1 % of them more than one period late), the
broker delivered every one to an independent counting subscriber, and nothing
failed. The fleet doubles until a size is not sustained, then the gap is bisected.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._context import Context, record
from benchmarks._harness import CaseResult, Contender, Target
from benchmarks._infra import WorkerFailed, run_worker

__all__ = ["case_scale"]

_APP = "5" * 24
# A loaded machine delays a few states at the start of a run; more than this is a fleet not sustained.
_LATE_TOLERANCE = 0.01


def _fd_limit() -> int:
    try:
        import resource
    except ImportError:
        return 8192
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft > 0 else 8192


def _ids(n: int) -> str:
    return "".join(f"{i + 1:024x}\n" for i in range(n))


async def _one_size(ctx: Context, n: int, seconds: float, engine: list[str]) -> dict[str, Any]:
    """One run of ``simulate`` at ``n`` devices; its report plus what the broker delivered."""
    assert ctx.broker is not None
    port = ctx.broker.port
    expected = n * math.ceil(seconds)  # an upper bound for the counter; the report has the exact figure
    with tempfile.TemporaryDirectory(prefix="losant-bench-scale-") as tmp:
        ids = Path(tmp) / "ids.txt"
        ids.write_text(_ids(n))
        report = Path(tmp) / "report.json"
        counter_argv = ["-m", "benchmarks.workers.counter", "--port", str(port), "--topic", "losant/+/state",
                        "--expect", str(expected), "--idle", "5", "--deadline", str(seconds + 600)]
        async with run_worker(counter_argv, name="counter") as counter:
            try:
                await counter.ready(30)
            except WorkerFailed as exc:
                return {"error": f"counter: {exc}"}
            argv = ["-m", "losant_async.cli", "simulate", "--devices", str(n), "--rate", "1",
                    "--duration", str(seconds), "--quiet", "--command-interval", "0", "--no-throttle",
                    "--broker", f"mqtt://127.0.0.1:{port}", "--url", "http://127.0.0.1:9",
                    "--application", _APP, "--key", "bench", "--secret", "bench",
                    "--device-ids", str(ids), "--connect-concurrency", "100", "--json", str(report), *engine]
            async with run_worker(argv, name="simulate") as sim:
                try:
                    await asyncio.wait_for(sim.proc.wait(), seconds + 900)
                except asyncio.TimeoutError:
                    return {"error": f"simulate did not finish in {seconds + 900:.0f}s"}
                if not report.exists():
                    err = await sim.stderr_tail()
                    if "No module named" in err:
                        return {"skipped": f"not available: {err}"}
                    return {"error": f"simulate wrote no report (exit {sim.proc.returncode}): {err}"}
                doc: dict[str, Any] = json.loads(report.read_text())
            try:
                delivered = await counter.result(60)
            except WorkerFailed as exc:
                return {"error": f"counter: {exc}"}
    doc["delivered"] = delivered.get("count")
    doc["sustained"] = (
        doc["states_sent"] == doc["states_expected"]
        and doc["states_late"] <= doc["states_sent"] * _LATE_TOLERANCE
        and doc["errors"] == 0
        and not doc["interrupted"]
        and doc["delivered"] == doc["states_sent"]
    )
    return doc


async def _sustained(ctx: Context, c: Contender, run: int, n: int, seconds: float,
                     engine: Callable[[int], list[str]]) -> tuple[bool | None, dict[str, Any]]:
    doc = await _one_size(ctx, n, seconds, engine(n))
    if "skipped" in doc or "error" in doc:
        return None, doc
    ok = bool(doc["sustained"])
    ctx.log(f"  [scale run {run + 1}] {c.name}: {n} devices "
            + ("sustained" if ok else f"NOT sustained (sent {doc['states_sent']}/{doc['states_expected']}, "
               f"late {doc['states_late']}, delivered {doc['delivered']}, errors {doc['errors']})"))
    return ok, doc


async def _largest(ctx: Context, c: Contender, run: int, sizes: list[int] | None, start: int, cap: int,
                   seconds: float, engine: Callable[[int], list[str]]) -> None:
    """The largest sustained size: along ``sizes`` when given, else doubling from ``start`` then bisecting."""
    best: int | None = None
    worst: int | None = None
    ladder = sizes or []
    if not ladder:
        n = start
        while n < cap:
            ladder.append(n)
            n *= 2
        ladder.append(cap)
    last: dict[str, Any] = {}
    for n in ladder:
        ok, last = await _sustained(ctx, c, run, n, seconds, engine)
        if ok is None:
            break
        if not ok:
            worst = n
            break
        best = n
    if not sizes and best is not None and worst is not None:
        # Two halvings of the gap: the figure within a quarter of the last doubling.
        for _ in range(2):
            mid = (best + worst) // 2
            if mid in (best, worst):
                break
            ok, doc = await _sustained(ctx, c, run, mid, seconds, engine)
            if ok is None:
                last = doc
                break
            best, worst = (mid, worst) if ok else (best, mid)
    if "skipped" in last:
        record(c, run, last, None)
        return
    if best is None:
        record(c, run, {"error": last.get("error") or f"not even {ladder[0]} devices sustained"}, None)
        return
    if worst is None:
        c.notes.append(f"run {run + 1}: the largest size tried ({best}) was sustained; the limit is higher")
    record(c, run, {}, float(best))


async def case_scale(ctx: Context) -> list[CaseResult]:
    """The largest fleet sustained at 1 state/s, 0 lost: 1 process, 2 processes, a local Ray with 2 actors."""
    sizes = ctx.fleet_sizes
    start = ctx.pick(500, 1000)
    # Each device is a socket in the simulator and in mosquitto: stay under the open-files limit.
    cap = min(ctx.pick(4000, 32000), _fd_limit() - 1000)
    seconds = ctx.pick(5.0, 20.0)
    result = CaseResult(
        case="scale",
        title=f"simulate: largest fleet at 1 state/s with 0 lost ({seconds:g} s runs, loopback mosquitto)",
        params={"sizes": sizes or f"doubling from {start} (at most {cap}), then bisecting",
                "seconds": seconds, "rate": 1},
    )
    one = Contender("simulate, 1 process", "ours", "devices")
    two = Contender("simulate --processes 2", "ours", "devices")
    ray = Contender("simulate --ray (local, 2 actors)", "ours", "devices")
    result.contenders = [one, two, ray]
    result.targets = [
        Target("--processes 2 >= 1.6x one process", two.name, one.name, 1.6),
        Target("a local Ray with 2 actors >= 1.4x one process", ray.name, one.name, 1.4),
    ]
    if importlib.util.find_spec("ray") is None:
        ray.skipped = "the ray extra is not installed (pip install 'losant-async[ray]')"
    runs = ctx.pick(1, ctx.runs)
    for run in range(runs):
        await _largest(ctx, one, run, sizes, start, cap, seconds, lambda n: [])
        await _largest(ctx, two, run, sizes, start, cap, seconds, lambda n: ["--processes", "2"])
        if not ray.skipped:
            await _largest(ctx, ray, run, sizes, start, cap, seconds,
                           lambda n: ["--ray", "--devices-per-actor", str(-(-n // 2))])
    result.notes.append("sustained: every state sent, at most 1 % a period late, all delivered by the "
                        "broker to a counting subscriber, no errors; commands off (mosquitto has no REST)")
    return [result]

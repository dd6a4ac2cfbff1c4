"""Case scale: the largest fleet ``losant-async simulate`` sustains at 1 state/s with nothing lost, per engine.

Against loopback mosquitto (so the broker is not the limit): one process, then
``--processes 2``, then a local Ray with 2 actors. A size is sustained when every
scheduled state was sent (at most 1 % of them more than one period late), the
broker delivered every one to an independent counting subscriber, and nothing
failed. The fleet doubles until a size is not sustained, then the gap is bisected
down to a fixed resolution (the same search, sizes and resolution for every
engine), so the ratios between engines are not an artefact of coarse steps.

Each run also accounts the CPU seconds of every process in the simulator's tree
(shards, the driver, Ray's own processes), sampled with psutil: CPU per state is
a figure a shared machine does not distort the way it distorts the largest fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
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
_CPU_SAMPLE_EVERY = 0.5
# What each process of a simulator's tree is, from its command line (Ray renames its workers).
_ROLES = (("ShardActor", "shards"), ("multiprocessing", "shards"), ("default_worker", "ray idle workers"),
          ("log_monitor", "ray log monitor"),
          ("autoscaler", "ray monitor"), ("dashboard.py", "ray api server"), ("DashboardAgent", "ray agents"),
          ("RuntimeEnvAgent", "ray agents"), ("dashboard/agent", "ray agents"))


def _fd_limit() -> int:
    try:
        import resource
    except ImportError:
        return 8192
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft > 0 else 8192


def _ids(n: int) -> str:
    return "".join(f"{i + 1:024x}\n" for i in range(n))


def _role(argv: list[str]) -> str:
    # The program and its first arguments only: Ray passes every process the others' paths as options.
    prog = argv[0] if argv else ""
    if prog.endswith(("gcs_server", "raylet")):
        return "ray gcs" if prog.endswith("gcs_server") else "ray raylet"
    head = " ".join(argv[:4])
    for needle, role in _ROLES:
        if needle in head:
            return role
    return "other"


async def _tree_cpu(pid: int, into: dict[int, tuple[str, float]]) -> None:
    """Until cancelled: the CPU seconds of ``pid`` and its descendants, last seen per process, with its role.

    A process is seen at most every half second, so the last half second of one that
    exits is missed: the figures are a floor, and alike for every engine.
    """
    import psutil  # type: ignore[import-untyped,unused-ignore]

    root = psutil.Process(pid)
    while True:
        with contextlib.suppress(psutil.Error):
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    role = "driver" if proc.pid == pid else into.get(proc.pid, ("", 0.0))[0]
                    if role in ("", "other", "ray idle workers"):  # workers take their name after start
                        role = _role(proc.cmdline())
                    into[proc.pid] = (role, times.user + times.system)
        await asyncio.sleep(_CPU_SAMPLE_EVERY)  # sampling a clock, not waiting for an event


def _cpu_by_role(seen: dict[int, tuple[str, float]]) -> dict[str, float]:
    by: dict[str, float] = {}
    for role, seconds in seen.values():
        by[role] = by.get(role, 0.0) + seconds
    return {k: round(v, 2) for k, v in sorted(by.items(), key=lambda kv: -kv[1])}


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
            seen: dict[int, tuple[str, float]] = {}
            async with run_worker(argv, name="simulate") as sim:
                sampler = asyncio.create_task(_tree_cpu(sim.proc.pid, seen))
                try:
                    await asyncio.wait_for(sim.proc.wait(), seconds + 900)
                except asyncio.TimeoutError:
                    return {"error": f"simulate did not finish in {seconds + 900:.0f}s"}
                finally:
                    sampler.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sampler
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
    doc["cpu_seconds"] = _cpu_by_role(seen)
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
    cpu = doc["cpu_seconds"]
    ctx.log(f"  [scale run {run + 1}] {c.name}: {n} devices "
            + ("sustained" if ok else f"NOT sustained (sent {doc['states_sent']}/{doc['states_expected']}, "
               f"late {doc['states_late']}, delivered {doc['delivered']}, errors {doc['errors']})")
            + f"; CPU s {sum(cpu.values()):.1f} " + json.dumps(cpu))
    return ok, doc


def _cpu_per_kstate(doc: dict[str, Any], roles: Callable[[str], bool]) -> float | None:
    sent = doc.get("states_sent") or 0
    if not sent or "cpu_seconds" not in doc:
        return None
    cpu: dict[str, float] = doc["cpu_seconds"]
    return 1e6 * sum(v for k, v in cpu.items() if roles(k)) / sent  # CPU ms per 1,000 states


async def _largest(ctx: Context, c: Contender, run: int, sizes: list[int] | None, start: int, cap: int,
                   resolution: int, seconds: float, engine: Callable[[int], list[str]]) -> None:
    """The largest sustained size: along ``sizes`` when given, else doubling from ``start``, then bisecting.

    The bisection goes on until the first size not sustained is at most ``resolution``
    above the largest sustained one; midpoints are multiples of ``resolution``.
    """
    best: int | None = None
    worst: int | None = None
    best_doc: dict[str, Any] = {}
    ladder = list(sizes or [])
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
        best, best_doc = n, last
    if not sizes and best is not None and worst is not None and "error" not in last:
        while worst - best > resolution:
            mid = (best + worst) // 2 // resolution * resolution
            if mid <= best:
                mid = best + resolution
            ok, doc = await _sustained(ctx, c, run, mid, seconds, engine)
            if ok is None:
                last = doc
                break
            if ok:
                best, best_doc = mid, doc
            else:
                worst = mid
    if "skipped" in last:
        record(c, run, last, None)
        return
    if best is None:
        record(c, run, {"error": last.get("error") or f"not even {ladder[0]} devices sustained"}, None)
        return
    if worst is None:
        c.notes.append(f"run {run + 1}: the largest size tried ({best}) was sustained; the limit is higher")
    else:
        c.notes.append(f"run {run + 1}: {best} sustained, {worst} not")
    cpu: dict[str, float] = best_doc.get("cpu_seconds", {})
    # One process is its own shard; Ray's processes exist only under --ray.
    shard_role = "shards" if "shards" in cpu else "driver"
    ray_own = [v for k, v in cpu.items() if k.startswith("ray ")]
    record(c, run, {}, float(best),
           cpu_ms_per_kstate=_cpu_per_kstate(best_doc, lambda role: True),
           shard_cpu_ms_per_kstate=_cpu_per_kstate(best_doc, lambda role: role == shard_role),
           ray_background_cpu_s=sum(ray_own) if ray_own else None)


async def case_scale(ctx: Context) -> list[CaseResult]:
    """The largest fleet sustained at 1 state/s, 0 lost: 1 process, 2 processes, a local Ray with 2 actors."""
    sizes = ctx.fleet_sizes
    start = ctx.pick(500, 1000)
    # Each device is a socket in the simulator and in mosquitto: stay under the open-files limit.
    cap = min(ctx.pick(4000, 32000), _fd_limit() - 1000)
    seconds = ctx.pick(5.0, 20.0)
    # The step the bisection stops at: fine enough that 1.33x and 1.4x of a 6,000-device figure differ.
    resolution = ctx.pick(250, 250)
    result = CaseResult(
        case="scale",
        title=f"simulate: largest fleet at 1 state/s with 0 lost ({seconds:g} s runs, loopback mosquitto)",
        params={"sizes": sizes or f"doubling from {start} (at most {cap}), then bisecting to {resolution}",
                "resolution": None if sizes else resolution, "seconds": seconds, "rate": 1},
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
        await _largest(ctx, one, run, sizes, start, cap, resolution, seconds, lambda n: [])
        await _largest(ctx, two, run, sizes, start, cap, resolution, seconds, lambda n: ["--processes", "2"])
        if not ray.skipped:
            await _largest(ctx, ray, run, sizes, start, cap, resolution, seconds,
                           lambda n: ["--ray", "--devices-per-actor", str(-(-n // 2))])
    result.notes.append("sustained: every state sent, at most 1 % a period late, all delivered by the "
                        "broker to a counting subscriber, no errors; commands off (mosquitto has no REST)")
    if not sizes:
        result.notes.append(f"resolution: each figure is within {resolution} devices of the first size "
                            "not sustained (doubling, then bisection; the same sizes tried for every engine)")
    result.notes.append("CPU per 1,000 states (cpu_ms_per_kstate): every process of the simulator's tree at the "
                        "largest sustained size, connect and start-up included; ray_background_cpu_s: Ray's own "
                        "processes (GCS, raylet, agents, monitors) over that run")
    return [result]

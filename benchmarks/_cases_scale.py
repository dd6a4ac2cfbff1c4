"""Case scale: the largest fleet ``losant-async simulate`` sustains at 1 state/s with nothing lost, per engine.

Against loopback mosquitto (so the broker is not the limit): one process, then
``--processes 2``, then a local Ray with 2 actors. A size is sustained when every
scheduled state was sent (at most 1 % of them more than one period late), the
broker received every one (its own ``$SYS`` count, read before and after: a
counting subscriber would cost a core's fraction that the engines need on a
2-core machine), and nothing failed. The fleet doubles until a size is not
sustained, then the gap is bisected down to a fixed resolution (the same search,
sizes and resolution for every engine), so the ratios between engines are not an
artefact of coarse steps.

``--scale-rate R`` runs the same search at R states/s per device: where the
open-files limit caps the fleet (each device is a socket in the simulator and in
mosquitto), a higher rate reaches the engines' limits with fewer sockets.

Each run also accounts the CPU seconds of every process in the simulator's tree
(shards, the driver, Ray's own processes) and the broker's, sampled with psutil,
and the case first measures the machine's own two-process ceiling (spin worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import statistics
import tempfile
import time
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


def _process_cpu(pid: int | None) -> float | None:
    """CPU seconds ``pid`` has used so far, or None when it cannot be read."""
    if pid is None:
        return None
    import psutil  # type: ignore[import-untyped,unused-ignore]

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def _cpu_by_role(seen: dict[int, tuple[str, float]]) -> dict[str, float]:
    by: dict[str, float] = {}
    for role, seconds in seen.values():
        by[role] = by.get(role, 0.0) + seconds
    return {k: round(v, 2) for k, v in sorted(by.items(), key=lambda kv: -kv[1])}


async def _broker_received(port: int, at_least: int | None = None) -> dict[str, Any]:
    argv = ["-m", "benchmarks.workers.broker_count", "--port", str(port)]
    if at_least is not None:
        # A count short of what was sent is final only after a long quiet, not the first pause.
        argv += ["--at-least", str(at_least), "--quiet", "10"]
    async with run_worker(argv, name="broker count") as w:
        try:
            return await w.result(180)
        except WorkerFailed as exc:
            return {"error": str(exc)}


async def _one_size(ctx: Context, n: int, seconds: float, engine: list[str]) -> dict[str, Any]:
    """One run of ``simulate`` at ``n`` devices; its report plus what the broker received."""
    assert ctx.broker is not None
    port = ctx.broker.port
    with tempfile.TemporaryDirectory(prefix="losant-bench-scale-") as tmp:
        ids = Path(tmp) / "ids.txt"
        ids.write_text(_ids(n))
        report = Path(tmp) / "report.json"
        # Settled first: the previous size's last states (and its thousands of closing sockets) are
        # behind the broker before this size starts, and out of this size's count.
        before = await _broker_received(port)
        if "received" not in before:
            return {"error": f"broker count: {before.get('error') or before}"}
        argv = ["-m", "losant_async.cli", "simulate", "--devices", str(n), "--rate", f"{ctx.scale_rate:g}",
                "--duration", str(seconds), "--quiet", "--command-interval", "0", "--no-throttle",
                "--broker", f"mqtt://127.0.0.1:{port}", "--url", "http://127.0.0.1:9",
                "--application", _APP, "--key", "bench", "--secret", "bench",
                "--device-ids", str(ids), "--connect-concurrency", "100", "--json", str(report), *engine]
        seen: dict[int, tuple[str, float]] = {}
        broker_before = _process_cpu(ctx.broker.pid)
        started = time.monotonic()
        async with run_worker(argv, name="simulate") as sim:
            sampler = asyncio.create_task(_tree_cpu(sim.proc.pid, seen))
            try:
                await asyncio.wait_for(sim.proc.wait(), seconds + 900)
            except asyncio.TimeoutError:
                return {"error": f"simulate did not finish in {seconds + 900:.0f}s"}
            finally:
                wall = time.monotonic() - started
                broker_after = _process_cpu(ctx.broker.pid)
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            doc = await sim.written_json(report)
            if "skipped" in doc or "error" in doc:
                return doc
        after = await _broker_received(port, before["received"] + int(doc.get("states_sent") or 0))
        if "received" not in after:
            return {"error": f"broker count: {after.get('error') or after}"}
    # Only the simulator publishes to this broker during a size, so the difference is its states.
    doc["delivered"] = after["received"] - before["received"]
    doc["broker_count_settled"] = bool(before.get("settled")) and bool(after.get("settled"))
    doc["cpu_seconds"] = _cpu_by_role(seen)
    doc["wall_seconds"] = round(wall, 1)
    if broker_before is not None and broker_after is not None:
        # The broker shares the machine's cores with the engines: the share it took is part of why a
        # ratio falls short of the core count.
        doc["broker_cpu_seconds"] = round(broker_after - broker_before, 2)
    doc["sustained"] = (
        doc["states_sent"] == doc["states_expected"]
        and doc["states_late"] <= doc["states_sent"] * _LATE_TOLERANCE
        and doc["errors"] == 0
        and not doc["interrupted"]
        and doc["delivered"] == doc["states_sent"]
        and doc["broker_count_settled"]
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
               f"late {doc['states_late']}, received by the broker {doc['delivered']}, errors {doc['errors']})")
            + f"; CPU s {sum(cpu.values()):.1f} " + json.dumps(cpu)
            + (f"; broker CPU s {doc['broker_cpu_seconds']:.1f} over {doc['wall_seconds']:.0f} s"
               if "broker_cpu_seconds" in doc else ""))
    return ok, doc


def _cpu_per_kstate(doc: dict[str, Any], roles: Callable[[str], bool]) -> float | None:
    sent = doc.get("states_sent") or 0
    if not sent or "cpu_seconds" not in doc:
        return None
    cpu: dict[str, float] = doc["cpu_seconds"]
    return 1e6 * sum(v for k, v in cpu.items() if roles(k)) / sent  # CPU ms per 1,000 states


class _Search:
    """The largest sustained size of one engine: along ``sizes`` when given, else doubling from ``start``, then bisecting.

    The bisection goes on until the first size not sustained is at most ``resolution``
    above the largest sustained one; midpoints are multiples of ``resolution``. One
    step at a time (``next_size``, then ``tell``), so that the engines' searches can
    take turns: this machine's speed drifts by a third over minutes (other tenants),
    and engines searched one after the other would be compared at different speeds.
    """

    def __init__(self, c: Contender, engine: Callable[[int], list[str]], sizes: list[int] | None,
                 start: int, cap: int, resolution: int) -> None:
        self.c, self.engine, self.fixed, self.resolution = c, engine, sizes is not None, resolution
        self.ladder = list(sizes or [])
        if not self.ladder:
            n = start
            while n < cap:
                self.ladder.append(n)
                n *= 2
            self.ladder.append(cap)
        self.best: int | None = None
        self.worst: int | None = None
        self.best_doc: dict[str, Any] = {}
        self.last: dict[str, Any] = {}
        self.done = bool(c.skipped)
        self._climbing = True

    def next_size(self) -> int | None:
        if self.done:
            return None
        if self._climbing:
            return self.ladder[0 if self.best is None else self.ladder.index(self.best) + 1]
        assert self.best is not None and self.worst is not None
        mid = (self.best + self.worst) // 2 // self.resolution * self.resolution
        return mid if mid > self.best else self.best + self.resolution

    def tell(self, n: int, ok: bool | None, doc: dict[str, Any]) -> None:
        self.last = doc
        if ok is None:  # skipped or failed: no figure from here on
            self.done = True
            return
        if ok:
            self.best, self.best_doc = n, doc
        else:
            self.worst = n
        if self._climbing and (not ok or n == self.ladder[-1]):
            self._climbing = False
            self.done = self.fixed or self.best is None or self.worst is None
        if not self.done and not self._climbing:
            assert self.best is not None and self.worst is not None
            self.done = self.worst - self.best <= self.resolution

    def record(self, run: int) -> None:
        c, best, worst, last = self.c, self.best, self.worst, self.last
        if c.skipped:
            return
        if "skipped" in last:
            record(c, run, last, None)
            return
        if best is None or "error" in last:
            record(c, run, {"error": last.get("error") or f"not even {self.ladder[0]} devices sustained"}, None)
            return
        if worst is None:
            c.notes.append(f"run {run + 1}: the largest size tried ({best}) was sustained; the limit is higher")
        else:
            c.notes.append(f"run {run + 1}: {best} sustained, {worst} not")
        doc = self.best_doc
        cpu: dict[str, float] = doc.get("cpu_seconds", {})
        # One process is its own shard; Ray's processes exist only under --ray.
        shard_role = "shards" if "shards" in cpu else "driver"
        ray_own = [v for k, v in cpu.items() if k.startswith("ray ")]
        record(c, run, {}, float(best),
               cpu_ms_per_kstate=_cpu_per_kstate(doc, lambda role: True),
               shard_cpu_ms_per_kstate=_cpu_per_kstate(doc, lambda role: role == shard_role),
               ray_background_cpu_s=sum(ray_own) if ray_own else None,
               broker_cpu_ms_per_kstate=(1e6 * doc["broker_cpu_seconds"] / doc["states_sent"]
                                         if doc.get("broker_cpu_seconds") is not None
                                         and doc.get("states_sent") else None))


async def _take_turns(ctx: Context, run: int, searches: list[_Search], seconds: float) -> None:
    """Run the searches to their ends, one size of each in turn, then file each one's figure."""
    while any(not s.done for s in searches):
        for search in searches:
            n = search.next_size()
            if n is not None:
                ok, doc = await _sustained(ctx, search.c, run, n, seconds, search.engine)
                search.tell(n, ok, doc)
    for search in searches:
        search.record(run)


async def _largest(ctx: Context, c: Contender, run: int, sizes: list[int] | None, start: int, cap: int,
                   resolution: int, seconds: float, engine: Callable[[int], list[str]]) -> None:
    """One engine's search on its own (see :class:`_Search`)."""
    await _take_turns(ctx, run, [_Search(c, engine, sizes, start, cap, resolution)], seconds)


async def _spin(start_at: float, seconds: float) -> dict[str, Any]:
    argv = ["-m", "benchmarks.workers.spin", "--start-at", f"{start_at:.6f}", "--seconds", str(seconds)]
    async with run_worker(argv, name="spin") as w:
        try:
            return await w.result(seconds + 60)
        except WorkerFailed as exc:
            return {"error": str(exc)}


async def _machine_ceiling(ctx: Context, seconds: float, repeats: int) -> float | None:
    """The work two CPU-bound processes do at once over one window, as a multiple of one alone (median).

    What any two-process engine can reach here at best: on this machine's virtual cores
    two busy processes do not do twice the work of one (see the spin worker).
    """
    ratios: list[float] = []
    speeds: list[float] = []
    for _ in range(repeats):
        alone = await _spin(time.monotonic() + 1.0, seconds)
        at = time.monotonic() + 1.0
        pair = await asyncio.gather(_spin(at, seconds), _spin(at, seconds))
        if "units" not in alone or not all("units" in d for d in pair):
            ctx.log(f"  [scale] machine ceiling: a spin worker failed: {alone} {pair}")
            return None
        one = alone["units"] / alone["seconds"]
        both = sum(d["units"] / d["seconds"] for d in pair)
        ratios.append(both / one)
        speeds.append(one)
        ctx.log(f"  [scale] machine ceiling: 1 spin process {one:,.0f} units/s, 2 at once {both:,.0f} units/s "
                f"({both / one:.2f}x)")
    ceiling = statistics.median(ratios)
    ctx.log(f"  [scale] machine ceiling {ceiling:.2f}x; one spin process "
            f"{statistics.median(speeds):,.0f} units/s (the machine's speed now)")
    return ceiling


async def case_scale(ctx: Context) -> list[CaseResult]:
    """The largest fleet sustained at R states/s (default 1), 0 lost: 1 process, 2 processes, local Ray, 2 actors."""
    sizes = ctx.fleet_sizes
    rate = ctx.scale_rate
    start = ctx.pick(500, 1000)
    # Each device is a socket in the simulator and in mosquitto: stay under the open-files limit.
    fd_limit = _fd_limit()
    cap = min(ctx.pick(4000, 32000), fd_limit - 1000)
    seconds = ctx.pick(5.0, 20.0)
    # The step the bisection stops at: fine enough that 1.33x and 1.4x of a 6,000-device figure differ.
    resolution = ctx.pick(250, 250)
    result = CaseResult(
        case="scale" if rate == 1 else f"scale-{rate:g}",
        title=f"simulate: largest fleet at {rate:g} state{'' if rate == 1 else 's'}/s per device with 0 lost "
              f"({seconds:g} s runs, loopback mosquitto)",
        params={"sizes": sizes or f"doubling from {start} (at most {cap}), then bisecting to {resolution}",
                "resolution": None if sizes else resolution, "seconds": seconds, "rate": rate,
                "open_files_limit": fd_limit},
    )
    one = Contender("simulate, 1 process", "ours", "devices")
    two = Contender("simulate --processes 2", "ours", "devices")
    ray = Contender("simulate --ray (local, 2 actors)", "ours", "devices")
    result.contenders = [one, two, ray]
    result.targets = [
        Target("--processes 2 >= 1.6x one process", two.name, one.name, 1.6),
        Target("a local Ray with 2 actors >= 1.4x one process", ray.name, one.name, 1.4),
    ]
    if ctx.broker is None or not ctx.broker.kind.startswith("mosquitto"):
        for c in result.contenders:
            c.skipped = "needs mosquitto (its $SYS count of what it received); apt-get install mosquitto"
        return [result]
    if importlib.util.find_spec("ray") is None:
        ray.skipped = "the ray extra is not installed (pip install 'losant-async[ray]')"
    ceiling = await _machine_ceiling(ctx, ctx.pick(2.0, 5.0), 3)
    result.params["machine_two_process_ceiling"] = round(ceiling, 2) if ceiling is not None else None
    runs = ctx.pick(1, ctx.runs)
    for run in range(runs):
        searches = [
            _Search(one, lambda n: [], sizes, start, cap, resolution),
            _Search(two, lambda n: ["--processes", "2"], sizes, start, cap, resolution),
            _Search(ray, lambda n: ["--ray", "--devices-per-actor", str(-(-n // 2))], sizes, start, cap,
                    resolution),
        ]
        # The engines take turns, one size each, so they meet the machine at the same speeds.
        await _take_turns(ctx, run, searches, seconds)
    # Measured again after the searches: how far the machine's speed drifted while they ran.
    after = await _machine_ceiling(ctx, ctx.pick(2.0, 5.0), 3)
    result.params["machine_two_process_ceiling_after"] = round(after, 2) if after is not None else None
    if rate != 1:
        result.notes.append(f"{rate:g} states/s per device, not the 1 state/s of the targets' wording: the same "
                            "states per second from fewer sockets, for a machine whose open-files limit "
                            f"({fd_limit}) caps a fleet at 1 state/s below what the engines carry")
    if ceiling is not None:
        later = f", {after:.2f}x after the searches" if after is not None else ""
        result.notes.append(f"machine ceiling: two CPU-bound processes at once (Python and loopback sockets, "
                            f"benchmarks/workers/spin.py) did {ceiling:.2f}x the work of one alone (median of 3)"
                            f"{later}: no two-process engine can exceed that here, the broker's share of the "
                            "cores aside")
    result.notes.append("sustained: every state sent, at most 1 % a period late, every one received by the broker "
                        "(mosquitto's own $SYS count of PUBLISH packets, settled before and after), no errors; "
                        "commands off (mosquitto has no REST)")
    if not sizes:
        result.notes.append(f"resolution: each figure is within {resolution} devices of the first size "
                            "not sustained (doubling, then bisection; the same sizes tried for every engine)")
    result.notes.append("CPU per 1,000 states (cpu_ms_per_kstate): every process of the simulator's tree at the "
                        "largest sustained size, connect and start-up included; ray_background_cpu_s: Ray's own "
                        "processes (GCS, raylet, agents, monitors) over that run; broker_cpu_ms_per_kstate: mosquitto's own CPU, "
                        "on the same cores, per 1,000 states of that run")
    return [result]

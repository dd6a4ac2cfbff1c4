"""Cases that need no outside server: 6 decode, 7 emulator end to end (LocalLosant in its own process, and
the simulator's fleet against its embedded emulator at 1,000 to 10,000 devices with commands)."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from benchmarks._context import Context, record
from benchmarks._harness import CaseResult, Contender, Target
from benchmarks._infra import WorkerFailed, run_worker
from benchmarks._payloads import device_page, time_series

__all__ = ["case_decode", "case_emulator", "decoders", "ops_per_second"]


def ops_per_second(fn: Callable[[], Any], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after one warm-up call)."""
    fn()
    n = 0
    batch = 1
    t0 = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n / elapsed
        batch = min(batch * 2, 64)


def decoders(data: bytes, model: str) -> list[tuple[str, str, Callable[[], Any] | None, str | None]]:
    """(name, role, call, skipped) for: ours typed, msgspec untyped, json.loads."""
    typed: Callable[[], Any] | None = None
    skipped = None
    try:
        from losant_async import _json
        from losant_async.rest._generated import models

        tp = getattr(models, model)
        typed_decode = _json.decode
        typed_decode(data, tp)  # a decode failure must show here, not inside the timing loop
        typed = lambda: typed_decode(data, tp)  # noqa: E731
    except (ImportError, AttributeError) as exc:
        skipped = f"generated model {model} not available: {exc}"
    except Exception as exc:
        skipped = f"FAILED: typed decode into {model} raised {type(exc).__name__}: {str(exc)[:200]}"
    untyped = msgspec.json.Decoder().decode
    return [
        (f"losant_async typed ({model} Struct)", "ours", typed, skipped),
        ("msgspec untyped", "baseline", lambda: untyped(data), None),
        ("json.loads", "baseline", lambda: json.loads(data), None),
    ]


async def case_decode(ctx: Context) -> list[CaseResult]:
    """Case 6: a 100-device page and a 1,000-point time series: typed vs untyped vs json.loads."""
    seconds = ctx.pick(0.25, 0.5)
    runs = max(ctx.runs, 5)  # cheap: more runs, steadier medians
    out: list[CaseResult] = []
    for case, title, data, model in (
        ("6-decode-devices", "Decode a 100-device page", device_page(100), "Devices"),
        ("6-decode-timeseries", "Decode a 1,000-point time-series reply", time_series(1000), "TimeSeriesData"),
    ):
        result = CaseResult(case=case, title=title, params={"bytes": len(data), "model": model})
        entries = decoders(data, model)
        result.contenders = [Contender(name, role, "decodes/s", skipped=skip) for name, role, _, skip in entries]  # type: ignore[arg-type]
        for run in range(runs):
            for c, (_, _, fn, _) in zip(result.contenders, entries, strict=True):
                if c.skipped or fn is None:
                    continue
                rate = ops_per_second(fn, seconds)
                record(c, run, {}, rate, mb_per_s=rate * len(data) / 1e6)
            await asyncio.sleep(0)
        if ctx.profile and not result.contenders[0].skipped and entries[0][2] is not None:
            from benchmarks.workers._common import profiled

            path = ctx.profile_path(case)
            fn = entries[0][2]
            with profiled(path):
                for _ in range(200):
                    fn()
            result.profile = path
        ctx.log(f"  [{case}] " + ", ".join(
            f"{c.name}: {c.summary.median:,.0f}/s" for c in result.contenders if c.summary))
        if model == "Devices":
            result.targets = [Target("typed decode of the 100-device page >= 2x json.loads",
                                     result.contenders[0].name, "json.loads", 2.0)]
        out.append(result)
    return out


async def case_emulator(ctx: Context) -> list[CaseResult]:
    """Case 7: states per second stored by LocalLosant from a simulated fleet of our Devices."""
    n = 100
    per_device = ctx.pick(50, 200)
    result = CaseResult(
        case="7-emulator",
        title=f"Emulator end to end: {n} Devices -> LocalLosant (its broker + rules + store), states stored/s",
        params={"devices": n, "states": n * per_device},
    )
    ours = Contender("stored/s: losant_async Fleet -> LocalLosant (2 processes)", "ours", "states/s")
    sim_rate = 250.0  # offered well above what one process can store, so the figure is the limit
    sim_seconds = 3.0  # longer only lengthens the drain of what was offered above the limit
    cli = Contender(f"losant-async simulate, sent/s (1 process, {n * sim_rate:,.0f}/s offered)", "ours", "states/s")
    result.contenders = [ours, cli]
    for run in range(ctx.runs):
        if not cli.skipped:
            sim = await _simulate_run(n, sim_rate, sim_seconds)
            # Its report's rate is states sent during the run; the emulator may still be storing
            # them afterwards (the command waits for that drain), so stored % is shown beside it.
            stored = sim.get("states_stored")
            sent = sim.get("states_sent") or 0
            value = sim.get("states_per_second")
            if stored is not None and stored < sent:
                cli.notes.append(f"run {run + 1}: {stored} of {sent} stored")
            record(cli, run, sim, value, errors=sim.get("errors"),
                   stored_pct=stored / sent * 100 if stored is not None and sent else None)
            ctx.log(f"  [{result.case} run {run + 1}] {cli.name}: "
                    + (f"{value:,.0f} states/s stored" if value else str(sim.get("error") or sim.get("skipped"))))
        doc = await _emulator_run(ctx, n, per_device)
        rate = None
        if doc.get("t_first") is not None and doc.get("stored", 0) > 1:
            window = doc["t_last"] - doc["t_first"]
            rate = (doc["stored"] - 1) / window if window > 0 else None
        if "stored" in doc and doc["stored"] < n * per_device:
            ours.notes.append(f"run {run + 1}: {doc['stored']} of {n * per_device} stored")
        record(ours, run, doc, rate, stored_pct=doc.get("stored", 0) / (n * per_device) * 100)
        ctx.log(f"  [{result.case} run {run + 1}] {ours.name}: "
                + (f"{rate:,.0f} states/s stored" if rate else str(doc.get("error") or doc.get("skipped"))))
    result.notes.append("the emulator's own broker is its transport; it is not a throughput target")
    return [result, await _case_emulator_fleet(ctx)]


FLEET_SIZES = (1_000, 5_000, 10_000)
COMMAND_PERIOD = 10.0
"""Seconds between two commands to one device."""


def _command_schedule(devices: int) -> tuple[int, float]:
    """(devices per round, seconds between rounds) giving one command per device per COMMAND_PERIOD.

    The simulator commands ``max(1, min(50, devices // 50))`` devices per round.
    """
    batch = max(1, min(50, devices // 50))
    return batch, batch * COMMAND_PERIOD / devices


def _latency(doc: dict[str, Any], q: str) -> float | None:
    """The simulator report's command latency percentile (ms) when it has one, else this worker's."""
    for key in (f"command_latency_{q}_ms", f"commands_latency_{q}_ms"):
        if isinstance(doc.get(key), (int, float)):
            return float(doc[key])
    for holder in ("command_latency_ms", "command_latency", "commands"):
        nested = doc.get(holder)
        if isinstance(nested, dict):
            for key in (q, f"{q}_ms", f"latency_{q}_ms"):
                if isinstance(nested.get(key), (int, float)):
                    return float(nested[key])
    value = doc.get(f"bench_command_latency_{q}_ms")
    return float(value) if isinstance(value, (int, float)) else None


async def _case_emulator_fleet(ctx: Context) -> CaseResult:
    """The simulator against the emulator: 1 state/s per device, 1 command per device per 10 s.

    Two set-ups: the simulator's embedded emulator (fleet and emulator in one
    process), and the emulator in its own process beside the simulator (two
    processes: one core each at best).
    """
    sizes = ctx.pick((200, 1_000), FLEET_SIZES)
    duration = ctx.pick(10.0, 60.0)
    result = CaseResult(
        case="7-emulator-fleet",
        title="losant-async simulate against the emulator: 1 state/s and 1 command per 10 s per device, "
              "command latency p99 (ms)",
        params={"sizes": list(sizes), "rate": 1.0, "duration": duration, "command_period": COMMAND_PERIOD},
    )
    # Both set-ups are two processes: `simulate` starts its embedded emulator in a child process
    # (EmulatorHost); "beside" starts the emulator apart and hands simulate its credentials.
    setups = (("embedded", "embedded emulator"), ("beside", "emulator beside"),
              ("beside-data-dir", "emulator beside with a data directory"))
    contenders = {(mode, n): Contender(f"{n:,} devices, {label}: command latency p99", "ours", "ms",
                                       higher_is_better=False)
                  for mode, label in setups for n in sizes}
    result.contenders = list(contenders.values())
    for run in range(ctx.runs):
        for (mode, n), c in contenders.items():
            if c.skipped:
                continue
            doc = await (_fleet_run(n, duration) if mode == "embedded"
                         else _fleet_beside_run(n, duration, data_dir=mode == "beside-data-dir"))
            p99 = _latency(doc, "p99")
            sent, got = doc.get("commands_sent"), doc.get("commands_received")
            due = doc.get("commands_scheduled")
            stored, expected = doc.get("states_stored"), doc.get("states_expected")
            if isinstance(due, int) and isinstance(sent, int) and sent < due:
                c.notes.append(f"run {run + 1}: {sent} of {due} commands due were sent")
            if isinstance(sent, int) and isinstance(got, int) and got < sent:
                c.notes.append(f"run {run + 1}: {got} of {sent} commands received")
            if isinstance(stored, int) and isinstance(expected, int) and stored < expected:
                c.notes.append(f"run {run + 1}: {stored} of {expected} states stored")
            rss = doc.get("peak_rss_bytes") or doc.get("bench_peak_rss_bytes")
            emu_rss = doc.get("emulator_peak_rss_bytes")
            record(c, run, doc, p99,
                   latency_p50_ms=_latency(doc, "p50"),
                   p99_none_lost_ms=_p99_none_lost(doc, p99),
                   states_expected=expected, states_stored=stored,
                   commands_scheduled=due, commands_sent=sent, commands_received=got,
                   commands_received_pct=got / sent * 100 if isinstance(got, int) and sent else None,
                   connect_s=doc.get("connect_seconds"),
                   peak_rss_mib=rss / 2**20 if isinstance(rss, (int, float)) else None,
                   emulator_rss_mib=emu_rss / 2**20 if isinstance(emu_rss, (int, float)) else None)
            ctx.log(f"  [{result.case} run {run + 1}] {c.name.split(':')[0]}: "
                    + (f"states {stored}/{expected}, commands {got}/{sent} of {due} due, "
                       f"p50 {_latency(doc, 'p50')} ms, "
                       f"p99 {p99} ms, peak RSS {rss / 2**20 if rss else float('nan'):.0f} MiB"
                       if "error" not in doc and "skipped" not in doc
                       else str(doc.get("error") or doc.get("skipped"))))
    big = max(sizes)
    if (mode_n := ("embedded", big)) in contenders:
        result.targets.append(Target(f"{big:,} devices: command p99 < 1 s with none lost", contenders[mode_n].name,
                                     None, 1000.0, metric="p99_none_lost_ms", at_most=True))
    if (disk_n := ("beside-data-dir", big)) in contenders:
        result.targets.append(Target(f"{big:,} devices, data directory: command p99 < 1 s with none lost",
                                     contenders[disk_n].name, None, 1000.0, metric="p99_none_lost_ms", at_most=True))
    result.notes.append("embedded emulator: `simulate` with no credentials, its emulator in a child process; "
                        "emulator beside: the emulator (benchmarks.workers.emulator --serve) started apart and "
                        "simulate pointed at it with credentials; with a data directory: the same, the "
                        "emulator keeping everything in SQLite (issue 22: none lost, as in memory)")
    result.notes.append("latency: receive time minus the command's time as the emulator stamped it (one machine clock); "
                        "peak_rss_mib is the simulator process's, emulator_rss_mib the emulator's")
    result.notes.append("p99_none_lost_ms: the p99 when every state was stored and every command due was sent and "
                        f"received, else {_LOST:g} (a lost command is an infinite latency)")
    return result


_LOST = 1e9


def _p99_none_lost(doc: dict[str, Any], p99: float | None) -> float | None:
    """The command p99 when nothing was lost (states stored, commands due sent and received), else ``_LOST``."""
    if p99 is None or "error" in doc:
        return None
    counts = [doc.get(k) for k in ("commands_scheduled", "commands_sent", "commands_received",
                                   "states_expected", "states_stored")]
    ints = [v for v in counts if isinstance(v, int)]
    if len(ints) != len(counts):
        return _LOST  # a report without the counts cannot show that nothing was lost
    due, sent, got, expected, stored = ints
    if sent < due or got < due or stored < expected:
        return _LOST
    return p99


async def _fleet_beside_run(n: int, duration: float, *, data_dir: bool = False) -> dict[str, Any]:
    """The emulator in its own process (in memory, or with a data directory) and ``simulate``
    pointed at it with credentials, as at real Losant."""
    with tempfile.TemporaryDirectory(prefix="losant-bench-beside-") as tmp:
        ids_file = Path(tmp) / "ids.txt"
        disk = ["--data-dir", str(Path(tmp) / "data")] if data_dir else []
        async with run_worker(["-m", "benchmarks.workers.emulator", "--devices", str(n), "--serve", str(ids_file),
                               *disk],
                              name="emulator-serve", stdin=asyncio.subprocess.PIPE) as emu:
            assert emu.proc.stdin is not None
            try:
                info = json.loads(await emu.ready(60 + n / 100) or "{}")
            except WorkerFailed as exc:
                return {"error": str(exc)}
            if "broker" not in info:
                emu.proc.stdin.close()
                return await emu.result(30)
            creds = ["--url", info["rest_url"], "--broker", info["broker"], "--application", info["application"],
                     "--key", info["key"], "--device-ids", str(ids_file), "--no-throttle"]
            env = {"LOSANT_ACCESS_SECRET": info["secret"], "LOSANT_API_TOKEN": info["token"]}
            doc = await _fleet_run(n, duration, extra=creds, env=env)
            emu.proc.stdin.write(b"done\n")
            await emu.proc.stdin.drain()
            emu.proc.stdin.close()
            try:
                emu_doc = await emu.result(60)
            except WorkerFailed as exc:
                return {**doc, "error": str(exc)}
    if "error" in emu_doc:
        return {**doc, "error": f"emulator: {emu_doc['error']}"}
    doc["states_stored"] = emu_doc.get("stored")
    doc["emulator_peak_rss_bytes"] = emu_doc.get("peak_rss_bytes")
    doc["emulator_counters"] = emu_doc.get("counters")
    return doc


async def _fleet_run(
    n: int, duration: float, *, extra: list[str] | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """``benchmarks.workers.simulate``: the simulate command in its own process, and its report."""
    batch, interval = _command_schedule(n)
    with tempfile.TemporaryDirectory(prefix="losant-bench-fleet-") as tmp:
        report = Path(tmp) / "report.json"
        argv = ["-m", "benchmarks.workers.simulate", "--", "--devices", str(n), "--rate", "1",
                "--duration", str(duration), "--quiet", "--command-interval", f"{interval:.4f}",
                "--json", str(report), *(extra or [])]
        limit = duration + 180 + n / 40
        async with run_worker(argv, name="simulate-fleet", env=env) as w:
            try:
                doc = await w.result(limit)
            except WorkerFailed as exc:
                return {"error": str(exc)}
    doc["commands_per_round"] = batch
    return doc


async def _simulate_run(n: int, rate: float, seconds: float) -> dict[str, Any]:
    """The ``losant-async simulate`` command against its embedded emulator; its ``--json`` report."""
    with tempfile.TemporaryDirectory(prefix="losant-bench-sim-") as tmp:
        report = Path(tmp) / "report.json"
        argv = ["-m", "losant_async.cli", "simulate", "--devices", str(n), "--rate", str(rate),
                "--duration", str(seconds), "--quiet", "--command-interval", "0", "--json", str(report)]
        async with run_worker(argv, name="simulate") as w:
            try:
                await asyncio.wait_for(w.proc.wait(), seconds + 60)
            except asyncio.TimeoutError:
                return {"error": f"simulate did not finish in {seconds + 60:.0f}s"}
            doc = await w.written_json(report)
            if "skipped" in doc or "error" in doc:
                return doc
    if w.proc.returncode != 0:
        doc["error"] = f"simulate exit code {w.proc.returncode}"
    return doc


async def _emulator_run(ctx: Context, n: int, per_device: int, qos: int = 0) -> dict[str, Any]:
    async with run_worker(["-m", "benchmarks.workers.emulator", "--devices", str(n),
                           "--expect", str(n * per_device)], name="emulator",
                          stdin=asyncio.subprocess.PIPE) as emu:
        try:
            info = json.loads(await emu.ready(60) or "{}")
        except WorkerFailed as exc:
            return {"error": str(exc)}
        if "port" not in info:
            assert emu.proc.stdin is not None
            emu.proc.stdin.close()
            return await emu.result(30)
        env = {"BENCH_MQTT_KEY": info["key"], "BENCH_MQTT_SECRET": info["secret"]}
        argv = ["-m", "benchmarks.workers.fleet", "--impl", "ours", "--port", str(info["port"]),
                "--ids", ",".join(info["ids"]), "--burst", str(per_device), "--qos", str(qos), "--hold"]
        assert emu.proc.stdin is not None
        async with run_worker(argv, name="fleet", env=env, stdin=asyncio.subprocess.PIPE) as fleet:
            assert fleet.proc.stdin is not None
            try:
                await fleet.ready(120)
                await fleet.ready(60 + n * per_device / 500, marker="SENT")
                # The fleet holds its connections open while the emulator drains what it was sent.
                emu.proc.stdin.write(b"done\n")
                await emu.proc.stdin.drain()
                emu.proc.stdin.close()
                doc = await emu.result(60)
                fleet.proc.stdin.close()
                fleet_doc = await fleet.result(60)
            except WorkerFailed as exc:
                return {"error": str(exc)}
    if "error" in fleet_doc or "skipped" in fleet_doc:
        return fleet_doc
    doc["sent"] = fleet_doc.get("sent")
    return doc


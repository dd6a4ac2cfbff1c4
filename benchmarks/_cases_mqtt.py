"""MQTT cases: 1 state publish on one connection, 2 fleet publish, 3 command path."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from benchmarks._context import Context, record
from benchmarks._harness import CaseResult, Contender, Target
from benchmarks._infra import Worker, WorkerFailed, run_worker
from benchmarks._payloads import STATE

__all__ = ["case_commands", "case_fleet", "case_publish"]

OURS = "losant_async"
#: Publisher connections (processes) that share the command blast of case 3.
BLASTERS = 3


def _ids(tag: str, run: int, n: int) -> list[str]:
    """Device ids unique per contender and run, so no connection ever displaces an earlier one."""
    head = f"{tag}{run:02x}"
    width = 24 - len(head)
    return [f"{head}{i:0{width}x}" for i in range(n)]


async def _counted(
    ctx: Context, *, topic: str, expect: int, skip: int, start: Any, timeout: float, idle: float = 5.0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a publisher (``start`` opens its worker) while the independent subscriber counts deliveries."""
    assert ctx.broker is not None
    argv = ["-m", "benchmarks.workers.counter", "--port", str(ctx.broker.port), "--topic", topic,
            "--expect", str(expect), "--skip", str(skip), "--idle", str(idle),
            "--deadline", str(timeout)]
    async with run_worker(argv, name="counter") as counter:
        await counter.ready(30)
        async with start() as pub:
            pub_doc = await _publisher_result(pub, timeout)
        if "error" in pub_doc or "skipped" in pub_doc:
            counter.kill()
            return pub_doc, {}
        count_doc = await counter.result(timeout + idle + 10)
    return pub_doc, count_doc


async def _publisher_result(pub: Worker, timeout: float) -> dict[str, Any]:
    if pub.name == "mosquitto_pub":
        try:
            await asyncio.wait_for(pub.proc.wait(), timeout)
        except asyncio.TimeoutError:
            return {"error": f"mosquitto_pub still running after {timeout:.0f}s"}
        if pub.proc.returncode != 0:
            return {"error": f"mosquitto_pub exit code {pub.proc.returncode}"}
        return {}
    try:
        return await pub.result(timeout)
    except WorkerFailed as exc:
        return {"error": str(exc)}


def _rate(count_doc: dict[str, Any]) -> float | None:
    try:
        window = count_doc["t_last"] - count_doc["t_skip"]
        n = count_doc["count"] - count_doc["n_skip"]
    except (KeyError, TypeError):
        return None
    return n / window if window > 0 and n > 0 else None


def publish_sizes(ctx: Context, qos: int) -> tuple[int, int, int]:
    """Messages measured, warm-up messages before them, and the total sent, for a publish case at ``qos``."""
    n = ctx.pick(20_000, 60_000) if qos == 0 else ctx.pick(10_000, 30_000)
    warm = n // 10
    return n, warm, n + warm


def record_publish(
    ctx: Context, case: str, c: Contender, run: int, pub_doc: dict[str, Any], count_doc: dict[str, Any], total: int
) -> None:
    """One publish run of ``c``: the rate the subscriber saw, how much arrived, and a log line."""
    rate = _rate(count_doc)
    delivered = count_doc.get("count", 0) / total * 100 if count_doc else None
    if count_doc and count_doc.get("count", 0) < total and "error" not in pub_doc:
        c.notes.append(f"run {run + 1}: {count_doc.get('count')} of {total} delivered")
    record(c, run, pub_doc, rate, delivered_pct=delivered)
    ctx.log(f"  [{case} run {run + 1}] {c.name}: "
            + (f"{rate:,.0f} msgs/s" if rate else str(pub_doc.get("error") or pub_doc.get("skipped") or "no figure")))


def _payload_file(n: int) -> str:
    enc = msgspec.json.Encoder()
    now = int(time.time() * 1000)
    fd, path = tempfile.mkstemp(prefix="losant-bench-", suffix=".lines")
    with os.fdopen(fd, "wb") as f:
        f.write(b"".join(enc.encode({"data": {**STATE, "seq": i}, "time": now + i}) + b"\n"
                         for i in range(n)))
    return path


async def case_publish(ctx: Context) -> list[CaseResult]:
    """Case 1: messages per second delivered to an independent subscriber, one connection."""
    assert ctx.broker is not None
    port = str(ctx.broker.port)
    out: list[CaseResult] = []
    for qos in (0, 1):
        n, warm, total = publish_sizes(ctx, qos)
        unit = "msgs/s"
        result = CaseResult(
            case=f"1-publish-qos{qos}",
            title=f"MQTT state publish, one connection, QoS {qos}, delivered to a subscriber",
            params={"messages": n, "warm-up": warm, "broker": ctx.broker.kind, "transport": "plain TCP"},
        )
        ours = Contender(f"{OURS} Device", "ours", unit)
        aw = Contender("aiomqtt awaited", "baseline", unit)
        ga = Contender("aiomqtt gathered", "baseline", unit)
        paho = Contender("paho-mqtt 2 thread", "baseline", unit)
        official = Contender("losant-mqtt (official)", "baseline", unit)
        limit = Contender("mosquitto_pub -l (C)", "limit", unit)
        result.contenders = [ours, aw, ga, paho, official, limit]
        if qos == 1:
            official.skipped = "the official client publishes state at QoS 0 only"
        elif ctx.official.skipped:
            official.skipped = ctx.official.skipped
        if not ctx.mosquitto_pub:
            limit.skipped = "mosquitto_pub not installed (apt-get install mosquitto-clients)"
        lines = _payload_file(total) if ctx.mosquitto_pub else None
        impls = {ours.name: "ours", aw.name: "aiomqtt-awaited", ga.name: "aiomqtt-gathered", paho.name: "paho"}
        try:
            for run, profiling in ctx.plan():
                for idx, c in enumerate(result.contenders):
                    if c.skipped or (profiling and c is not ours):
                        continue
                    did = _ids(f"1{qos}{idx}", run, 1)[0]
                    topic = f"losant/{did}/state"
                    profile = ctx.profile_path(f"publish-qos{qos}") if profiling else None
                    timeout = 30 + total / 1000
                    if c.name in impls:
                        argv = ["-m", "benchmarks.workers.mqtt_publish", "--impl", impls[c.name],
                                "--port", port, "--qos", str(qos), "--count", str(total), "--device-id", did]
                        if profile:
                            argv += ["--profile", profile]
                            result.profile = profile
                        start: Any = functools.partial(run_worker, argv, name=c.name)
                    elif c is official:
                        assert ctx.official.python
                        argv = ["benchmarks/official/mqtt_publish.py", "--port", port,
                                "--count", str(total), "--device-id", did]
                        start = functools.partial(run_worker, argv, name="official", python=ctx.official.python)
                    else:
                        assert ctx.mosquitto_pub and lines
                        argv = [ctx.mosquitto_pub, "-h", "127.0.0.1", "-p", port, "-i", did,
                                "-t", topic, "-q", str(qos), "-l"]
                        start = functools.partial(_with_stdin, argv, lines)
                    pub_doc, count_doc = await _counted(
                        ctx, topic=topic, expect=total, skip=warm, start=start, timeout=timeout
                    )
                    if not profiling:
                        record_publish(ctx, result.case, c, run, pub_doc, count_doc, total)
        finally:
            if lines:
                os.unlink(lines)
        if qos == 0:
            result.targets = [
                Target("QoS 0 Device publish >= official losant-mqtt", ours.name, official.name, 1.0),
                Target("QoS 0 Device publish >= 0.9x mosquitto_pub (plain TCP)", ours.name, limit.name, 0.9),
            ]
        else:
            result.targets = [
                Target("QoS 1 Device publish >= raw paho 2 with its thread, all acknowledged",
                       ours.name, paho.name, 1.0),
            ]
        out.append(result)
    return out


@contextlib.asynccontextmanager
async def _with_stdin(argv: list[str], path: str) -> AsyncIterator[Worker]:
    """mosquitto_pub reading the payload file on its stdin."""
    fd = os.open(path, os.O_RDONLY)
    try:
        async with run_worker(argv, name="mosquitto_pub", python="", stdin=fd) as w:
            yield w
    finally:
        os.close(fd)


async def case_fleet(ctx: Context) -> list[CaseResult]:
    """Case 2: N connections at a fixed rate each: sustained delivered states/s, connect time, RSS/device."""
    assert ctx.broker is not None
    # 10,000 is the target size; the smaller ones show how cost grows.
    sizes = ctx.fleet_sizes or ctx.pick([100, 1_000, 10_000], [100, 1_000, 5_000, 10_000])
    rate = 1.0
    duration = ctx.pick(4.0, 5.0)
    out: list[CaseResult] = []
    for n in sizes:
        result = CaseResult(
            case=f"2-fleet-{n}",
            title=f"Fleet publish: {n:,} connections, {rate:g} state/s each",
            params={"devices": n, "seconds": duration, "broker": ctx.broker.kind, "transport": "plain TCP"},
        )
        ours = Contender(f"{OURS} Fleet", "ours", "states/s")
        aio = Contender("aiomqtt (client per device)", "baseline", "states/s")
        result.contenders = [ours, aio]
        runs = ctx.runs if n <= 1_000 else min(ctx.runs, 2)
        # A profiler slows 10,000 connections past their deadlines: profile the smaller fleets only.
        for run, profiling in ctx.plan(runs) if n <= 1_000 else ctx.plan(runs)[:runs]:
            for idx, (c, impl) in enumerate(((ours, "ours"), (aio, "aiomqtt"))):
                if c.skipped or (profiling and c is not ours):
                    continue
                prefix = f"2{idx}{run:x}"
                expect = int(n * rate * duration)
                argv = ["-m", "benchmarks.workers.fleet", "--impl", impl, "--port", str(ctx.broker.port),
                        "--n", str(n), "--rate", str(rate), "--duration", str(duration),
                        "--id-prefix", prefix]
                profile = ctx.profile_path(f"fleet-{n}") if profiling else None
                if profile:
                    argv += ["--profile", profile]
                    result.profile = profile
                doc, counted = await _fleet_run(ctx, argv, c.name, prefix, expect, duration, n)
                if profiling:
                    continue
                delivered, sustained, per_dev = fleet_figures(doc, counted, n)
                if doc.get("errors"):
                    c.notes.append(f"run {run + 1}: {doc['errors']} send errors, first: {doc.get('first_error')}")
                if counted and delivered < expect:
                    c.notes.append(f"run {run + 1}: {delivered} of {expect} delivered")
                record(c, run, doc, sustained, connect_s=doc.get("connect_s"), rss_kib_per_device=per_dev,
                       delivered_pct=delivered / expect * 100 if counted else None,
                       errors=float(doc.get("errors", 0)), max_lag_s=doc.get("max_lag_s"))
                ctx.log(f"  [{result.case} run {run + 1}] {c.name}: "
                        + (f"{sustained:,.0f} states/s, connect {doc.get('connect_s', 0):.2f}s, "
                           f"{per_dev or 0:.1f} KiB/device" if sustained else str(doc.get("error") or doc.get("skipped"))))
        result.targets = [
            Target(f"{n:,} devices: sustain {rate:g} state/s each (>= 99% of {n * rate:,.0f}/s)",
                   ours.name, None, 0.99 * n * rate),
            Target(f"{n:,} devices: every state delivered", ours.name, None, 99.9,
                   metric="delivered_pct"),
            Target(f"{n:,} devices: no send error", ours.name, None, 0.0, metric="errors", at_most=True),
        ]
        if n >= 10_000:
            # Per-device RSS only means something at scale: small fleets carry the fixed costs.
            result.targets.append(Target(f"{n:,} devices: <= 25 KiB RSS per device", ours.name, None, 25.0,
                                         metric="rss_kib_per_device", at_most=True))
        out.append(result)
    return out


def fleet_figures(doc: dict[str, Any], counted: dict[str, Any], n: int) -> tuple[int, float | None, float | None]:
    """States delivered, the sustained delivered rate, and KiB of RSS per device, of one fleet run."""
    delivered = int(counted.get("count", 0))
    # Measured at the subscriber, first to last delivery: a fleet that falls behind
    # stretches the window and shows a lower rate.
    sustained = None
    if delivered > 1 and counted.get("t_last") and counted.get("t_first"):
        window = counted["t_last"] - counted["t_first"]
        sustained = (delivered - 1) / window if window > 0 else None
    per_dev = ((doc["rss_connected"] - doc["rss_base"]) / n / 1024) if "rss_base" in doc else None
    return delivered, sustained, per_dev


async def _fleet_run(
    ctx: Context, argv: list[str], name: str, prefix: str, expect: int, duration: float, n: int,
    *, connects_per_s: float = 200,
) -> tuple[dict[str, Any], dict[str, Any]]:
    assert ctx.broker is not None
    timeout = 30 + n / connects_per_s + duration * 3
    counter_argv = ["-m", "benchmarks.workers.counter", "--port", str(ctx.broker.port),
                    "--topic", "losant/+/state", "--expect", str(expect), "--idle", "10",
                    "--deadline", str(timeout)]
    async with run_worker(counter_argv, name="counter") as counter:
        await counter.ready(30)
        async with run_worker(argv, name=name) as fleet:
            try:
                await fleet.ready(timeout)
                doc = await fleet.result(timeout)
            except WorkerFailed as exc:
                return {"error": str(exc)}, {}
        if "error" in doc or "skipped" in doc:
            return doc, {}
        counted = await counter.result(30)
    return doc, counted


async def case_commands(ctx: Context) -> list[CaseResult]:
    """Case 3: commands published to 100 devices: handler throughput and publish-to-handler latency."""
    assert ctx.broker is not None
    n = 100
    paced = ctx.pick(1_000, 2_000)
    pace_rate = 1_000.0
    blast = ctx.pick(20_000, 50_000)
    expect = paced + blast
    result = CaseResult(
        case="3-commands",
        title=f"Command path: {n} devices, blast throughput + latency at {pace_rate:,.0f}/s",
        params={"devices": n, "paced": paced, "blast": blast, "broker": ctx.broker.kind, "transport": "plain TCP"},
    )
    ours = Contender(f"{OURS} Device.on_command", "ours", "cmds/s")
    aio = Contender("aiomqtt (client per device)", "baseline", "cmds/s")
    official = Contender("losant-mqtt (official) loop()", "baseline", "cmds/s")
    threaded = Contender("losant-mqtt (official) thread each", "baseline", "cmds/s")
    if ctx.official.skipped:
        official.skipped = threaded.skipped = ctx.official.skipped
    result.contenders = [ours, aio, official, threaded]
    for run, profiling in ctx.plan():
        for idx, c in enumerate(result.contenders):
            if c.skipped or (profiling and c is not ours):
                continue
            ids = _ids(f"3{idx}", run, n)
            # --idle: the receivers wait while the publishers encode and connect (a loaded machine
            # can take seconds); it only ends a run early that already lost messages.
            common = ["--port", str(ctx.broker.port), "--devices", ",".join(ids), "--expect", str(expect),
                      "--idle", "20"]
            if c is official or c is threaded:
                assert ctx.official.python
                argv = ["benchmarks/official/mqtt_commands.py", *common,
                        "--mode", "loop" if c is official else "threads"]
                python = ctx.official.python
            else:
                argv = ["-m", "benchmarks.workers.mqtt_commands", "--impl", "ours" if c is ours else "aiomqtt", *common]
                python = None
                profile = ctx.profile_path("commands") if profiling else None
                if profile:
                    argv += ["--profile", profile]
                    result.profile = profile
            doc = await _commands_run(ctx, argv, c.name, python, ids, paced, pace_rate, blast)
            if profiling:
                continue
            thr = None
            if doc.get("t_first") is not None and doc.get("blast", 0) > 1:
                window = doc["t_last"] - doc["t_first"]
                thr = (doc["blast"] - 1) / window if window > 0 else None
            if "received" in doc and doc["received"] < expect:
                c.notes.append(f"run {run + 1}: {doc['received']} of {expect} commands reached a handler")
            record(c, run, doc, thr, p50_ms=doc.get("p50_ms"), p99_ms=doc.get("p99_ms"),
                   connect_s=doc.get("connect_s"))
            ctx.log(f"  [{result.case} run {run + 1}] {c.name}: "
                    + (f"{thr:,.0f} cmds/s, p50 {doc.get('p50_ms') or 0:.2f} ms, p99 {doc.get('p99_ms') or 0:.2f} ms"
                       if thr else str(doc.get("error") or doc.get("skipped"))))
    result.params["publishers"] = BLASTERS
    result.targets = [Target("command receive across 100 devices >= 2x official (its faster way)",
                             ours.name, official.name, 2.0, or_best_of=(threaded.name,))]
    return [result]


async def _commands_run(
    ctx: Context, argv: list[str], name: str, python: str | None, ids: list[str],
    paced: int, rate: float, blast: int,
) -> dict[str, Any]:
    assert ctx.broker is not None
    timeout = 60 + (paced + blast) / 2_000
    async with run_worker(argv, name=name, python=python) as receiver:
        try:
            await receiver.ready(60)
        except WorkerFailed as exc:
            return {"error": str(exc)}
        base = ["-m", "benchmarks.workers.blaster", "--port", str(ctx.broker.port), "--devices", ",".join(ids)]
        shares = [blast // BLASTERS + (1 if i < blast % BLASTERS else 0) for i in range(BLASTERS)]
        firsts = [paced + sum(shares[:i]) for i in range(BLASTERS)]
        async with contextlib.AsyncExitStack() as stack:
            # The blast comes from several connections at once, so the receivers' rate is theirs,
            # not one publisher's; they encode and connect first, then wait for the word.
            blasters = [
                await stack.enter_async_context(run_worker(
                    [*base, "--blast", str(share), "--first-seq", str(first), "--wait-go"],
                    name=f"blaster {i + 1}", stdin=subprocess.PIPE))
                for i, (share, first) in enumerate(zip(shares, firsts, strict=True))
            ]
            try:
                for b in blasters:
                    await b.ready(60)
                # The paced phase (latency) alone first, with nothing else on the broker.
                async with run_worker([*base, "--paced", str(paced), "--rate", str(rate)], name="pacer") as pacer:
                    await pacer.result(timeout)
                for b in blasters:
                    assert b.proc.stdin is not None
                    b.proc.stdin.write(b"go\n")
                    await b.proc.stdin.drain()
                await asyncio.gather(*(b.result(timeout) for b in blasters))
            except WorkerFailed as exc:
                return {"error": str(exc)}
        try:
            return await receiver.result(timeout)
        except WorkerFailed as exc:
            return {"error": str(exc)}

"""MQTT cases on the paths users run (issue 14, item 4): publish and a fleet over TLS, and the throttle on.

TLS rows go to mosquitto's TLS listener on loopback (a trustme test CA made for
the run, see ``_infra.start_broker``); every contender is told to trust that CA
at run time. Rows marked ``[TLS]`` are TLS, ``[plain TCP]`` the same client on
the plain listener of the same broker, measured in the same run. Deliveries are
counted by the independent subscriber on the plain listener.
"""

from __future__ import annotations

import functools
from typing import Any

from benchmarks._cases_mqtt import (
    OURS,
    _counted,
    _fleet_run,
    _ids,
    fleet_figures,
    publish_sizes,
    record_publish,
)
from benchmarks._context import Context, record
from benchmarks._harness import CaseResult, Contender, Target
from benchmarks._infra import WorkerFailed, run_worker

__all__ = ["case_throttle", "case_tls_fleet", "case_tls_publish"]

TLS = "[TLS]"
PLAIN = "[plain TCP]"
#: Losant's limit per device state topic: 30 messages per 15 s.
LOSANT_STATES_PER_S = 30 / 15


def _tls_note(ctx: Context) -> str:
    assert ctx.broker is not None
    return (f"rows marked {TLS} use mosquitto's TLS listener (port {ctx.broker.tls_port}, test CA from trustme, "
            f"certificate verified); {PLAIN} rows the plain listener of the same broker, same run")


def _tls_missing(ctx: Context) -> str | None:
    assert ctx.broker is not None
    if ctx.broker.tls_port is None or ctx.broker.ca_file is None:
        return f"no TLS listener: {ctx.broker.tls_skipped or 'unknown reason'}"
    return None


async def case_tls_publish(ctx: Context) -> list[CaseResult]:
    """QoS 0 and 1 publish over TLS: ours vs official losant-mqtt vs paho 2 vs aiomqtt, and ours on plain TCP."""
    assert ctx.broker is not None
    missing = _tls_missing(ctx)
    out: list[CaseResult] = []
    for qos in (0, 1):
        n, warm, total = publish_sizes(ctx, qos)
        unit = "msgs/s"
        result = CaseResult(
            case=f"4-tls-publish-qos{qos}",
            title=f"MQTT state publish over TLS, one connection, QoS {qos}, delivered to a subscriber",
            params={"messages": n, "warm-up": warm, "broker": ctx.broker.kind, "tls": "trustme CA, loopback"},
        )
        ours = Contender(f"{OURS} Device {TLS}", "ours", unit)
        ours_plain = Contender(f"{OURS} Device {PLAIN}", "baseline", unit)  # ours, as the yardstick
        official = Contender(f"losant-mqtt (official) {TLS}", "baseline", unit)
        paho = Contender(f"paho-mqtt 2 thread {TLS}", "baseline", unit)
        aio = Contender(f"aiomqtt gathered {TLS}", "baseline", unit)
        result.contenders = [ours, ours_plain, official, paho, aio]
        result.notes.append(_tls_note(ctx))
        if missing:
            for c in (ours, official, paho, aio):
                c.skipped = missing
        if qos == 1:
            official.skipped = "the official client publishes state at QoS 0 only"
        elif ctx.official.skipped:
            official.skipped = ctx.official.skipped
        impls = {ours.name: "ours", ours_plain.name: "ours", paho.name: "paho", aio.name: "aiomqtt-gathered"}
        for run, profiling in ctx.plan():
            for idx, c in enumerate(result.contenders):
                if c.skipped or (profiling and c is not ours):
                    continue
                did = _ids(f"4{qos}{idx}", run, 1)[0]
                topic = f"losant/{did}/state"
                tls = c is not ours_plain
                port = str(ctx.broker.tls_port if tls else ctx.broker.port)
                tls_args = ["--tls-ca", str(ctx.broker.ca_file)] if tls else []
                if c is official:
                    assert ctx.official.python
                    argv = ["benchmarks/official/mqtt_publish.py", "--port", port, "--count", str(total),
                            "--device-id", did, *tls_args]
                    start: Any = functools.partial(run_worker, argv, name="official", python=ctx.official.python)
                else:
                    argv = ["-m", "benchmarks.workers.mqtt_publish", "--impl", impls[c.name], "--port", port,
                            "--qos", str(qos), "--count", str(total), "--device-id", did, *tls_args]
                    profile = ctx.profile_path(f"tls-publish-qos{qos}") if profiling else None
                    if profile:
                        argv += ["--profile", profile]
                        result.profile = profile
                    start = functools.partial(run_worker, argv, name=c.name)
                pub_doc, count_doc = await _counted(
                    ctx, topic=topic, expect=total, skip=warm, start=start, timeout=30 + total / 1000
                )
                if not profiling:
                    record_publish(ctx, result.case, c, run, pub_doc, count_doc, total)
        result.targets = [
            Target(f"QoS {qos} over TLS >= 1.5x paho 2 over TLS", ours.name, paho.name, 1.5),
            Target(f"QoS {qos} over TLS >= 0.8x our own plain-TCP rate", ours.name, ours_plain.name, 0.8),
        ]
        if qos == 0:
            result.targets.insert(0, Target("QoS 0 over TLS >= 2.5x official losant-mqtt over TLS",
                                            ours.name, official.name, 2.5))
        else:
            result.notes.append("the official client cannot publish at QoS 1, so its 2.5x target applies at QoS 0")
        out.append(result)
    return out


def _fleet_argv(ctx: Context, *, n: int, rate: float, duration: float, prefix: str, tls: bool,
                throttle: bool = False) -> list[str]:
    assert ctx.broker is not None
    argv = ["-m", "benchmarks.workers.fleet", "--impl", "ours",
            "--port", str(ctx.broker.tls_port if tls else ctx.broker.port),
            "--n", str(n), "--rate", str(rate), "--duration", str(duration), "--id-prefix", prefix]
    if tls:
        argv += ["--tls-ca", str(ctx.broker.ca_file)]
    if throttle:
        argv.append("--throttle")
    return argv


async def case_tls_fleet(ctx: Context) -> list[CaseResult]:
    """A fleet over TLS at 1 state/s each: states delivered, RSS per device against plain TCP, connect time."""
    assert ctx.broker is not None
    n = ctx.pick(1_000, 10_000)
    rate = 1.0
    duration = ctx.pick(4.0, 5.0)
    runs = min(ctx.runs, 2) if n > 1_000 else ctx.runs
    result = CaseResult(
        case=f"5-tls-fleet-{n}",
        title=f"Fleet over TLS: {n:,} connections, {rate:g} state/s each; RSS per device vs plain TCP",
        params={"devices": n, "seconds": duration, "broker": ctx.broker.kind, "tls": "trustme CA, loopback"},
    )
    unit = "KiB RSS/device"
    tls = Contender(f"{OURS} Fleet {TLS}", "ours", unit, higher_is_better=False)
    plain = Contender(f"{OURS} Fleet {PLAIN}", "baseline", unit, higher_is_better=False)
    bare_tls = Contender(f"bare ssl.SSLSocket {TLS}", "limit", unit, higher_is_better=False)
    bare_plain = Contender(f"bare socket {PLAIN}", "limit", unit, higher_is_better=False)
    result.contenders = [tls, plain, bare_tls, bare_plain]
    result.notes.append(_tls_note(ctx))
    result.notes.append("other figures: states_s = delivered states/s at the subscriber, delivered_pct, connect_s")
    result.notes.append(
        "bare rows: RSS per connection of sockets alone (CONNECT/CONNACK, one shared verifying SSLContext, no "
        "MQTT library): what OpenSSL keeps per TLS connection, which no client on it can shed; ours over TLS "
        "minus ours on plain TCP is what TLS costs us, to set against bare TLS minus bare plain"
    )
    missing = _tls_missing(ctx)
    if missing:
        tls.skipped = bare_tls.skipped = missing
    for c in (bare_tls, bare_plain):
        if c.skipped:
            continue
        # 2,000 is enough for a steady per-connection figure, and quick to open one by one.
        bare = ["-m", "benchmarks.workers.tls_bare", "--n", str(min(n, 2_000))]
        if c is bare_tls:
            bare += ["--port", str(ctx.broker.tls_port), "--tls-ca", str(ctx.broker.ca_file)]
        else:
            bare += ["--port", str(ctx.broker.port)]
        async with run_worker(bare, name=c.name) as worker:
            try:
                bare_doc = await worker.result(120 + n / 50)
            except WorkerFailed as exc:
                bare_doc = {"error": str(exc)}
        record(c, 0, bare_doc, bare_doc.get("kib_per_conn"))
        ctx.log(f"  [{result.case}] {c.name}: "
                + (f"{bare_doc['kib_per_conn']:.1f} KiB/connection ({bare_doc.get('tls_version')})"
                   if "kib_per_conn" in bare_doc else str(bare_doc.get("error") or bare_doc.get("skipped"))))
    expect = int(n * rate * duration)
    for run in range(runs):
        for idx, c in enumerate((tls, plain)):
            if c.skipped:
                continue
            prefix = f"5{idx}{run:x}"
            argv = _fleet_argv(ctx, n=n, rate=rate, duration=duration, prefix=prefix, tls=c is tls)
            # A TLS handshake per device: allow for a slower connect than plain TCP's.
            doc, counted = await _fleet_run(ctx, argv, c.name, prefix, expect, duration, n,
                                            connects_per_s=40 if c is tls else 200)
            delivered, sustained, per_dev = fleet_figures(doc, counted, n)
            if doc.get("errors"):
                c.notes.append(f"run {run + 1}: {doc['errors']} send errors, first: {doc.get('first_error')}")
            if counted and delivered < expect:
                c.notes.append(f"run {run + 1}: {delivered} of {expect} delivered")
            record(c, run, doc, per_dev, states_s=sustained, connect_s=doc.get("connect_s"),
                   delivered_pct=delivered / expect * 100 if counted else None)
            ctx.log(f"  [{result.case} run {run + 1}] {c.name}: "
                    + (f"{per_dev:.1f} KiB/device, {sustained or 0:,.0f} states/s, connect "
                       f"{doc.get('connect_s', 0):.2f}s, {delivered} of {expect} delivered"
                       if per_dev is not None else str(doc.get("error") or doc.get("skipped"))))
    result.targets = [
        # Lower is better: the ratio shown is plain/TLS, so TLS <= 1.5x plain is a ratio >= 1/1.5.
        Target("TLS RSS per device <= 1.5x plain TCP (figure: plain/TLS, >= 0.67x)", tls.name, plain.name, 1 / 1.5),
        Target(f"{n:,} devices over TLS: every state delivered", tls.name, None, 99.9, metric="delivered_pct"),
        Target(f"{n:,} devices over TLS: sustain {rate:g} state/s each (>= 99% of {n * rate:,.0f}/s)",
               tls.name, None, 0.99 * n * rate, metric="states_s"),
    ]
    return [result]


async def case_throttle(ctx: Context) -> list[CaseResult]:
    """1,000 devices at Losant's per-device limit: CPU seconds per state, throttle on vs off."""
    assert ctx.broker is not None
    n = 1_000
    # Just under 30 per 15 s: the throttle always has a token, as for a device within its limit.
    rate = LOSANT_STATES_PER_S * 0.98
    duration = ctx.pick(5.0, 10.0)
    result = CaseResult(
        case="6-throttle-cpu",
        title=f"Throttle on at Losant's limit: {n:,} devices x {rate:g} state/s, CPU per state (plain TCP)",
        params={"devices": n, "seconds": duration, "rate": rate, "broker": ctx.broker.kind, "transport": "plain TCP"},
    )
    unit = "CPU us/state"
    on = Contender(f"{OURS} Fleet, throttle on", "ours", unit, higher_is_better=False)
    off = Contender(f"{OURS} Fleet, throttle off", "baseline", unit, higher_is_better=False)
    result.contenders = [on, off]
    result.notes.append("CPU = the fleet process's user+system time from the first send to the last flush")
    expect = int(n * rate * duration)
    for run in range(ctx.runs):
        for idx, c in enumerate((on, off)):
            prefix = f"6{idx}{run:x}"
            argv = _fleet_argv(ctx, n=n, rate=rate, duration=duration, prefix=prefix, tls=False,
                               throttle=c is on)
            doc, counted = await _fleet_run(ctx, argv, c.name, prefix, expect, duration, n)
            delivered = counted.get("count", 0)
            sent = doc.get("sent", 0)
            per_state = doc["cpu_s"] / sent * 1e6 if sent and "cpu_s" in doc else None
            if counted and delivered < expect:
                c.notes.append(f"run {run + 1}: {delivered} of {expect} delivered")
            record(c, run, doc, per_state, delivered_pct=delivered / expect * 100 if counted else None,
                   max_lag_s=doc.get("max_lag_s"))
            ctx.log(f"  [{result.case} run {run + 1}] {c.name}: "
                    + (f"{per_state:.1f} CPU us/state, {delivered} of {expect} delivered"
                       if per_state is not None else str(doc.get("error") or doc.get("skipped"))))
    result.targets = [
        # Lower is better: the figure is off/on, so on <= 1.3x off is a ratio >= 1/1.3.
        Target("throttle on <= 1.3x the CPU per state of throttle off (figure: off/on, >= 0.77x)",
               on.name, off.name, 1 / 1.3),
        Target("throttle on: every state delivered", on.name, None, 99.9, metric="delivered_pct"),
    ]
    return [result]

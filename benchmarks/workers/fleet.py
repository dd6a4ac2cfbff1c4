"""Case 2 fleet: N device connections in one process, each publishing at a fixed rate.

Reports connect time, RSS per device (this process only, measured before and
after connecting, so each N runs in a clean process) and what was sent; the
independent subscriber counts what was delivered. ``--tls-ca`` connects over
TLS (``--port`` is then the TLS listener); ``--throttle`` turns our throttle on;
``cpu_s`` is this process's CPU time from the first send to the last flush.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from benchmarks._payloads import STATE
from benchmarks.workers._common import profiled, raise_fd_limit, run_and_emit

_enc = msgspec.json.Encoder()


def rss() -> int:
    import psutil  # type: ignore[import-untyped,unused-ignore]

    return int(psutil.Process().memory_info().rss)


async def paced(
    n: int, rate: float, duration: float, send: Callable[[int, int], Awaitable[None]], *, concurrent: bool
) -> dict[str, Any]:
    """Call ``send(device, seq)`` so each of ``n`` devices sends ``rate`` per second, spread evenly.

    ``concurrent`` gathers a batch (a task per send: what a client that waits for
    each publish needs); otherwise the batch is awaited in turn, which costs no
    task per send when ``send`` only queues.
    """
    total = int(n * rate * duration)
    interval = 1.0 / (n * rate)
    sent = errors = 0
    first_error = None
    late = 0.0
    t0 = time.monotonic()
    k = 0
    while k < total:
        due = t0 + k * interval
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(min(0.01, due - now))  # pacing to the offered rate
            continue
        late = max(late, now - due)
        # Everything due by now goes in one batch, up to 10 ms ahead.
        upto = min(total, int((now + 0.01 - t0) / interval) + 1)
        batch = range(k, upto)
        if concurrent:
            results: list[Any] = await asyncio.gather(*(send(i % n, i) for i in batch), return_exceptions=True)
        else:
            results = []
            for i in batch:
                try:
                    await send(i % n, i)
                    results.append(None)
                except Exception as exc:
                    results.append(exc)
        for r in results:
            if isinstance(r, BaseException):
                errors += 1
                first_error = first_error or f"{type(r).__name__}: {r}"
            else:
                sent += 1
        k = upto
    return {"sent": sent, "errors": errors, "first_error": first_error,
            "send_s": time.monotonic() - t0, "max_lag_s": late}


async def burst(devices: list[Any], per_device: int) -> dict[str, Any]:
    """Every device sends ``per_device`` states back to back, all devices at once (the emulator case)."""

    async def one(d: Any) -> None:
        for i in range(per_device):
            await d.send_state({**STATE, "seq": i})
        await d.flush()

    t0 = time.monotonic()
    results = await asyncio.gather(*(one(d) for d in devices), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    return {"sent": per_device * (len(devices) - len(errors)), "errors": len(errors),
            "first_error": f"{type(errors[0]).__name__}: {errors[0]}" if errors else None,
            "send_s": time.monotonic() - t0}


async def run_ours(a: argparse.Namespace, ids: list[str]) -> dict[str, Any]:
    from losant_async.mqtt import Device, Fleet

    base = rss()
    # Credentials come through the environment, never the command line (visible in ps).
    key = os.environ.get("BENCH_MQTT_KEY", "bench-key")
    secret = os.environ.get("BENCH_MQTT_SECRET", "bench-secret")
    tls = ssl.create_default_context(cafile=a.tls_ca) if a.tls_ca else None
    devices = [
        Device(d, key, secret, host="127.0.0.1", port=a.port,
               transport="tls" if tls else "tcp", tls_context=tls, qos=a.qos, throttle=a.throttle)
        for d in ids
    ]
    t0 = time.monotonic()
    async with Fleet(devices, connect_concurrency=a.connect_concurrency):
        connect_s = time.monotonic() - t0
        gc.collect()
        after = rss()
        print("READY", flush=True)

        async def send(d: int, seq: int) -> None:
            await devices[d].send_state({**STATE, "seq": seq})

        cpu0 = time.process_time()
        with profiled(a.profile):
            if a.burst:
                doc = await burst(devices, a.burst)
            else:
                # Device.send_state queues and returns (back-pressure when the outbox is full).
                doc = await paced(len(ids), a.rate, a.duration, send, concurrent=False)
        for d in devices:
            await d.flush()
        doc["cpu_s"] = time.process_time() - cpu0
        end_rss = rss()
        if a.hold:
            # Stay connected until the harness says the receiver has everything: a receiver
            # may still be working through what was written when the connections close.
            print("SENT", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return {**doc, "connect_s": connect_s, "rss_base": base, "rss_connected": after, "rss_end": end_rss}


async def run_aiomqtt(a: argparse.Namespace, ids: list[str]) -> dict[str, Any]:
    import aiomqtt

    quiet = logging.getLogger("bench.aiomqtt")
    quiet.setLevel(logging.ERROR)
    base = rss()
    async with contextlib.AsyncExitStack() as stack:
        sem = asyncio.Semaphore(a.connect_concurrency)

        async def connect(did: str) -> aiomqtt.Client:
            client = aiomqtt.Client("127.0.0.1", a.port, identifier=did, username="bench-key",
                                    password="bench-secret", logger=quiet, clean_session=True,
                                    protocol=aiomqtt.ProtocolVersion.V311)
            async with sem:
                await stack.enter_async_context(client)
            return client

        t0 = time.monotonic()
        clients = await asyncio.gather(*(connect(d) for d in ids))
        connect_s = time.monotonic() - t0
        gc.collect()
        after = rss()
        print("READY", flush=True)
        topics = [f"losant/{d}/state" for d in ids]

        async def send(d: int, seq: int) -> None:
            payload = _enc.encode({"data": {**STATE, "seq": seq}, "time": int(time.time() * 1000)})
            await clients[d].publish(topics[d], payload, qos=0)

        with profiled(a.profile):
            # aiomqtt's publish waits for its loop round trip: sends must overlap.
            doc = await paced(len(ids), a.rate, a.duration, send, concurrent=True)
        end_rss = rss()
    return {**doc, "connect_s": connect_s, "rss_base": base, "rss_connected": after, "rss_end": end_rss}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["ours", "aiomqtt"], required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--id-prefix", default="f00")
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connect-concurrency", type=int, default=200)
    ap.add_argument("--ids", help="comma-separated device ids instead of generated ones")
    ap.add_argument("--burst", type=int, default=0, help="states per device, back to back (ours only)")
    ap.add_argument("--qos", type=int, default=0)
    ap.add_argument("--hold", action="store_true", help="after sending, print SENT and wait for a stdin line")
    ap.add_argument("--tls-ca", help="connect over TLS, trusting this CA file (PEM); ours only")
    ap.add_argument("--throttle", action="store_true", help="our throttle on (Losant's limits); ours only")
    ap.add_argument("--profile")
    a = ap.parse_args()
    raise_fd_limit(max(a.n, len(a.ids or "") // 24) + 200)
    width = 24 - len(a.id_prefix)
    ids = a.ids.split(",") if a.ids else [f"{a.id_prefix}{i:0{width}x}" for i in range(a.n)]
    run_and_emit(
        lambda: asyncio.run(run_ours(a, ids) if a.impl == "ours" else run_aiomqtt(a, ids)), ready="READY"
    )


if __name__ == "__main__":
    main()

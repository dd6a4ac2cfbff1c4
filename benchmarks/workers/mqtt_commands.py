"""Case 3 receivers: N devices in one process count the commands their handlers get, and the latency.

Implementations: ``ours`` (losant_async Devices with ``on_command``),
``aiomqtt`` (one raw client per device). Prints ``READY`` once every device
is subscribed, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec

from benchmarks._harness import percentile
from benchmarks.workers._common import profiled, raise_fd_limit, run_and_emit


class Tally:
    """What the handlers saw: paced latencies and blast arrival times."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.lat: list[float] = []
        self.blast = 0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.total = 0
        self.done = asyncio.Event()
        self.last_seen = time.monotonic()

    def saw(self, payload: Any) -> None:
        now = time.monotonic()
        self.last_seen = now
        if payload.get("phase") == "p":
            self.lat.append(now - payload["t"])
        else:
            self.blast += 1
            if self.t_first is None:
                self.t_first = now
            self.t_last = now
        self.total += 1
        if self.total >= self.expect:
            self.done.set()

    async def wait(self, idle: float, deadline: float) -> None:
        end = time.monotonic() + deadline
        while not self.done.is_set():
            now = time.monotonic()
            if now > end or now - self.last_seen > idle:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.done.wait(), min(idle, 0.5))

    def result(self, connect_s: float) -> dict[str, Any]:
        return {
            "connect_s": connect_s,
            "received": self.total,
            "expect": self.expect,
            "paced": len(self.lat),
            "p50_ms": percentile(self.lat, 50) * 1000 if self.lat else None,
            "p99_ms": percentile(self.lat, 99) * 1000 if self.lat else None,
            "blast": self.blast,
            "t_first": self.t_first,
            "t_last": self.t_last,
        }


async def run_ours(a: argparse.Namespace, ids: list[str], tally: Tally) -> dict[str, Any]:
    from losant_async.mqtt import Device, Fleet

    devices = [
        Device(d, "bench-key", "bench-secret", host="127.0.0.1", port=a.port,
               transport="tcp", qos=0, throttle=False)
        for d in ids
    ]

    def handler(cmd: Any) -> None:
        tally.saw(cmd.payload)

    for d in devices:
        d.on_command(handler)
    t0 = time.monotonic()
    async with Fleet(devices, connect_concurrency=100):
        connect_s = time.monotonic() - t0
        print("READY", flush=True)
        with profiled(a.profile):
            await tally.wait(a.idle, a.deadline)
    return tally.result(connect_s)


async def run_aiomqtt(a: argparse.Namespace, ids: list[str], tally: Tally) -> dict[str, Any]:
    import aiomqtt

    quiet = logging.getLogger("bench.aiomqtt")
    quiet.setLevel(logging.ERROR)
    decode = msgspec.json.Decoder().decode

    async def device(did: str, stack: contextlib.AsyncExitStack) -> aiomqtt.Client:
        client = aiomqtt.Client("127.0.0.1", a.port, identifier=did, username="bench-key",
                                password="bench-secret", logger=quiet, clean_session=True,
                                protocol=aiomqtt.ProtocolVersion.V311)
        await stack.enter_async_context(client)
        await client.subscribe(f"losant/{did}/command")
        return client

    async def pump(client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            tally.saw(decode(msg.payload)["payload"])  # type: ignore[arg-type,unused-ignore]

    async with contextlib.AsyncExitStack() as stack:
        t0 = time.monotonic()
        sem = asyncio.Semaphore(100)

        async def connect_one(did: str) -> aiomqtt.Client:
            async with sem:
                return await device(did, stack)

        clients = await asyncio.gather(*(connect_one(d) for d in ids))
        connect_s = time.monotonic() - t0
        tasks = [asyncio.create_task(pump(c), name=f"pump-{i}") for i, c in enumerate(clients)]
        try:
            print("READY", flush=True)
            with profiled(a.profile):
                await tally.wait(a.idle, a.deadline)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return tally.result(connect_s)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", required=True, choices=["ours", "aiomqtt"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--devices", required=True)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--deadline", type=float, default=120.0)
    ap.add_argument("--profile")
    a = ap.parse_args()
    ids = a.devices.split(",")
    raise_fd_limit(len(ids) * 2 + 100)

    async def go() -> dict[str, Any]:
        tally = Tally(a.expect)
        if a.impl == "ours":
            return await run_ours(a, ids, tally)
        return await run_aiomqtt(a, ids, tally)

    run_and_emit(lambda: asyncio.run(go()), ready="READY")


if __name__ == "__main__":
    main()

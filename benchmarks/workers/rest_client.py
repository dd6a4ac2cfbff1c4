"""Cases 4 and 5 clients: send_state at a concurrency for a duration, or a 1,000-device command fan-out.

Implementations: ``ours`` (losant_async LosantClient), ``aiohttp`` (raw, one
session, the same request line, headers and body as a Losant client sends).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from benchmarks._payloads import APP_ID, STATE, device_id
from benchmarks.workers._common import profiled, run_and_emit

QUERY = "?_actions=false&_links=true&_embedded=true"
HEADERS = {
    "Accept": "application/json",
    "Accept-Version": "^1.31.0",
    "Authorization": "Bearer bench-token",
    "Content-Type": "application/json",
}
COMMAND = {"name": "reboot", "payload": {"delay": 5}}
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()


async def timed_loop(
    call: Callable[[int], Awaitable[Any]], concurrency: int, duration: float, profile: str | None
) -> dict[str, Any]:
    """``concurrency`` tasks call ``call`` back to back until the duration is over."""
    for i in range(min(50, concurrency * 2)):
        await call(i)  # warm-up: open the pool's connections
    await asyncio.gather(*(call(i) for i in range(concurrency)))
    done = [0]
    errors: list[str] = []
    end = time.monotonic() + duration

    async def worker(k: int) -> None:
        n = k
        while time.monotonic() < end:
            try:
                await call(n)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            done[0] += 1
            n += concurrency

    t0 = time.monotonic()
    with profiled(profile):
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = time.monotonic() - t0
    doc: dict[str, Any] = {"done": done[0], "elapsed": elapsed}
    if errors:
        doc["error"] = f"{len(errors)} calls failed, first: {errors[0]}"
    return doc


async def bounded(call: Callable[[int], Awaitable[Any]], n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await call(i)

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.monotonic() - t0


async def run_ours(a: argparse.Namespace) -> dict[str, Any]:
    from losant_async.rest import LosantClient

    async with LosantClient("bench-token", url=a.url) as client:
        async def send_state(i: int) -> Any:
            return await client.device.send_state(
                application_id=APP_ID, device_id=device_id(i % 1000),
                device_state={"data": {**STATE, "seq": i}},
            )

        async def send_command(i: int) -> Any:
            return await client.device.send_command(
                application_id=APP_ID, device_id=device_id(i), device_command=COMMAND
            )

        if a.mode == "state":
            return await timed_loop(send_state, a.concurrency, a.duration, a.profile)
        if a.mode == "fanout":
            await send_command(0)
            with profiled(a.profile):
                return {"done": a.devices, "elapsed": await bounded(send_command, a.devices, a.concurrency)}
        # multi: one call naming every device
        ids = [device_id(i) for i in range(a.devices)]
        await client.devices.send_command(application_id=APP_ID, multi_device_command={**COMMAND, "deviceIds": ids})
        t0 = time.monotonic()
        await client.devices.send_command(application_id=APP_ID, multi_device_command={**COMMAND, "deviceIds": ids})
        return {"done": a.devices, "elapsed": time.monotonic() - t0}


async def run_aiohttp(a: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max(100, a.concurrency))
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:
        async def post(path: str, body: Any) -> Any:
            async with session.post(a.url + path + QUERY, data=_enc.encode(body)) as resp:
                data = await resp.read()
                if resp.status >= 400:
                    raise RuntimeError(f"HTTP {resp.status}")
                return _dec.decode(data)

        async def send_state(i: int) -> Any:
            # The same body as ours sends: LosantClient stamps every state without a time.
            return await post(f"/applications/{APP_ID}/devices/{device_id(i % 1000)}/state",
                              {"data": {**STATE, "seq": i}, "time": time.time_ns() // 1_000_000})

        async def send_command(i: int) -> Any:
            return await post(f"/applications/{APP_ID}/devices/{device_id(i)}/command", COMMAND)

        if a.mode == "state":
            return await timed_loop(send_state, a.concurrency, a.duration, a.profile)
        if a.mode == "fanout":
            await send_command(0)
            return {"done": a.devices, "elapsed": await bounded(send_command, a.devices, a.concurrency)}
        raise ValueError("raw aiohttp has no multi-device mode")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["ours", "aiohttp"], required=True)
    ap.add_argument("--mode", choices=["state", "fanout", "multi"], default="state")
    ap.add_argument("--url", required=True)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--profile")
    a = ap.parse_args()
    run_and_emit(lambda: asyncio.run(run_ours(a) if a.impl == "ours" else run_aiohttp(a)))


if __name__ == "__main__":
    main()

"""History backfill: the scenario's values for a past period, with their original times, sent as arrays of states.

Each device's history runs on its type's schedule from ``now - period`` up to
``now``, from the same model that then goes on live (the values continue).
States go in arrays (one message carries many, each with its own time), sized
to stay well under Losant's 256 KB per message; the transport's throttle keeps
the messages within Losant's rate limits when it is on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import anyio

from .._json import encode
from ._fleet import DeviceSpec
from ._model import DeviceModel

__all__ = ["MAX_BACKFILL", "BatchSender", "backfill", "backfill_device", "history"]

MAX_BACKFILL = 30 * 86400.0
"""Seconds of history at most: Losant does not store states older than 30 days."""
_MESSAGE_BUDGET = 128 * 1024
"""Bytes of states per message: half of Losant's 256 KB, so a longer state never overflows it."""
_MAX_BATCH = 1000

BatchSender = Callable[[str, list[dict[str, Any]]], Awaitable[None]]
"""Sends an array of ``{"data", "time"}`` states for one device (one message)."""


def history(spec: DeviceSpec, model: DeviceModel, since_ms: int, until_ms: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """The device's states from ``since_ms`` (inclusive) to ``until_ms`` (exclusive), on its schedule."""
    period_ms = spec.period * 1000.0
    k = 0
    last = since_ms - 1
    while True:
        ms = max(last + 1, since_ms + round(spec.offset * 1000.0 + k * period_ms))
        if ms >= until_ms:
            return
        last = ms
        k += 1
        data = model.next(ms / 1000.0)
        if data:
            yield ms, data


async def backfill_device(send: BatchSender, device_id: str, states: Iterator[tuple[int, dict[str, Any]]],
                          on_sent: Callable[[int], None]) -> None:
    """Send one device's history in arrays sized from its first state; ``on_sent(n)`` after each."""
    batch: list[dict[str, Any]] = []
    size = 0
    limit = _MAX_BATCH
    for ms, data in states:
        state = {"data": data, "time": ms}
        if not batch:
            size = len(encode(state, what="state")) + 1
            limit = max(1, min(_MAX_BATCH, _MESSAGE_BUDGET // size))
        batch.append(state)
        if len(batch) >= limit:
            await send(device_id, batch)
            on_sent(len(batch))
            batch = []
    if batch:
        await send(device_id, batch)
        on_sent(len(batch))


async def backfill(send: BatchSender, devices: Sequence[tuple[str, DeviceSpec, DeviceModel]], since_ms: int,
                   until_ms: int, on_sent: Callable[[str, int], None], concurrency: int = 64) -> None:
    """Every device's history, ``concurrency`` devices at once (each device's arrays in time order)."""
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(device_id: str, spec: DeviceSpec, model: DeviceModel) -> None:
        async with limiter:
            await backfill_device(send, device_id, history(spec, model, since_ms, until_ms),
                                  lambda n: on_sent(device_id, n))

    async with anyio.create_task_group() as tg:
        for device_id, spec, model in devices:
            tg.start_soon(one, device_id, spec, model)

"""Cancellation at any await of a device's life leaves no socket, task or timer behind, and never hangs.

Against a real broker (mosquitto, or amqtt). Each test cancels at many points (random
moments across hundreds of devices, or every turn of the event loop for one), then checks
what is left: this process's open sockets (``/proc/self/fd``) back to where they were, no
task of ours alive, no "Future exception was never retrieved", and the parent finished.
Run on Python 3.10 too (``make test-py310``): there ``asyncio.wait_for`` could drop a
cancellation that landed as a device became ready.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest

from losant_async.mqtt import Device, Fleet, Gateway
from tests.support.brokers import Broker

from .conftest import device_kwargs

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts sockets through /proc")


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:  # closed while listing
            pass
    return count


@contextmanager
def unretrieved_errors() -> Iterator[list[str]]:
    """What the loop's exception handler was given (unretrieved future errors, task errors) meanwhile."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(str(context.get("message"))))
    try:
        yield seen
    finally:
        gc.collect()  # unretrieved futures report when collected
        loop.set_exception_handler(previous)


def our_tasks() -> list[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


@pytest.fixture
async def baseline(broker: Broker) -> AsyncIterator[int]:
    # The broker fixture's own sockets (none for mosquitto: a subprocess) are in the baseline.
    yield open_sockets()


def ids(n: int, prefix: int = 0xC0) -> list[str]:
    return [f"{prefix << 88 | i:024x}" for i in range(n)]


async def test_starts_cancelled_at_random_moments_close_their_connections(broker: Broker, baseline: int) -> None:
    rng = random.Random(19)
    with unretrieved_errors() as errors:
        for round_ in range(3):
            # Every third a Gateway with a peripheral registered before it starts.
            devices = [
                (Gateway if n % 3 == 0 else Device)(i, "key", "secret", **device_kwargs(broker))
                for n, i in enumerate(ids(150, 0xC0 + round_))
            ]
            for n, device in enumerate(devices):
                if isinstance(device, Gateway):
                    await device.peripheral(f"{0xCF << 88 | round_ << 16 | n:024x}")
            tasks = [asyncio.ensure_future(d.start()) for d in devices]
            loop = asyncio.get_running_loop()
            for task in tasks:
                loop.call_later(rng.uniform(0.0, 0.4), task.cancel)
            await asyncio.wait(tasks, timeout=30)
            assert all(t.done() for t in tasks), "a cancelled start did not end"
            # Those that were cancelled closed everything already, before their start raised.
            cancelled = [d for d, t in zip(devices, tasks, strict=True) if t.cancelled()]
            assert cancelled and not any(d.connected for d in cancelled)
            for device in devices:
                await device.aclose()
            assert open_sockets() == baseline
            assert our_tasks() == []
    assert errors == []


async def test_a_start_cancelled_at_every_turn_of_the_loop_leaves_nothing(broker: Broker, baseline: int) -> None:
    # One device, cancelled after 0, 1, 2, ... turns (until one start completes first): every
    # await of start() is hit in turn.
    with unretrieved_errors() as errors:
        turns = 0
        while True:
            device = Device(ids(1, 0xC8)[0], "key", "secret", **device_kwargs(broker))
            task = asyncio.ensure_future(device.start())
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.wait({task}, timeout=30)
            assert task.done()
            started = not task.cancelled()
            if started:
                task.result()
                await device.aclose()
            assert open_sockets() == baseline, f"cancelled after {turns} turns"
            assert our_tasks() == [], f"cancelled after {turns} turns"
            if started:
                break
            # Every turn at first, then faster: the connect thread may take many turns.
            turns = turns + 1 if turns < 40 else int(turns * 1.2)
    assert errors == []


async def test_an_add_to_a_running_fleet_cancelled_at_every_turn_leaves_nothing(broker: Broker, baseline: int) -> None:
    # Fleet.add (a ramp-up) cancelled after 0, 1, 2, ... turns: the device it was starting is
    # closed, the fleet goes on, and leaving the fleet closes what did join.
    with unretrieved_errors() as errors:
        first = Device(ids(1, 0xCA)[0], "key", "secret", **device_kwargs(broker))
        async with Fleet([first], throttle=False) as fleet:
            turns = 0
            while True:
                device = Device(ids(1, 0xCB)[0], "key", "secret", **device_kwargs(broker))
                task = asyncio.ensure_future(fleet.add(device))
                for _ in range(turns):
                    await asyncio.sleep(0)
                task.cancel()
                await asyncio.wait({task}, timeout=30)
                assert task.done()
                if not task.cancelled():
                    task.result()
                    break
                assert not device.connected and first.connected, f"cancelled after {turns} turns"
                assert open_sockets() == baseline + 1, f"cancelled after {turns} turns"  # the first device's
                turns = turns + 1 if turns < 40 else int(turns * 1.2)
            assert device.connected
        assert not device.connected and not first.connected
        assert open_sockets() == baseline
        assert our_tasks() == []
    assert errors == []


@pytest.mark.parametrize("group", [
    "anyio",
    # gather without return_exceptions ends at the first child's cancellation, by design: with
    # it, the parent waits for every child, which is what is measured here.
    "gather",
    pytest.param("taskgroup", marks=pytest.mark.skipif(not hasattr(asyncio, "TaskGroup"), reason="3.11+")),
])
async def test_a_parent_cancelled_while_its_devices_start_finishes(broker: Broker, baseline: int, group: str) -> None:
    rng = random.Random(1919)
    entered = 0

    async def body(device_id: str) -> None:
        nonlocal entered
        async with Device(device_id, "key", "secret", **device_kwargs(broker)):
            entered += 1
            await asyncio.sleep(3600)

    async def parent(device_ids: list[str]) -> None:
        if group == "anyio":
            async with anyio.create_task_group() as tg:
                for device_id in device_ids:
                    tg.start_soon(body, device_id)
        elif group == "taskgroup":
            async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined,unused-ignore]
                for device_id in device_ids:
                    tg.create_task(body(device_id))
        else:
            await asyncio.gather(*(body(d) for d in device_ids), return_exceptions=True)

    with unretrieved_errors() as errors:
        for round_ in range(3):
            task = asyncio.ensure_future(parent(ids(200, 0xD0 + round_)))
            await asyncio.sleep(rng.uniform(0.05, 0.4))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=30)
            assert done, f"the parent did not finish (round {round_}, {entered} devices entered)"
            assert open_sockets() == baseline
            assert our_tasks() == []
    assert errors == []


async def test_a_cancelled_fleet_entry_closes_the_devices_it_started(broker: Broker, baseline: int) -> None:
    rng = random.Random(7)
    with unretrieved_errors() as errors:
        for round_ in range(3):
            devices = [Device(i, "key", "secret", **device_kwargs(broker)) for i in ids(150, 0xE0 + round_)]
            fleet = Fleet(devices, connect_concurrency=25, throttle=False)
            task = asyncio.ensure_future(fleet.__aenter__())
            await asyncio.sleep(rng.uniform(0.05, 0.3))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=30)
            assert done
            if not task.cancelled():  # it finished before the cancellation: leave normally
                await fleet.__aexit__(None, None, None)
            assert not any(d.connected for d in devices)
            assert open_sockets() == baseline
            assert our_tasks() == []
    assert errors == []


async def test_a_cancelled_fleet_exit_closes_every_device_before_it_raises(broker: Broker, baseline: int) -> None:
    rng = random.Random(11)
    with unretrieved_errors() as errors:
        for round_ in range(3):
            devices = [Device(i, "key", "secret", **device_kwargs(broker, qos=1, close_timeout=30))
                       for i in ids(60, 0xE8 + round_)]
            fleet = Fleet(devices, connect_concurrency=20, throttle=False)
            await fleet.__aenter__()
            for device in devices:
                for n in range(50):
                    await device.send_state({"n": n})
            leaving = asyncio.ensure_future(fleet.__aexit__(None, None, None))
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            leaving.cancel()
            done, _ = await asyncio.wait({leaving}, timeout=60)
            assert done
            assert not any(d.connected for d in devices)
            assert open_sockets() == baseline
            assert our_tasks() == []
    assert errors == []


async def test_a_cancelled_close_finishes_closing_before_it_raises(broker: Broker, baseline: int) -> None:
    # Everything queued, nothing can be written (QoS 1 waits for a PUBACK the broker will send):
    # the close is flushing when it is cancelled, stops flushing, and still closes.
    for delay in (0.0, 0.001, 0.01, 0.05):
        device = Device(ids(1, 0xF0)[0], "key", "secret", **device_kwargs(broker, qos=1, close_timeout=30))
        await device.start()
        for n in range(2000):
            await device.send_state({"n": n})
        closing = asyncio.ensure_future(device.aclose())
        await asyncio.sleep(delay)
        closing.cancel()
        done, _ = await asyncio.wait({closing}, timeout=10)
        assert done and (closing.cancelled() or closing.exception() is None)
        assert not device.connected
        assert open_sockets() == baseline
        assert our_tasks() == []


async def test_flush_and_wait_connected_cancelled_raise_cancelled(broker: Broker, baseline: int) -> None:
    async with Gateway(ids(1, 0xF8)[0], "key", "secret", **device_kwargs(broker, qos=1)) as gateway:
        for n in range(500):
            await gateway.send_state({"n": n})
        for call in (lambda: gateway.flush(timeout=30), lambda: gateway.wait_connected(timeout=30)):
            task = asyncio.ensure_future(call())
            await asyncio.sleep(0)
            task.cancel()
            await asyncio.wait({task}, timeout=10)
            assert task.cancelled()
    assert open_sockets() == baseline
    assert our_tasks() == []

"""Distinct timestamps: states the library stamps never share a millisecond, at any call rate."""

from __future__ import annotations

import itertools

import pytest

from losant_async._time import now_ms
from losant_async.mqtt import Device, Gateway

from .conftest import World

pytestmark = pytest.mark.timeout(300)


async def test_ten_thousand_states_in_a_tight_loop_store_ten_thousand_distinct_times(world: World) -> None:
    dev = world.device()
    n = 10_000
    async with world.watch() as watcher, Device(dev.id, dev.key, dev.secret, **world.kwargs(qos=1)) as device:
        before = now_ms()
        for i in range(n):
            await device.send_state({"i": i})
        await device.flush()
        states = await watcher.wait_states(dev.id, n, timeout=240)
    times = {s["time"] for s in states}
    assert len(times) == n
    # In call order, each a millisecond or more after the one before, none before the first call.
    by_i = sorted(states, key=lambda s: s["data"]["i"])
    assert all(a["time"] < b["time"] for a, b in itertools.pairwise(by_i))
    assert by_i[0]["time"] >= before


async def test_explicit_times_are_sent_as_given_even_when_equal(world: World) -> None:
    dev = world.device()
    when = (now_ms() // 1000 - 60) * 1000
    async with world.watch() as watcher, Device(dev.id, dev.key, dev.secret, **world.kwargs(qos=1)) as device:
        await device.send_state({"i": 0}, time=when)
        await device.send_state({"i": 1}, time=when)
        await device.flush()
        states = await watcher.wait_states(dev.id, 2)
    assert [s["time"] for s in states] == [when, when]


async def test_peripherals_get_distinct_stamps_each(world: World) -> None:
    gw = world.device(device_class="gateway")
    p1 = world.device(device_class="peripheral", parent_id=gw.id)
    p2 = world.device(device_class="peripheral", parent_id=gw.id)
    n = 500
    async with world.watch() as watcher, Gateway(gw.id, gw.key, gw.secret, **world.kwargs(qos=1)) as gateway:
        first, second = await gateway.peripheral(p1.id), await gateway.peripheral(p2.id)
        for i in range(n):
            await first.send_state({"i": i})
            await second.send_state({"i": i})
        await gateway.flush()
        await watcher.wait_for(lambda: len(watcher.states(p1.id)) >= n and len(watcher.states(p2.id)) >= n, 60)
    assert len({s["time"] for s in watcher.states(p1.id)}) == n
    assert len({s["time"] for s in watcher.states(p2.id)}) == n

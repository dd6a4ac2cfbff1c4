"""Operable devices: logs and events that name the device, fleet totals, a proxy, a waiting command stream."""

from __future__ import annotations

import asyncio
import logging

import pytest

from losant_async.errors import MQTTError
from losant_async.mqtt import Command, ConnectionState, Device, Fleet
from tests.support.http_proxy import connect_proxy
from tests.support.proxy import CuttableProxy

from .conftest import World

pytestmark = pytest.mark.timeout(90)


async def _until(stream: object, state: ConnectionState) -> None:
    async for event in stream:  # type: ignore[attr-defined]
        if event.state is state:
            return


async def test_logs_of_two_cut_devices_name_each(world: World, caplog: pytest.LogCaptureFixture) -> None:
    a, b = world.device(), world.device()
    caplog.set_level(logging.INFO, logger="losant_async.mqtt")
    async with CuttableProxy(world.port) as proxy:
        kwargs = world.kwargs(port=proxy.port)
        async with Device(a.id, a.key, a.secret, **kwargs) as first, Device(b.id, b.key, b.secret, **kwargs) as second:
            events = [first.events(), second.events()]
            proxy.cut()
            for stream in events:
                await asyncio.wait_for(_until(stream, ConnectionState.DISCONNECTED), 30)
                await asyncio.wait_for(_until(stream, ConnectionState.CONNECTED), 30)
    lost = [r for r in caplog.records if "connection lost" in r.getMessage()]
    for dev in (a, b):
        mine = [r for r in lost if getattr(r, "device_id", None) == dev.id]
        assert mine, f"no 'connection lost' record carries device_id={dev.id}"
        assert all(dev.id in r.getMessage() for r in mine)
    assert "secret" not in caplog.text or a.secret != "secret"  # the emulator's secrets never leak
    assert a.secret not in caplog.text


async def test_events_carry_the_device_id_and_a_time(world: World) -> None:
    dev = world.device()
    device = Device(dev.id, dev.key, dev.secret, **world.kwargs(wait_ready=False))
    events = device.events()
    async with device:
        await device.wait_connected(30)
    seen = [e async for e in events]
    assert {e.device_id for e in seen} == {dev.id}
    assert all(e.at > 1.6e9 for e in seen)
    assert [e.at for e in seen] == sorted(e.at for e in seen)


async def test_fleet_stats_sum_the_devices_stats(world: World) -> None:
    creds = [world.device() for _ in range(3)]
    devices = [Device(c.id, c.key, c.secret, **world.kwargs(qos=1)) for c in creds]
    async with world.watch() as watcher, Fleet(devices) as fleet:
        for n, device in enumerate(devices, start=1):
            for i in range(n):
                await device.send_state({"i": i})
        for device in devices:
            await device.flush(30)
        await watcher.wait_for(lambda: len(watcher.entries) >= 6, 30)
        total = fleet.stats
        assert total.sent == sum(d.stats.sent for d in devices) == 6
        assert total.acked == 6 and total.outbox_depth == 0


async def test_a_device_added_to_a_running_fleet_connects_and_is_closed_with_it(world: World) -> None:
    first, later = world.device(), world.device()
    devices = [Device(first.id, first.key, first.secret, **world.kwargs(qos=1))]
    added = Device(later.id, later.key, later.secret, **world.kwargs(qos=1))
    async with world.watch() as watcher, Fleet(devices) as fleet:
        assert not added.connected
        await fleet.add(added)  # a ramp-up: the fleet grows while it runs
        assert added.connected and len(fleet) == 2 and fleet.connected == 2
        await added.send_state({"i": 1})
        await added.flush(30)
        await watcher.wait_states(later.id, 1, timeout=30)
    assert not added.connected and not devices[0].connected  # leaving the fleet closed both
    with pytest.raises(MQTTError, match="needs an entered fleet"):
        await fleet.add(Device(later.id, later.key, later.secret, **world.kwargs()))


async def test_mqtt_through_an_http_connect_proxy(world: World) -> None:
    pytest.importorskip("socks", reason="proxy support needs PySocks (the 'proxy' extra)")
    dev = world.device()
    async with connect_proxy() as proxy, world.watch() as watcher, Device(
        dev.id, dev.key, dev.secret, **world.kwargs(proxy=f"http://127.0.0.1:{proxy.port}")
    ) as device:
        await device.send_state({"n": 7}, time=1_700_000_000_000 if world.kind == "broker" else None)
        await device.flush()
        states = await watcher.wait_states(dev.id, 1, timeout=30)
    assert states[0]["data"] == {"n": 7}
    assert proxy.tunnels == [f"{world.host}:{world.port}"]


async def test_a_waiting_command_stream_drops_nothing_when_its_consumer_lags(world: World) -> None:
    dev = world.device()
    n = 60
    async with Device(dev.id, dev.key, dev.secret, **world.kwargs(stream_size=5, command_overflow="wait")) as device:
        stream = device.commands()
        for i in range(n):
            await world.send_command(dev.id, "step", {"i": i})
        for _ in range(200):  # loop turns (not time) for any packet already read to be handled
            await asyncio.sleep(0)
        assert len(stream) <= 5, "the device kept reading while its command stream was full"
        got: list[Command] = []
        while len(got) < n:
            got.append(await stream.get(30))
    assert [c.payload for c in got] == [{"i": i} for i in range(n)]
    assert stream.dropped == 0

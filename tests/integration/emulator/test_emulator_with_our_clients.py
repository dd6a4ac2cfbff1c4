"""Our own LosantClient and MQTT Device against the emulator: the flows users run."""

from __future__ import annotations

import asyncio

import pytest

from losant_async._time import now_ms
from losant_async.errors import (
    AuthenticationRefusedError,
    NotFoundError,
    UnauthorizedError,
)
from losant_async.mqtt import Device
from losant_async.rest import DeviceCredentials, LosantClient
from tests.integration.emulator.emulator_support import FakeClock, World


@pytest.fixture
def clock() -> FakeClock:
    # our clients stamp states with the wall clock; the emulator's must agree
    return FakeClock(now_ms())


def device_for(world: World, device_id: str | None = None, secret: str | None = None) -> Device:
    return Device(
        device_id or world.device.id,
        world.key.key,
        secret or world.key.secret,
        host=world.losant.mqtt_host,
        port=world.losant.mqtt_port,
        transport="tcp",
    )


async def test_device_flow_over_rest(world: World) -> None:
    credentials = DeviceCredentials(world.device.id, world.key.key, world.key.secret)
    async with LosantClient(credentials, url=world.losant.rest_url) as client:
        await client.device.send_state(
            application_id=world.app.id, device_id=world.device.id, device_state={"data": {"temperature": 19.5, "on": True}}
        )
        assert credentials.application_id == world.app.id
        composite = await client.device.get_composite_state(application_id=world.app.id, device_id=world.device.id)
        raw = await client.device.get_composite_state(application_id=world.app.id, device_id=world.device.id, raw=True)
    assert raw["temperature"]["value"] == 19.5 and raw["on"]["value"] is True
    assert composite is not None
    assert [s.data for s in world.losant.states(world.device.id)] == [{"temperature": 19.5, "on": True}]


async def test_paginate_devices_across_pages(world: World) -> None:
    for i in range(7):
        world.app.create_device(name=f"bulk-{i:02d}")
    async with LosantClient(world.token, url=world.losant.rest_url) as client:
        first = await client.devices.get(application_id=world.app.id, per_page=3)
        names = [d.name async for d in client.devices.get(application_id=world.app.id, per_page=3)]
    assert first.total_count == 11
    assert len(first.items) == 3
    assert names == sorted(names) and len(names) == 11 and len(set(names)) == 11


async def test_client_errors_map_to_our_exceptions(world: World) -> None:
    async with LosantClient(world.token, url=world.losant.rest_url, max_retries=0) as client:
        with pytest.raises(NotFoundError):
            await client.device.get(application_id=world.app.id, device_id="e" * 24)
        flows = await client.flows.get(application_id=world.app.id, raw=True)
        assert flows["totalCount"] == 0  # every catalog action is emulated: none answers 501
    async with LosantClient("wrong-token", url=world.losant.rest_url, max_retries=0) as client:
        with pytest.raises(UnauthorizedError):
            await client.device.get(application_id=world.app.id, device_id=world.device.id)


async def test_our_device_reports_state_and_receives_a_rest_command(world: World) -> None:
    async with device_for(world) as device:
        assert world.losant.is_connected(world.device.id)
        await device.send_state({"temperature": 21.0, "label": "ok"})
        await world.losant.wait_for_states(world.device.id, 1)
        commands = device.commands()
        async with LosantClient(world.token, url=world.losant.rest_url) as client:
            await client.device.send_command(
                application_id=world.app.id, device_id=world.device.id, device_command={"name": "setLed", "payload": {"on": True}}
            )
        command = await asyncio.wait_for(commands.__anext__(), 5)
    assert (command.name, command.payload) == ("setLed", {"on": True})
    assert command.time is not None
    assert world.losant.composite_state(world.device.id) == {"temperature": 21.0, "label": "ok"}


async def test_our_device_is_refused_with_a_wrong_secret(world: World) -> None:
    with pytest.raises(AuthenticationRefusedError):
        async with device_for(world, secret="not-it"):
            pass


async def test_our_gateway_reports_for_its_peripheral_and_gets_its_commands(world: World) -> None:
    from losant_async.mqtt import Gateway

    async with Gateway(
        world.gateway.id, world.key.key, world.key.secret,
        host=world.losant.mqtt_host, port=world.losant.mqtt_port, transport="tcp",
    ) as gateway:
        peripheral = await gateway.add_peripheral(world.peripheral.id)
        commands = peripheral.commands()
        await peripheral.send_state({"temperature": 5})
        await world.losant.wait_for_states(world.peripheral.id, 1)
        await world.losant.send_command(world.peripheral.id, "blink", {"n": 2})
        command = await asyncio.wait_for(commands.__anext__(), 5)
    assert (command.name, command.payload, command.device_id) == ("blink", {"n": 2}, world.peripheral.id)


async def test_our_device_over_websockets(world: World) -> None:
    port = world.losant.ws_port
    assert port is not None
    async with Device(
        world.device.id, world.key.key, world.key.secret,
        host=world.losant.mqtt_host, port=port, transport="websockets",
    ) as device:
        await device.send_state({"temperature": 1})
        await world.losant.wait_for_states(world.device.id, 1)


@pytest.mark.parametrize("qos", [0, 1])
async def test_every_state_written_before_a_clean_disconnect_is_stored(world: World, qos: int) -> None:
    # amqtt drops its delivery queue when a client leaves: the emulator must store each
    # state as it is queued, so an acknowledged (QoS 1) state is stored by the time the
    # device sees its PUBACK, and a QoS 0 one written before DISCONNECT is stored too.
    devices = [world.app.create_device(name=f"burst-{i}", attributes={"i": "number"}) for i in range(10)]
    start = now_ms() - 60_000  # distinct milliseconds: Losant merges states of the same one
    for dev in devices:
        async with Device(
            dev.id, world.key.key, world.key.secret, host=world.losant.mqtt_host,
            port=world.losant.mqtt_port, transport="tcp", qos=qos,
        ) as device:
            for i in range(50):
                await device.send_state({"i": i}, time=start + i)
            await device.flush()
        if qos == 1:
            assert world.losant.store.accepted_count(dev.id) == 50
    for dev in devices:  # at QoS 0 the device cannot know when its bytes were read
        await world.losant.wait_for_states(dev.id, 50, timeout=5)
    assert [len(world.losant.states(d.id)) for d in devices] == [50] * 10

"""LocalLosant's lifecycle and the pytest fixtures: ready on entry, nothing left behind on exit."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from losant_async.errors import ValidationError
from losant_async.testing import LocalLosant
from losant_async.testing.pytest_plugin import ProvisionedDevice
from tests.integration.emulator.emulator_support import RawMqtt


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # what a server does (asyncio sets it too): TIME_WAIT leftovers do not block a rebind
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_twice_in_one_process_freeing_ports_and_tasks() -> None:
    before = _other_tasks()
    for _ in range(2):
        async with LocalLosant() as losant:
            app = losant.create_application(name="x")
            device = app.create_device(name="d")
            key = app.create_access_key()
            client = await RawMqtt.open(losant.mqtt_port)
            assert await client.connect(device.id, key.key, key.secret) == 0
            async with aiohttp.ClientSession() as session, session.get(
                f"{losant.rest_url}/applications/{app.id}", headers={"Authorization": f"Bearer {app.create_api_token()}"}
            ) as response:
                assert response.status == 200
            ports = [losant.mqtt_port, int(losant.rest_url.rsplit(":", 1)[1]), losant.ws_port]
        # leaving closed the live MQTT connection from the broker's side
        await client.wait_closed()
        await client.close()
        assert all(_port_is_free(p) for p in ports if p)
        assert _other_tasks() - before == set()
    # the same ports again, for real
    async with LocalLosant(rest_port=ports[1], mqtt_port=ports[0], ws_port=ports[2]) as again:
        assert again.mqtt_port == ports[0]


async def test_given_ports_are_used() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with LocalLosant(mqtt_port=port, ws_port=None) as losant:
        assert losant.mqtt_port == port
        assert losant.ws_port is None


async def test_bad_arguments_raise_before_starting() -> None:
    with pytest.raises(ValidationError):
        LocalLosant(rest_port=-1)
    async with LocalLosant(ws_port=None) as losant:
        app = losant.create_application(name="x")
        with pytest.raises(ValidationError, match="device class"):
            app.create_device(name="d", device_class="toaster")
        with pytest.raises(ValidationError, match="parent_id"):
            app.create_device(name="p", device_class="peripheral")
        with pytest.raises(ValidationError):
            app.create_device(name="d", attributes={"t": "decimal"})


async def test_wait_for_states_times_out_naming_the_count(losant_device: ProvisionedDevice) -> None:
    with pytest.raises(TimeoutError, match="0 of 1"):
        await losant_device.emulator.wait_for_states(losant_device.device_id, 1, timeout=0.05)


async def test_the_losant_device_fixture_is_ready_to_use(losant_device: ProvisionedDevice) -> None:
    assert losant_device.secret not in repr(losant_device)
    assert losant_device.api_token not in repr(losant_device)
    client = await RawMqtt.open(losant_device.mqtt_port)
    try:
        assert await client.connect(losant_device.device_id, losant_device.key, losant_device.secret) == 0
        await client.publish(f"losant/{losant_device.device_id}/state", {"data": {"temperature": 20, "on": False, "label": "x"}})
        states = await losant_device.emulator.wait_for_states(losant_device.device_id, 1)
        assert states[0].data == {"temperature": 20, "on": False, "label": "x"}
    finally:
        await client.close()
    async with aiohttp.ClientSession() as session, session.get(
        f"{losant_device.rest_url}/applications/{losant_device.application_id}/devices/{losant_device.device_id}",
        headers={"Authorization": f"Bearer {losant_device.api_token}"},
    ) as response:
        assert response.status == 200


async def test_the_emulator_fixture_starts_empty(losant_emulator: LocalLosant) -> None:
    assert losant_emulator.store.applications == {}
    assert losant_emulator.rest_url.startswith("http://127.0.0.1:")


async def test_leaving_ends_open_event_streams() -> None:
    before = _other_tasks()
    async with aiohttp.ClientSession() as session:
        async with LocalLosant(ws_port=None) as losant:
            app = losant.create_application(name="x")
            device = app.create_device(name="d")
            response = await session.get(
                f"{losant.rest_url}/applications/{app.id}/devices/{device.id}/stateStream",
                headers={"Authorization": f"Bearer {app.create_api_token()}"},
                params={"keepAliveInterval": "60"},
            )
            assert response.status == 200
            assert (await asyncio.wait_for(response.content.readline(), 5)).startswith(b":")
        # the emulator stopped although the client never closed the stream
        rest = await asyncio.wait_for(response.content.read(), 5)
        assert b"event:" not in rest
        response.release()
    assert _other_tasks() - before == set()

"""Fixtures for the emulator's integration tests: a provisioned world and raw MQTT clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from losant_async.testing import LocalLosant
from tests.integration.emulator.emulator_support import FakeClock, RawMqtt, World


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def throttle() -> bool:
    return False


@pytest.fixture(params=["memory", "data_dir"])
def data_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    """Each test of the world runs against both backends: in memory, and a SQLite data directory."""
    return tmp_path / "losant" if request.param == "data_dir" else None


@pytest_asyncio.fixture
async def world(clock: FakeClock, throttle: bool, data_dir: Path | None) -> AsyncIterator[World]:
    async with LocalLosant(clock=clock, throttle=throttle, data_dir=data_dir) as losant:
        app = losant.create_application(name="rules")
        attributes = {"temperature": "number", "on": "boolean", "label": "string"}
        device = app.create_device(name="d1", attributes=attributes, tags={"floor": "3"})
        other = app.create_device(name="d2", attributes=attributes, tags={"floor": "4"})
        gateway = app.create_device(name="gw", device_class="gateway", attributes=attributes)
        peripheral = app.create_device(
            name="p1", device_class="peripheral", parent_id=gateway.id, attributes=attributes
        )
        key = app.create_access_key()
        yield World(losant, clock, app, key, device, other, gateway, peripheral, app.create_api_token())


@pytest_asyncio.fixture
async def mqtt(world: World) -> AsyncIterator[Any]:
    """Opens raw MQTT connections to the world's broker and closes them all afterwards."""
    opened: list[RawMqtt] = []

    async def open_client() -> RawMqtt:
        client = await RawMqtt.open(world.losant.mqtt_port)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.close()

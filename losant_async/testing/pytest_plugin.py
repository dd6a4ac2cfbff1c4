"""pytest fixtures for a local Losant, loaded automatically once losant-async is installed.

Fixtures (function scope, async; need pytest-asyncio or anyio's pytest plugin, and the
``emulator`` extra: ``pip install "losant-async[emulator]"``):

``losant_emulator``
    A running :class:`losant_async.testing.LocalLosant` on 127.0.0.1 with ephemeral
    ports, empty; provision what the test needs (``create_application``, ...).

``losant_device``
    A :class:`ProvisionedDevice`: one application, one access key, an application API
    token (scope ``all.Application``) and one standalone device with attributes
    ``temperature`` (number), ``on`` (boolean) and ``label`` (string). Its fields are
    ``application_id``, ``device_id``, ``key``, ``secret``, ``api_token``, ``rest_url``,
    ``mqtt_host``, ``mqtt_port`` and ``emulator`` (the LocalLosant, to inspect states).

Example::

    async def test_reports(losant_device):
        async with Device(losant_device.device_id, losant_device.key, losant_device.secret,
                          host=losant_device.mqtt_host, port=losant_device.mqtt_port,
                          transport="tcp") as device:
            await device.send_state({"temperature": 21.5})
        await losant_device.emulator.wait_for_states(losant_device.device_id, 1)

Importing this module imports neither amqtt nor aiohttp: the fixtures do, when used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

if TYPE_CHECKING:
    from . import LocalLosant

__all__ = ["ProvisionedDevice", "losant_device", "losant_emulator"]

_F = TypeVar("_F", bound=Callable[..., Any])

try:  # pytest-asyncio's strict mode needs its own decorator; auto mode accepts either
    import pytest_asyncio

    _fixture: Any = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - anyio's plugin handles plain async fixtures
    _fixture = pytest.fixture


def _async_fixture(fn: _F) -> _F:
    return cast(_F, _fixture(fn))


@dataclass(frozen=True, slots=True)
class ProvisionedDevice:
    """What a test needs to talk to the emulator as one device (and as its application)."""

    application_id: str
    device_id: str
    key: str
    secret: str = field(repr=False)
    api_token: str = field(repr=False)
    rest_url: str
    mqtt_host: str
    mqtt_port: int
    emulator: LocalLosant = field(repr=False, compare=False)


@_async_fixture
async def losant_emulator() -> AsyncIterator[LocalLosant]:
    """A running LocalLosant, stopped after the test."""
    try:
        from . import LocalLosant
        from . import _broker as _  # noqa: F401 - fail here, clearly, when amqtt is missing
    except ImportError as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"the Losant emulator needs losant-async[emulator]: {exc}")
    async with LocalLosant() as emulator:
        yield emulator


@_async_fixture
async def losant_device(losant_emulator: LocalLosant) -> ProvisionedDevice:
    """One application with a key, an API token and a standalone device."""
    app = losant_emulator.create_application(name="test-app")
    device = app.create_device(
        name="test-device",
        attributes={"temperature": "number", "on": "boolean", "label": "string"},
    )
    key = app.create_access_key()
    return ProvisionedDevice(
        application_id=app.id,
        device_id=device.id,
        key=key.key,
        secret=key.secret,
        api_token=app.create_api_token(scopes=["all.Application"]),
        rest_url=losant_emulator.rest_url,
        mqtt_host=losant_emulator.mqtt_host,
        mqtt_port=losant_emulator.mqtt_port,
        emulator=losant_emulator,
    )

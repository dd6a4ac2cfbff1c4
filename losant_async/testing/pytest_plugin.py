"""pytest fixtures for a local Losant, loaded automatically once losant-async is installed.

Install ``losant-async[testing]`` (the emulator, pytest and pytest-asyncio).

``losant_emulator``
    A running :class:`losant_async.testing.LocalLosant` on 127.0.0.1 with ephemeral
    ports, empty; provision what the test needs (``create_application``, ...).
    Stopped after the test.

``losant_device``
    A :class:`ProvisionedDevice`: one application, one access key, an application API
    token (scope ``all.Application``) and one standalone device with attributes
    ``temperature`` (number), ``on`` (boolean) and ``label`` (string). Its fields are
    ``application_id``, ``device_id``, ``key``, ``secret``, ``api_token``, ``rest_url``,
    ``mqtt_host``, ``mqtt_port`` and ``emulator`` (the LocalLosant, to inspect states).

Both have function scope and work with either async test runner:

- pytest-asyncio, in its default strict mode (mark the tests
  ``@pytest.mark.asyncio``) or in auto mode; the emulator runs on the test's loop
  (the fixture takes pytest-asyncio's default fixture loop scope, function unless
  ``asyncio_default_fixture_loop_scope`` says otherwise);
- anyio's pytest plugin (``@pytest.mark.anyio``, asyncio backend: the emulator's
  broker is asyncio-only), with pytest-asyncio absent or in strict mode.

Example::

    @pytest.mark.asyncio
    async def test_reports(losant_device):
        async with Device(losant_device.device_id, losant_device.key, losant_device.secret,
                          host=losant_device.mqtt_host, port=losant_device.mqtt_port,
                          transport="tcp") as device:
            await device.send_state({"temperature": 21.5})
        await losant_device.emulator.wait_for_states(losant_device.device_id, 1)

Importing this module imports neither the emulator nor aiohttp: the fixtures do, when used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from .._extras import MissingExtraError, require_extra

if TYPE_CHECKING:
    from . import LocalLosant

__all__ = ["ProvisionedDevice", "losant_device", "losant_emulator"]

try:  # strict mode runs only the async fixtures pytest-asyncio's own decorator made
    import pytest_asyncio

    _asyncio_fixture: Any = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - depends on the environment
    _asyncio_fixture = None


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


async def _running_emulator() -> AsyncIterator[LocalLosant]:
    from . import LocalLosant

    async with LocalLosant() as emulator:
        yield emulator


# The same emulator, set up by whichever runner drives the test: anyio's plugin runs
# plain async fixtures of tests that use `anyio_backend`; pytest-asyncio's strict mode
# runs only fixtures made with its decorator (which marks the function object itself,
# hence two functions).
@pytest.fixture
async def _losant_emulator_anyio() -> AsyncIterator[LocalLosant]:
    async for emulator in _running_emulator():
        yield emulator


async def _emulator_for_pytest_asyncio() -> AsyncIterator[LocalLosant]:
    async for emulator in _running_emulator():
        yield emulator


if _asyncio_fixture is not None:
    _losant_emulator_asyncio = _asyncio_fixture(name="_losant_emulator_asyncio")(_emulator_for_pytest_asyncio)


@pytest.fixture
def losant_emulator(request: pytest.FixtureRequest) -> LocalLosant:
    """A running LocalLosant, stopped after the test."""
    try:
        require_extra("testing", "jsonschema", feature="the losant_emulator fixture")
    except MissingExtraError as exc:
        pytest.fail(str(exc), pytrace=False)
    if "anyio_backend" in request.fixturenames:
        backend = request.getfixturevalue("anyio_backend")
        name = backend if isinstance(backend, str) else backend[0]
        if name != "asyncio":
            pytest.skip(f"the Losant emulator runs on asyncio only, not {name}")
        emulator: LocalLosant = request.getfixturevalue("_losant_emulator_anyio")
        return emulator
    if _asyncio_fixture is None:
        pytest.fail(
            "the losant_emulator fixture needs an async test runner: pytest-asyncio "
            "(pip install 'losant-async[testing]') or anyio's plugin (@pytest.mark.anyio)",
            pytrace=False,
        )
    emulator = request.getfixturevalue("_losant_emulator_asyncio")
    return emulator


@pytest.fixture
def losant_device(losant_emulator: LocalLosant) -> ProvisionedDevice:
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

"""The local Losant: the emulator, for tests, demos and as a development server: REST API and MQTT broker with Losant's rules, on 127.0.0.1.

::

    from losant_async.emulator import LocalLosant

    async with LocalLosant() as losant:
        app = losant.create_application(name="demo")
        device = app.create_device(name="d1", attributes={"temperature": "number"})
        key = app.create_access_key()
        # connect a device to losant.mqtt_host:losant.mqtt_port with client id device.id,
        # username key.key and password key.secret; call REST at losant.rest_url
        await losant.wait_for_states(device.id, 1)

Provisioning is synchronous (an in-memory world); everything that touches the
network is async. The broker is the emulator's own MQTT 3.1.1 server (no extra
dependency: aiohttp serves its WebSocket listener).
"""

from __future__ import annotations

from ._limits import Limits
from ._local import AccessKey, Application, Device, LocalLosant, User
from .store import (
    CommandRecord,
    ConnectionLogEntry,
    Counters,
    StateRecord,
    Store,
    UnknownObjectError,
)

__all__ = [
    "AccessKey",
    "Application",
    "CommandRecord",
    "ConnectionLogEntry",
    "Counters",
    "Device",
    "Limits",
    "LocalLosant",
    "StateRecord",
    "Store",
    "UnknownObjectError",
    "User",
]

"""Static typing checks of the public API: mypy (``make lint``) fails when a revealed type drifts.

Never executed: every call sits in a function that nothing calls.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

from losant_async import Command, Device, Gateway, LosantClient
from losant_async.mqtt import Stream
from losant_async.rest import EventStream, Paginator
from losant_async.rest._generated import models as m

APP = "575ec8687ae143cd83dc4a97"
DEV = "575ecf887ae143cd83dc4aa2"


async def rest_types(client: LosantClient) -> None:
    assert_type(await client.device.get(application_id=APP, device_id=DEV), m.Device)
    assert_type(await client.device.get(application_id=APP, device_id=DEV, raw=True), Any)
    assert_type(
        await client.device.send_state(
            application_id=APP, device_id=DEV, device_state={"data": {"t": 1}}
        ),
        m.Success,
    )
    assert_type(client.devices.get(application_id=APP), Paginator[m.Devices, m.Device])
    assert_type(await client.devices.get(application_id=APP), m.Devices)
    async for device in client.devices.get(application_id=APP, per_page=50):
        assert_type(device, m.Device)
    assert_type(
        client.device.state_stream(application_id=APP, device_id=DEV), EventStream[m.DeviceState]
    )
    # An action that may answer 202 says so in its type.
    assert_type(
        await client.devices.send_command(
            application_id=APP, multi_device_command={"name": "x", "deviceIds": [DEV]}
        ),
        m.Success | m.JobEnqueuedResult,
    )


async def mqtt_types(device: Device, gateway: Gateway) -> None:
    assert_type(device.commands(), Stream[Command])
    async for command in device.commands():
        assert_type(command.name, str)
    assert_type(gateway.peripheral(DEV).commands(), Stream[Command])

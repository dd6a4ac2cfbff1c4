"""Static typing checks of the public API: mypy and pyright (``make lint``) fail when a type drifts.

Never executed: every call sits in a function that nothing calls.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from msgspec import UnsetType
from typing_extensions import assert_type

from losant_async import Command, Device, Gateway, LosantClient
from losant_async.mqtt import Stream
from losant_async.rest import EventStream, Paginator
from losant_async.rest import models as m

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


async def honest_model_types(client: LosantClient, flag: bool) -> None:
    device = await client.device.get(application_id=APP, device_id=DEV)
    # A field every reply carries is its plain type; the others may be UNSET.
    assert_type(device.id, str)
    # `name` because devicePost requires it; the ids and dates because the server assigns them.
    assert_type(device.name, str)
    assert_type(device.name.upper(), str)
    assert_type(device.device_id, str)
    assert_type(device.application_id, str)
    assert_type(device.description, str | UnsetType)
    # Date-time fields are datetimes (aware: AwareDatetime), not strings.
    assert_type(device.creation_date, datetime)
    assert_type(device.last_updated, datetime)
    event = await client.event.get(application_id=APP, event_id=DEV)
    assert_type(event.subject.upper(), str)
    table = await client.data_table.get(application_id=APP, data_table_id=DEV)
    assert_type(table.name, str)
    page = await client.devices.get(application_id=APP)
    assert_type(page.items, list[m.Device])
    # The public module is the same set of classes the client returns.
    assert_type(m.Device, type[m.Device])


async def offset_pages_and_rows(client: LosantClient, path: str) -> None:
    rows = client.data_table_rows.query(application_id=APP, data_table_id=DEV, query={"n": {"$gt": 1}})
    assert_type(rows, Paginator[m.DataTableRows, dict[str, Any]])
    assert_type(await rows, m.DataTableRows)
    async for row in rows:
        # A row's columns are the table's own: its fields are plain dict values.
        assert_type(row, dict[str, Any])
        assert_type(row["temperature"], Any)
    # A whole-collection reply iterates too (one request).
    async for attribute in client.device_attributes.get(application_id=APP, device_id=DEV):
        assert_type(attribute, m.DeviceAttribute)
        assert_type(attribute.name.upper(), str)
    done = await client.files.upload(path, application_id=APP, parent_directory="/x")
    assert_type(done, m.File)
    assert_type(done.name, str)


async def raw_flag_types(client: LosantClient, flag: bool) -> None:
    # A plain bool (not a literal) picks the untyped overload instead of matching nothing.
    assert_type(await client.device.get(application_id=APP, device_id=DEV, raw=flag), Any)
    assert_type(client.devices.get(application_id=APP, raw=flag), Paginator[Any, Any])
    assert_type(
        client.device.state_stream(application_id=APP, device_id=DEV, raw=flag), EventStream[Any]
    )
    assert_type(
        await client.device.get(application_id=APP, device_id=DEV, raw=False), m.Device
    )


async def enum_parameter_types(client: LosantClient) -> None:
    await client.device.get_command(application_id=APP, device_id=DEV, sort_direction="asc")
    # A value outside the enum is a type error (mypy and pyright both honour this ignore).
    await client.device.get_command(application_id=APP, device_id=DEV, sort_direction="up")  # type: ignore[call-overload]


async def paginator_under_aclosing(client: LosantClient) -> None:
    async with contextlib.aclosing(client.devices.get(application_id=APP)) as devices:
        assert_type(devices, Paginator[m.Devices, m.Device])
        async for device in devices:
            assert_type(device, m.Device)
            break
    async with contextlib.aclosing(client.devices.get(application_id=APP).pages()) as pages:
        async for page in pages:
            assert_type(page, m.Devices)


async def mqtt_types(device: Device, gateway: Gateway) -> None:
    assert_type(device.commands(), Stream[Command])
    async for command in device.commands():
        assert_type(command.name, str)
    assert_type((await gateway.peripheral(DEV)).commands(), Stream[Command])

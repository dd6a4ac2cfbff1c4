"""The REST client's behaviours against the Losant emulator (LocalLosant) instead of a scripted server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from losant_async._time import from_epoch_ms, now_ms, parse_losant_time
from losant_async.errors import (
    NotFoundError,
    UnauthorizedError,
    ValidationError,
)
from losant_async.mqtt import Device as MqttDevice
from losant_async.rest import DeviceCredentials, LosantClient
from losant_async.rest import models as m
from losant_async.testing import AccessKey, Application, Device, LocalLosant

pytestmark = pytest.mark.timeout(60)

ATTRIBUTES = {"temperature": "number", "on": "boolean", "label": "string"}


@dataclass
class Emulated:
    """One application with a key, an API token and two devices tagged by floor."""

    losant: LocalLosant
    app: Application
    key: AccessKey
    device: Device
    other: Device
    token: str = field(repr=False)

    def client(self, *, max_retries: int = 3, page_prefetch: int = 4) -> LosantClient:
        return LosantClient(
            self.token, url=self.losant.rest_url, max_retries=max_retries, page_prefetch=page_prefetch
        )


@pytest.fixture
async def emulated() -> AsyncIterator[Emulated]:
    async with LocalLosant() as losant:
        app = losant.create_application(name="rest-suite")
        device = app.create_device(name="d1", attributes=ATTRIBUTES, tags={"floor": "3"})
        other = app.create_device(name="d2", attributes=ATTRIBUTES, tags={"floor": "4"})
        yield Emulated(losant, app, app.create_access_key(), device, other, app.create_api_token())


def recent_ms() -> int:
    """A whole second a minute ago: inside Losant's window for state times."""
    return (now_ms() // 1000 - 60) * 1000


def device_tokens(e: Emulated, device_id: str) -> list[str]:
    return [t.token for t in e.losant.store.tokens.values() if t.kind == "device" and t.device_id == device_id]


async def test_device_credentials_authenticate_then_report(emulated: Emulated) -> None:
    e = emulated
    credentials = DeviceCredentials(e.device.id, e.key.key, e.key.secret)
    assert e.key.secret not in repr(credentials)
    async with LosantClient(credentials, url=e.losant.rest_url) as client:
        await client.device.send_state(
            application_id=e.app.id, device_id=e.device.id, device_state={"data": {"temperature": 19.5}}
        )
    assert credentials.application_id == e.app.id
    assert credentials.device_class == "standalone"
    assert len(device_tokens(e, e.device.id)) == 1
    assert [s.data for s in e.losant.states(e.device.id)] == [{"temperature": 19.5}]


async def test_after_the_server_invalidates_the_token_the_client_authenticates_again(emulated: Emulated) -> None:
    e = emulated
    credentials = DeviceCredentials(e.device.id, e.key.key, e.key.secret)
    async with LosantClient(credentials, url=e.losant.rest_url, max_retries=0) as client:
        await client.device.get_composite_state(application_id=e.app.id, device_id=e.device.id)
        [first] = device_tokens(e, e.device.id)
        del e.losant.store.tokens[first]  # revoked on the server side: the next call gets a 401
        await client.device.send_state(
            application_id=e.app.id, device_id=e.device.id, device_state={"data": {"on": True}}
        )
        [second] = device_tokens(e, e.device.id)
    assert second != first
    assert [s.data for s in e.losant.states(e.device.id)] == [{"on": True}]


async def test_wrong_device_secret_is_unauthorized(emulated: Emulated) -> None:
    e = emulated
    credentials = DeviceCredentials(e.device.id, e.key.key, "not-the-secret")
    async with LosantClient(credentials, url=e.losant.rest_url, max_retries=0) as client:
        with pytest.raises(UnauthorizedError) as info:
            await client.device.get_state(application_id=e.app.id, device_id=e.device.id)
    assert "not-the-secret" not in str(info.value)
    assert device_tokens(e, e.device.id) == []


async def test_send_state_one_and_many_then_read_them_back_typed(emulated: Emulated) -> None:
    e = emulated
    t = recent_ms()
    async with e.client() as client:
        await client.device.send_state(
            application_id=e.app.id, device_id=e.device.id,
            device_state={"data": {"temperature": 20, "label": "first"}, "time": t},
        )
        await client.device.send_state(
            application_id=e.app.id, device_id=e.device.id,
            device_state=[
                {"data": {"temperature": 21.5}, "time": t + 1000},
                {"data": {"on": True, "undefined": 1}, "time": from_epoch_ms(t + 2000)},
            ],
        )
        states = await client.device.get_state(
            application_id=e.app.id, device_id=e.device.id, limit=10, sort_direction="asc"
        )
        composite = await client.device.get_composite_state(application_id=e.app.id, device_id=e.device.id)
    assert all(isinstance(s, m.DeviceState) for s in states)
    assert [s.data for s in states] == [{"temperature": 20, "label": "first"}, {"temperature": 21.5}, {"on": True}]
    assert [parse_losant_time(s.time) for s in states] == [t, t + 1000, t + 2000]
    assert set(composite) == {"temperature", "label", "on"}
    assert all(isinstance(v, m.CompositeDeviceStateValue) for v in composite.values())
    assert composite["temperature"].value == 21.5 and parse_losant_time(composite["temperature"].time) == t + 1000
    assert composite["label"].value == "first" and composite["on"].value is True


async def test_pagination_walks_every_page_with_prefetch(emulated: Emulated) -> None:
    e = emulated
    for i in range(21):
        e.app.create_device(name=f"bulk-{i:02d}")
    in_flight = peak = 0

    async def started(*_: object) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)

    async def ended(*_: object) -> None:
        nonlocal in_flight
        in_flight -= 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(started)
    trace.on_request_end.append(ended)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session, LosantClient(
        e.token, url=e.losant.rest_url, session=session, page_prefetch=3
    ) as client:
        listing = client.devices.get(application_id=e.app.id, per_page=4, sort_field="name", sort_direction="asc")
        first = await listing
        pages = [p async for p in listing.pages()]
        names = [str(d.name) async for d in listing]
    assert peak == 3  # pages after the first were fetched three at a time
    assert first.total_count == 23 and isinstance(first.items, list) and len(first.items) == 4
    assert [len(p.items) if isinstance(p.items, list) else None for p in pages] == [4, 4, 4, 4, 4, 3]
    assert [p.page for p in pages] == [0, 1, 2, 3, 4, 5]
    assert names == sorted(names) and len(set(names)) == 23


async def test_advanced_query_filters_devices(emulated: Emulated) -> None:
    e = emulated
    e.app.create_device(name="gw-1", device_class="gateway", tags={"floor": "3"})
    query = {"$and": [{"tags": {"$tagKey": "floor", "$tagValue": "3"}}, {"deviceClass": "standalone"}]}
    async with e.client() as client:
        found = [d.id async for d in client.devices.get(application_id=e.app.id, query=query)]
        either = {d.name async for d in client.devices.get(
            application_id=e.app.id, query={"$or": [{"name": "d2"}, {"name": {"$startsWith": "gw"}}]}
        )}
    assert found == [e.device.id]
    assert either == {"d2", "gw-1"}


async def test_state_stream_receives_states_sent_over_mqtt_and_rest(emulated: Emulated) -> None:
    e = emulated
    t = recent_ms()
    async with e.client() as client:
        stream = client.device.state_stream(application_id=e.app.id, device_id=e.device.id)
        async with stream, MqttDevice(
            e.device.id, e.key.key, e.key.secret, host=e.losant.mqtt_host, port=e.losant.mqtt_port, transport="tcp"
        ) as device:
            await device.send_state({"temperature": 1}, time=t)
            from_mqtt = await asyncio.wait_for(stream.__anext__(), 10)
            await client.device.send_state(
                application_id=e.app.id, device_id=e.device.id, device_state={"data": {"temperature": 2}, "time": t + 1}
            )
            from_rest = await asyncio.wait_for(stream.__anext__(), 10)
    assert isinstance(from_mqtt, m.DeviceState) and isinstance(from_rest, m.DeviceState)
    assert (from_mqtt.data, parse_losant_time(from_mqtt.time)) == ({"temperature": 1}, t)
    assert (from_rest.data, parse_losant_time(from_rest.time)) == ({"temperature": 2}, t + 1)


async def test_error_statuses_map_to_our_exceptions(emulated: Emulated) -> None:
    e = emulated
    async with e.client(max_retries=0) as client:
        with pytest.raises(NotFoundError) as not_found:
            await client.device.get(application_id=e.app.id, device_id="e" * 24)
        flows = await client.flows.get(application_id=e.app.id, raw=True)
    assert not_found.value.status == 404
    assert flows["items"] == []  # every catalog action is emulated: none answers 501
    async with LosantClient("wrong-token", url=e.losant.rest_url, max_retries=0) as client:
        with pytest.raises(UnauthorizedError) as unauthorized:
            await client.device.get(application_id=e.app.id, device_id=e.device.id)
    assert unauthorized.value.status == 401


async def test_bulk_send_states_gives_one_result_per_item_in_order(emulated: Emulated) -> None:
    e = emulated
    t = recent_ms()
    unknown = "f" * 24
    items: list[tuple[str, Any]] = [
        (e.device.id, {"data": {"temperature": 1}, "time": t}),
        (unknown, {"data": {"temperature": 2}, "time": t}),
        ("not-an-id", {"data": {"temperature": 3}, "time": t}),
        (e.other.id, [{"data": {"temperature": 4}, "time": t}, {"data": {"temperature": 5}, "time": t + 1}]),
        (e.device.id, {"data": {"temperature": "hot"}, "time": t + 1}),
    ]
    async with e.client(max_retries=0) as client:
        results = await client.bulk.send_states(e.app.id, items, concurrency=3)
    assert [r.key for r in results] == [k for k, _ in items]
    assert [r.ok for r in results] == [True, False, False, True, False]
    assert isinstance(results[1].error, NotFoundError)
    assert isinstance(results[2].error, ValidationError)
    assert results[4].error is not None and getattr(results[4].error, "status", None) == 400
    assert [s.data for s in e.losant.states(e.device.id)] == [{"temperature": 1}]
    assert [s.data for s in e.losant.states(e.other.id)] == [{"temperature": 4}, {"temperature": 5}]



async def _table_of(client: LosantClient, e: Emulated, rows: int) -> str:
    table = await client.data_tables.post(
        application_id=e.app.id,
        data_table={"name": "readings", "columns": [{"name": "n", "dataType": "number", "constraint": "required"}]},
    )
    for start in range(0, rows, 500):
        await client.data_table_rows.post(
            application_id=e.app.id,
            data_table_id=table.id,
            data_table_row=[{"n": n} for n in range(start, min(rows, start + 500))],
        )
    return table.id


async def test_async_for_over_a_row_query_reads_every_row_in_pages_of_the_servers_limit(emulated: Emulated) -> None:
    # Losant answers at most `limit` rows (default 1000) per call: 2,500 rows are 3 pages.
    e = emulated
    async with e.client() as client:
        table_id = await _table_of(client, e, 2500)
        query = client.data_table_rows.query(
            application_id=e.app.id, data_table_id=table_id, sort_column="n", query={"n": {"$gte": 0}}
        )
        first = await query  # await: one page, as before
        assert len(first.items) == 1000 and first.total_count == 2500
        pages = [page async for page in query.pages()]
        assert [len(p.items) for p in pages] == [1000, 1000, 500]
        assert [p.offset for p in pages] == [0, 1000, 2000]
        rows = [row async for row in query]
        assert [row["n"] for row in rows] == list(range(2500))


async def test_a_row_listing_pages_from_the_callers_offset_with_the_callers_limit(emulated: Emulated) -> None:
    e = emulated
    async with e.client() as client:
        table_id = await _table_of(client, e, 1200)
        listing = client.data_table_rows.get(
            application_id=e.app.id, data_table_id=table_id, sort_column="n", limit=300, offset=250
        )
        assert [len(p.items) async for p in listing.pages()] == [300, 300, 300, 50]
        assert [row["n"] async for row in listing] == list(range(250, 1200))

"""Hostile callers against the emulator's one access table: no way across applications, and credentials that end.

Findings of issue 20, each a test that failed before the table: an API token of one
application commanding another application's device through ``mqttPublishMessage``,
a device token reading every device's data (and doing so after its device was
deleted), and an access key's MQTT sessions outliving the key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from losant_async.testing import LocalLosant
from tests.integration.emulator.emulator_support import WAIT, RawMqtt

pytestmark = pytest.mark.asyncio


class Two:
    """Two applications, a device and an API token in each, an access key for application 0."""

    def __init__(self, losant: LocalLosant) -> None:
        self.losant = losant
        self.app0 = losant.create_application(name="zero")
        self.app1 = losant.create_application(name="one")
        attributes = {"temperature": "number"}
        self.dev0 = self.app0.create_device(name="d0", attributes=attributes)
        self.sibling = self.app0.create_device(name="d0b", attributes=attributes)
        self.dev1 = self.app1.create_device(name="d1", attributes=attributes)
        self.key0 = self.app0.create_access_key()
        self.token0 = self.app0.create_api_token()
        self.token1 = self.app1.create_api_token()


@pytest_asyncio.fixture
async def two() -> AsyncIterator[Two]:
    async with LocalLosant() as losant:
        yield Two(losant)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, two: Two, method: str, path: str, token: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(
        method, two.losant.rest_url + path, json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status, await response.json(content_type=None)


async def connected(two: Two, device_id: str, key: Any = None) -> RawMqtt:
    key = key or two.key0
    client = await RawMqtt.open(two.losant.mqtt_port)
    assert await client.connect(device_id, key.key, key.secret) == 0
    return client


async def test_a_token_of_one_application_cannot_command_another_applications_device(
    two: Two, http: aiohttp.ClientSession
) -> None:
    """Before: 200, and device 0 of application 0 received application 1's command."""
    device = await connected(two, two.dev0.id)
    try:
        assert await device.subscribe(f"losant/{two.dev0.id}/command") == 0
        path = f"/applications/{two.app1.id}/mqttPublishMessage"
        status, body = await call(
            http, two, "POST", path, two.token1, {"topic": f"losant/{two.dev0.id}/command", "message": '{"name":"evil"}'}
        )
        assert (status, body["type"]) == (403, "Forbidden")
        # the device's own application still reaches it: the first command it hears is this one
        own = f"/applications/{two.app0.id}/mqttPublishMessage"
        status, _ = await call(
            http, two, "POST", own, two.token0, {"topic": f"losant/{two.dev0.id}/command", "message": '{"name":"mine"}'}
        )
        assert status == 200
        topic, payload = await device.next_publish()
        assert (topic, payload) == (f"losant/{two.dev0.id}/command", b'{"name":"mine"}')
    finally:
        await device.close()


async def test_a_device_token_queries_only_its_own_devices_data_and_dies_with_it(
    two: Two, http: aiohttp.ClientSession
) -> None:
    """Before: last-value and time-series queries answered every device of the application,
    and went on doing so after the token's device was deleted."""
    store = two.losant.store
    for device in (two.dev0, two.sibling):
        store.record_state(store.device(device.id), {"data": {"temperature": 20}})
    async with http.post(
        two.losant.rest_url + "/auth/device",
        json={"deviceId": two.dev0.id, "key": two.key0.key, "secret": two.key0.secret},
    ) as response:
        assert response.status == 200
        device_token = (await response.json())["token"]
    base = f"/applications/{two.app0.id}/data"
    status, last = await call(http, two, "POST", f"{base}/last-value-query", device_token, {"attribute": "temperature"})
    assert status == 200 and set(last) == {two.dev0.id}
    status, series = await call(http, two, "POST", f"{base}/time-series-query", device_token, {"aggregation": "NONE"})
    assert status == 200 and set(series["devices"]) == {two.dev0.id}
    # asking for the sibling by id does not widen the view
    status, series = await call(
        http, two, "POST", f"{base}/time-series-query", device_token, {"deviceIds": [two.sibling.id], "aggregation": "NONE"}
    )
    assert status == 200 and series["devices"] == {}

    status, _ = await call(http, two, "DELETE", f"/applications/{two.app0.id}/devices/{two.dev0.id}", two.token0)
    assert status == 200
    status, body = await call(http, two, "POST", f"{base}/last-value-query", device_token, {"attribute": "temperature"})
    assert (status, body["type"]) == (401, "Unauthorized")


@pytest.mark.parametrize("how", ["delete", "deactivate"])
async def test_deleting_or_deactivating_an_access_key_ends_its_mqtt_sessions(
    two: Two, http: aiohttp.ClientSession, how: str
) -> None:
    """Before: the deleted key's session went on publishing and its states were stored."""
    key = two.app0.create_access_key()
    client = await connected(two, two.dev0.id, key)
    bystander = await connected(two, two.sibling.id)  # another key's session is not touched
    try:
        path = f"/applications/{two.app0.id}/keys/{key.id}"
        if how == "delete":
            status, _ = await call(http, two, "DELETE", path, two.token0)
        else:
            status, _ = await call(http, two, "PATCH", path, two.token0, {"status": "inactive"})
        assert status == 200
        await client.wait_closed()
        assert two.losant.counters.mqtt_sessions_revoked == 1
        assert not two.losant.is_connected(two.dev0.id)
        await bystander.ping()
        assert two.losant.is_connected(two.sibling.id)
        log = two.losant.connection_log(two.dev0.id)
        assert log[-1].connected is False and log[-1].reason == "access revoked"
    finally:
        await client.close()
        await bystander.close()


async def test_a_key_removed_behind_the_servers_back_stops_the_next_publish(two: Two) -> None:
    """Keys removed through the store (not REST) are caught on the session's next PUBLISH: nothing is stored."""
    key = two.app0.create_access_key()
    client = await connected(two, two.dev0.id, key)
    try:
        del two.losant.store.keys[key.key]
        await client.publish(f"losant/{two.dev0.id}/state", {"data": {"temperature": 1}})
        await client.wait_closed()
        assert two.losant.states(two.dev0.id) == []
    finally:
        await client.close()


async def test_a_deleted_token_ends_the_streams_it_opened(two: Two, http: aiohttp.ClientSession) -> None:
    token = two.app0.create_api_token(name="streamer")
    record = two.losant.store.token(token)
    assert record is not None
    url = f"{two.losant.rest_url}/applications/{two.app0.id}/devices/{two.dev0.id}/stateStream"
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}, params={"keepAliveInterval": "60"}) as response:
        assert response.status == 200
        assert await response.content.readline() == b": connected\n"
        status, _ = await call(http, two, "DELETE", f"/applications/{two.app0.id}/tokens/{record.id}", two.token0)
        assert status == 200
        rest = await asyncio.wait_for(response.content.read(), WAIT)  # the stream ends: EOF
        assert b"event:" not in rest


async def test_the_table_names_every_rule_it_applies() -> None:
    from losant_async.emulator._access import TABLE

    assert len({rule.who for rule in TABLE}) == len(TABLE)
    assert all(rule.refusal and rule.callers for rule in TABLE)


async def test_a_device_retagged_out_of_its_keys_tags_loses_its_session(two: Two, http: aiohttp.ClientSession) -> None:
    tagged = two.app0.create_device(name="tagged", attributes={"temperature": "number"}, tags={"floor": "3"})
    key = two.app0.create_access_key(device_tags={"floor": "3"})
    client = await connected(two, tagged.id, key)
    try:
        status, _ = await call(
            http, two, "PATCH", f"/applications/{two.app0.id}/devices/{tagged.id}", two.token0,
            {"tags": [{"key": "floor", "value": "4"}]},
        )
        assert status == 200
        await client.wait_closed()
        assert two.losant.counters.mqtt_sessions_revoked == 1
    finally:
        await client.close()

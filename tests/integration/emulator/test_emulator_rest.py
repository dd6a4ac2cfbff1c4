"""The emulator's REST API over real HTTP: statuses, error bodies and shapes checked against spec/schemas."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.integration.emulator.emulator_support import World, assert_schema

GLOBAL = {"_actions": "false", "_links": "true", "_embedded": "true"}


class Api:
    """Raw HTTP calls the way Losant's own clients make them."""

    def __init__(self, session: aiohttp.ClientSession, token: str | None) -> None:
        self.session = session
        self.token = token

    async def call(
        self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None, token: str | None = ...  # type: ignore[assignment]
    ) -> tuple[int, Any]:
        use = self.token if token is ... else token
        headers = {"Accept": "application/json", "Accept-Version": "^1.31.0"}
        if use is not None:
            headers["Authorization"] = f"Bearer {use}"
        query = {**GLOBAL, **(params or {})}
        async with self.session.request(
            method, path, json=body, params=query, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None


@pytest_asyncio.fixture
async def api(world: World) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(world.losant.rest_url) as session:
        yield Api(session, world.token)


def dev_path(world: World, device_id: str | None = None, tail: str = "") -> str:
    return f"/applications/{world.app.id}/devices/{device_id or world.device.id}{tail}"


# -- auth and errors ---------------------------------------------------------------------------


async def test_device_auth_gives_a_device_token(world: World, api: Api) -> None:
    status, body = await api.call(
        "POST", "/auth/device", body={"deviceId": world.device.id, "key": world.key.key, "secret": world.key.secret}, token=None
    )
    assert status == 200
    assert_schema("authedDevice", body)
    assert (body["applicationId"], body["deviceId"], body["deviceClass"]) == (world.app.id, world.device.id, "standalone")
    assert isinstance(body["pubTopics"], list) and isinstance(body["subTopics"], list) and body["filterType"]
    # the device token works for its own device and nothing else
    status, _ = await api.call("POST", dev_path(world, tail="/state"), body={"data": {"temperature": 1}}, token=body["token"])
    assert status == 200
    status, err = await api.call("POST", dev_path(world, world.other.id, "/state"), body={"data": {"temperature": 1}}, token=body["token"])
    assert status == 403
    assert_schema("error", err)


async def test_device_auth_with_a_wrong_secret_is_401(world: World, api: Api) -> None:
    status, body = await api.call(
        "POST", "/auth/device", body={"deviceId": world.device.id, "key": world.key.key, "secret": "nope"}, token=None
    )
    assert status == 401
    assert body["type"] == "Unauthorized" and body["message"]
    assert "nope" not in json.dumps(body)


async def test_user_auth_and_refresh(world: World, api: Api) -> None:
    world.losant.create_user("ada@example.com", "pw-123456")
    status, body = await api.call("POST", "/auth/user", body={"email": "ada@example.com", "password": "pw-123456"}, token=None)
    assert status == 200
    assert_schema("authedUser", body)
    status, refreshed = await api.call("GET", "/me/refreshToken", token=body["token"])
    assert status == 200
    assert_schema("authedUser", refreshed)
    assert refreshed["token"] != body["token"]
    status, _ = await api.call("POST", "/auth/user", body={"email": "ada@example.com", "password": "bad-password"}, token=None)
    assert status == 401
    # a user token lists applications
    status, apps = await api.call("GET", "/applications", token=refreshed["token"])
    assert status == 200
    assert_schema("applications", apps)


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_missing_or_bad_token_is_401(world: World, api: Api, token: str | None) -> None:
    status, body = await api.call("GET", dev_path(world), token=token)
    assert status == 401
    assert body == {"type": "Unauthorized", "message": "Invalid access token"}


async def test_unknown_ids_are_404_not_found(world: World, api: Api) -> None:
    status, body = await api.call("GET", dev_path(world, "a" * 24))
    assert (status, body["type"]) == (404, "NotFound")
    status, body = await api.call("GET", f"/applications/{'b' * 24}")
    assert status in (403, 404)  # the token is bound to its own application
    status, body = await api.call("GET", "/no/such/path")
    assert (status, body["type"]) == (404, "NotFound")


async def test_a_token_without_the_scope_is_403(world: World, api: Api) -> None:
    reader = world.app.create_api_token(scopes=["all.Application.read"])
    status, _ = await api.call("GET", dev_path(world), token=reader)
    assert status == 200
    status, body = await api.call("POST", dev_path(world, tail="/command"), body={"name": "x"}, token=reader)
    assert (status, body["type"]) == (403, "Forbidden")


# -- applications and devices ----------------------------------------------------------------------


async def test_application_get_and_post(world: World, api: Api) -> None:
    status, body = await api.call("GET", f"/applications/{world.app.id}")
    assert status == 200
    assert_schema("application", body)
    assert body["name"] == "rules"
    user = world.losant.create_user("bob@example.com", "pw")
    token = world.losant.user_token(user)
    status, created = await api.call("POST", "/applications", body={"name": "made"}, token=token)
    assert status == 201
    assert_schema("application", created)


async def test_device_list_pages(world: World, api: Api) -> None:
    for i in range(5):
        world.app.create_device(name=f"extra-{i}")
    status, body = await api.call("GET", f"/applications/{world.app.id}/devices", params={"perPage": "3", "page": "1"})
    assert status == 200
    assert_schema("devices", body)
    assert (body["count"], body["totalCount"], body["perPage"], body["page"]) == (3, 9, 3, 1)
    names = [d["name"] for d in body["items"]]
    assert names == ["extra-1", "extra-2", "extra-3"]
    status, last = await api.call("GET", f"/applications/{world.app.id}/devices", params={"perPage": "3", "page": "3"})
    assert (last["count"], last["items"]) == (0, [])


async def test_device_filters_brackets_and_advanced_query(world: World, api: Api) -> None:
    path = f"/applications/{world.app.id}/devices"

    async def names(params: dict[str, str]) -> list[str]:
        status, body = await api.call("GET", path, params=params)
        assert status == 200, body
        return sorted(d["name"] for d in body["items"])

    assert await names({"deviceClass": "gateway"}) == ["gw"]
    assert await names({"deviceClass[0]": "gateway", "deviceClass[1]": "peripheral"}) == ["gw", "p1"]
    assert await names({"tagFilter[0][key]": "floor", "tagFilter[0][value]": "3"}) == ["d1"]
    assert await names({"tagFilter[0][key]": "floor"}) == ["d1", "d2"]
    assert await names({"filterField": "name", "filter": "d*"}) == ["d1", "d2"]
    # catalog, devices.get filterField: "Blank or not provided means no filtering" (issue 21)
    assert await names({"filter": "d*"}) == ["d1", "d2", "gw", "p1"]
    query = {"$or": [{"name": {"$like": "g*"}}, {"tags": {"floor": "4"}}]}
    assert await names({"query": json.dumps(query)}) == ["d2", "gw"]
    query = {"$and": [{"deviceClass": {"$ne": "peripheral"}}, {"id": {"$in": [world.device.id, world.peripheral.id]}}]}
    assert await names({"query": json.dumps(query)}) == ["d1"]
    query = {"name": {"$eq": "p1"}, "deviceClass": "peripheral"}
    assert await names({"query": json.dumps(query)}) == ["p1"]
    status, body = await api.call("GET", path, params={"query": json.dumps({"name": {"$regex": "x"}})})
    assert (status, body["type"]) == (400, "Validation")


async def test_device_post_patch_get_delete(world: World, api: Api) -> None:
    base = f"/applications/{world.app.id}/devices"
    new = {"name": "made", "deviceClass": "standalone", "tags": [{"key": "k", "value": "v"}], "attributes": [{"name": "level", "dataType": "number"}]}
    status, created = await api.call("POST", base, body=new)
    assert status == 201
    assert_schema("device", created)
    path = f"{base}/{created['id']}"
    status, patched = await api.call("PATCH", path, body={"name": "renamed"})
    assert (status, patched["name"]) == (200, "renamed")
    assert_schema("device", patched)
    status, got = await api.call("GET", path)
    assert (status, got["name"], got["attributes"]) == (200, "renamed", [{"name": "level", "dataType": "number"}])
    status, deleted = await api.call("DELETE", path)
    assert (status, deleted) == (200, {"success": True})
    status, _ = await api.call("GET", path)
    assert status == 404
    status, bad = await api.call("POST", base, body={"deviceClass": "standalone"})
    assert (status, bad["type"]) == (400, "Validation")


async def test_deleting_a_device_drops_its_connection(world: World, api: Api, mqtt) -> None:
    client = await mqtt()
    assert await client.connect(world.device.id, world.key.key, world.key.secret) == 0
    assert (await api.call("DELETE", dev_path(world)))[0] == 200
    await client.wait_closed()
    assert not world.losant.is_connected(world.device.id)
    again = await mqtt()
    assert await again.connect(world.device.id, world.key.key, world.key.secret) == 5


async def test_a_body_over_the_size_limit_is_413_in_losants_error_shape(world: World, api: Api) -> None:
    big = {"data": {"label": "x" * (5 * 1024 * 1024)}}
    status, body = await api.call("POST", dev_path(world, tail="/state"), body=big)
    assert status == 413
    assert set(body) == {"type", "message"}


# -- state -----------------------------------------------------------------------------------------


async def test_send_state_one_or_many_and_read_it_back(world: World, api: Api) -> None:
    now = world.clock.now
    status, body = await api.call("POST", dev_path(world, tail="/state"), body={"data": {"temperature": 1}, "time": now - 3000})
    assert (status, body) == (200, {"success": True})
    many = [{"data": {"temperature": 2, "on": True}, "time": now - 2000}, {"data": {"label": "x"}, "time": now - 1000}]
    status, _ = await api.call("POST", dev_path(world, tail="/state"), body=many)
    assert status == 200

    status, latest = await api.call("GET", dev_path(world, tail="/state"))
    assert status == 200
    assert_schema("deviceStates", latest)
    assert [s["data"] for s in latest] == [{"label": "x"}]  # limit defaults to 1, newest first

    status, window = await api.call(
        "GET", dev_path(world, tail="/state"),
        params={"start": str(now - 2500), "end": str(now), "limit": "10", "sortDirection": "asc"},
    )
    assert [s["data"] for s in window] == [{"temperature": 2, "on": True}, {"label": "x"}]

    status, composite = await api.call("GET", dev_path(world, tail="/compositeState"))
    assert status == 200
    assert_schema("compositeDeviceState", composite)
    assert {k: v["value"] for k, v in composite.items()} == {"temperature": 2, "on": True, "label": "x"}
    assert isinstance(composite["temperature"]["value"], int)

    status, devices = await api.call("GET", f"/applications/{world.app.id}/devices/compositeState")
    assert status == 200
    assert_schema("compositeDevicesState", devices)


async def test_composite_state_as_of_an_earlier_time(world: World, api: Api) -> None:
    now = world.clock.now
    states = [{"data": {"temperature": 1}, "time": now - 5000}, {"data": {"temperature": 2}, "time": now - 1000}]
    assert (await api.call("POST", dev_path(world, tail="/state"), body=states))[0] == 200
    status, body = await api.call("GET", dev_path(world, tail="/compositeState"), params={"end": str(now - 2000)})
    assert status == 200
    assert body["temperature"]["value"] == 1
    status, body = await api.call("GET", dev_path(world, tail="/compositeState"), params={"attributes": "on"})
    assert body == {}


async def test_a_wrong_type_is_400_and_nothing_is_stored(world: World, api: Api) -> None:
    states = [{"data": {"temperature": 1}}, {"data": {"temperature": "warm"}}]
    status, body = await api.call("POST", dev_path(world, tail="/state"), body=states)
    assert (status, body["type"]) == (400, "Validation")
    assert "temperature" in body["message"]
    assert world.losant.states(world.device.id) == []


async def test_undefined_attribute_is_ignored_over_rest(world: World, api: Api) -> None:
    status, _ = await api.call("POST", dev_path(world, tail="/state"), body={"data": {"temperature": 1, "nope": 2}})
    assert status == 200
    assert [s.data for s in world.losant.states(world.device.id)] == [{"temperature": 1}]


# -- commands --------------------------------------------------------------------------------------


async def test_a_rest_command_reaches_the_device_over_mqtt(world: World, api: Api, mqtt) -> None:
    client = await mqtt()
    assert await client.connect(world.device.id, world.key.key, world.key.secret) == 0
    assert await client.subscribe(f"losant/{world.device.id}/command") == 0
    status, body = await api.call("POST", dev_path(world, tail="/command"), body={"name": "setLed", "payload": {"on": True}})
    assert (status, body) == (200, {"success": True})
    topic, payload = await client.next_publish()
    message = json.loads(payload)
    assert topic == f"losant/{world.device.id}/command"
    assert (message["name"], message["payload"]) == ("setLed", {"on": True})
    assert message["time"]["$date"].endswith("Z") and len(message["time"]["$date"]) == 24

    status, commands = await api.call("GET", dev_path(world, tail="/command"))
    assert status == 200
    assert_schema("deviceCommands", commands)
    assert [c["name"] for c in commands] == ["setLed"]


async def test_multi_device_command_by_ids_and_by_tags(world: World, api: Api) -> None:
    path = f"/applications/{world.app.id}/devices/command"
    status, _ = await api.call("POST", path, body={"name": "a", "deviceIds": [world.device.id, world.other.id]})
    assert status == 200
    status, _ = await api.call("POST", path, body={"name": "b", "deviceTags": [{"key": "floor", "value": "4"}]})
    assert status == 200
    assert [c.name for c in world.losant.commands_sent(world.device.id)] == ["a"]
    assert [c.name for c in world.losant.commands_sent(world.other.id)] == ["a", "b"]
    status, body = await api.call("POST", path, body={"name": "c"})
    assert (status, body["type"]) == (400, "Validation")


# -- connection status and log ------------------------------------------------------------------------


async def test_connection_status_and_log(world: World, api: Api) -> None:
    path = dev_path(world, tail="/setConnectionStatus")
    assert (await api.call("POST", path, body={"status": "connected"}))[0] == 200
    world.clock.advance(1000)
    assert (await api.call("POST", path, body={"status": "disconnected", "disconnectReason": "bye"}))[0] == 200
    status, log = await api.call("GET", dev_path(world, tail="/logs"), params={"limit": "5"})
    assert status == 200
    assert_schema("deviceLog", log)
    assert [(e["connected"], e.get("disconnectReason")) for e in log] == [(0, "bye"), (1, None)]
    status, device = await api.call("GET", dev_path(world))
    assert device["connectionInfo"]["connected"] == 0


# -- server-sent events -------------------------------------------------------------------------------


async def _next_event(response: aiohttp.ClientResponse) -> tuple[str | None, str | None, bool]:
    """(event, data, saw_comment) of the next SSE event block."""
    event = data = None
    comment = False
    while True:
        line = (await asyncio.wait_for(response.content.readline(), 5)).decode().rstrip("\n")
        if line == "":
            if event or data:
                return event, data, comment
            continue
        if line.startswith(":"):
            comment = True
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()


async def test_state_stream_sees_a_state_published_over_mqtt(world: World, api: Api, mqtt) -> None:
    headers = {"Authorization": f"Bearer {world.token}"}
    async with api.session.get(dev_path(world, tail="/stateStream"), headers=headers, params={"keepAliveInterval": "0.1"}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        client = await mqtt()
        assert await client.connect(world.device.id, world.key.key, world.key.secret) == 0
        await client.publish(f"losant/{world.device.id}/state", {"data": {"temperature": 42}})
        event, data, _ = await _next_event(response)
        assert event == "deviceState"
        assert data is not None and json.loads(data)["data"] == {"temperature": 42}
        assert_schema("deviceState", json.loads(data))


async def test_command_stream_sees_commands_and_keepalives(world: World, api: Api) -> None:
    headers = {"Authorization": f"Bearer {world.token}"}
    async with api.session.get(dev_path(world, tail="/commandStream"), headers=headers, params={"keepAliveInterval": "0.05"}) as response:
        assert response.status == 200
        line = await asyncio.wait_for(response.content.readline(), 5)
        assert line.startswith(b":")
        await world.losant.send_command(world.device.id, "ping", [1, 2])
        event, data, _ = await _next_event(response)
        assert event == "deviceCommand"
        assert data is not None and json.loads(data)["payload"] == [1, 2]


# -- attributes, keys, tokens ---------------------------------------------------------------------------


async def test_device_attributes_crud(world: World, api: Api) -> None:
    base = dev_path(world, tail="/attributes")
    status, listing = await api.call("GET", base)
    assert status == 200
    assert_schema("deviceAttributes", listing)
    assert {a["name"] for a in listing["items"]} == {"temperature", "on", "label"}
    status, created = await api.call("POST", base, body={"name": "level", "dataType": "number"})
    assert status == 201
    assert_schema("deviceAttribute", created)
    status, got = await api.call("GET", f"{base}/level")
    assert (status, got["dataType"]) == (200, "number")
    status, patched = await api.call("PATCH", f"{base}/level", body={"description": "fill level"})
    assert (status, patched["description"]) == (200, "fill level")
    assert (await api.call("DELETE", f"{base}/level"))[0] == 200
    status, missing = await api.call("GET", f"{base}/level")
    assert (status, missing["type"]) == (404, "NotFound")


async def test_application_keys_crud_and_the_new_key_connects(world: World, api: Api, mqtt) -> None:
    base = f"/applications/{world.app.id}/keys"
    status, created = await api.call("POST", base, body={"deviceIds": [world.device.id], "description": "one device"})
    assert status == 201
    assert_schema("applicationKeyPostResponse", created)
    status, listing = await api.call("GET", base)
    assert status == 200
    assert_schema("applicationKeys", listing)
    assert all("secret" not in k for k in listing["items"])
    status, got = await api.call("GET", f"{base}/{created['id']}")
    assert status == 200
    assert_schema("applicationKey", got)
    client = await mqtt()
    assert await client.connect(world.device.id, created["key"], created["secret"]) == 0
    assert (await api.call("DELETE", f"{base}/{created['id']}"))[0] == 200
    again = await mqtt()
    assert await again.connect(world.device.id, created["key"], created["secret"]) == 5


async def test_application_api_tokens(world: World, api: Api) -> None:
    base = f"/applications/{world.app.id}/tokens"
    status, created = await api.call("POST", base, body={"name": "ci", "scope": ["all.Application.read"]})
    assert status == 201
    assert_schema("apiToken", created)
    status, listing = await api.call("GET", base)
    assert status == 200
    assert_schema("apiTokens", listing)
    assert "ci" in [t["name"] for t in listing["items"]]
    status, _ = await api.call("GET", dev_path(world), token=created["token"])
    assert status == 200


# -- data queries ------------------------------------------------------------------------------------------


async def test_time_series_and_last_value_queries(world: World, api: Api) -> None:
    now = world.clock.now
    for i, value in enumerate([1, 3, 5]):
        world.losant.store.record_state(world.losant.store.devices[world.device.id], {"data": {"temperature": value}, "time": now - 3000 + i * 1000})
    path = f"/applications/{world.app.id}/data/time-series-query"
    status, raw = await api.call("POST", path, body={"aggregation": "NONE", "deviceIds": [world.device.id], "duration": 60_000})
    assert status == 200
    assert_schema("timeSeriesData", raw)
    assert [p["data"]["temperature"] for p in raw["devices"][world.device.id]["points"]] == [1, 3, 5]
    status, mean = await api.call(
        "POST", path,
        body={"aggregation": "MEAN", "resolution": 60_000, "start": now - 60_000, "end": now, "deviceIds": [world.device.id], "attributes": ["temperature"]},
    )
    assert status == 200
    assert_schema("timeSeriesData", mean)
    assert [p["data"]["temperature"] for p in mean["devices"][world.device.id]["points"]] == [3.0]

    status, last = await api.call(
        "POST", f"/applications/{world.app.id}/data/last-value-query",
        body={"attribute": "temperature", "deviceTags": [{"key": "floor", "value": "3"}]},
    )
    assert status == 200
    assert_schema("lastValueData", last)
    assert last[world.device.id]["data"] == {"temperature": 5}


class TestRestThrottle:
    @pytest.fixture
    def throttle(self) -> bool:
        return True

    async def test_31st_send_state_in_15_s_is_429_with_retry_after(self, world: World, api: Api) -> None:
        for i in range(30):
            status, _ = await api.call("POST", dev_path(world, tail="/state"), body={"data": {"temperature": i}, "time": world.clock.now - i})
            assert status == 200
        status, body = await api.call("POST", dev_path(world, tail="/state"), body={"data": {"temperature": 99}})
        assert (status, body["type"]) == (429, "TooManyRequests")
        async with api.session.post(
            dev_path(world, tail="/state"), json={"data": {"temperature": 99}}, headers={"Authorization": f"Bearer {world.token}"}
        ) as response:
            assert response.headers["Retry-After"] == "15"
        assert len(world.losant.states(world.device.id)) == 30
        world.clock.advance(15_000)
        status, _ = await api.call("POST", dev_path(world, tail="/state"), body={"data": {"temperature": 100}})
        assert status == 200

"""Issue 21, item 2: list and query parameters with the semantics the catalog and Losant's docs give them.

Each docstring quotes the catalog (``/work/shared/losant-api/catalog.json``, API 1.31, the text
docs.losant.com/rest-api shows) or the schema the behaviour comes from."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from losant_async.emulator._rest._listing import list_params
from losant_async.emulator._routes import load_routes
from losant_async.testing import LocalLosant

pytestmark = pytest.mark.timeout(120)


@dataclass
class Api:
    losant: LocalLosant
    session: aiohttp.ClientSession
    token: str
    app_id: str

    async def call(self, method: str, path: str, body: Any = None, *, auth: bool = True, **query: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        params = {k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in query.items()}
        async with self.session.request(method, self.losant.rest_url + path, json=body, headers=headers, params=params) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None)

    async def ok(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        status, out = await self.call(method, path, body, **query)
        assert 200 <= status < 300, (path, status, out)
        return out

    def a(self, path: str = "") -> str:
        return f"/applications/{self.app_id}{path}"


@pytest_asyncio.fixture
async def api() -> AsyncIterator[Api]:
    async with LocalLosant() as losant:
        user = losant.create_user("q@example.com", "Query!Passw0rd#1")
        app = losant.create_application(name="queries", owner=user)
        gw = app.create_device(name="gw", device_class="gateway", tags={"floor": "1"})
        app.create_device(name="p1", device_class="peripheral", parent_id=gw.id, tags={"floor": "2"})
        app.create_device(name="d1", tags={"floor": "3"}, attributes={"on": "boolean", "t": "number"})
        token = losant.store.add_token(application_id=None, scopes=["all.User"], kind="user", user_id=user.id).token
        async with aiohttp.ClientSession() as session:
            yield Api(losant, session, token, app.id)


async def _names(api: Api, **query: Any) -> list[str]:
    out = await api.ok("GET", api.a("/devices"), **query)
    return sorted(d["name"] for d in out["items"])


async def test_device_query_overrides_filter_device_class_tag_filter_and_parent(api: Api) -> None:
    """devices.get ``query``: "Device filter JSON object which overrides the filterField, filter,
    deviceClass, tagFilter, and parentId parameters." The emulator used to AND them (empty lists)."""
    query = {"name": "d1"}
    assert await _names(api, query=query) == ["d1"]
    assert await _names(api, query=query, deviceClass="gateway", filterField="name", filter="gw") == ["d1"]
    assert await _names(api, query=query, **{"tagFilter[0][key]": "floor", "tagFilter[0][value]": "1"}) == ["d1"]
    gateway = (await api.ok("GET", api.a("/devices"), query={"name": "gw"}))["items"][0]
    assert await _names(api, query=query, parentId=gateway["id"]) == ["d1"]
    assert await _names(api, parentId=gateway["id"]) == ["p1"]  # without query, parentId filters


async def test_blank_filter_field_means_no_filtering(api: Api) -> None:
    """devices.get ``filterField``: "Blank or not provided means no filtering. Accepted values are: name"."""
    assert await _names(api, filter="g*") == ["d1", "gw", "p1"]
    assert await _names(api, filterField="", filter="g*") == ["d1", "gw", "p1"]
    assert await _names(api, filterField="name", filter="g*") == ["gw"]
    status, out = await api.call("GET", api.a("/devices"), filterField="description", filter="x")
    assert (status, out["type"]) == (400, "Validation")


async def test_event_query_overrides_filter_and_state(api: Api) -> None:
    """events.get ``query``: "Event filter JSON object which overrides the filterField, filter, and state parameters"."""
    for subject, level in (("boiler hot", "error"), ("pump ok", "info")):
        await api.ok("POST", api.a("/events"), {"subject": subject, "level": level})

    async def subjects(**query: Any) -> list[str]:
        return sorted(e["subject"] for e in (await api.ok("GET", api.a("/events"), **query))["items"])

    assert await subjects(state="acknowledged") == []
    assert await subjects(query={"level": "error"}, state="acknowledged", filterField="subject", filter="pump*") == ["boiler hot"]
    assert await subjects(filter="pump*") == ["boiler hot", "pump ok"]  # no filterField: no filtering
    assert await subjects(filterField="subject", filter="pump*") == ["pump ok"]
    # events.mostRecentBySeverity ``filter``: "Filter to apply against event subjects"
    recent = await api.ok("GET", api.a("/events/mostRecentBySeverity"), filter="pump*")
    assert recent["event"]["subject"] == "pump ok" and recent["newCount"] == 1


async def test_boolean_aggregations_count_true_as_one_and_false_as_zero(api: Api) -> None:
    """docs.losant.com/data-explorer/aggregations: booleans aggregate as 1 (true) and 0 (false)."""
    device = (await api.ok("GET", api.a("/devices"), query={"name": "d1"}))["items"][0]
    now = api.losant.store.clock()
    start = now - 60_000
    for offset, on in ((1000, True), (2000, True), (3000, False), (4000, True)):
        await api.ok("POST", api.a(f"/devices/{device['id']}/state"), {"data": {"on": on}, "time": start + offset})
    expected = {"MEAN": 0.75, "SUM": 3.0, "MIN": 0.0, "MAX": 1.0, "MEDIAN": 1.0, "STD_DEV": pytest.approx(0.4330127)}
    for aggregation, value in expected.items():
        body = {"start": start, "end": now, "resolution": 60_000, "aggregation": aggregation, "attributes": ["on"], "deviceIds": [device["id"]]}
        out = await api.ok("POST", api.a("/data/time-series-query"), body)
        points = out["devices"][device["id"]]["points"]
        assert [p["data"]["on"] for p in points] == [value], aggregation


async def test_tags_and_attributes_as_objects(api: Api) -> None:
    """devices.get/device.get ``tagsAsObject``: "Return tags as an object map instead of an array";
    ``attributesAsObject`` likewise (API 1.31). Tags map a key to its values (a key may repeat)."""
    out = await api.ok("GET", api.a("/devices"), query={"name": "d1"}, tagsAsObject="true", attributesAsObject="true")
    device = out["items"][0]
    assert device["tags"] == {"floor": ["3"]}
    assert set(device["attributes"]) == {"on", "t"} and device["attributes"]["t"]["dataType"] == "number"
    one = await api.ok("GET", api.a(f"/devices/{device['id']}"), tagsAsObject="true")
    assert one["tags"] == {"floor": ["3"]} and isinstance(one["attributes"], list)


async def test_query_deleted_lists_no_devices_since_deletion_is_final(api: Api) -> None:
    """devices.get ``queryDeleted``: "return recently deleted devices instead"; the emulator deletes for good."""
    assert await _names(api, queryDeleted="true") == []


async def test_malformed_path_id_is_a_400_validation(api: Api) -> None:
    """Path parameters carry the pattern ``^[A-Fa-f\\d]{24}$`` in the catalog: a malformed id is a
    validation error, not a missing object."""
    status, out = await api.call("GET", "/applications/not-an-id/devices")
    assert (status, out["type"]) == (400, "Validation") and "applicationId" in out["message"]
    status, out = await api.call("GET", api.a("/devices/not-an-id"))
    assert (status, out["type"]) == (400, "Validation") and "deviceId" in out["message"]
    status, out = await api.call("GET", api.a("/devices/" + "e" * 24))
    assert (status, out["type"]) == (404, "NotFound")


async def test_schema_invalid_auth_user_body_is_a_400(api: Api) -> None:
    """userCredentials schema: email (format email) and password (minLength 8) required, no other fields."""
    for body in ({"email": "q@example.com"}, {"email": "q@example.com", "password": "short"}, {"email": "q@example.com", "password": "Query!Passw0rd#1", "x": 1}):
        status, out = await api.call("POST", "/auth/user", body, auth=False)
        assert (status, out["type"]) == (400, "Validation"), body
    status, out = await api.call("POST", "/auth/user", {"email": "q@example.com", "password": "wrong-password"}, auth=False)
    assert status == 401
    status, out = await api.call("POST", "/auth/user", {"email": "q@example.com", "password": "Query!Passw0rd#1"}, auth=False)
    assert status == 200 and out["token"]


async def test_data_table_csv_export_writes_true_false_and_iso_dates(api: Api) -> None:
    """Losant's data table exports write booleans as true/false and dates as ISO 8601 (not Python's False)."""
    columns = [{"name": "ok", "dataType": "boolean", "constraint": "optional"}, {"name": "n", "dataType": "number", "constraint": "optional"}]
    table = await api.ok("POST", api.a("/data-tables"), {"name": "t", "columns": columns})
    await api.ok("POST", api.a(f"/data-tables/{table['id']}/rows"), {"ok": False, "n": 1})
    await api.ok("POST", api.a(f"/data-tables/{table['id']}/rows"), {"ok": True})
    await api.ok("POST", api.a(f"/data-tables/{table['id']}/rows/export"), {})
    job = next(j for j in (await api.ok("GET", api.a("/jobLogs")))["items"] if j["status"] == "completed")
    async with api.session.get(job["output"]["url"]) as response:
        rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert sorted(r["ok"] for r in rows) == ["false", "true"]
    assert sorted(r["n"] for r in rows) == ["", "1"]
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    assert all(iso.match(r["createdAt"]) for r in rows)


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _list_actions() -> list[tuple[str, str]]:
    """(action, path) of every list action the catalog gives accepted sortField values."""
    return [
        (route.full_name, route.path)
        for route in load_routes().routes
        if route.method == "GET" and list_params(route.full_name).sort_fields
    ]


async def test_every_list_accepts_its_documented_sort_fields_and_refuses_others(api: Api) -> None:
    """Each list action's ``sortField``: "Accepted values are: ..." (catalog); ``sortDirection`` asc/desc;
    ``page``/``perPage`` echoed. A field not listed is a 400 Validation; so is a ``filterField`` not listed."""
    user_id = api.losant.store.tokens[api.token].user_id
    instance = api.losant.add_object("instances", {"name": "i"})
    api.losant.add_object("instance_members", {"userId": user_id, "role": "admin"}, instanceId=instance["id"])
    org = await api.ok("POST", f"/instances/{instance['id']}/orgs", {"name": "o"})  # its creator is its admin
    flow = await api.ok("POST", api.a("/flows"), {"name": "f", "triggers": [], "nodes": []})
    device = (await api.ok("GET", api.a("/devices")))["items"][0]
    ids = {"applicationId": api.app_id, "orgId": org["id"], "instanceId": instance["id"], "flowId": flow["id"], "deviceId": device["id"]}
    actions = _list_actions()
    assert len(actions) >= 40
    for name, path in actions:
        url = _PLACEHOLDER.sub(lambda m: ids[m.group(1)], path)
        required = {"flows.get_by_version": {"version": "develop"}}.get(name, {})
        for field in list_params(name).sort_fields or ():
            status, out = await api.call("GET", url, sortField=field, sortDirection="desc", page=0, perPage=5, **required)
            assert status == 200, (name, field, out)
            if isinstance(out, dict) and "sortField" in out:
                assert (out["sortField"], out["sortDirection"], out.get("perPage", 5)) == (field, "desc", 5), name
        status, out = await api.call("GET", url, sortField="notAField", **required)
        assert (status, out["type"]) == (400, "Validation"), name
        status, out = await api.call("GET", url, sortDirection="sideways", **required)
        assert status == 400, name
        if list_params(name).filter_fields:
            status, out = await api.call("GET", url, filterField="notAField", filter="x", **required)
            assert (status, out["type"]) == (400, "Validation"), name


async def test_device_recipes_answer_tags_and_attributes_as_objects_too(api: Api) -> None:
    """device_recipes.get/post and device_recipe.get/patch take tagsAsObject/attributesAsObject (catalog, API 1.31)."""
    body = {"name": "r", "deviceName": "d", "deviceClass": "standalone", "tags": [{"key": "k", "value": "v"}],
            "attributes": [{"name": "t", "dataType": "number"}]}
    made = await api.ok("POST", api.a("/device-recipes"), body, tagsAsObject="true")
    assert made["tags"] == {"k": ["v"]} and isinstance(made["attributes"], list)
    listed = await api.ok("GET", api.a("/device-recipes"), attributesAsObject="true")
    assert listed["items"][0]["attributes"]["t"]["dataType"] == "number"
    plain = await api.ok("GET", api.a(f"/device-recipes/{made['id']}"))
    assert plain["tags"] == [{"key": "k", "value": "v"}]

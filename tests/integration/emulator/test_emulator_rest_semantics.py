"""The emulator's REST semantics end to end through LosantClient: data tables, events, files, MQTT, bulk device
actions, exports, me, experience users, webhooks and key topic filters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from losant_async.errors import BadRequestError, NotFoundError, UnauthorizedError
from losant_async.rest import LosantClient
from losant_async.testing import AccessKey, Application, Device, LocalLosant
from tests.integration.emulator.emulator_support import RawMqtt

pytestmark = pytest.mark.timeout(120)
WAIT = 10


@dataclass
class Env:
    losant: LocalLosant
    app: Application
    device: Device
    key: AccessKey
    client: LosantClient


@pytest_asyncio.fixture
async def env(data_dir: Path | None) -> AsyncIterator[Env]:
    async with LocalLosant(data_dir=data_dir) as losant:
        app = losant.create_application(name="sem")
        device = app.create_device(name="d1", attributes={"temperature": "number"}, tags={"floor": "3"})
        key = app.create_access_key()
        async with LosantClient(app.create_api_token(), url=losant.rest_url, max_retries=0) as client:
            yield Env(losant, app, device, key, client)


async def _download(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.read()


async def _job_output(env: Env) -> dict[str, object]:
    logs = await env.client.application_job_logs.get(application_id=env.app.id, raw=True)
    done = [entry for entry in logs["items"] if entry["status"] == "completed"]
    assert done, logs
    output: dict[str, object] = done[-1]["output"]
    return output


async def test_data_table_rows_are_typed_queried_patched_deleted_and_exported(env: Env) -> None:
    c, app_id = env.client, env.app.id
    columns = [
        {"name": "sku", "dataType": "string", "constraint": "unique"},
        {"name": "qty", "dataType": "number", "constraint": "optional", "defaultValue": 0},
    ]
    table = await c.data_tables.post(application_id=app_id, data_table={"name": "stock", "columns": columns}, raw=True)
    t = table["id"]
    rows = await c.data_table_rows.post(
        application_id=app_id, data_table_id=t, data_table_row=[{"sku": "a", "qty": 5}, {"sku": "b"}, {"sku": "c", "qty": 9}], raw=True
    )
    assert [r["qty"] for r in rows] == [5, 0, 9] and all(len(r["id"]) == 24 for r in rows)
    with pytest.raises(BadRequestError, match="sku"):
        await c.data_table_rows.post(application_id=app_id, data_table_id=t, data_table_row={"sku": "a"})
    with pytest.raises(BadRequestError, match="qty"):
        await c.data_table_rows.post(application_id=app_id, data_table_id=t, data_table_row={"sku": "z", "qty": "many"})
    with pytest.raises(BadRequestError, match="colour"):
        await c.data_table_rows.post(application_id=app_id, data_table_id=t, data_table_row={"sku": "z", "colour": "red"})
    found = await c.data_table_rows.query(
        application_id=app_id, data_table_id=t, query={"qty": {"$gte": 5}}, sort_column="qty", sort_direction="desc", raw=True
    )
    assert [r["sku"] for r in found["items"]] == ["c", "a"] and found["totalCount"] == 2
    page = await c.data_table_rows.get(application_id=app_id, data_table_id=t, limit=1, offset=1, sort_column="sku", raw=True)
    assert [r["sku"] for r in page["items"]] == ["b"] and page["totalCount"] == 3
    patched = await c.data_table_row.patch(application_id=app_id, data_table_id=t, row_id=rows[1]["id"], data_table_row={"qty": 2}, raw=True)
    assert patched["qty"] == 2 and patched["sku"] == "b"
    await c.data_table_rows.export(application_id=app_id, data_table_id=t, export_data={"query": {"sku": {"$ne": "c"}}}, raw=True)
    csv_text = (await _download(str((await _job_output(env))["url"]))).decode()
    assert csv_text.splitlines()[0].startswith("id,createdAt,updatedAt,sku,qty")
    assert sorted(line.split(",")[3] for line in csv_text.splitlines()[1:]) == ["a", "b"]
    removed = await c.data_table_rows.delete(application_id=app_id, data_table_id=t, query={"sku": "a"}, raw=True)
    assert removed == {"removed": 1}
    await c.data_table_rows.truncate(application_id=app_id, data_table_id=t, raw=True)
    assert (await c.data_table_rows.get(application_id=app_id, data_table_id=t, raw=True))["totalCount"] == 0


async def test_events_are_created_acknowledged_resolved_and_ranked_by_severity(env: Env) -> None:
    c, app_id = env.client, env.app.id
    made = [
        await c.events.post(application_id=app_id, event={"subject": s, "level": lvl, "deviceId": env.device.id}, raw=True)
        for s, lvl in (("hot", "warning"), ("fire", "critical"), ("note", "info"))
    ]
    assert all(e["state"] == "new" and e["deviceName"] == "d1" for e in made)
    top = await c.events.most_recent_by_severity(application_id=app_id, raw=True)
    assert top["newCount"] == 3 and top["event"]["subject"] == "fire"
    acked = await c.event.patch(application_id=app_id, event_id=made[1]["id"], event={"state": "acknowledged", "comment": "on it"}, raw=True)
    assert acked["state"] == "acknowledged"
    assert acked["updates"][-1]["comment"] == "on it" and acked["updates"][-1]["stateChange"] == {"old": "new", "new": "acknowledged"}
    top = await c.events.most_recent_by_severity(application_id=app_id, raw=True)
    assert top["newCount"] == 2 and top["event"]["subject"] == "hot"
    await c.events.patch(application_id=app_id, state="new", updates={"state": "resolved"}, raw=True)
    listed = await c.events.get(application_id=app_id, state="resolved", raw=True)
    assert sorted(e["subject"] for e in listed["items"]) == ["hot", "note"]
    assert (await c.events.most_recent_by_severity(application_id=app_id, raw=True))["newCount"] == 0
    await c.events.export(application_id=app_id, export_data={}, raw=True)
    csv_text = (await _download(str((await _job_output(env))["url"]))).decode()
    assert len(csv_text.splitlines()) == 4
    removed = await c.events.delete(application_id=app_id, query={"level": "info"}, raw=True)
    assert removed == {"removed": 1}


async def test_files_upload_in_two_steps_or_multipart_then_list_and_download(env: Env) -> None:
    c, app_id = env.client, env.app.id
    created = await c.files.post(application_id=app_id, file={"name": "a.txt", "type": "file", "contentType": "text/plain"}, raw=True)
    assert created["status"] == "pending"
    upload = created["upload"]
    form = aiohttp.FormData()
    for name, value in upload["fields"].items():
        form.add_field(name, value)
    form.add_field("file", b"hello", filename="a.txt", content_type="text/plain")
    async with aiohttp.ClientSession() as session, session.post(upload["url"], data=form) as response:
        assert response.status == 204
    got = await c.file.get(application_id=app_id, file_id=created["id"], raw=True)
    assert (got["status"], got["fileSize"]) == ("completed", 5)
    assert await _download(got["url"]) == b"hello"
    second = await c.files.post(application_id=app_id, file={"name": "b.bin", "type": "file"}, raw=True)
    uploaded = await c.file.upload(application_id=app_id, file_id=second["id"], file=("b.bin", b"\x00\x01"), raw=True)
    assert uploaded["fileSize"] == 2 and await _download(uploaded["url"]) == b"\x00\x01"
    listed = await c.files.get(application_id=app_id, status="completed", raw=True)
    assert sorted(f["name"] for f in listed["items"]) == ["a.txt", "b.bin"]
    await c.file.delete(application_id=app_id, file_id=created["id"], raw=True)
    with pytest.raises(NotFoundError):
        await c.file.get(application_id=app_id, file_id=created["id"])


async def test_mqtt_publish_reaches_broker_subscribers_and_the_subscription_stream(env: Env) -> None:
    c, app_id = env.client, env.app.id
    listener = await RawMqtt.open(env.losant.mqtt_port)
    try:
        assert await listener.connect(env.device.id, env.key.key, env.key.secret) == 0
        await listener.subscribe("custom/+")
        stream = c.application.mqtt_subscription_stream(application_id=app_id, topic="custom/#", keep_alive_interval=1)
        async with stream:
            first = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0.2)  # let the stream attach before publishing (events are not replayed)
            await c.application.mqtt_publish_message(application_id=app_id, payload={"topic": "custom/a", "message": "hi"}, raw=True)
            assert await listener.next_publish(WAIT) == ("custom/a", b"hi")
            event = await asyncio.wait_for(first, WAIT)
            assert (event.topic, event.message) == ("custom/a", "hi")
            await listener.publish("custom/b", b"from-device")
            event = await asyncio.wait_for(stream.__anext__(), WAIT)
            assert (event.topic, event.message) == ("custom/b", "from-device")
    finally:
        await listener.close()


async def test_devices_patched_and_deleted_by_query_and_data_exported(env: Env) -> None:
    c, app_id = env.client, env.app.id
    other = env.app.create_device(name="d2", tags={"floor": "4"})
    await c.device.send_state(application_id=app_id, device_id=env.device.id, device_state={"data": {"temperature": 21}}, raw=True)
    updated = await c.devices.patch(application_id=app_id, patch_info={"query": {"name": "d1"}, "updateFields": {"description": "first"}}, raw=True)
    assert updated["updated"] == 1
    assert (await c.device.get(application_id=app_id, device_id=env.device.id, raw=True))["description"] == "first"
    await c.data.export(application_id=app_id, query={"deviceIds": [env.device.id]}, raw=True)
    csv_text = (await _download(str((await _job_output(env))["url"]))).decode()
    assert csv_text.splitlines()[0] == "deviceId,deviceName,time,temperature"
    assert csv_text.splitlines()[1].startswith(f"{env.device.id},d1,") and csv_text.splitlines()[1].endswith(",21")
    removed = await c.devices.delete(application_id=app_id, options={"query": {"name": "d2"}}, raw=True)
    assert removed["removed"] == 1
    with pytest.raises(NotFoundError):
        await c.device.get(application_id=app_id, device_id=other.id)


async def test_me_and_experience_users_and_groups(env: Env) -> None:
    user = env.losant.create_user("ada@example.com", "Ada!Passw0rd#1")
    async with LosantClient(env.losant.user_token(user), url=env.losant.rest_url, max_retries=0) as c:
        me = await c.me.get(raw=True)
        assert (me["id"], me["email"]) == (user.id, "ada@example.com")
        assert (await c.me.patch(user={"firstName": "Ada", "lastName": "L"}, raw=True))["fullName"] == "Ada L"
    c, app_id = env.client, env.app.id
    group = await c.experience_groups.post(application_id=app_id, experience_group={"name": "ops"}, raw=True)
    eu = await c.experience_users.post(
        application_id=app_id,
        experience_user={"email": "Op@Example.com", "password": "secret-pw-1", "experienceGroupIds": [group["id"]]},
        raw=True,
    )
    assert "password" not in eu and eu["email"] == "op@example.com"
    assert [g["name"] for g in eu["experienceGroups"]] == ["ops"]
    with pytest.raises(BadRequestError, match="email"):
        await c.experience_users.post(application_id=app_id, experience_user={"email": "op@example.com", "password": "x-pw-12345"})
    members = await c.experience_users.get(application_id=app_id, experience_group_id=group["id"], raw=True)
    assert [u["id"] for u in members["items"]] == [eu["id"]]
    got = await c.experience_group.get(application_id=app_id, experience_group_id=group["id"], raw=True)
    assert got["experienceUserIds"] == [eu["id"]]


async def test_a_webhook_records_the_requests_posted_to_its_url(env: Env) -> None:
    hook = await env.client.webhooks.post(application_id=env.app.id, webhook={"name": "in", "responseCode": 202}, raw=True)
    url = env.losant.webhook_url(hook["token"])
    async with aiohttp.ClientSession() as session, session.post(f"{url}/sub?x=1", json={"v": 1}) as response:
        assert response.status == 202
    recorded = env.losant.webhook_requests(hook["id"])
    assert len(recorded) == 1
    assert (recorded[0]["method"], recorded[0]["path"], recorded[0]["query"], recorded[0]["body"]) == ("POST", "/sub", {"x": "1"}, b'{"v": 1}')
    async with aiohttp.ClientSession() as session, session.post(env.losant.webhook_url("unknown")) as response:
        assert response.status == 404


async def test_auth_device_returns_the_keys_topic_filter(env: Env) -> None:
    made = await env.client.application_keys.post(
        application_id=env.app.id,
        application_key={"filterType": "whitelist", "pubTopics": ["out/#"], "subTopics": ["in/+"]},
        raw=True,
    )
    assert (made["filterType"], made["pubTopics"], made["subTopics"]) == ("whitelist", ["out/#"], ["in/+"])
    async with LosantClient(None, url=env.losant.rest_url, max_retries=0) as anonymous:
        authed = await anonymous.auth.authenticate_device(
            credentials={"deviceId": env.device.id, "key": made["key"], "secret": made["secret"]}, raw=True
        )
    assert (authed["filterType"], authed["pubTopics"], authed["subTopics"]) == ("whitelist", ["out/#"], ["in/+"])
    record = env.losant.store.keys[made["key"]]
    assert (record.filter_type, record.pub_topics, record.sub_topics) == ("whitelist", ("out/#",), ("in/+",))
    patched = await env.client.application_key.patch(
        application_id=env.app.id, application_key_id=made["id"], application_key={"filterType": "blacklist"}, raw=True
    )
    assert patched["filterType"] == "blacklist" and record.filter_type == "blacklist"


async def test_deleting_an_application_deletes_everything_under_it_and_missing_parents_are_404(env: Env) -> None:
    c, app_id = env.client, env.app.id
    table = await c.data_tables.post(application_id=app_id, data_table={"name": "t", "columns": []}, raw=True)
    await c.data_table_rows.post(application_id=app_id, data_table_id=table["id"], data_table_row={}, raw=True)
    flow = await c.flows.post(application_id=app_id, flow={"name": "f"}, raw=True)
    await c.flow_versions.post(application_id=app_id, flow_id=flow["id"], flow_version={"version": "v1"}, raw=True)
    with pytest.raises(NotFoundError, match="Flow was not found"):
        await c.flow_versions.get(application_id=app_id, flow_id="0" * 24)
    other = env.losant.create_application(name="kept")
    kept = env.losant.add_object("data_tables", {"name": "kept"}, applicationId=other.id)
    user = env.losant.create_user("root@example.com", "Root!Passw0rd#1")
    async with LosantClient(env.losant.user_token(user), url=env.losant.rest_url, max_retries=0) as admin:
        assert await admin.application.delete(application_id=app_id, raw=True) == {"success": True}
        with pytest.raises(NotFoundError, match="Application was not found"):
            await admin.data_tables.get(application_id=app_id)
    docs = env.losant.store.docs
    assert list(docs.get("data_tables", {})) == [kept["id"]]
    assert not docs.get("flows") and not docs.get("flow_versions") and f"rows:{table['id']}" not in docs
    assert env.device.id not in env.losant.store.devices and not any(k.application_id == app_id for k in env.losant.store.keys.values())


async def test_a_users_api_token_acts_as_that_user_until_revoked(env: Env) -> None:
    user = env.losant.create_user("tok@example.com", "Tok!Passw0rd#1")
    mine = env.losant.create_application(name="mine", owner=user)
    async with LosantClient(env.losant.user_token(user), url=env.losant.rest_url, max_retries=0) as c:
        made = await c.user_api_tokens.post(api_token={"name": "ci"}, raw=True)
        assert made["ownerId"] == user.id and made["token"]
        assert [t["name"] for t in (await c.user_api_tokens.get(raw=True))["items"]] == ["ci"]
    async with LosantClient(made["token"], url=env.losant.rest_url, max_retries=0) as ci:
        assert (await ci.application.get(application_id=mine.id, raw=True))["id"] == mine.id
        await ci.user_api_token.delete(api_token_id=made["id"], raw=True)
        with pytest.raises(UnauthorizedError):
            await ci.application.get(application_id=mine.id)


async def test_removing_device_data_forgets_the_states_in_the_window(env: Env) -> None:
    c, app_id, device_id = env.client, env.app.id, env.device.id
    now = env.losant.store.clock()
    states = [{"data": {"temperature": t}, "time": now - 3000 + t} for t in (1, 2, 3)]
    await c.device.send_state(application_id=app_id, device_id=device_id, device_state=states, raw=True)
    await c.device.remove_data(application_id=app_id, device_id=device_id, start=now - 3000, end=now - 3000 + 2, raw=True)
    assert [s.data for s in env.losant.states(device_id)] == [{"temperature": 3}]
    await c.devices.remove_data(application_id=app_id, options={"query": {"name": "d1"}}, raw=True)
    assert env.losant.states(device_id) == [] and env.losant.composite_state(device_id) == {}


async def test_a_flows_storage_entries_are_set_read_and_cleared(env: Env) -> None:
    c, app_id = env.client, env.app.id
    flow = await c.flows.post(application_id=app_id, flow={"name": "f"}, raw=True)
    for key, value in (("count", 3), ("cfg", {"on": True})):
        await c.flow.set_storage_entry(application_id=app_id, flow_id=flow["id"], entry={"key": key, "value": value}, raw=True)
    assert await c.flow.get_storage_entries(application_id=app_id, flow_id=flow["id"], raw=True) == {"count": 3, "cfg": {"on": True}}
    meta = await c.flow.get_storage_entries_metadata(application_id=app_id, flow_id=flow["id"], raw=True)
    assert meta["keysCount"] == 2 and meta["memoryUsed"] > 0
    assert (await c.flow.clear_storage_entries(application_id=app_id, flow_id=flow["id"], raw=True))["count"] == 3
    assert await c.flow.get_storage_entries(application_id=app_id, flow_id=flow["id"], raw=True) == {}

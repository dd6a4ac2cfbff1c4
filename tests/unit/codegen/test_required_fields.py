"""Replies must carry the fields their schema requires; date-time fields are aware datetimes.

Issue 11 finding 5 (a ``{}`` or a proxy's ``{"message": ...}`` with status 200
decoded into an empty ``Device()``) and issue 12's honest types.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from aioresponses import aioresponses

from losant_async import _json
from losant_async.errors import DecodeError
from losant_async.rest import LosantClient
from losant_async.rest import models as m
from tests.unit.rest.rest_unit_helpers import APP_ID, BASE, DEVICE_ID, device_json, result
from tools.codegen import generate

ID = "575ecf887ae143cd83dc4aa2"


@pytest.fixture
def replies() -> Iterator[list[bytes]]:
    """Bodies answered with status 200 to every GET, in order (the last one repeats)."""
    bodies: list[bytes] = []

    def answer(url: Any, **_: Any) -> Any:
        body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
        return result(200, body, {"Content-Type": "application/json"})

    with aioresponses() as mocked:
        mocked.get(re.compile(r".*"), callback=answer, repeat=True)
        yield bodies


@pytest.fixture
async def client() -> AsyncIterator[LosantClient]:
    async with LosantClient("tok-SECRET-123", url=BASE, max_retries=0) as c:
        yield c


@pytest.mark.parametrize("body", [b"{}", b'{"message": "Service Unavailable"}'])
async def test_finding_05_foreign_reply_is_decode_error(
    client: LosantClient, replies: list[bytes], body: bytes
) -> None:
    replies.append(body)
    with pytest.raises(DecodeError) as caught:
        await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)
    message = str(caught.value)
    assert "device.get" in message  # the action
    assert "`id`" in message  # the field the reply lacks
    assert caught.value.raw == body


async def test_a_device_reply_with_its_id_still_decodes(
    client: LosantClient, replies: list[bytes]
) -> None:
    replies.append(msgspec.json.encode(device_json(ID, zzNewField=1)))
    device = await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)
    assert device.id == ID and device.name == "pump"
    assert device.description is msgspec.UNSET


async def test_a_page_without_items_is_decode_error(
    client: LosantClient, replies: list[bytes]
) -> None:
    replies.append(b'{"count": 0}')
    with pytest.raises(DecodeError, match=r"devices\.get.*`items`"):
        await client.devices.get(application_id=APP_ID)


def test_a_required_nested_field_is_enforced_and_named_with_its_path() -> None:
    # device's schema requires `key` and `value` in each tag: the error names the field and where.
    with pytest.raises(DecodeError) as caught:
        _json.decode(b'{"id": "%s", "tags": [{"key": "floor"}]}' % ID.encode(), m.Device)
    assert "`value`" in str(caught.value)
    assert caught.value.path == "$.tags[0]"


def test_schema_required_fields_have_no_default_in_reply_structs() -> None:
    fields = {f.encode_name: f for f in msgspec.structs.fields(m.DeviceTagsItem)}
    assert fields["key"].required and fields["value"].required
    assert fields["key"].default is msgspec.NODEFAULT


def test_request_structs_keep_every_field_optional() -> None:
    # devicePost's schema requires `name`, but a request body may be built partially.
    assert all(not f.required for f in msgspec.structs.fields(m.DevicePost))
    assert msgspec.json.encode(m.DevicePost()) == b"{}"


def test_date_time_fields_decode_as_aware_datetimes() -> None:
    device = _json.decode(
        msgspec.json.encode(
            device_json(ID, creationDate="2026-01-02T03:04:05.678Z", lastUpdated="2026-01-02T05:04:05+02:00")
        ),
        m.Device,
    )
    assert device.creation_date == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    assert isinstance(device.last_updated, datetime)
    assert device.last_updated.utcoffset() == timedelta(hours=2)
    assert device.last_updated == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_a_date_time_without_a_zone_is_decode_error() -> None:
    with pytest.raises(DecodeError, match="timezone"):
        _json.decode(b'{"id": "%s", "creationDate": "2026-01-02T03:04:05"}' % ID.encode(), m.Device)


def test_an_aware_datetime_encodes_back_to_iso_8601() -> None:
    body = m.ApiTokenPost(expiration_date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert msgspec.json.decode(msgspec.json.encode(body)) == {"expirationDate": "2026-01-02T03:04:05Z"}


def test_the_record_counts_the_new_rules() -> None:
    record = msgspec.json.decode(generate()["_record.json"])
    rules = record["rules"]
    enforced = [
        f
        for name in m.__all__
        if isinstance(getattr(m, name), type) and issubclass(getattr(m, name), m.LosantModel)
        for f in msgspec.structs.fields(getattr(m, name))
        if f.required
    ]
    by_rule = ("required_enforced", "required_create", "required_server", "required_inferred_id", "required_inferred_items")
    assert sum(rules.get(name, 0) for name in by_rule) == len(enforced)
    assert rules["date_time_aware"] > 100
    assert rules["enum_param_literal"] > 100
    assert rules["required_kept_optional_request_struct"] > 0


@pytest.mark.parametrize("missing", ["name", "deviceId", "applicationId", "creationDate", "lastUpdated"])
async def test_a_device_reply_without_a_field_it_always_carries_is_decode_error(
    client: LosantClient, replies: list[bytes], missing: str
) -> None:
    # `name`: devicePost requires it (create rule); the others the server assigns (server rule).
    body = device_json(ID)
    del body[missing]
    replies.append(msgspec.json.encode(body))
    with pytest.raises(DecodeError) as caught:
        await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)
    assert "device.get" in str(caught.value)
    assert f"`{missing}`" in str(caught.value)


def test_the_rules_make_the_create_and_server_fields_required() -> None:
    record = msgspec.json.decode(generate()["_record.json"])
    by_rule = record["required_by_rule"]
    assert {"Device.name", "DataTable.name", "Event.level", "Event.subject"} <= set(by_rule["create"])
    assert {"Device.id", "Device.device_id", "Device.application_id", "Device.creation_date"} <= set(by_rule["server"])
    # Dashboards belong to a user or an organization; their applicationId stays optional.
    assert "Dashboard.application_id" not in by_rule["server"]
    dashboard = {f.encode_name: f.required for f in msgspec.structs.fields(m.Dashboard)}
    assert dashboard["name"] and dashboard["dashboardId"] and not dashboard["applicationId"]
    # A request body's Struct still requires nothing.
    assert not any(f.required for f in msgspec.structs.fields(m.DevicePost))

"""Emulated device actions over many devices: patch and delete by query, and the device and data exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from ...errors import ValidationError
from .._query import device_matches
from ..store import BlobRecord, DeviceRecord, new_id
from . import _engine
from ._common import Call, Handler, Server, iso
from ._csv import csv_row


def _matching(srv: Server, call: Call, body: dict[str, Any], *, query_key: str = "query") -> list[DeviceRecord]:
    app_id = call.params["applicationId"]
    devices = [d for d in srv.store.devices.values() if d.application_id == app_id]
    ids = body.get("deviceIds")
    if ids is not None:
        wanted = set(ids)
        devices = [d for d in devices if d.id in wanted]
    tags = body.get("deviceTags")
    if tags is not None:
        pairs = srv.store.parse_tags(tags)
        devices = [d for d in devices if any(p in d.tags for p in pairs)]
    query = body.get(query_key)
    if query is not None:
        devices = [d for d in devices if device_matches(d, query)]
    return devices


def _body(call: Call) -> dict[str, Any]:
    body = _engine.check_body(call)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body


async def devices_patch(srv: Server, call: Call) -> web.Response:
    """``updateFields`` applied to every device the ``deviceIds``/``query`` select (all checked first)."""
    body = _body(call)
    if body.get("deviceIds") is None and body.get("query") is None:
        raise ValidationError("give deviceIds or query: which devices to patch")
    fields = body.get("updateFields") or {}
    attributes = srv.store.parse_attributes(fields["attributes"]) if "attributes" in fields else None
    tags = srv.store.parse_tags(fields["tags"]) if "tags" in fields else None
    targets = _matching(srv, call, body)
    now = srv.store.clock()
    for device in targets:
        if "name" in fields:
            device.name = fields["name"]
        if "description" in fields:
            device.description = str(fields["description"])
        if attributes is not None:
            device.attributes = dict(attributes)
        if tags is not None:
            device.tags = list(tags)
        if "deviceClass" in fields:
            device.device_class = fields["deviceClass"]
        device.updated = now
    return _engine.reply(call.route.full_name, {"updated": len(targets), "failed": 0, "skipped": 0})


async def devices_delete(srv: Server, call: Call) -> web.Response:
    """Every device the ``query`` selects, with its history; their connections are dropped."""
    body = _body(call)
    if body.get("query") is None:
        raise ValidationError("query: which devices to delete")
    targets = _matching(srv, call, body)
    for device in targets:
        srv.store.remove_device(device.id)
        if srv.on_device_deleted is not None:
            await srv.on_device_deleted(device.id)
    return _engine.reply(call.route.full_name, {"removed": len(targets), "failed": 0})


async def devices_restore(srv: Server, call: Call) -> web.Response:
    """Deletion is final in the emulator (no soft delete): nothing to restore."""
    _body(call)
    return _engine.reply(call.route.full_name, {"restored": 0, "failed": 0})


def _serve_csv(srv: Server, name: str, columns: list[str], rows: Iterable[dict[str, Any]]) -> tuple[str, int]:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(csv_row(row))
        count += 1
    blob_id = new_id()
    srv.store.blobs[blob_id] = BlobRecord(name, "text/csv", text.getvalue().encode())
    return f"{srv.base_url}/_emulator/blobs/{blob_id}", count


async def devices_export(srv: Server, call: Call) -> web.Response:
    """The selected devices as CSV (id, name, class, tags), a completed job."""
    body = _body(call)
    devices = _matching(srv, call, body)
    rows = (
        {
            "id": d.id,
            "name": d.name,
            "deviceClass": d.device_class,
            "description": d.description,
            "tags": ";".join(f"{k}={v}" for k, v in d.tags),
            "attributes": ";".join(d.attributes),
        }
        for d in devices
    )
    url, count = _serve_csv(srv, "devices.csv", ["id", "name", "deviceClass", "description", "tags", "attributes"], rows)
    return _engine.reply(call.route.full_name, _engine.job(srv, call, "Device export", result={"url": url, "devices": count}))


def _window(srv: Server, body: dict[str, Any], call: Call) -> tuple[int | None, int | None]:
    now = srv.store.clock()

    def stamp(raw: Any) -> int | None:
        if raw is None or raw == "":
            return None
        value = int(float(raw))
        return now + value if value <= 0 else value

    try:
        return stamp(body.get("start", call.q("start"))), stamp(body.get("end", call.q("end")))
    except (TypeError, ValueError):
        raise ValidationError("start and end are epoch milliseconds (0 or negative: relative to now)") from None


def _state_rows(srv: Server, devices: list[DeviceRecord], attributes: list[str] | None, start: int | None, end: int | None) -> tuple[list[str], list[dict[str, Any]]]:
    names = attributes or sorted({a for d in devices for a in d.attributes})
    rows: list[dict[str, Any]] = []
    for device in devices:
        for record in srv.store.states(device.id, start=start, end=end, descending=False):
            rows.append({"deviceId": device.id, "deviceName": device.name, "time": iso(record.time), **record.data})
    return ["deviceId", "deviceName", "time", *names], rows


async def data_export(srv: Server, call: Call) -> web.Response:
    """Stored states of the selected devices as CSV, a completed job."""
    body = _body(call)
    devices = _matching(srv, call, body, query_key="deviceQuery")
    start, end = _window(srv, body, call)
    columns, rows = _state_rows(srv, devices, body.get("attributes"), start, end)
    url, count = _serve_csv(srv, "data.csv", columns, rows)
    return _engine.reply(call.route.full_name, _engine.job(srv, call, "Data export", result={"url": url, "states": count}))


async def device_export(srv: Server, call: Call) -> web.Response:
    body = _body(call)
    device = srv.store.device(call.params["deviceId"], call.params["applicationId"])
    start, end = _window(srv, body, call)
    columns, rows = _state_rows(srv, [device], body.get("attributes"), start, end)
    url, count = _serve_csv(srv, f"{device.name}.csv", columns, rows)
    return _engine.reply(call.route.full_name, _engine.job(srv, call, "Device data export", result={"url": url, "states": count}))


async def device_remove_data(srv: Server, call: Call) -> web.Response:
    """The device's stored state between ``start`` and ``end`` (all of it by default) is forgotten."""
    device = srv.store.device(call.params["deviceId"], call.params["applicationId"])
    start, end = _window(srv, {}, call)
    removed = srv.store.remove_states(device.id, start=start, end=end)
    return _engine.reply(call.route.full_name, _engine.job(srv, call, "Device data removal", result={"states": removed}))


async def devices_remove_data(srv: Server, call: Call) -> web.Response:
    """Stored state of the devices ``query`` selects, between ``start`` and ``end``, for ``attributes``."""
    body = _body(call)
    start, end = _window(srv, body, call)
    removed = sum(
        srv.store.remove_states(d.id, start=start, end=end, attributes=body.get("attributes"))
        for d in _matching(srv, call, body)
    )
    return _engine.reply(call.route.full_name, _engine.job(srv, call, "Devices data removal", result={"states": removed}))


HANDLERS: dict[str, Handler] = {
    "device.remove_data": device_remove_data,
    "devices.remove_data": devices_remove_data,
    "devices.patch": devices_patch,
    "devices.delete": devices_delete,
    "devices.restore": devices_restore,
    "devices.export": devices_export,
    "data.export": data_export,
    "device.export": device_export,
}

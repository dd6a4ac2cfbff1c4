"""Emulated ``devices`` and ``device`` resources: devices, state, commands, logs and their SSE streams."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..._time import parse_losant_time
from ...errors import ValidationError
from .._access import visible_devices
from .._query import device_matches, parse_brackets
from ..store import ApplicationRecord, DeviceRecord, check_time
from ._common import Call, Handler, HttpError, Server, iso, json_response


def _select_devices(srv: Server, call: Call, app: ApplicationRecord) -> list[DeviceRecord]:
    devices = visible_devices(call.token, (d for d in srv.store.devices.values() if d.application_id == app.id))
    classes = parse_brackets(call.query, "deviceClass")
    if classes is not None:
        wanted = {classes} if isinstance(classes, str) else set(classes)
        devices = [d for d in devices if d.device_class in wanted]
    tag_filter = parse_brackets(call.query, "tagFilter")
    if tag_filter is not None:
        if not isinstance(tag_filter, list):
            raise ValidationError("tagFilter must be a list of {key, value}")
        devices = [d for d in devices if all(_tag_filter_ok(d, f) for f in tag_filter)]
    parent = call.q("parentId")
    if parent:
        devices = [d for d in devices if d.parent_id == parent]
    query = call.json_q("query")
    if query is not None:
        devices = [d for d in devices if device_matches(d, query)]
    return devices


_OVERRIDDEN = ("filterField", "filter", "deviceClass", "tagFilter", "parentId")


def _chosen_devices(srv: Server, call: Call, app: ApplicationRecord) -> list[DeviceRecord]:
    """Losant: ``query`` "overrides the filterField, filter, deviceClass, tagFilter, and parentId
    parameters"; ``queryDeleted`` lists recently deleted devices, and deletion is final here."""
    if call.bool_q("queryDeleted"):
        return []
    if call.json_q("query") is not None:
        kept = [(k, v) for k, v in call.query if k.split("[", 1)[0] not in _OVERRIDDEN]
        call = dataclasses.replace(call, query=kept)
    return _select_devices(srv, call, app)


def shaped(call: Call, item: dict[str, Any]) -> dict[str, Any]:
    """``tagsAsObject``: tags as ``{key: [values]}`` (a key may repeat); ``attributesAsObject``:
    attributes as ``{name: attribute}`` (API 1.31)."""
    if call.bool_q("tagsAsObject"):
        tags: dict[str, list[str]] = {}
        for tag in item.get("tags", []):
            tags.setdefault(tag["key"], []).append(tag["value"])
        item["tags"] = tags
    if call.bool_q("attributesAsObject"):
        item["attributes"] = {a["name"]: a for a in item.get("attributes", [])}
    return item


def _tag_filter_ok(device: DeviceRecord, tag_filter: Any) -> bool:
    if not isinstance(tag_filter, dict):
        raise ValidationError("each tagFilter entry must be {key, value}")
    key, value = tag_filter.get("key"), tag_filter.get("value")
    return any((key is None or k == key) and (value is None or v == value) for k, v in device.tags)


async def devices_get(srv: Server, call: Call) -> web.Response:
    app = srv.app_of(call)
    devices = _chosen_devices(srv, call, app)
    with_conn = not call.bool_q("excludeConnectionInfo")
    items = [srv.device_json(d, connection=with_conn) for d in devices]
    items = srv.filter_items(call, items, "name")
    field, direction = srv.sort(call, items, "name")
    page = srv.page(call, items, {"sortField": field, "sortDirection": direction, "applicationId": app.id})
    page["items"] = [shaped(call, i) for i in page["items"]]
    return json_response(page)


async def devices_post(srv: Server, call: Call) -> web.Response:
    app = srv.app_of(call)
    body = srv.body_of(call)
    allowed = {"name", "description", "tags", "attributes", "deviceClass", "gatewayId", "parentId", "systemInterval", "keepDuplicates"}
    unknown = set(body) - allowed
    if unknown:
        raise ValidationError(f"unknown device fields: {', '.join(sorted(unknown))}")
    device = srv.store.add_device(
        app.id,
        body.get("name"),  # type: ignore[arg-type]
        device_class=body.get("deviceClass", "standalone"),
        parent_id=body.get("parentId") or body.get("gatewayId"),
        attributes=body.get("attributes"),
        tags=body.get("tags"),
        description=str(body.get("description", "")),
    )
    return json_response(shaped(call, srv.device_json(device)), 201)


def _command_targets(srv: Server, app: ApplicationRecord, body: Mapping[str, Any]) -> list[DeviceRecord]:
    ids, tags, query = body.get("deviceIds"), body.get("deviceTags"), body.get("deviceQuery")
    if ids is None and tags is None and query is None:
        raise ValidationError("give deviceIds, deviceTags or deviceQuery")
    if ids is not None:
        if not isinstance(ids, list):
            raise ValidationError("deviceIds must be a list")
        # Looked up by id, not by scanning the store: a simulator commanding 50 of 10,000 devices
        # 20 times a second scanned 200,000 records a second for them.
        by_id = srv.store.devices
        found = (by_id.get(i) for i in dict.fromkeys(i for i in ids if isinstance(i, str)))
        devices = [d for d in found if d is not None and d.application_id == app.id]
    else:
        devices = [d for d in srv.store.devices.values() if d.application_id == app.id]
    if tags is not None:
        pairs = srv.store.parse_tags(tags) if tags else []
        devices = [d for d in devices if any(p in d.tags for p in pairs)]
    if query is not None:
        devices = [d for d in devices if device_matches(d, query)]
    return devices


def _command_fields(srv: Server, body: Mapping[str, Any]) -> tuple[str, Any, int | None]:
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        raise ValidationError("command name must be a string of 1 to 255 characters")
    stamp = parse_losant_time(body.get("time"), now=srv.store.clock())
    # checked before any device is sent it: a multi-device command is all or nothing
    return name, body.get("payload"), None if stamp is None else check_time(stamp, "time")


async def devices_send_command(srv: Server, call: Call) -> web.Response:
    app = srv.app_of(call)
    body = srv.body_of(call)
    name, payload, stamp = _command_fields(srv, body)
    targets = _command_targets(srv, app, body)
    token = call.token
    if token is not None and token.kind == "device" and any(d.id != token.device_id for d in targets):
        raise HttpError(403, "Forbidden", "A device token may only command its own device")
    for device in targets:
        await srv.send_command(device.id, name, payload, stamp)
    return json_response({"success": True})


def _composite_json(srv: Server, device_id: str, start: int | None, end: int | None, attributes: set[str] | None) -> dict[str, Any]:
    state = srv.store.composite_state(device_id, start=start, end=end)
    return {
        name: {"value": value, "time": iso(stamp)}
        for name, (value, stamp) in state.items()
        if attributes is None or name in attributes
    }


def _composite_window(srv: Server, call: Call) -> tuple[int | None, int | None, set[str] | None]:
    # Losant's defaults start=1, end=0 mean "all of it, up to now": the running composite
    start = None if (call.q("start") or "1").strip() == "1" else srv.time_q(call, "start", zero_is_now=False)
    end = None if (call.q("end") or "0").strip() == "0" else srv.time_q(call, "end")
    raw = call.q("attributes")
    attributes = {a for a in raw.split(",") if a} if raw else None
    return start, end, attributes


async def devices_composite(srv: Server, call: Call) -> web.Response:
    app = srv.app_of(call)
    start, end, attributes = _composite_window(srv, call)
    devices = _select_devices(srv, call, app)
    items = [
        {"id": d.id, "name": d.name, "compositeState": _composite_json(srv, d.id, start, end, attributes)}
        for d in devices
    ]
    field, direction = srv.sort(call, items, "name")
    return json_response(
        srv.page(call, items, {"sortField": field, "sortDirection": direction, "applicationId": app.id})
    )


async def device_get(srv: Server, call: Call) -> web.Response:
    device = srv.device_of(call)
    return json_response(shaped(call, srv.device_json(device, connection=not call.bool_q("excludeConnectionInfo"))))


async def device_patch(srv: Server, call: Call) -> web.Response:
    device = srv.device_of(call)
    body = srv.body_of(call)
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise ValidationError("device name must be 1 to 255 characters")
    attributes = srv.store.parse_attributes(body["attributes"]) if "attributes" in body else None
    tags = srv.store.parse_tags(body["tags"]) if "tags" in body else None
    if "deviceClass" in body and body["deviceClass"] not in {"standalone", "gateway", "peripheral", "floating", "edgeCompute", "system", "embedded"}:
        raise ValidationError("unknown deviceClass")
    if "name" in body:
        device.name = body["name"]
    if "description" in body:
        device.description = str(body["description"])
    if attributes is not None:
        device.attributes = attributes
    if tags is not None:
        device.tags = tags
    if "deviceClass" in body:
        device.device_class = body["deviceClass"]
    if "parentId" in body:
        device.parent_id = body["parentId"]
    device.updated = srv.store.clock()
    return json_response(shaped(call, srv.device_json(device)))


async def device_delete(srv: Server, call: Call) -> web.Response:
    device = srv.device_of(call)
    srv.store.remove_device(device.id)
    if srv.on_device_deleted is not None:
        await srv.on_device_deleted(device.id)  # Losant drops a deleted device's connection
    return json_response({"success": True})


async def device_send_state(srv: Server, call: Call) -> web.Response:
    device = srv.device_of(call)
    if call.body is None:
        raise ValidationError("request body must be a state or a list of states")
    srv.check_rate(device.id, "sendState")
    srv.store.record_state(device, call.body)
    return json_response({"success": True})


def _window(srv: Server, call: Call) -> tuple[int | None, int | None, int, bool]:
    end = srv.time_q(call, "end")
    start = srv.time_q(call, "start", zero_is_now=False)
    since = srv.time_q(call, "since", zero_is_now=False)
    duration = call.q("duration")
    if start is None and since is not None:
        start = since
    if start is None and duration:
        try:
            start = (end if end is not None else srv.store.clock()) - int(float(duration))
        except ValueError:
            raise ValidationError("duration must be milliseconds") from None
    limit = call.int_q("limit", 1)
    if limit < 1:
        raise ValidationError("limit must be at least 1")
    descending = (call.q("sortDirection", "desc") or "desc").lower() != "asc"
    return start, end, limit, descending


async def device_get_state(srv: Server, call: Call) -> web.Response:
    device = srv.device_of(call)
    start, end, limit, descending = _window(srv, call)
    records = srv.store.states(device.id, start=start, end=end, limit=limit, descending=descending)
    return json_response([srv.state_json(r) for r in records])


async def device_composite(srv: Server, call: Call) -> web.Response:
    device = srv.device_of(call)
    start, end, attributes = _composite_window(srv, call)
    return json_response(_composite_json(srv, device.id, start, end, attributes))


async def device_send_command(srv: Server, call: Call) -> web.Response:
    device = srv.device_of(call)
    name, payload, stamp = _command_fields(srv, srv.body_of(call))
    srv.check_rate(device.id, "sendCommand")
    await srv.send_command(device.id, name, payload, stamp)
    return json_response({"success": True})


async def device_get_command(srv: Server, call: Call) -> web.Response:
    device = srv.device_of(call)
    start, end, limit, descending = _window(srv, call)
    records = [
        c for c in srv.store.commands(device.id)
        if (start is None or c.time >= start) and (end is None or c.time <= end)
    ]
    records.sort(key=lambda c: c.time, reverse=descending)
    return json_response([srv.command_json(c) for c in records[:limit]])


async def device_set_connection(srv: Server, call: Call) -> web.Response:
    device = srv.device_of(call)
    body = srv.body_of(call)
    status = body.get("status")
    if status not in ("connected", "disconnected"):
        raise ValidationError("status must be connected or disconnected")
    reason = body.get("disconnectReason")
    srv.store.set_connection(device.id, status == "connected", reason=reason if isinstance(reason, str) else None)
    return json_response({"success": True})


async def device_log(srv: Server, call: Call) -> web.Response:
    device = srv.device_of(call)
    start, end, limit, descending = _window(srv, call)
    entries = [
        e for e in srv.store.connection_log(device.id)
        if (start is None or e.time >= start) and (end is None or e.time <= end)
    ]
    entries.sort(key=lambda e: e.time, reverse=descending)
    out = []
    for entry in entries[:limit]:
        item: dict[str, Any] = {"connected": 1 if entry.connected else 0, "time": iso(entry.time)}
        if entry.reason:
            item["disconnectReason"] = entry.reason
        out.append(item)
    return json_response(out)


async def device_state_stream(srv: Server, call: Call) -> web.StreamResponse:
    device = srv.device_of(call)
    return await srv.stream(call, "deviceState", srv.store.on_state, srv.state_json, device.id)


async def device_command_stream(srv: Server, call: Call) -> web.StreamResponse:
    device = srv.device_of(call)
    return await srv.stream(call, "deviceCommand", srv.store.on_command, srv.command_json, device.id)


HANDLERS: dict[str, Handler] = {
    "devices.get": devices_get,
    "devices.post": devices_post,
    "devices.send_command": devices_send_command,
    "devices.get_composite_state": devices_composite,
    "device.get": device_get,
    "device.patch": device_patch,
    "device.delete": device_delete,
    "device.send_state": device_send_state,
    "device.get_state": device_get_state,
    "device.get_composite_state": device_composite,
    "device.send_command": device_send_command,
    "device.get_command": device_get_command,
    "device.set_connection_status": device_set_connection,
    "device.get_log_entries": device_log,
    "device.state_stream": device_state_stream,
    "device.command_stream": device_command_stream,
}

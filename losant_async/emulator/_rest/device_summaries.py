"""Emulated device summaries (names, tag keys and values, attribute names), version listings, search and archive jobs."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from ...errors import ValidationError
from .._query import device_matches
from ..store import DeviceRecord
from . import _engine
from ._common import Call, Handler, Server

NOT_RUN_ARCHIVE = "archives go to the application's cloud storage bucket; the emulator sends nothing beyond loopback"
_MAX = 1000  # the response schemas cap each list at 1000 entries


def _devices(srv: Server, call: Call) -> list[DeviceRecord]:
    app_id = call.params["applicationId"]
    devices = [d for d in srv.store.devices.values() if d.application_id == app_id]
    query = call.json_q("query")
    if query is not None:
        devices = [d for d in devices if device_matches(d, query)]
    return devices


def _starting(call: Call, values: list[str]) -> list[str]:
    prefix = call.q("startsWith") or ""
    return sorted({v for v in values if v.lower().startswith(prefix.lower())})[:_MAX]


async def device_names(srv: Server, call: Call) -> web.Response:
    prefix = (call.q("startsWith") or "").lower()
    found = sorted((d for d in _devices(srv, call) if d.name.lower().startswith(prefix)), key=lambda d: d.name)[:_MAX]
    summary = [{"id": d.id, "name": d.name, "deviceClass": d.device_class} for d in found]
    return _engine.reply(call.route.full_name, {"deviceSummary": summary})


async def tag_keys(srv: Server, call: Call) -> web.Response:
    keys = [k for d in _devices(srv, call) for k, _ in d.tags]
    return _engine.reply(call.route.full_name, {"tagKeys": _starting(call, keys)})


async def tag_values(srv: Server, call: Call) -> web.Response:
    key = call.q("key")
    if not key:
        raise ValidationError("key: the tag key whose values to list")
    values = [v for d in _devices(srv, call) for k, v in d.tags if k == key]
    return _engine.reply(call.route.full_name, {"tagKey": key, "tagValues": _starting(call, values)})


async def attribute_names(srv: Server, call: Call) -> web.Response:
    wanted = call.q("dataType")
    names = [a.name for d in _devices(srv, call) for a in d.attributes.values() if not wanted or a.data_type == wanted]
    return _engine.reply(call.route.full_name, {"attributeNames": _starting(call, names)})


async def flows_by_version(srv: Server, call: Call) -> web.Response:
    """The version named ``version`` of every flow of ``flowClass`` (``cloud`` by default)."""
    version = call.q("version")
    if not version:
        raise ValidationError("version: which version of the workflows to list")
    flow_class = call.q("flowClass") or "cloud"
    flows = {f["id"]: f for f in _engine.scoped(srv, _engine.kinds()["flows"], call.params) if (f.get("flowClass") or "cloud") == flow_class}
    versions = [
        copy.deepcopy(v)
        for v in _engine.docs(srv, _engine.kinds()["flow_versions"]).values()
        if v.get("flowId") in flows and v.get("version") == version
    ]
    query = call.json_q("query")
    if query is not None:
        from .._query import doc_matches

        versions = [v for v in versions if doc_matches(v, query)]
    page = _engine.list_page(call, versions)
    page.update(applicationId=call.params["applicationId"], flowClass=flow_class, version=version)
    return _engine.reply(call.route.full_name, page)


_SEARCHED = ("devices", "flows", "data_tables", "experience_views", "experience_endpoints", "application_dashboards", "files", "notebooks", "device_recipes")


async def search(srv: Server, call: Call) -> web.Response:
    """Resources of the application whose name contains ``filter`` (case-insensitive)."""
    text = (call.q("filter") or "").lower()
    if not text:
        raise ValidationError("filter: the text to search for")
    found: list[dict[str, Any]] = []
    app_id = call.params["applicationId"]
    for device in srv.store.devices.values():
        if device.application_id == app_id and text in device.name.lower():
            found.append({"id": device.id, "name": device.name, "type": "device"})
    for name in _SEARCHED[1:]:
        kind = _engine.kinds()[name]
        for doc in _engine.scoped(srv, kind, call.params):
            label = str(doc.get("name") or doc.get("route") or "")
            if text in label.lower():
                found.append({"id": doc["id"], "name": label, "type": kind.item})
    return _engine.reply(call.route.full_name, found[:_MAX])


async def archive(srv: Server, call: Call) -> web.Response:
    """A job log entry, ``queued``: archiving needs the application's bucket, which the emulator never reaches."""
    out = _engine.job(srv, call, call.route.full_name, status="queued", error=NOT_RUN_ARCHIVE)
    return _engine.reply(call.route.full_name, out)


HANDLERS: dict[str, Handler] = {
    "devices.device_names": device_names,
    "devices.tag_keys": tag_keys,
    "devices.tag_values": tag_values,
    "devices.attribute_names": attribute_names,
    "flows.get_by_version": flows_by_version,
    "application.search": search,
    "application.archive_data": archive,
    "application.backfill_archive_data": archive,
    "application.full_data_tables_archive": archive,
    "application.full_events_archive": archive,
}

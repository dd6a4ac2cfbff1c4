"""Emulated events: create, acknowledge/resolve (one or by query), most recent by severity, query, delete, export."""

from __future__ import annotations

import copy
import csv
import io
from typing import Any

from aiohttp import web

from ..._time import parse_losant_time
from ...errors import ValidationError
from .._query import doc_matches, wildcard_match
from ..store import BlobRecord, new_id
from . import _engine
from ._common import Call, Handler, Server, iso
from ._csv import csv_row
from ._listing import filter_of

_SEVERITY = {"info": 0, "warning": 1, "error": 2, "critical": 3}


def _kind() -> _engine.Kind:
    return _engine.kinds()["events"]


def _source(call: Call) -> dict[str, Any]:
    token = call.token
    if token is None:
        return {"sourceType": "public"}
    if token.kind == "device" and token.device_id:
        return {"sourceType": "device", "sourceId": token.device_id}
    if token.kind == "user" and token.user_id:
        return {"sourceType": "user", "sourceId": token.user_id}
    return {"sourceType": "apiToken", "sourceId": token.id}


async def events_post(srv: Server, call: Call) -> web.Response:
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("an event is a JSON object")
    event: dict[str, Any] = {"state": "new", "level": "info", "data": None, "eventTags": {}, "updates": []}
    event.update(copy.deepcopy(body))
    event.update(_source(call))
    if "creationDate" in body:
        # as for state times: unparseable means now
        stamp = parse_losant_time(body["creationDate"], now=srv.store.clock())
        event["creationDate"] = iso(srv.store.clock() if stamp is None else stamp)
    device_id = body.get("deviceId")
    if device_id is not None:
        device = srv.store.devices.get(device_id)
        if device is None or device.application_id != call.params["applicationId"]:
            raise ValidationError(f"deviceId: device {device_id} is not in this application")
        event["deviceName"] = device.name
    doc = _engine.new_doc(srv.store, _kind(), call.params, event)
    return _engine.reply(call.route.full_name, copy.deepcopy(doc))


def _selected(srv: Server, call: Call) -> list[dict[str, Any]]:
    """The application's events matching ``query``, or else ``state`` and ``filter`` on ``filterField``
    (Losant: the query "overrides the filterField, filter, and state parameters"; a blank
    ``filterField`` means no filtering)."""
    events = _engine.scoped(srv, _kind(), call.params)
    query = call.json_q("query")
    if query is not None:
        return [e for e in events if doc_matches(e, query)]
    state = call.q("state")
    if state:
        events = [e for e in events if e.get("state") == state]
    chosen = filter_of(call)
    if chosen is not None:
        events = [e for e in events if wildcard_match(chosen[1], str(e.get(chosen[0], "")))]
    return events


def _apply(srv: Server, call: Call, event: dict[str, Any], changes: dict[str, Any]) -> None:
    """A patch as Losant records it: the fields change and an update entry says who and what."""
    now = iso(srv.store.clock())
    update: dict[str, Any] = {"creationDate": now, **_source(call)}
    if "comment" in changes:
        update["comment"] = changes["comment"]
    if "state" in changes and changes["state"] != event.get("state"):
        update["stateChange"] = {"old": event.get("state"), "new": changes["state"]}
        update["state"] = changes["state"]
    for key, value in changes.items():
        if key != "comment":
            event[key] = copy.deepcopy(value)
    event.setdefault("updates", []).append(update)
    event["lastUpdated"] = now


async def event_patch(srv: Server, call: Call) -> web.Response:
    event = _engine.require(srv, _kind(), call.params)
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("an event patch is a JSON object")
    _apply(srv, call, event, body)
    return _engine.reply(call.route.full_name, copy.deepcopy(event))


async def events_get(srv: Server, call: Call) -> web.Response:
    items = [copy.deepcopy(e) for e in _selected(srv, call)]
    saved = call.query
    call.query = [(k, v) for k, v in saved if k not in ("filter", "filterField", "query")]  # already applied
    try:
        page = _engine.list_page(call, items, default_sort="creationDate", default_dir="desc")
    finally:
        call.query = saved
    page["applicationId"] = call.params["applicationId"]
    return _engine.reply(call.route.full_name, page)


async def events_patch(srv: Server, call: Call) -> web.Response:
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("updates must be a JSON object")
    for event in _selected(srv, call):
        _apply(srv, call, event, body)
    return _engine.reply(call.route.full_name, {"success": True})


async def events_delete(srv: Server, call: Call) -> web.Response:
    query = _engine.check_body(call)
    store = _engine.docs(srv, _kind())
    doomed = [e["id"] for e in _engine.scoped(srv, _kind(), call.params) if doc_matches(e, query)]
    for event_id in doomed:
        del store[event_id]
    return _engine.reply(call.route.full_name, {"removed": len(doomed)})


async def most_recent_by_severity(srv: Server, call: Call) -> web.Response:
    """The newest of the most severe events still ``new``, and how many are ``new``."""
    fresh = [e for e in _selected(srv, call) if e.get("state") == "new"]
    out: dict[str, Any] = {"newCount": len(fresh)}
    if fresh:
        top = max(fresh, key=lambda e: (_SEVERITY.get(e.get("level", "info"), 0), e.get("creationDate", ""), e["id"]))
        out["event"] = copy.deepcopy(top)
    return _engine.reply(call.route.full_name, out)


async def events_export(srv: Server, call: Call) -> web.Response:
    """The matching events as CSV, served by the emulator; the job log's output gives its URL."""
    body = _engine.check_body(call) or {}
    query = body.get("query") if isinstance(body, dict) else None
    events = [e for e in _engine.scoped(srv, _kind(), call.params) if doc_matches(e, query)]
    columns = ["id", "creationDate", "lastUpdated", "level", "state", "subject", "message", "deviceId", "sourceType", "sourceId"]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(csv_row(e) for e in events)
    blob_id = new_id()
    srv.store.blobs[blob_id] = BlobRecord("events.csv", "text/csv", text.getvalue().encode())
    url = f"{srv.base_url}/_emulator/blobs/{blob_id}"
    return _engine.reply(call.route.full_name, _engine.job(srv, call, "Events export", result={"url": url, "events": len(events)}))


HANDLERS: dict[str, Handler] = {
    "events.post": events_post,
    "events.get": events_get,
    "events.patch": events_patch,
    "events.delete": events_delete,
    "events.export": events_export,
    "events.most_recent_by_severity": most_recent_by_severity,
    "event.patch": event_patch,
}

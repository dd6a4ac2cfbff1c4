"""Emulated ``application_keys`` and ``application_key`` resources: access keys and their topic filters."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...errors import ValidationError
from ..store import KEY_FILTER_TYPES
from . import _engine
from ._common import Call, Handler, Server, json_response


async def keys_get(srv: Server, call: Call) -> web.Response:
    app = srv.app_of(call)
    items = [srv.key_json(k) for k in srv.store.keys.values() if k.application_id == app.id]
    query = call.json_q("query")
    if query is not None:
        if not isinstance(query, dict):
            raise ValidationError("query must be a JSON object")
        items = [i for i in items if all(i.get(k) == v for k, v in query.items() if not k.startswith("$"))]
    items = srv.filter_items(call, items, "key")
    field, direction = srv.sort(call, items, "creationDate", "desc")
    return json_response(
        srv.page(call, items, {"sortField": field, "sortDirection": direction, "applicationId": app.id})
    )


def _topics(body: dict[str, Any], name: str) -> tuple[str, ...] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ValidationError(f"{name} must be a list of topic filters")
    return tuple(value)


async def keys_post(srv: Server, call: Call) -> web.Response:
    """A new access key: its topic filter (``filterType``, ``pubTopics``, ``subTopics``) is what
    ``/auth/device`` returns and what the broker enforces."""
    app = srv.app_of(call)
    body = call.body if call.body is not None else {}
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    _engine.check_body(call)
    key = srv.store.add_key(
        app.id,
        device_ids=body.get("deviceIds"),
        device_tags=body.get("deviceTags"),
        name=str(body.get("name", "")),
        description=str(body.get("description", "")),
        filter_type=body.get("filterType") or "all",
        pub_topics=_topics(body, "pubTopics") or (),
        sub_topics=_topics(body, "subTopics") or (),
    )
    return _engine.reply(call.route.full_name, srv.key_json(key, secret=True))


async def key_patch(srv: Server, call: Call) -> web.Response:
    app = srv.app_of(call)
    key = srv.store.key_by_id(app.id, call.params["applicationKeyId"])
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    filter_type = body.get("filterType", key.filter_type)
    if filter_type not in KEY_FILTER_TYPES:
        raise ValidationError(f"filterType must be one of {sorted(KEY_FILTER_TYPES)}")
    pubs, subs = _topics(body, "pubTopics"), _topics(body, "subTopics")
    key.filter_type = filter_type
    if pubs is not None:
        key.pub_topics = pubs
    if subs is not None:
        key.sub_topics = subs
    if "status" in body:
        key.status = body["status"]
    if "name" in body:
        key.name = str(body["name"])
    if "description" in body:
        key.description = str(body["description"])
    return _engine.reply(call.route.full_name, srv.key_json(key))


async def key_get(srv: Server, call: Call) -> web.Response:
    app = srv.app_of(call)
    return json_response(srv.key_json(srv.store.key_by_id(app.id, call.params["applicationKeyId"])))


async def key_delete(srv: Server, call: Call) -> web.Response:
    app = srv.app_of(call)
    key = srv.store.key_by_id(app.id, call.params["applicationKeyId"])
    del srv.store.keys[key.key]
    return json_response({"success": True})


HANDLERS: dict[str, Handler] = {
    "application_keys.get": keys_get,
    "application_keys.post": keys_post,
    "application_key.get": key_get,
    "application_key.delete": key_delete,
    "application_key.patch": key_patch,
}

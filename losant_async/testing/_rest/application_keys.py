"""Emulated ``application_keys`` and ``application_key`` resources: access keys and their topic filters."""

from __future__ import annotations

from aiohttp import web

from ...errors import ValidationError
from ._common import Call, Handler, Server, json_response


async def keys_get(srv: Server, call: Call) -> web.Response:
    app = srv._app(call)
    items = [srv.key_json(k) for k in srv.store.keys.values() if k.application_id == app.id]
    query = call.json_q("query")
    if query is not None:
        if not isinstance(query, dict):
            raise ValidationError("query must be a JSON object")
        items = [i for i in items if all(i.get(k) == v for k, v in query.items() if not k.startswith("$"))]
    items = srv._filter(call, items, "key")
    field, direction = srv._sort(call, items, "creationDate", "desc")
    return json_response(
        srv._page(call, items, {"sortField": field, "sortDirection": direction, "applicationId": app.id})
    )


async def keys_post(srv: Server, call: Call) -> web.Response:
    app = srv._app(call)
    body = call.body if call.body is not None else {}
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    key = srv.store.add_key(
        app.id,
        device_ids=body.get("deviceIds"),
        device_tags=body.get("deviceTags"),
        name=str(body.get("name", "")),
        description=str(body.get("description", "")),
    )
    return json_response(srv.key_json(key, secret=True), 201)


async def key_get(srv: Server, call: Call) -> web.Response:
    app = srv._app(call)
    return json_response(srv.key_json(srv.store.key_by_id(app.id, call.params["applicationKeyId"])))


async def key_delete(srv: Server, call: Call) -> web.Response:
    app = srv._app(call)
    key = srv.store.key_by_id(app.id, call.params["applicationKeyId"])
    del srv.store.keys[key.key]
    return json_response({"success": True})


HANDLERS: dict[str, Handler] = {
    "application_keys.get": keys_get,
    "application_keys.post": keys_post,
    "application_key.get": key_get,
    "application_key.delete": key_delete,
}

"""Emulated ``application_api_tokens`` and ``application_api_token`` resources."""

from __future__ import annotations

from aiohttp import web

from ..._time import parse_losant_time
from ...errors import ValidationError
from ..store import ApiTokenRecord, ApplicationRecord
from . import _engine
from ._common import Call, Handler, HttpError, Server, json_response


def _app_tokens(srv: Server, app: ApplicationRecord) -> list[ApiTokenRecord]:
    return [t for t in srv.store.tokens.values() if t.kind == "api" and t.application_id == app.id]


async def tokens_get(srv: Server, call: Call) -> web.Response:
    app = srv.app_of(call)
    items = [srv.token_json(t) for t in _app_tokens(srv, app)]
    items = srv.filter_items(call, items, "name")
    field, direction = srv.sort(call, items, "name")
    return json_response(
        srv.page(call, items, {"sortField": field, "sortDirection": direction, "ownerId": app.id, "ownerType": "application"})
    )


async def tokens_post(srv: Server, call: Call) -> web.Response:
    app = srv.app_of(call)
    body = srv.body_of(call)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError("token name is required")
    scopes = body.get("scope") or ["all.Application"]
    if not isinstance(scopes, list):
        raise ValidationError("scope must be a list of scope names")
    expires = parse_losant_time(body.get("expirationDate"), now=srv.store.clock()) if body.get("expirationDate") else None
    token = srv.store.add_token(
        application_id=app.id, scopes=scopes, name=name, description=str(body.get("description", "")), expires=expires
    )
    return json_response(srv.token_json(token, include_token=True), 201)


def _token_by_id(srv: Server, call: Call) -> ApiTokenRecord:
    app = srv.app_of(call)
    for token in _app_tokens(srv, app):
        if token.id == call.params["apiTokenId"]:
            return token
    raise HttpError(404, "NotFound", "API token was not found")


async def token_get(srv: Server, call: Call) -> web.Response:
    return json_response(srv.token_json(_token_by_id(srv, call)))


async def token_delete(srv: Server, call: Call) -> web.Response:
    token = _token_by_id(srv, call)
    del srv.store.tokens[token.token]
    return json_response({"success": True})


async def token_patch(srv: Server, call: Call) -> web.Response:
    token = _token_by_id(srv, call)
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    if "name" in body:
        token.name = str(body["name"])
    if "description" in body:
        token.description = str(body["description"])
    if "status" in body:
        token.status = body["status"]  # an inactive token answers 401 from now on
    return _engine.reply(call.route.full_name, srv.token_json(token))


HANDLERS: dict[str, Handler] = {
    "application_api_token.patch": token_patch,
    "application_api_tokens.get": tokens_get,
    "application_api_tokens.post": tokens_post,
    "application_api_token.get": token_get,
    "application_api_token.delete": token_delete,
}

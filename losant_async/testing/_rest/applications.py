"""Emulated ``applications`` and ``application`` resources."""

from __future__ import annotations

from aiohttp import web

from ._common import Call, Handler, Server, json_response


async def applications_get(srv: Server, call: Call) -> web.Response:
    items = [srv.app_json(a) for a in srv.store.applications.values()]
    items = srv._filter(call, items, "name")
    field, direction = srv._sort(call, items, "name")
    return json_response(srv._page(call, items, {"sortField": field, "sortDirection": direction}))


async def applications_post(srv: Server, call: Call) -> web.Response:
    body = srv._body(call)
    owner = call.token.user_id if call.token is not None else None
    app = srv.store.add_application(body.get("name"), description=str(body.get("description", "")), owner_id=owner)  # type: ignore[arg-type]
    return json_response(srv.app_json(app), 201)


async def application_get(srv: Server, call: Call) -> web.Response:
    return json_response(srv.app_json(srv._app(call)))


HANDLERS: dict[str, Handler] = {
    "applications.get": applications_get,
    "applications.post": applications_post,
    "application.get": application_get,
}

"""Emulated ``me`` resource: the signed-in user."""

from __future__ import annotations

from aiohttp import web

from ._common import Call, Handler, HttpError, Server, json_response


async def refresh_token(srv: Server, call: Call) -> web.Response:
    current = call.token
    if current is None or current.kind != "user" or current.user_id is None:
        raise HttpError(401, "Unauthorized", "Only a user token can be refreshed")
    token = srv.store.add_token(application_id=None, scopes=current.scopes, kind="user", user_id=current.user_id)
    return json_response({"userId": current.user_id, "token": token.token})


HANDLERS: dict[str, Handler] = {
    "me.refresh_token": refresh_token,
}

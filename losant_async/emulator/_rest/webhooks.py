"""Emulated webhooks: created with a token, and the incoming requests to ``<rest_url>/webhooks/<token>`` recorded.

Losant would trigger workflows with them; the emulator stores workflows without running
them, so a webhook answers with its ``responseCode`` and an empty body.
"""

from __future__ import annotations

import copy
import secrets
from typing import Any

from aiohttp import web

from ...errors import ValidationError
from . import _engine
from ._common import Call, Handler, HttpError, Server, iso

_PREFIX = "/webhooks/"
MAX_RECORDED = 1000


def _kind() -> _engine.Kind:
    return _engine.kinds()["webhooks"]


def requests_of(srv: Server, webhook_id: str) -> list[dict[str, Any]]:
    """The requests a webhook received, oldest first (at most ``MAX_RECORDED``)."""
    found: list[dict[str, Any]] = srv.store.docs.setdefault("webhook_requests", {}).setdefault(webhook_id, {}).setdefault("requests", [])
    return found


async def webhooks_post(srv: Server, call: Call) -> web.Response:
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("a webhook is a JSON object")
    fields = {"responseCode": 200, "enabled": True, "waitForReply": False, "verificationType": "none", **body}
    fields.setdefault("token", secrets.token_urlsafe(24))
    doc = _engine.new_doc(srv.store, _kind(), call.params, fields)
    return _engine.reply(call.route.full_name, copy.deepcopy(doc))


async def webhook_delete(srv: Server, call: Call) -> web.Response:
    doc = _engine.require(srv, _kind(), call.params)
    _engine.remove_doc(srv, _kind(), doc)
    srv.store.docs.get("webhook_requests", {}).pop(doc["id"], None)
    return _engine.reply(call.route.full_name, {"success": True})


async def incoming(srv: Server, request: web.Request) -> web.StreamResponse:
    """A request to a webhook URL: recorded with its method, path, query, headers and body."""
    token = request.path[len(_PREFIX) :].split("/", 1)[0]
    hook = next((d for d in _engine.docs(srv, _kind()).values() if d.get("token") == token), None)
    if hook is None or not hook.get("enabled", True):
        raise HttpError(404, "NotFound", "Webhook was not found")
    body = await request.read()
    recorded = requests_of(srv, hook["id"])
    recorded.append(
        {
            "time": iso(srv.store.clock()),
            "method": request.method,
            "path": request.path[len(_PREFIX) + len(token) :] or "/",
            "query": dict(request.query),
            "headers": {k: v for k, v in request.headers.items() if k.lower() != "authorization"},
            "body": body,
        }
    )
    del recorded[:-MAX_RECORDED]
    return web.Response(status=int(hook.get("responseCode", 200)))


EXTRA_ROUTES = ((_PREFIX, incoming),)

HANDLERS: dict[str, Handler] = {
    "webhooks.post": webhooks_post,
    "webhook.delete": webhook_delete,
}

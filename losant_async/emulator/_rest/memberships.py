"""Emulated instance listings and instance organizations as membership decides: a user sees the instances it belongs to."""

from __future__ import annotations

import copy

from aiohttp import web

from ...errors import ValidationError
from .._roles import instance_role
from . import _engine
from ._common import Call, Handler, Server


async def instances_get(srv: Server, call: Call) -> web.Response:
    """A user token lists only the instances the user is a member of."""
    kind = _engine.kinds()["instances"]
    items = [copy.deepcopy(d) for d in _engine.docs(srv, kind).values()]
    token = call.token
    if token is not None and token.kind == "user":
        items = [d for d in items if instance_role(srv.store.docs, d["id"], token.user_id or "") is not None]
    return _engine.reply(call.route.full_name, _engine.list_page(call, items))


async def instance_orgs_post(srv: Server, call: Call) -> web.Response:
    """docs.losant.com/instance-manager/managing-organizations: the instance member who creates an
    organization is its sole member, with Administrator privileges."""
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    token = call.token
    members = []
    if token is not None and token.kind == "user" and token.user_id:
        user = srv.store.users.get(token.user_id)
        members.append({"userId": token.user_id, "email": user.email if user else "", "role": "admin"})
    doc = _engine.new_doc(srv.store, _engine.kinds()["instance_orgs"], call.params, {**body, "members": members})
    return _engine.reply(call.route.full_name, copy.deepcopy(doc))


HANDLERS: dict[str, Handler] = {
    "instances.get": instances_get,
    "instance_orgs.post": instance_orgs_post,
}

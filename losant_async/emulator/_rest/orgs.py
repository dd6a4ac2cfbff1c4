"""Emulated ``orgs`` and ``org`` resources: organizations and their members (the rest is the engine's)."""

from __future__ import annotations

import copy

from aiohttp import web

from ...errors import ValidationError
from . import _engine
from ._common import Call, Handler, HttpError, Server


def _kind() -> _engine.Kind:
    return _engine.kinds()["orgs"]


async def orgs_post(srv: Server, call: Call) -> web.Response:
    """The creator becomes the organization's admin member."""
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    token = call.token
    members = []
    if token is not None and token.user_id is not None:
        user = srv.store.users.get(token.user_id)
        members.append({"userId": token.user_id, "email": user.email if user else "", "role": "admin"})
    doc = _engine.new_doc(srv.store, _kind(), {}, {**body, "members": members})
    return _engine.reply(call.route.full_name, copy.deepcopy(doc))


async def orgs_get(srv: Server, call: Call) -> web.Response:
    """Only the organizations the token's user is a member of."""
    token = call.token
    user_id = token.user_id if token is not None else None
    items = [
        copy.deepcopy(d)
        for d in _engine.docs(srv, _kind()).values()
        if user_id is None or srv.user_in_org(user_id, d["id"])
    ]
    return _engine.reply(call.route.full_name, _engine.list_page(call, items))


async def org_delete(srv: Server, call: Call) -> web.Response:
    """The organization, its applications (with everything under them) and its objects."""
    doc = _engine.require(srv, _kind(), call.params)
    for app in [a for a in srv.store.applications.values() if a.owner_id == doc["id"]]:
        from .applications import forget_application

        await forget_application(srv, app.id)
    _engine.remove_doc(srv, _kind(), doc)
    return _engine.reply(call.route.full_name, {"success": True})


async def org_remove_member(srv: Server, call: Call) -> web.Response:
    doc = _engine.require(srv, _kind(), call.params)
    user_id = call.q("userId")
    if not user_id:
        raise ValidationError("userId is required")
    before = len(doc.get("members", []))
    doc["members"] = [m for m in doc.get("members", []) if m.get("userId") != user_id]
    if len(doc["members"]) == before:
        raise HttpError(404, "NotFound", "Member was not found")
    return _engine.reply(call.route.full_name, copy.deepcopy(doc))


async def org_modify_member(srv: Server, call: Call) -> web.Response:
    """A member's role changed; a registered user who is not a member yet is added (as an accepted invite)."""
    doc = _engine.require(srv, _kind(), call.params)
    body = _engine.check_body(call)
    if not isinstance(body, dict) or not body.get("userId"):
        raise ValidationError("userId: which member to modify")
    members = doc.setdefault("members", [])
    member = next((m for m in members if m.get("userId") == body["userId"]), None)
    if member is None:
        user = srv.store.users.get(body["userId"])
        if user is None:
            raise ValidationError(f"userId: no user {body['userId']}")
        member = {"userId": user.id, "email": user.email}
        members.append(member)
    member.update({k: copy.deepcopy(v) for k, v in body.items() if k != "userId"})
    return _engine.reply(call.route.full_name, copy.deepcopy(doc))


HANDLERS: dict[str, Handler] = {
    "org.modify_member": org_modify_member,
    "orgs.post": orgs_post,
    "orgs.get": orgs_get,
    "org.delete": org_delete,
    "org.remove_member": org_remove_member,
}

"""Emulated experience users and groups: unique emails, passwords kept but never returned, group membership both ways."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from ...errors import ValidationError
from .._query import doc_matches
from . import _engine
from ._common import Call, Handler, Server, iso


def _users() -> _engine.Kind:
    return _engine.kinds()["experience_users"]


def _groups() -> _engine.Kind:
    return _engine.kinds()["experience_groups"]


def _groups_of(srv: Server, call: Call, user_id: str) -> list[dict[str, Any]]:
    return [g for g in _engine.scoped(srv, _groups(), call.params) if user_id in g.get("experienceUserIds", [])]


def _user_json(srv: Server, call: Call, user: dict[str, Any]) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in user.items() if k not in ("password", "experienceGroupIds")}
    out["experienceGroups"] = [
        {"id": g["id"], "name": g.get("name", ""), "parentId": g.get("parentId")} for g in _groups_of(srv, call, user["id"])
    ]
    return out


def _set_groups(srv: Server, call: Call, user_id: str, group_ids: Any) -> None:
    if not isinstance(group_ids, list):
        raise ValidationError("experienceGroupIds must be a list of group ids")
    groups = {g["id"]: g for g in _engine.scoped(srv, _groups(), call.params)}
    unknown = [g for g in group_ids if g not in groups]
    if unknown:
        raise ValidationError(f"experienceGroupIds: group {unknown[0]} is not in this application")
    for group in groups.values():
        members = group.setdefault("experienceUserIds", [])
        if group["id"] in group_ids and user_id not in members:
            members.append(user_id)
        elif group["id"] not in group_ids and user_id in members:
            members.remove(user_id)


def _check_email(srv: Server, call: Call, email: Any, own: str | None = None) -> str:
    if not isinstance(email, str) or "@" not in email:
        raise ValidationError("email: must be an email address")
    for user in _engine.scoped(srv, _users(), call.params):
        if user.get("email", "").lower() == email.lower() and user["id"] != own:
            raise ValidationError(f"email: an experience user with email {email} already exists")
    return email.lower()


async def users_post(srv: Server, call: Call) -> web.Response:
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("an experience user is a JSON object")
    email = _check_email(srv, call, body.get("email"))
    fields = {k: v for k, v in body.items() if k != "experienceGroupIds"}
    fields["email"] = email
    fields["passwordLastUpdated"] = iso(srv.store.clock())
    user = _engine.new_doc(srv.store, _users(), call.params, fields)
    if "experienceGroupIds" in body:
        _set_groups(srv, call, user["id"], body["experienceGroupIds"])
    return _engine.reply(call.route.full_name, _user_json(srv, call, user))


async def users_get(srv: Server, call: Call) -> web.Response:
    users = _engine.scoped(srv, _users(), call.params)
    group_id = call.q("experienceGroupId")
    if group_id:
        members = {u for g in _engine.scoped(srv, _groups(), call.params) if g["id"] == group_id for u in g.get("experienceUserIds", [])}
        users = [u for u in users if u["id"] in members]
    query = call.json_q("query")
    if query is not None:
        users = [u for u in users if doc_matches(u, query)]
    items = [_user_json(srv, call, u) for u in users]
    page = _engine.list_page(call, items, default_sort="email")
    page["applicationId"] = call.params["applicationId"]
    return _engine.reply(call.route.full_name, page)


async def user_get(srv: Server, call: Call) -> web.Response:
    return _engine.reply(call.route.full_name, _user_json(srv, call, _engine.require(srv, _users(), call.params)))


async def user_patch(srv: Server, call: Call) -> web.Response:
    user = _engine.require(srv, _users(), call.params)
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("an experience user patch is a JSON object")
    if "email" in body:
        body = {**body, "email": _check_email(srv, call, body["email"], own=user["id"])}
    if "experienceGroupIds" in body:
        _set_groups(srv, call, user["id"], body["experienceGroupIds"])
    now = iso(srv.store.clock())
    if "password" in body:
        user["passwordLastUpdated"] = now
    user.update({k: copy.deepcopy(v) for k, v in body.items() if k != "experienceGroupIds"})
    user["lastUpdated"] = now
    return _engine.reply(call.route.full_name, _user_json(srv, call, user))


async def user_delete(srv: Server, call: Call) -> web.Response:
    user = _engine.require(srv, _users(), call.params)
    for group in _groups_of(srv, call, user["id"]):
        group["experienceUserIds"].remove(user["id"])
    _engine.remove_doc(srv, _users(), user)
    return _engine.reply(call.route.full_name, {"success": True})


HANDLERS: dict[str, Handler] = {
    "experience_users.post": users_post,
    "experience_users.get": users_get,
    "experience_user.get": user_get,
    "experience_user.patch": user_patch,
    "experience_user.delete": user_delete,
}

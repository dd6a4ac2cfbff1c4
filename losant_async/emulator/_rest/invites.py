"""Emulated organization invitations: invite, list, revoke, resend, and accept or reject as the invited user."""

from __future__ import annotations

import copy
import secrets
from typing import Any

from aiohttp import web

from ..._time import parse_losant_time
from ...errors import ValidationError
from . import _engine
from ._common import Call, Handler, HttpError, Server, iso, json_response

_TTL_MS = 7 * 24 * 3600 * 1000  # Losant's invitations expire after a week
_ROLES = ("admin", "edit", "collaborate", "view", "none")

# The orgInvites/orgInvitesUser schemas of the catalog are malformed (their properties sit one level
# too deep), so these lists are answered as built here rather than completed from the schema.


def _kind() -> _engine.Kind:
    return _engine.kinds()["instance_org_invites"]


def _invites(srv: Server) -> dict[str, dict[str, Any]]:
    return _engine.docs(srv, _kind())


def _tokens(srv: Server) -> dict[str, str]:
    """Invite id -> the token Losant mails to the invitee (kept apart: no list answer carries it)."""
    return srv.store.docs.setdefault("invite_tokens", {})  # type: ignore[return-value]


def _org(srv: Server, org_id: str) -> dict[str, Any]:
    org = srv.store.docs.get("orgs", {}).get(org_id)
    if org is None:
        raise HttpError(404, "NotFound", "Organization was not found")
    return org


def _expired(srv: Server, invite: dict[str, Any]) -> bool:
    sent = parse_losant_time(invite.get("inviteDate"), now=srv.store.clock()) or 0
    return srv.store.clock() > sent + int(invite.get("ttl", _TTL_MS))


def _public(srv: Server, invite: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(invite)
    out["hasExpired"] = _expired(srv, invite)
    return out


def _pending(srv: Server, org_id: str) -> list[dict[str, Any]]:
    items = [_public(srv, i) for i in _invites(srv).values() if i.get("orgId") == org_id]
    return sorted(items, key=lambda i: (i.get("inviteDate", ""), i["id"]))


def _role_info(body: dict[str, Any]) -> dict[str, Any]:
    role = body.get("role")
    if role not in _ROLES:
        raise ValidationError(f"role must be one of {', '.join(_ROLES)}")
    return {k: copy.deepcopy(body[k]) for k in ("role", "applicationRoles", "dashboardRoles") if k in body}


def _touch(srv: Server, invite: dict[str, Any]) -> None:
    now = srv.store.clock()
    invite["inviteDate"] = iso(now)
    invite["ttl"] = _TTL_MS
    _tokens(srv)[invite["id"]] = secrets.token_urlsafe(24)


async def invite_member(srv: Server, call: Call) -> web.Response:
    """A pending invitation (the token Losant would mail is kept for ``/invites``); the org's pending list."""
    org = _org(srv, call.params["orgId"])
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("an invitation is a JSON object")
    email = str(body.get("email", "")).lower()
    if "@" not in email:
        raise ValidationError("email: must be an email address")
    members = {str(m.get("email", "")).lower() for m in org.get("members", []) if isinstance(m, dict)}
    if email in members:
        raise ValidationError(f"email: {email} is already a member of the organization")
    if any(i.get("orgId") == org["id"] and i.get("email") == email for i in _invites(srv).values()):
        raise ValidationError(f"email: {email} already has a pending invitation")
    params = {"orgId": org["id"]}
    if org.get("instanceId"):
        params["instanceId"] = org["instanceId"]
    fields = {"email": email, **_role_info(body), "disallowTransfer": bool(body.get("disallowTransfer", False))}
    invite = _engine.new_doc(srv.store, _kind(), params, fields)
    if token := call.token:
        invite["invitedById"] = token.user_id
    _touch(srv, invite)
    return json_response(_pending(srv, org["id"]))


async def pending_invites(srv: Server, call: Call) -> web.Response:
    return json_response(_pending(srv, _org(srv, call.params["orgId"])["id"]))


async def revoke_invite(srv: Server, call: Call) -> web.Response:
    org = _org(srv, call.params["orgId"])
    invite = _invites(srv).get(call.q("inviteId") or "")
    if invite is None or invite.get("orgId") != org["id"]:
        raise HttpError(404, "NotFound", "Invite was not found")
    _invites(srv).pop(invite["id"], None)
    _tokens(srv).pop(invite["id"], None)
    return json_response(_pending(srv, org["id"]))


async def resend_invite(srv: Server, call: Call) -> web.Response:
    """A fresh token and week; the role info of the body replaces the invitation's."""
    invite = _engine.require(srv, _kind(), call.params)
    body = _engine.check_body(call)
    if isinstance(body, dict) and body:
        invite.update(_role_info(body))
    _touch(srv, invite)
    return _engine.reply(call.route.full_name, _public(srv, invite), 201)


def _accept(srv: Server, invite: dict[str, Any], user_id: str, email: str) -> str:
    org = _org(srv, invite["orgId"])
    members = org.setdefault("members", [])
    if not any(isinstance(m, dict) and m.get("userId") == user_id for m in members):
        member = {"userId": user_id, "email": email, "role": invite.get("role", "view")}
        member.update({k: copy.deepcopy(invite[k]) for k in ("applicationRoles", "dashboardRoles") if k in invite})
        members.append(member)
    org["lastUpdated"] = iso(srv.store.clock())
    return str(org["id"])


def _user_invite_json(srv: Server, invite: dict[str, Any]) -> dict[str, Any]:
    org = srv.store.docs.get("orgs", {}).get(invite["orgId"], {})
    return {
        "id": invite["id"],
        "orgName": org.get("name", ""),
        "role": invite.get("role"),
        "inviteDate": invite.get("inviteDate"),
        "ttl": invite.get("ttl"),
        "expired": _expired(srv, invite),
        "requiresMFA": org.get("mfaMode") == "required",
    }


def _mine(srv: Server, call: Call) -> tuple[str, str, list[dict[str, Any]]]:
    token = call.token
    user = srv.store.users.get(token.user_id or "") if token is not None else None
    if user is None:
        raise HttpError(401, "Unauthorized", "Only a user token reaches /me")
    email = user.email.lower()
    return user.id, email, [i for i in _invites(srv).values() if i.get("email") == email]


async def my_invites(srv: Server, call: Call) -> web.Response:
    _, _, mine = _mine(srv, call)
    return json_response([_user_invite_json(srv, i) for i in mine])


def _my_invite(srv: Server, call: Call) -> tuple[str, str, dict[str, Any]]:
    user_id, email, mine = _mine(srv, call)
    invite = next((i for i in mine if i["id"] == call.params.get("inviteId")), None)
    if invite is None:
        raise HttpError(404, "NotFound", "Invite was not found")
    return user_id, email, invite


async def my_invite(srv: Server, call: Call) -> web.Response:
    _, _, invite = _my_invite(srv, call)
    return _engine.reply(call.route.full_name, _user_invite_json(srv, invite))


async def respond_to_invite(srv: Server, call: Call) -> web.Response:
    """``accept`` makes the user a member with the invitation's role; either answer ends the invitation."""
    user_id, email, invite = _my_invite(srv, call)
    body = _engine.check_body(call)
    action = body.get("action") if isinstance(body, dict) else None
    if action not in ("accept", "reject"):
        raise ValidationError("action must be accept or reject")
    if _expired(srv, invite):
        raise ValidationError("the invitation has expired")
    out: dict[str, Any] = {"result": "rejected" if action == "reject" else "accepted"}
    if action == "accept":
        out["orgId"] = _accept(srv, invite, user_id, email)
    _invites(srv).pop(invite["id"], None)
    _tokens(srv).pop(invite["id"], None)
    return _engine.reply(call.route.full_name, out)


def _by_token(srv: Server, token: Any, email: Any) -> dict[str, Any]:
    for invite_id, secret in _tokens(srv).items():
        invite = _invites(srv).get(invite_id)
        if invite is None or not isinstance(token, str):
            continue
        if secrets.compare_digest(secret, token) and str(email or "").lower() == invite.get("email"):
            return invite
    raise HttpError(404, "NotFound", "Invite was not found")


async def invite_info(srv: Server, call: Call) -> web.Response:
    invite = _by_token(srv, call.q("token"), call.q("email"))
    org = srv.store.docs.get("orgs", {}).get(invite["orgId"], {})
    fields = ("email", "role", "inviteDate", "ttl", "disallowTransfer")
    return _engine.reply(call.route.full_name, {"orgName": org.get("name", ""), **{k: invite.get(k) for k in fields}})


async def invite_action(srv: Server, call: Call) -> web.Response:
    """Accept or reject by the mailed token; accepting needs a user with the invited email."""
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("body must be {email, token, accept}")
    invite = _by_token(srv, body.get("token"), body.get("email"))
    if _expired(srv, invite):
        raise ValidationError("the invitation has expired")
    out: dict[str, Any] = {"accepted": bool(body.get("accept"))}
    if body.get("accept"):
        user = next((u for u in srv.store.users.values() if u.email.lower() == invite["email"]), None)
        if user is None:
            raise ValidationError("no user has the invited email yet: sign up first")
        out["orgId"] = _accept(srv, invite, user.id, invite["email"])
    _invites(srv).pop(invite["id"], None)
    _tokens(srv).pop(invite["id"], None)
    return _engine.reply(call.route.full_name, out)


HANDLERS: dict[str, Handler] = {
    "org.invite_member": invite_member,
    "org.pending_invites": pending_invites,
    "org.revoke_invite": revoke_invite,
    "instance_org_invite.resend_invite": resend_invite,
    "me.invites": my_invites,
    "me.invite": my_invite,
    "me.respond_to_invite": respond_to_invite,
    "org_invites.get": invite_info,
    "org_invites.post": invite_action,
}

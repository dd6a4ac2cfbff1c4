"""Emulated account actions of ``me`` and ``org``: two-factor auth, GitHub link, email verification,
recent items, and moving applications and dashboards between a user and organizations."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import secrets
import struct
from typing import Any

from aiohttp import web

from ...errors import ValidationError
from . import _engine
from ._common import Call, Handler, Server, iso
from .me import _check_password, _profile, _user, me_json

NOT_SENT_EMAIL = "the emulator sends no email: the verification mail is recorded in the user's outbox"
_RECENT = 20  # items kept per list, newest first


def _secrets(srv: Server) -> dict[str, dict[str, str]]:
    """User id -> two-factor secrets (kept out of the profile the API echoes)."""
    return srv.store.docs.setdefault("user_secrets", {})


def _body(call: Call) -> dict[str, Any]:
    body = _engine.check_body(call)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body


def totp(key: str, stamp_ms: int, step: int = 0) -> str:
    """RFC 6238 code (SHA-1, 30 s, 6 digits) of a base32 key, ``step`` periods away from ``stamp_ms``."""
    counter = stamp_ms // 30_000 + step
    digest = hmac.new(base64.b32decode(key), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{code % 1_000_000:06d}"


def _check_code(srv: Server, key: str, code: Any) -> None:
    now = srv.store.clock()
    if not isinstance(code, str) or not any(hmac.compare_digest(totp(key, now, s), code) for s in (-1, 0, 1)):
        raise ValidationError("twoFactorCode: does not match")


async def generate_two_factor(srv: Server, call: Call) -> web.Response:
    user = _user(srv, call)
    key = base64.b32encode(secrets.token_bytes(20)).decode()
    _secrets(srv).setdefault(user.id, {})["pending"] = key
    return _engine.reply(call.route.full_name, {"key": key, "keyUri": f"otpauth://totp/Losant:{user.email}?secret={key}&issuer=Losant"})


async def enable_two_factor(srv: Server, call: Call) -> web.Response:
    """Needs the password and a current code of the generated key; ``twoFactorAuthEnabled`` from then on."""
    user = _user(srv, call)
    body = _body(call)
    _check_password(user, body.get("password"))
    store = _secrets(srv).setdefault(user.id, {})
    key = body.get("twoFactorAuthKey") or store.get("pending")
    if not isinstance(key, str):
        raise ValidationError("twoFactorAuthKey: generate a key first")
    _check_code(srv, key, body.get("twoFactorCode"))
    store["active"] = key
    store.pop("pending", None)
    _profile(srv, user)["twoFactorAuthEnabled"] = True
    return _engine.reply(call.route.full_name, me_json(srv, user))


async def disable_two_factor(srv: Server, call: Call) -> web.Response:
    user = _user(srv, call)
    body = _body(call)
    _check_password(user, body.get("password"))
    key = _secrets(srv).get(user.id, {}).get("active")
    if key is None:
        raise ValidationError("two-factor authentication is not enabled")
    _check_code(srv, key, body.get("twoFactorCode"))
    _secrets(srv)[user.id].pop("active", None)
    _profile(srv, user)["twoFactorAuthEnabled"] = False
    return _engine.reply(call.route.full_name, me_json(srv, user))


async def disconnect_github(srv: Server, call: Call) -> web.Response:
    user = _user(srv, call)
    profile = _profile(srv, user)
    for field in ("githubName", "githubId"):
        profile.pop(field, None)
    profile["lastUpdated"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, me_json(srv, user))


async def verify_email(srv: Server, call: Call) -> web.Response:
    """Losant mails a verification link; the emulator records that mail in an outbox instead."""
    user = _user(srv, call)
    outbox = srv.store.docs.setdefault("outbox", {})
    mail_id = secrets.token_hex(12)
    outbox[mail_id] = {"to": user.email, "kind": "verifyEmail", "sentAt": iso(srv.store.clock())}
    return _engine.reply(call.route.full_name, {"success": True})


def _recent(srv: Server, user_id: str) -> dict[str, list[dict[str, Any]]]:
    return srv.store.docs.setdefault("recent_items", {}).setdefault(user_id, {})


def _recent_list(srv: Server, user_id: str, item_type: str, parent_id: str | None) -> dict[str, Any]:
    key = f"{item_type}:{parent_id or ''}"
    out: dict[str, Any] = {"itemType": item_type, "items": copy.deepcopy(_recent(srv, user_id).get(key, []))}
    if parent_id:
        out["parentId"] = parent_id
    return out


async def add_recent_item(srv: Server, call: Call) -> web.Response:
    """The item moved to the front of its list (one per id), at most 20 kept."""
    user = _user(srv, call)
    body = _body(call)
    item_type, item_id, parent = body["itemType"], body["itemId"], body.get("parentId")
    key = f"{item_type}:{parent or ''}"
    items = [i for i in _recent(srv, user.id).get(key, []) if i.get("id") != item_id]
    items.insert(0, {"id": item_id, "lastAccessed": iso(srv.store.clock())})
    _recent(srv, user.id)[key] = items[:_RECENT]
    return _engine.reply(call.route.full_name, _recent_list(srv, user.id, item_type, parent))


async def fetch_recent_items(srv: Server, call: Call) -> web.Response:
    user = _user(srv, call)
    item_type = call.q("itemType")
    if not item_type:
        raise ValidationError("itemType: which list of recent items")
    return _engine.reply(call.route.full_name, _recent_list(srv, user.id, item_type, call.q("parentId")))


def _transfer(srv: Server, call: Call, may: Any) -> None:
    """Every named application and dashboard must belong to ``source``; all move or none does."""
    body = _body(call)
    dest, dest_type = body["destinationId"], body["destinationType"]
    token = call.token
    user_id = token.user_id if token is not None else None
    if dest_type == "organization":
        if dest not in srv.store.docs.get("orgs", {}):
            raise ValidationError(f"destinationId: organization {dest} was not found")  # the catalog documents 400 only
        if not srv.user_in_org(user_id, dest):
            raise ValidationError("destinationId: the user is not a member of the destination organization")
    elif dest_type == "user":
        if dest not in srv.store.users:
            raise ValidationError(f"destinationId: user {dest} was not found")
    else:
        raise ValidationError("destinationType must be user or organization")
    apps = [srv.store.applications.get(a) for a in body.get("applicationIds") or []]
    if any(a is None or not may(a.owner_id) for a in apps):
        raise ValidationError("applicationIds: an application is not owned by the source of the transfer")
    dashboards = [srv.store.docs.get("dashboards", {}).get(d) for d in body.get("dashboardIds") or []]
    if any(d is None or not may(d.get("ownerId") or d.get("orgId")) for d in dashboards):
        raise ValidationError("dashboardIds: a dashboard is not owned by the source of the transfer")
    for app in apps:
        assert app is not None
        app.owner_id = dest
        app.updated = srv.store.clock()
    for dash in dashboards:
        assert dash is not None
        dash.pop("orgId", None)
        dash["ownerId"] = dest
        dash["ownerType"] = dest_type
        if dest_type == "organization":
            dash["orgId"] = dest


async def me_transfer(srv: Server, call: Call) -> web.Response:
    user = _user(srv, call)
    _transfer(srv, call, lambda owner: owner in (None, user.id))
    return _engine.reply(call.route.full_name, {"success": True})


async def org_transfer(srv: Server, call: Call) -> web.Response:
    org_id = call.params["orgId"]
    _transfer(srv, call, lambda owner: owner == org_id)
    return _engine.reply(call.route.full_name, {"success": True})


HANDLERS: dict[str, Handler] = {
    "me.generate_two_factor_auth": generate_two_factor,
    "me.enable_two_factor_auth": enable_two_factor,
    "me.disable_two_factor_auth": disable_two_factor,
    "me.disconnect_github": disconnect_github,
    "me.verify_email": verify_email,
    "me.add_recent_item": add_recent_item,
    "me.fetch_recent_items": fetch_recent_items,
    "me.transfer_resources": me_transfer,
    "org.transfer_resources": org_transfer,
}

"""Emulated ``me`` resource: the signed-in user (profile, password, deletion, token refresh)."""

from __future__ import annotations

import copy
import hmac
from typing import Any

from aiohttp import web

from ..._time import parse_losant_time
from ...errors import ValidationError
from ..store import ApiTokenRecord, UserRecord
from . import _engine
from ._common import Call, Handler, HttpError, Server, iso, json_response

_PROFILE = ("firstName", "lastName", "companyName", "title", "phoneNumber", "location", "url")


def _user(srv: Server, call: Call) -> UserRecord:
    token = call.token
    user = srv.store.users.get(token.user_id or "") if token is not None else None
    if user is None:
        raise HttpError(401, "Unauthorized", "Only a user token reaches /me")
    return user


def _profile(srv: Server, user: UserRecord) -> dict[str, Any]:
    return srv.store.docs.setdefault("users", {}).setdefault(user.id, {})


def me_json(srv: Server, user: UserRecord) -> dict[str, Any]:
    profile = _profile(srv, user)
    out = {k: copy.deepcopy(v) for k, v in profile.items()}
    out.update(
        {
            "id": user.id,
            "userId": user.id,
            "email": user.email,
            "creationDate": iso(user.created),
            "lastUpdated": profile.get("lastUpdated", iso(user.created)),
            "emailVerified": profile.get("emailVerified", True),
            "twoFactorAuthEnabled": bool(profile.get("twoFactorAuthEnabled", False)),
        }
    )
    names = [out.get("firstName"), out.get("lastName")]
    if any(names):
        out["fullName"] = " ".join(n for n in names if n)
    return out


async def refresh_token(srv: Server, call: Call) -> web.Response:
    current = call.token
    if current is None or current.kind != "user" or current.user_id is None:
        raise HttpError(401, "Unauthorized", "Only a user token can be refreshed")
    token = srv.store.add_token(application_id=None, scopes=current.scopes, kind="user", user_id=current.user_id)
    return json_response({"userId": current.user_id, "token": token.token})


async def me_get(srv: Server, call: Call) -> web.Response:
    return _engine.reply(call.route.full_name, me_json(srv, _user(srv, call)))


async def me_patch(srv: Server, call: Call) -> web.Response:
    user = _user(srv, call)
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("a profile patch is a JSON object")
    if "email" in body:
        email = body["email"]
        if any(u.email.lower() == str(email).lower() and u.id != user.id for u in srv.store.users.values()):
            raise ValidationError(f"email: {email} belongs to another user")
        user.email = email
    profile = _profile(srv, user)
    profile.update({k: copy.deepcopy(v) for k, v in body.items() if k in _PROFILE})
    profile["lastUpdated"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, me_json(srv, user))


def _check_password(user: UserRecord, password: Any) -> None:
    if not isinstance(password, str) or not hmac.compare_digest(user.password.encode(), password.encode()):
        raise ValidationError("password: does not match")


async def change_password(srv: Server, call: Call) -> web.Response:
    """The new password from now on; existing tokens stay valid unless ``invalidateExistingTokens``."""
    user = _user(srv, call)
    body = _engine.check_body(call)
    assert isinstance(body, dict)  # the schema requires an object
    _check_password(user, body["password"])
    user.password = body["newPassword"]
    if body.get("invalidateExistingTokens"):
        for record in [t for t in srv.store.tokens.values() if t.kind == "user" and t.user_id == user.id]:
            record.status = "inactive"
    token = srv.store.add_token(application_id=None, scopes=["all.User"], kind="user", user_id=user.id)
    _profile(srv, user)["passwordLastUpdated"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, {"userId": user.id, "token": token.token})


async def _two_factor(srv: Server, call: Call, enabled: bool) -> web.Response:
    """Turn two-factor sign-in on or off; the password is checked, the code is not (no authenticator here)."""
    user = _user(srv, call)
    body = _engine.check_body(call)
    assert isinstance(body, dict)  # the schema requires an object
    _check_password(user, body.get("password"))
    profile = _profile(srv, user)
    profile["twoFactorAuthEnabled"] = enabled
    profile["lastUpdated"] = iso(srv.store.clock())
    return _engine.reply(call.route.full_name, me_json(srv, user))


async def enable_two_factor_auth(srv: Server, call: Call) -> web.Response:
    return await _two_factor(srv, call, True)


async def disable_two_factor_auth(srv: Server, call: Call) -> web.Response:
    return await _two_factor(srv, call, False)


async def disconnect_github(srv: Server, call: Call) -> web.Response:
    """The user as they are: the emulator has no GitHub sign-in to disconnect."""
    return _engine.reply(call.route.full_name, me_json(srv, _user(srv, call)))


async def me_delete(srv: Server, call: Call) -> web.Response:
    """The account, its tokens and the applications it owns; needs the user's own credentials."""
    user = _user(srv, call)
    body = _engine.check_body(call)
    if not isinstance(body, dict) or str(body.get("email", "")).lower() != user.email.lower():
        raise ValidationError("email: does not match the signed-in user")
    _check_password(user, body.get("password"))
    from .applications import forget_application

    for app in [a for a in srv.store.applications.values() if a.owner_id == user.id]:
        await forget_application(srv, app.id)
    for token in [t for t, r in srv.store.tokens.items() if r.user_id == user.id]:
        del srv.store.tokens[token]
    srv.store.users.pop(user.id, None)
    srv.store.docs.get("users", {}).pop(user.id, None)
    return _engine.reply(call.route.full_name, {"success": True})


# -- the user's API tokens: real tokens, usable at once -------------------------------------------


def _token_ids(srv: Server) -> dict[str, dict[str, Any]]:
    return srv.store.docs.setdefault("user_api_tokens", {})


def _user_token_json(srv: Server, record: ApiTokenRecord, *, include_token: bool = False) -> dict[str, Any]:
    out = srv.token_json(record, include_token=include_token)
    out.update({"ownerId": record.user_id, "ownerType": "user"})
    return out


def _user_tokens(srv: Server, user: UserRecord) -> list[ApiTokenRecord]:
    ids = _token_ids(srv)
    return [t for t in srv.store.tokens.values() if t.id in ids and t.user_id == user.id]


def _user_token(srv: Server, call: Call) -> ApiTokenRecord:
    user = _user(srv, call)
    found = next((t for t in _user_tokens(srv, user) if t.id == call.params["apiTokenId"]), None)
    if found is None:
        raise HttpError(404, "NotFound", "API token was not found")
    return found


async def user_tokens_post(srv: Server, call: Call) -> web.Response:
    """A token acting as the user (scope ``all.User`` unless ``scope`` says less)."""
    user = _user(srv, call)
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("an API token is a JSON object")
    expires = parse_losant_time(body["expirationDate"], now=srv.store.clock()) if body.get("expirationDate") else None
    record = srv.store.add_token(
        application_id=None,
        scopes=body.get("scope") or ["all.User"],
        kind="user",
        user_id=user.id,
        name=str(body.get("name") or "API token"),
        description=str(body.get("description", "")),
        expires=expires,
    )
    _token_ids(srv)[record.id] = {"id": record.id}
    return _engine.reply(call.route.full_name, _user_token_json(srv, record, include_token=True))


async def user_tokens_get(srv: Server, call: Call) -> web.Response:
    items = [_user_token_json(srv, t) for t in _user_tokens(srv, _user(srv, call))]
    return _engine.reply(call.route.full_name, _engine.list_page(call, items))


async def user_token_get(srv: Server, call: Call) -> web.Response:
    return _engine.reply(call.route.full_name, _user_token_json(srv, _user_token(srv, call)))


async def user_token_patch(srv: Server, call: Call) -> web.Response:
    record = _user_token(srv, call)
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("an API token patch is a JSON object")
    if "name" in body:
        record.name = str(body["name"])
    if "description" in body:
        record.description = str(body["description"])
    if "status" in body:
        record.status = body["status"]
    return _engine.reply(call.route.full_name, _user_token_json(srv, record))


async def user_token_delete(srv: Server, call: Call) -> web.Response:
    record = _user_token(srv, call)
    srv.store.tokens.pop(record.token, None)
    _token_ids(srv).pop(record.id, None)
    return _engine.reply(call.route.full_name, {"success": True})


HANDLERS: dict[str, Handler] = {
    "user_api_tokens.post": user_tokens_post,
    "user_api_tokens.get": user_tokens_get,
    "user_api_token.get": user_token_get,
    "user_api_token.patch": user_token_patch,
    "user_api_token.delete": user_token_delete,
    "me.refresh_token": refresh_token,
    "me.get": me_get,
    "me.patch": me_patch,
    "me.change_password": change_password,
    "me.delete": me_delete,
    "me.enable_two_factor_auth": enable_two_factor_auth,
    "me.disable_two_factor_auth": disable_two_factor_auth,
    "me.disconnect_github": disconnect_github,
}

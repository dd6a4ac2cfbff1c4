"""Emulated ``auth`` resource: device and user authentication."""

from __future__ import annotations

from aiohttp import web

from . import _engine
from ._common import Call, Handler, HttpError, Server, json_response


async def auth_device(srv: Server, call: Call) -> web.Response:
    _engine.check_body(call)  # a body the deviceCredentials schema refuses is a 400, not a 401
    body = srv.body_of(call)
    device = srv.store.devices.get(str(body.get("deviceId", "")))
    if device is None or not srv.store.check_key(body.get("key"), body.get("secret"), device):
        raise HttpError(401, "Unauthorized", "Invalid device credentials")
    token = srv.store.add_token(
        application_id=device.application_id, scopes=["all.Device"], kind="device", device_id=device.id
    )
    key = srv.store.keys[body["key"]]  # check_key succeeded: it exists
    return json_response(
        {
            "token": token.token,
            "applicationId": device.application_id,
            "deviceId": device.id,
            "deviceClass": device.device_class,
            "ownerType": "user",
            "filterType": key.filter_type,
            "pubTopics": list(key.pub_topics),
            "subTopics": list(key.sub_topics),
        }
    )


async def auth_external(srv: Server, call: Call) -> web.Response:
    """GitHub and SAML sign-in need an identity provider the emulator does not have."""
    srv.body_of(call)
    raise HttpError(401, "Unauthorized", "The emulator has no GitHub or SAML identity provider: use /auth/user")


async def auth_user(srv: Server, call: Call) -> web.Response:
    _engine.check_body(call)  # a body the userCredentials schema refuses is a 400, not a 401
    body = srv.body_of(call)
    user = srv.store.check_user(body.get("email"), body.get("password"))
    if user is None:
        raise HttpError(401, "Unauthorized", "Invalid email or password")
    token = srv.store.add_token(application_id=None, scopes=["all.User"], kind="user", user_id=user.id)
    return json_response({"userId": user.id, "token": token.token})


HANDLERS: dict[str, Handler] = {
    "auth.authenticate_user_github": auth_external,
    "auth.authenticate_user_saml": auth_external,
    "auth.authenticate_device": auth_device,
    "auth.authenticate_user": auth_user,
}

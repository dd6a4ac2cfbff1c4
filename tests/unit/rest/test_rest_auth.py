"""Token sources: static tokens, device credentials (re-auth once on 401), user credentials (renewal)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import msgspec
import pytest

from losant_async.errors import UnauthorizedError, ValidationError
from losant_async.rest import (
    DeviceCredentials,
    LosantClient,
    StaticToken,
    TokenSource,
    UserCredentials,
)
from losant_async.rest.auth import jwt_expiry
from tests.unit.rest.rest_unit_helpers import APP_ID, BASE, DEVICE_ID, GET_THING, Server

THING = {"id": DEVICE_ID}
KEY, SECRET = "key-abc", "SECRET-xyz-987"


def jwt(exp: float, marker: str = "") -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256'})}.{part({'exp': exp, 'm': marker})}.sig"


def test_token_sources_satisfy_the_protocol_and_hide_secrets() -> None:
    for source in (
        StaticToken("abc"),
        DeviceCredentials(DEVICE_ID, KEY, SECRET),
        UserCredentials("a@b.c", SECRET),
    ):
        assert isinstance(source, TokenSource)
        assert SECRET not in repr(source) and "abc" not in repr(source).replace("'***'", "")
    assert (
        repr(DeviceCredentials(DEVICE_ID, KEY, SECRET))
        == f"DeviceCredentials(device_id={DEVICE_ID!r}, key='***', secret='***')"
    )


def test_empty_credentials_are_refused() -> None:
    with pytest.raises(ValidationError):
        StaticToken("")
    with pytest.raises(ValidationError):
        DeviceCredentials(DEVICE_ID, "", SECRET)
    with pytest.raises(ValidationError):
        UserCredentials("a@b.c", "")


def test_jwt_expiry() -> None:
    assert jwt_expiry(jwt(1234.0)) == 1234.0
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.!!!.c") is None


async def test_device_credentials_authenticate_once_and_again_once_on_401(server: Server) -> None:
    server.on(
        "/auth/device",
        200,
        {
            "token": "tok-1",
            "applicationId": APP_ID,
            "deviceId": DEVICE_ID,
            "deviceClass": "standalone",
        },
    )
    server.on(
        "/auth/device",
        200,
        {
            "token": "tok-2",
            "applicationId": APP_ID,
            "deviceId": DEVICE_ID,
            "deviceClass": "standalone",
        },
    )
    server.reply(200, THING)
    server.reply(401, {"type": "Unauthorized", "message": "expired"})
    server.reply(200, THING)
    creds = DeviceCredentials(DEVICE_ID, KEY, SECRET)
    async with LosantClient(creds, url=BASE) as client:
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    paths = [c.path for c in server.calls]
    thing = f"/applications/{APP_ID}/things/{DEVICE_ID}"
    assert paths == ["/auth/device", thing, thing, "/auth/device", thing]
    auth_call = server.calls[0]
    assert "Authorization" not in auth_call.headers
    assert msgspec.json.decode(auth_call.data) == {
        "deviceId": DEVICE_ID,
        "key": KEY,
        "secret": SECRET,
    }
    assert [c.headers.get("Authorization") for c in server.calls if c.path != "/auth/device"] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]
    assert creds.application_id == APP_ID and creds.device_class == "standalone"


async def test_a_second_401_is_raised_not_retried_forever(server: Server) -> None:
    server.on("/auth/device", 200, {"token": "tok"})
    server.reply(401, {"type": "Unauthorized", "message": "no"})
    async with LosantClient(DeviceCredentials(DEVICE_ID, KEY, SECRET), url=BASE) as client:
        with pytest.raises(UnauthorizedError):
            await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    assert [c.path for c in server.calls].count("/auth/device") == 2
    assert len(server.calls) == 4


async def test_wrong_device_credentials_raise_unauthorized_without_leaking_the_secret(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.on("/auth/device", 401, {"type": "Unauthorized", "message": "Invalid credentials"})
    async with LosantClient(DeviceCredentials(DEVICE_ID, KEY, SECRET), url=BASE) as client:
        with pytest.raises(UnauthorizedError) as info:
            await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in caplog.text
    assert len(server.calls) == 1


async def test_concurrent_callers_share_one_authentication(server: Server) -> None:
    server.on("/auth/device", 200, {"token": "tok"})
    server.reply(200, THING)
    async with LosantClient(DeviceCredentials(DEVICE_ID, KEY, SECRET), url=BASE) as client:
        await asyncio.gather(
            *(
                client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
                for _ in range(10)
            )
        )
    assert [c.path for c in server.calls].count("/auth/device") == 1
    assert len(server.calls) == 11


async def test_user_credentials_log_in_then_renew_before_expiry(server: Server) -> None:
    now = [1_000_000.0]
    first, renewed = jwt(now[0] + 3600, "first"), jwt(now[0] + 7200, "renewed")
    server.on("/auth/user", 200, {"token": first, "userId": APP_ID})
    server.on("/me/refreshToken", 200, {"token": renewed, "userId": APP_ID})
    server.reply(200, THING)
    creds = UserCredentials("a@b.example", SECRET, clock=lambda: now[0])
    async with LosantClient(creds, url=BASE) as client:
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
        now[0] += 3590  # within renew_before (60 s) of expiry
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    paths = [c.path for c in server.calls]
    assert paths[0] == "/auth/user" and paths[2] == "/me/refreshToken"
    assert msgspec.json.decode(server.calls[0].data) == {"email": "a@b.example", "password": SECRET}
    assert server.calls[2].headers["Authorization"] == f"Bearer {first}"
    assert server.calls[3].headers["Authorization"] == f"Bearer {renewed}"
    assert SECRET not in repr(creds)


async def test_user_credentials_log_in_again_when_renewal_is_refused(server: Server) -> None:
    now = [1_000_000.0]
    server.on("/auth/user", 200, {"token": jwt(now[0] + 100, "a")})
    server.on("/auth/user", 200, {"token": jwt(now[0] + 5000, "b")})
    server.on("/me/refreshToken", 401, {"type": "Unauthorized", "message": "expired"})
    server.reply(200, THING)
    async with LosantClient(
        UserCredentials("a@b.example", SECRET, clock=lambda: now[0]), url=BASE
    ) as client:
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
        now[0] += 90
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    assert [c.path for c in server.calls].count("/auth/user") == 2

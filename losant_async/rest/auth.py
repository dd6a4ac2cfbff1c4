"""Where the client's bearer token comes from: a fixed token, device credentials, or user credentials.

A ``TokenSource`` is asked for a token before each call that needs one, and
told once when the server refused it (401), so it may authenticate again. The
credentials live only in the token source; every repr shows ``***``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .._json import decode_any
from ..errors import DecodeError, UnauthorizedError, ValidationError
from ._operation import Operation, Param
from ._resource import Requester
from .options import RequestOptions, check_header

__all__ = ["DeviceCredentials", "StaticToken", "TokenSource", "UserCredentials"]


@runtime_checkable
class TokenSource(Protocol):
    """Supplies bearer tokens to a ``LosantClient``."""

    async def get_token(self, requester: Requester) -> str | None:
        """The token to send now (authenticating first if needed), or None for none."""
        ...

    async def refresh(self, requester: Requester, rejected: str | None) -> str | None:
        """The server refused ``rejected`` (401): a new token to retry with once, or None."""
        ...


class StaticToken:
    """A fixed token (an application API token, say); it cannot be renewed."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or not token.strip():
            raise ValidationError("token must be a non-empty string")
        check_header("Authorization", token, what="token")
        self._token = token

    @property
    def token(self) -> str:
        """The token itself (never shown in a repr)."""
        return self._token

    async def get_token(self, requester: Requester) -> str | None:
        """The fixed token."""
        return self._token

    async def refresh(self, requester: Requester, rejected: str | None) -> str | None:
        """Always None: a fixed token cannot be renewed."""
        return None

    def __repr__(self) -> str:
        return "StaticToken('***')"


# Declared here rather than taken from the generated surface: a token source must
# work whatever the generated package looks like, and these three never change.
_CREDENTIALS = (Param("credentials", "credentials", "body", "hash", True),)
_AUTH_DEVICE = Operation(
    "auth",
    "authenticate_device",
    "POST",
    "/auth/device",
    _CREDENTIALS,
    {200: None},
    auth_required=False,
)
_AUTH_USER = Operation(
    "auth",
    "authenticate_user",
    "POST",
    "/auth/user",
    _CREDENTIALS,
    {200: None},
    auth_required=False,
)
# auth_required=False: the renewing call carries the old token itself (in its
# options), so it never asks this source for a token while holding the lock.
_REFRESH = Operation(
    "me",
    "refresh_token",
    "GET",
    "/me/refreshToken",
    (),
    {200: None},
    auth_required=False,
    idempotent=True,
)


def _token_of(reply: Any, what: str) -> str:
    token = reply.get("token") if isinstance(reply, dict) else None
    if not isinstance(token, str) or not token:
        raise DecodeError(f"{what} reply has no token")
    return token


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, read without verifying it; None if absent.

    Losant's tokens are JWTs; the reply itself does not say when they expire.
    """
    pieces = token.split(".")
    if len(pieces) != 3:
        return None
    payload = pieces[1] + "=" * (-len(pieces[1]) % 4)
    try:
        claims = decode_any(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError, DecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


class _Renewable:
    """Shared machinery: one authentication in flight, shared by every waiting caller."""

    __slots__ = ("_lock", "_token")

    def __init__(self) -> None:
        self._token: str | None = None
        self._lock: asyncio.Lock | None = None

    def _get_lock(self) -> asyncio.Lock:
        # Created on first use so the object can be built outside a running loop.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _authenticate(self, requester: Requester) -> str:
        raise NotImplementedError

    def _stale(self) -> bool:
        return False

    async def get_token(self, requester: Requester) -> str | None:
        """The current token, authenticating first when there is none or it is about to expire."""
        token = self._token
        if token is not None and not self._stale():
            return token
        async with self._get_lock():
            if self._token is None or self._stale():
                self._token = await self._authenticate(requester)
            return self._token

    async def refresh(self, requester: Requester, rejected: str | None) -> str | None:
        """A new token after ``rejected`` was refused (or the one another caller already got)."""
        async with self._get_lock():
            if self._token is not None and self._token != rejected:
                return self._token  # another caller already renewed it
            self._token = None
            self._token = await self._authenticate(requester)
            return self._token


class DeviceCredentials(_Renewable):
    """A device's access key and secret: authenticates through ``POST /auth/device``.

    The first call that needs a token authenticates; a 401 later (the token
    expired or was revoked) authenticates once more and retries that call once.
    After authenticating, ``application_id`` and ``device_class`` say what the
    server answered.
    """

    __slots__ = ("_key", "_secret", "application_id", "device_class", "device_id")

    def __init__(self, device_id: str, key: str, secret: str) -> None:
        super().__init__()
        for name, value in (("device_id", device_id), ("key", key), ("secret", secret)):
            if not isinstance(value, str) or not value:
                raise ValidationError(f"{name} must be a non-empty string")
        self.device_id: str = device_id
        self._key = key
        self._secret = secret
        self.application_id: str | None = None
        self.device_class: str | None = None

    async def _authenticate(self, requester: Requester) -> str:
        body = {"deviceId": self.device_id, "key": self._key, "secret": self._secret}
        reply = await requester.request(_AUTH_DEVICE, (body,), raw=True, options=None)
        token = _token_of(reply, "authenticate_device")
        self.application_id = reply.get("applicationId")
        self.device_class = reply.get("deviceClass")
        return token

    def __repr__(self) -> str:
        return f"DeviceCredentials(device_id={self.device_id!r}, key='***', secret='***')"


class UserCredentials(_Renewable):
    """A user's email and password: authenticates through ``POST /auth/user``.

    Before the token expires (``renew_before`` seconds ahead of the ``exp`` in
    the token, when it has one) the next call renews it through
    ``GET /me/refreshToken``; if that fails, or on a 401, it logs in again.
    """

    __slots__ = (
        "_clock",
        "_expires",
        "_password",
        "_two_factor_code",
        "email",
        "renew_before",
        "token_ttl",
    )

    def __init__(
        self,
        email: str,
        password: str,
        *,
        two_factor_code: str | None = None,
        token_ttl: int | None = None,
        renew_before: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        if not isinstance(email, str) or not email:
            raise ValidationError("email must be a non-empty string")
        if not isinstance(password, str) or not password:
            raise ValidationError("password must be a non-empty string")
        self.email: str = email
        self._password = password
        self._two_factor_code = two_factor_code
        self.token_ttl: int | None = token_ttl
        self.renew_before: float = renew_before
        self._clock = clock
        self._expires: float | None = None

    def _stale(self) -> bool:
        return self._expires is not None and self._clock() >= self._expires - self.renew_before

    async def _authenticate(self, requester: Requester) -> str:
        old = self._token
        if old is not None and self._stale():
            renew = RequestOptions(headers={"Authorization": f"Bearer {old}"})
            try:
                reply = await requester.request(_REFRESH, (), raw=True, options=renew)
                return self._remember(_token_of(reply, "refresh_token"))
            except (UnauthorizedError, DecodeError):
                pass  # the old token is no good any more: log in again
        body: dict[str, Any] = {"email": self.email, "password": self._password}
        if self._two_factor_code is not None:
            body["twoFactorCode"] = self._two_factor_code
        if self.token_ttl is not None:
            body["tokenTTL"] = self.token_ttl
        reply = await requester.request(_AUTH_USER, (body,), raw=True, options=None)
        return self._remember(_token_of(reply, "authenticate_user"))

    def _remember(self, token: str) -> str:
        self._expires = jwt_expiry(token)
        return token

    def __repr__(self) -> str:
        return f"UserCredentials(email={self.email!r}, password='***')"

"""Who may do what in the emulator: the one table every REST action, data query and MQTT session is decided by.

A caller is a token (user, application API token, device token) over REST, or an
access key with its device over MQTT. ``TABLE`` lists, row by row, what each kind
of caller may reach; the dispatcher asks ``authorize`` before any handler runs,
handlers that list or query devices narrow them with ``visible_devices``, and the
MQTT server asks ``session_allowed`` whenever credentials change. New rules (an
organization member's role, say) are new rows here, not checks in a handler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ._certs import KEY_PREFIX, certificate_live
from ._roles import owner_from, refusal
from ._routes import Route

if TYPE_CHECKING:
    from .store import ApiTokenRecord, DeviceRecord, KeyRecord, Store

__all__ = [
    "REVOKING",
    "TABLE",
    "Denied",
    "Membership",
    "Rule",
    "authenticate",
    "authorize",
    "live_token",
    "publish_target_allowed",
    "session_allowed",
    "visible_devices",
]


class Denied(Exception):
    """A refusal: ``status`` 401 (who are you) or 403 (not you), with Losant's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Membership(Protocol):
    """Who belongs where: the server answers from its organizations (their roles can extend it)."""

    def user_in_org(self, user_id: str | None, org_id: str) -> bool: ...

    def user_reaches_app(self, user_id: str | None, application_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Request:
    """One REST call as the table sees it."""

    token: ApiTokenRecord
    route: Route
    params: Mapping[str, str]
    store: Store
    members: Membership


@dataclass(frozen=True, slots=True)
class Rule:
    """One row: for ``callers`` (token kinds) where ``applies``, ``allows`` must hold or ``refusal`` is the 403."""

    who: str
    """The row in words, as docs/emulator.md's table shows it."""
    callers: frozenset[str]
    applies: Callable[[Request], bool]
    allows: Callable[[Request], bool]
    refusal: str | Callable[[Request], str]
    """Losant's message, or how to word it from the call."""


def _has(param: str) -> Callable[[Request], bool]:
    return lambda r: param in r.params


def _org_path(r: Request) -> bool:
    return "orgId" in r.params and r.route.path.startswith("/orgs/")


def _user_path(r: Request) -> bool:
    return r.route.path.startswith("/me") or r.route.path.startswith("/orgs")


def _role_refusal(r: Request) -> str | None:
    return refusal(
        r.store.docs, owner_from(r.store.applications), r.token.user_id or "", r.route.full_name, r.route.method, r.params
    )


_APP_TOKENS = frozenset({"api", "device"})

TABLE: tuple[Rule, ...] = (
    Rule(
        "a user reaches the applications they own, those of their organizations, and unowned ones",
        frozenset({"user"}), _has("applicationId"),
        lambda r: r.members.user_reaches_app(r.token.user_id, r.params["applicationId"]),
        "This user has no access to the application",
    ),
    Rule(
        "a user reaches the organizations they are a member of",
        frozenset({"user"}), _org_path,
        lambda r: r.members.user_in_org(r.token.user_id, r.params["orgId"]),
        "This user is not a member of the organization",
    ),
    Rule(
        "an application or device token reaches its own application only",
        _APP_TOKENS, _has("applicationId"),
        lambda r: r.token.application_id is None or r.params["applicationId"] == r.token.application_id,
        "Token is not valid for this application",
    ),
    Rule(
        "a device token acts only on its own device",
        frozenset({"device"}), _has("deviceId"),
        lambda r: r.params["deviceId"] == r.token.device_id,
        "A device token may only act on its own device",
    ),
    Rule(
        "an application or device token never reaches /me or /orgs (user actions)",
        _APP_TOKENS, _user_path,
        lambda r: r.token.application_id is None,
        "This action needs a user token",
    ),
    Rule(
        "a user's instance, organization and application roles allow the action (emulator/_roles.py)",
        frozenset({"user"}), lambda r: True,
        lambda r: _role_refusal(r) is None,
        lambda r: _role_refusal(r) or "This user's role does not allow the action",
    ),
)


REVOKING = frozenset({
    "application_key.patch", "application_key.delete",
    "application_api_token.patch", "application_api_token.delete",
    "user_api_token.patch", "user_api_token.delete",
    "me.change_password", "me.delete",
    "device.patch", "device.delete", "devices.patch", "devices.delete",
    "application.delete",
})
"""Actions after which every open session and stream is judged again: they can take credentials away."""


def live_token(store: Store, raw: str) -> ApiTokenRecord | None:
    """The token's record while it authenticates: known, active, unexpired and, for a device
    token, its device still in the token's application."""
    token = store.token(raw)
    if token is not None and token.kind == "device":
        device = store.devices.get(token.device_id or "")
        if device is None or device.application_id != token.application_id:
            return None
    return token


def authenticate(store: Store, authorization: str, route: Route) -> ApiTokenRecord:
    """The live token of an ``Authorization: Bearer`` header with a scope for ``route``.

    A device token lives only as long as its device: once the device is deleted
    (or moved out of the token's application) the token answers 401.
    """
    scheme, _, value = authorization.partition(" ")
    token = live_token(store, value.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        raise Denied(401, "Invalid access token")
    if route.scopes and not route.scopes.intersection(token.scopes):
        raise Denied(403, f"Token does not have a scope allowing {route.full_name}")
    return token


def authorize(store: Store, members: Membership, token: ApiTokenRecord, route: Route, params: Mapping[str, str]) -> None:
    """Raise Denied(403) at the first row of ``TABLE`` that applies to the call and refuses it."""
    request = Request(token, route, params, store, members)
    for rule in TABLE:
        if token.kind in rule.callers and rule.applies(request) and not rule.allows(request):
            raise Denied(403, rule.refusal(request) if callable(rule.refusal) else rule.refusal)


def visible_devices(token: ApiTokenRecord | None, devices: Iterable[DeviceRecord]) -> list[DeviceRecord]:
    """The devices a caller may see among ``devices`` (already its application's): a device token sees its own."""
    if token is not None and token.kind == "device":
        return [d for d in devices if d.id == token.device_id]
    return list(devices)


def publish_target_allowed(store: Store, application_id: str, topic: str) -> bool:
    """Whether REST ``mqttPublishMessage`` of ``application_id`` may publish on ``topic``.

    A custom topic is the application's own namespace. A ``losant/<deviceId>/...``
    topic names a device: only a device of the caller's application may be reached.
    """
    if not topic.startswith("losant/"):
        return True
    parts = topic.split("/")
    device = store.devices.get(parts[1]) if len(parts) > 2 else None
    return device is not None and device.application_id == application_id


def session_allowed(store: Store, key: KeyRecord | None, device: DeviceRecord, *, coverage: bool = True) -> bool:
    """Whether an MQTT session authenticated by ``key`` for ``device`` may go on.

    The key must still exist, be active, belong to the device's application and
    (with ``coverage``) cover the device: its device ids or tags may have changed.
    Without ``coverage`` the check costs two dictionary look-ups, cheap enough for
    every PUBLISH; coverage is judged again whenever a key or device changes.
    """
    if device.id not in store.devices:
        return False
    if key is None:
        return True
    if key.key.startswith(KEY_PREFIX):
        # a client certificate's session: its certificate must stay registered and active
        return certificate_live(store, key, device) and (not coverage or store.key_covers(key, device))
    current = store.keys.get(key.key)
    if current is None or current.id != key.id:
        return False
    if current.status != "active" or current.application_id != device.application_id:
        return False
    return not coverage or store.key_covers(current, device)

"""The emulator's records: applications, devices, keys, tokens, users, states, commands; ids, tokens and counters."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ... import _json
from ...errors import ValidationError

__all__ = [
    "MAX_TIME_MS",
    "check_time",
    "ATTRIBUTE_NAME",
    "DATA_TYPES",
    "DAY_MS",
    "DEVICE_CLASSES",
    "ID_PATTERN",
    "KEY_FILTER_TYPES",
    "MAX_AGE_MS",
    "MAX_AHEAD_MS",
    "MAX_STRING",
    "ApiTokenRecord",
    "ApplicationRecord",
    "AttributeRecord",
    "BlobRecord",
    "Clock",
    "CommandRecord",
    "ConnectionLogEntry",
    "Counters",
    "DeviceRecord",
    "KeyRecord",
    "StateRecord",
    "UnknownObjectError",
    "UserRecord",
    "new_id",
    "new_token",
]

DAY_MS = 86_400_000
MAX_AGE_MS = 30 * DAY_MS
"""Losant keeps no state older than 30 days."""
MAX_AHEAD_MS = DAY_MS
"""Nor one more than a day in the future."""
MAX_STRING = 64 * 1024
MAX_TIME_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the last time an ISO date (and so Losant's JSON) can carry."""


def check_time(ms: float, what: str) -> int:
    """``ms`` when it is a time between 1970 and the end of year 9999; ValidationError otherwise,
    before anything is stored that could not be written back."""
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0 <= ms <= MAX_TIME_MS:  # NaN fails too
        raise ValidationError(f"{what} must be a time between 1970 and the end of year 9999")
    return int(ms)

DEVICE_CLASSES = ("standalone", "gateway", "peripheral", "floating", "edgeCompute", "system", "embedded")
DATA_TYPES = ("number", "string", "boolean", "gps", "blob")
ATTRIBUTE_NAME = re.compile(r"^[0-9a-zA-Z_-]{1,255}$")
ID_PATTERN = re.compile(r"^[A-Fa-f\d]{24}$")

Clock = Callable[[], int]
"""Epoch milliseconds now; tests inject a fake one."""


class UnknownObjectError(ValidationError, LookupError):
    """No such application, device or key in the emulator (REST answers 404 NotFound)."""


def new_token(kind: str, subject: str, issued_ms: float) -> str:
    """A token shaped like Losant's: a JWT (``eyJ...``) whose signature part is random.

    The shape matters to users' code and scripts: a JWT never starts with ``-``, so
    ``--token $TOKEN`` parses as an option value (a bare url-safe token did not, 1 in 64).
    Nothing reads the claims back; the store looks tokens up whole.
    """
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    claims = _json.encode({"sub": subject, "subtype": kind, "iat": int(issued_ms // 1000), "iss": "losant.local"})
    body = base64.urlsafe_b64encode(claims).rstrip(b"=")
    return f"{header.decode()}.{body.decode()}.{secrets.token_urlsafe(32)}"


def new_id() -> str:
    """A Losant-style ID: 24 hex characters."""
    return secrets.token_hex(12)


@dataclass(slots=True)
class Counters:
    """What the emulator accepted, dropped and refused, for tests and the simulator's report."""

    states_accepted: int = 0
    states_too_old: int = 0
    states_too_new: int = 0
    states_invalid: int = 0
    states_evicted: int = 0
    """Accepted states dropped later, oldest first: past the per-device bound or Losant's 30 days."""
    attributes_ignored: int = 0
    commands_sent: int = 0
    commands_evicted: int = 0
    """Recorded commands dropped later, oldest first, as for states."""
    mqtt_connects_refused: int = 0
    mqtt_publishes_denied: int = 0
    mqtt_subscribes_denied: int = 0
    mqtt_oversize_closed: int = 0
    mqtt_qos2_closed: int = 0
    mqtt_retain_stripped: int = 0
    mqtt_displaced: int = 0
    mqtt_throttled: int = 0
    mqtt_reaped: int = 0
    mqtt_connect_timeouts: int = 0
    """Connections closed for not completing a CONNECT within the deadline."""
    mqtt_connections_refused: int = 0
    """Connections refused (CONNACK 3): the total cap reached with every connection an accepted session."""
    mqtt_pending_evicted: int = 0
    """Connections still without a CONNECT closed to make room under a connection cap."""
    mqtt_slow_consumer_dropped: int = 0
    """QoS 0 messages not sent to a session whose peer left too much unread."""
    mqtt_slow_consumer_closed: int = 0
    mqtt_sessions_revoked: int = 0
    """Sessions ended because their access key was deleted, deactivated or no longer covers the device."""
    rest_connections_refused: int = 0
    rest_timeouts: int = 0
    """REST connections closed for a request head, body or idle deadline."""

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class AttributeRecord:
    """A device attribute as the emulator stores it."""

    name: str
    data_type: str
    description: str = ""
    content_type: str | None = None
    attribute_tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ApplicationRecord:
    """An application as the emulator stores it."""

    id: str
    name: str
    description: str
    owner_id: str | None
    created: int
    updated: int


@dataclass(slots=True)
class DeviceRecord:
    """A device as the emulator stores it, with its connection status."""

    id: str
    application_id: str
    name: str
    device_class: str
    parent_id: str | None
    tags: list[tuple[str, str]]
    attributes: dict[str, AttributeRecord]
    created: int
    updated: int
    description: str = ""
    connected: int | None = None
    connection_time: int | None = None

    def tag_dict(self) -> dict[str, list[str]]:
        """The device's tags as key -> values."""
        out: dict[str, list[str]] = {}
        for key, value in self.tags:
            out.setdefault(key, []).append(value)
        return out


@dataclass(slots=True)
class KeyRecord:
    """An application access key as the emulator stores it (the secret never in a repr)."""

    id: str
    application_id: str
    key: str
    secret: str = field(repr=False)
    device_ids: tuple[str, ...] | None
    device_tags: tuple[tuple[str, str], ...] | None
    name: str
    description: str
    created: int
    status: str = "active"
    filter_type: str = "all"
    """Topic filter beyond ``losant/``: ``all``, ``none``, ``whitelist`` or ``blacklist`` (Losant's words)."""
    pub_topics: tuple[str, ...] = ()
    sub_topics: tuple[str, ...] = ()


KEY_FILTER_TYPES = frozenset({"all", "none", "whitelist", "blacklist"})


@dataclass(slots=True)
class ApiTokenRecord:
    """An API, device or user token as the emulator stores it (never in a repr)."""

    id: str
    application_id: str | None
    token: str = field(repr=False)
    scopes: tuple[str, ...]
    name: str
    description: str
    created: int
    expires: int | None = None
    status: str = "active"
    kind: str = "api"
    """api, device or user."""
    device_id: str | None = None
    user_id: str | None = None


@dataclass(slots=True)
class UserRecord:
    """A user account as the emulator stores it (the password never in a repr)."""

    id: str
    email: str
    password: str = field(repr=False)
    created: int


@dataclass(frozen=True, slots=True)
class BlobRecord:
    """Bytes the emulator serves for download: uploaded files and export results."""

    name: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class StateRecord:
    """One accepted state of a device."""

    device_id: str
    time: int
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One command sent to a device."""

    device_id: str
    name: str
    payload: Any
    time: int


@dataclass(frozen=True, slots=True)
class ConnectionLogEntry:
    """One connect or disconnect of a device."""

    device_id: str
    connected: bool
    time: int
    reason: str | None = None

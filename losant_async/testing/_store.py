"""The emulator's in-memory world: applications, devices, keys, tokens, users, states and commands (no I/O)."""

from __future__ import annotations

import base64
import bisect
import hmac
import math
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import _json
from .._time import now_ms, parse_losant_time
from ..errors import ValidationError

__all__ = [
    "DAY_MS",
    "DEVICE_CLASSES",
    "ApiTokenRecord",
    "ApplicationRecord",
    "AttributeRecord",
    "BlobRecord",
    "CommandRecord",
    "ConnectionLogEntry",
    "Counters",
    "DeviceRecord",
    "KeyRecord",
    "StateRecord",
    "Store",
    "UnknownObjectError",
    "UserRecord",
    "new_id",
]

DAY_MS = 86_400_000
_MAX_AGE_MS = 30 * DAY_MS
_MAX_AHEAD_MS = DAY_MS
_MAX_STRING = 64 * 1024

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
    attributes_ignored: int = 0
    commands_sent: int = 0
    mqtt_connects_refused: int = 0
    mqtt_publishes_denied: int = 0
    mqtt_subscribes_denied: int = 0
    mqtt_oversize_closed: int = 0
    mqtt_qos2_closed: int = 0
    mqtt_retain_stripped: int = 0
    mqtt_displaced: int = 0
    mqtt_throttled: int = 0
    mqtt_reaped: int = 0

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


class _History:
    """One device's states by time: sorted times for range queries, a map for same-ms merges."""

    __slots__ = ("accepted", "by_time", "commands", "composite", "log", "times")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.by_time: dict[int, dict[str, Any]] = {}
        self.composite: dict[str, tuple[Any, int]] = {}
        self.accepted = 0
        self.commands: list[CommandRecord] = []
        self.log: list[ConnectionLogEntry] = []


def _coerce(attr: AttributeRecord, value: Any) -> Any:
    """The value as the attribute's data type stores it; ValueError when it cannot be one.

    Losant converts what converts cleanly (``"21.5"`` for a number, ``"true"``
    for a boolean, a number for a string) and rejects the rest.
    """
    kind = attr.data_type
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError
            return value
        if isinstance(value, str):
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return int(number) if number.is_integer() and "." not in value else number
        raise ValueError
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError
    # string, gps, blob: text, and numbers written as text
    if isinstance(value, str):
        if kind == "string" and len(value) > _MAX_STRING:
            raise ValueError
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError


class Store:
    """Everything the emulator knows. Synchronous: the event loop is its only user."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or now_ms
        self.counters: Counters = Counters()
        self.applications: dict[str, ApplicationRecord] = {}
        self.devices: dict[str, DeviceRecord] = {}
        self.keys: dict[str, KeyRecord] = {}
        self.tokens: dict[str, ApiTokenRecord] = {}
        self.users: dict[str, UserRecord] = {}
        self.docs: dict[str, dict[str, dict[str, Any]]] = {}
        self.blobs: dict[str, BlobRecord] = {}
        """Downloadable bytes by id (``<rest_url>/_emulator/blobs/<id>``)."""
        """Every other object of the API: collection name (``data_tables``) -> id -> its JSON document."""
        self._history: dict[str, _History] = {}
        self._state_listeners: list[Callable[[StateRecord], None]] = []
        self._command_listeners: list[Callable[[CommandRecord], None]] = []
        self._connection_listeners: list[Callable[[ConnectionLogEntry], None]] = []

    # -- listeners ---------------------------------------------------------------------------

    def on_state(self, listener: Callable[[StateRecord], None]) -> Callable[[], None]:
        """Call ``listener`` for every accepted state; returns the function that removes it."""
        self._state_listeners.append(listener)
        return lambda: self._state_listeners.remove(listener)

    def on_command(self, listener: Callable[[CommandRecord], None]) -> Callable[[], None]:
        """Call ``listener`` for each command recorded; returns a function that stops it."""
        self._command_listeners.append(listener)
        return lambda: self._command_listeners.remove(listener)

    def on_connection(self, listener: Callable[[ConnectionLogEntry], None]) -> Callable[[], None]:
        """Call ``listener`` for each connect and disconnect; returns a function that stops it."""
        self._connection_listeners.append(listener)
        return lambda: self._connection_listeners.remove(listener)

    # -- provisioning ------------------------------------------------------------------------

    def add_application(self, name: str, *, description: str = "", owner_id: str | None = None) -> ApplicationRecord:
        """Create an application; ValidationError when the name is not 1 to 255 characters."""
        if not isinstance(name, str) or not name or len(name) > 255:
            raise ValidationError("application name must be 1 to 255 characters")
        now = self.clock()
        app = ApplicationRecord(new_id(), name, description, owner_id, now, now)
        self.applications[app.id] = app
        return app

    def application(self, application_id: str) -> ApplicationRecord:
        """The application with this id; UnknownObjectError when there is none."""
        app = self.applications.get(application_id)
        if app is None:
            raise UnknownObjectError("Application was not found")
        return app

    def add_device(
        self,
        application_id: str,
        name: str,
        *,
        device_class: str = "standalone",
        parent_id: str | None = None,
        attributes: Mapping[str, str] | Iterable[Mapping[str, Any]] | None = None,
        tags: Mapping[str, str] | Iterable[Mapping[str, str]] | Iterable[tuple[str, str]] | None = None,
        description: str = "",
    ) -> DeviceRecord:
        """Create a device in an application, with its attributes and tags checked."""
        self.application(application_id)
        if not isinstance(name, str) or not name or len(name) > 255:
            raise ValidationError("device name must be 1 to 255 characters")
        if device_class not in DEVICE_CLASSES:
            raise ValidationError(f"device class must be one of {', '.join(DEVICE_CLASSES)}, not {device_class!r}")
        if parent_id is not None:
            parent = self.devices.get(parent_id)
            if parent is None or parent.application_id != application_id:
                raise ValidationError(f"parent device {parent_id} is not in this application")
        if device_class == "peripheral" and parent_id is None:
            raise ValidationError("a peripheral needs parent_id: the gateway that reports for it")
        now = self.clock()
        device = DeviceRecord(
            id=new_id(),
            application_id=application_id,
            name=name,
            device_class=device_class,
            parent_id=parent_id,
            tags=self.parse_tags(tags),
            attributes=self.parse_attributes(attributes),
            created=now,
            updated=now,
            description=description,
        )
        self.devices[device.id] = device
        self._history[device.id] = _History()
        return device

    def device(self, device_id: str, application_id: str | None = None) -> DeviceRecord:
        """The device with this id (in this application, when given); UnknownObjectError when there is none."""
        device = self.devices.get(device_id)
        if device is None or (application_id is not None and device.application_id != application_id):
            raise UnknownObjectError("Device was not found")
        return device

    def remove_device(self, device_id: str) -> None:
        """Forget the device and its history."""
        self.devices.pop(device_id, None)
        self._history.pop(device_id, None)

    def remove_application(self, application_id: str) -> list[str]:
        """Forget the application with its devices, keys and tokens; returns the removed device ids."""
        self.applications.pop(application_id, None)
        gone = [d.id for d in self.devices.values() if d.application_id == application_id]
        for device_id in gone:
            self.remove_device(device_id)
        for key in [k for k, r in self.keys.items() if r.application_id == application_id]:
            del self.keys[key]
        for token in [t for t, r in self.tokens.items() if r.application_id == application_id]:
            del self.tokens[token]
        return gone

    @staticmethod
    def parse_attributes(attributes: Mapping[str, str] | Iterable[Mapping[str, Any]] | None) -> dict[str, AttributeRecord]:
        """Check attribute declarations (name -> data type, or Losant's list of dicts)."""
        out: dict[str, AttributeRecord] = {}
        if attributes is None:
            return out
        items: Iterable[Mapping[str, Any]]
        if isinstance(attributes, Mapping):
            items = [{"name": k, "dataType": v} for k, v in attributes.items()]
        else:
            items = attributes
        for item in items:
            if not isinstance(item, Mapping):
                raise ValidationError("each attribute must be an object with name and dataType")
            attr = Store.parse_attribute(item)
            out[attr.name] = attr
        return out

    @staticmethod
    def parse_attribute(item: Mapping[str, Any]) -> AttributeRecord:
        """Check one attribute declaration in Losant's dict form."""
        name = item.get("name")
        data_type = item.get("dataType")
        if not isinstance(name, str) or not ATTRIBUTE_NAME.match(name):
            raise ValidationError(f"attribute name {name!r} must match {ATTRIBUTE_NAME.pattern}")
        if data_type not in DATA_TYPES:
            raise ValidationError(f"attribute {name} dataType must be one of {', '.join(DATA_TYPES)}")
        tags = item.get("attributeTags") or {}
        return AttributeRecord(
            name=name,
            data_type=data_type,
            description=str(item.get("description", "")),
            content_type=item.get("contentType"),
            attribute_tags=dict(tags) if isinstance(tags, Mapping) else {},
        )

    @staticmethod
    def parse_tags(
        tags: Mapping[str, str] | Iterable[Mapping[str, str]] | Iterable[tuple[str, str]] | None,
    ) -> list[tuple[str, str]]:
        """Check tags given as a mapping, Losant's list of dicts or key/value pairs."""
        if tags is None:
            return []
        pairs: list[tuple[str, str]] = []
        if isinstance(tags, Mapping):
            pairs = [(k, v) for k, v in tags.items()]
        else:
            for item in tags:
                if isinstance(item, Mapping):
                    pairs.append((item.get("key"), item.get("value")))  # type: ignore[arg-type]
                elif isinstance(item, tuple) and len(item) == 2:
                    pairs.append(item)
                else:
                    raise ValidationError("each tag must be {key, value}")
        for key, value in pairs:
            if not isinstance(key, str) or not ATTRIBUTE_NAME.match(key):
                raise ValidationError(f"tag key {key!r} must match {ATTRIBUTE_NAME.pattern}")
            if not isinstance(value, str) or not 1 <= len(value) <= 255:
                raise ValidationError(f"tag {key} value must be a string of 1 to 255 characters")
        return pairs

    def add_key(
        self,
        application_id: str,
        *,
        device_ids: Iterable[str] | None = None,
        device_tags: Mapping[str, str] | Iterable[Mapping[str, str]] | None = None,
        name: str = "",
        description: str = "",
        filter_type: str = "all",
        pub_topics: Iterable[str] = (),
        sub_topics: Iterable[str] = (),
    ) -> KeyRecord:
        """Create an access key (and its secret) for an application's devices."""
        self.application(application_id)
        if filter_type not in KEY_FILTER_TYPES:
            raise ValidationError(f"filter_type must be one of {sorted(KEY_FILTER_TYPES)}, not {filter_type!r}")
        pubs, subs = tuple(pub_topics), tuple(sub_topics)
        for topic in (*pubs, *subs):
            if not isinstance(topic, str) or not 1 <= len(topic) <= 1024:
                raise ValidationError(f"topic filter {topic!r} must be a string of 1 to 1024 characters")
        ids = tuple(device_ids) if device_ids is not None else None
        for device_id in ids or ():
            if not isinstance(device_id, str) or not ID_PATTERN.match(device_id):
                raise ValidationError(f"device id {device_id!r} is not 24 hex characters")
        tag_pairs = tuple(self.parse_tags(device_tags)) if device_tags is not None else None
        record = KeyRecord(
            id=new_id(),
            application_id=application_id,
            key=secrets.token_hex(18),
            secret=secrets.token_hex(32),
            device_ids=ids,
            device_tags=tag_pairs,
            name=name,
            description=description,
            created=self.clock(),
            filter_type=filter_type,
            pub_topics=pubs,
            sub_topics=subs,
        )
        self.keys[record.key] = record
        return record

    def key_by_id(self, application_id: str, key_id: str) -> KeyRecord:
        """The application's access key with this id; UnknownObjectError when there is none."""
        for record in self.keys.values():
            if record.id == key_id and record.application_id == application_id:
                return record
        raise UnknownObjectError("Application key was not found")

    def check_key(self, key: str | None, secret: str | None, device: DeviceRecord) -> bool:
        """Whether key/secret are an active access key of the device's application that covers it."""
        if not key or secret is None:
            return False
        record = self.keys.get(key)
        if record is None or record.status != "active" or record.application_id != device.application_id:
            return False
        if not hmac.compare_digest(record.secret.encode(), secret.encode()):
            return False
        return self.key_covers(record, device)

    @staticmethod
    def key_covers(record: KeyRecord, device: DeviceRecord) -> bool:
        """Whether the key's device ids or tags (if any) include the device."""
        if record.device_ids is None and record.device_tags is None:
            return True
        if record.device_ids is not None and device.id in record.device_ids:
            return True
        if record.device_tags is not None:
            tags = set(device.tags)
            return any((k, v) in tags for k, v in record.device_tags)
        return False

    def add_token(
        self,
        *,
        application_id: str | None,
        scopes: Iterable[str],
        kind: str = "api",
        name: str = "",
        description: str = "",
        device_id: str | None = None,
        user_id: str | None = None,
        expires: int | None = None,
    ) -> ApiTokenRecord:
        """Create an API, device or user token."""
        scope_tuple = tuple(scopes)
        if not scope_tuple or not all(isinstance(s, str) and s for s in scope_tuple):
            raise ValidationError("scopes must be a non-empty list of scope names")
        token_id = new_id()
        record = ApiTokenRecord(
            id=token_id,
            application_id=application_id,
            token=new_token(kind, device_id or user_id or token_id, self.clock()),
            scopes=scope_tuple,
            name=name or kind,
            description=description,
            created=self.clock(),
            expires=expires,
            kind=kind,
            device_id=device_id,
            user_id=user_id,
        )
        self.tokens[record.token] = record
        return record

    def token(self, token: str | None) -> ApiTokenRecord | None:
        """The live token record, or None when unknown, inactive or expired."""
        if not token:
            return None
        record = self.tokens.get(token)
        if record is None or record.status != "active":
            return None
        if record.expires is not None and record.expires <= self.clock():
            return None
        return record

    def add_user(self, email: str, password: str) -> UserRecord:
        """Create a user account; ValidationError for a bad or taken email or an empty password."""
        if not isinstance(email, str) or "@" not in email:
            raise ValidationError("email must be an email address")
        if not isinstance(password, str) or not password:
            raise ValidationError("password must not be empty")
        if any(u.email.lower() == email.lower() for u in self.users.values()):
            raise ValidationError(f"a user with email {email} already exists")
        user = UserRecord(new_id(), email, password, self.clock())
        self.users[user.id] = user
        return user

    def check_user(self, email: Any, password: Any) -> UserRecord | None:
        """The user with this email and password, or None."""
        if not isinstance(email, str) or not isinstance(password, str):
            return None
        for user in self.users.values():
            if user.email.lower() == email.lower() and hmac.compare_digest(user.password.encode(), password.encode()):
                return user
        return None

    # -- device relations --------------------------------------------------------------------

    def reports_for(self, reporter: DeviceRecord, device_id: str) -> bool:
        """Whether ``reporter`` may publish state / receive commands for ``device_id``: itself,
        or, for a gateway, a peripheral below it."""
        if device_id == reporter.id:
            return True
        if reporter.device_class != "gateway":
            return False
        device = self.devices.get(device_id)
        if device is None or device.device_class != "peripheral" or device.application_id != reporter.application_id:
            return False
        seen: set[str] = set()
        parent = device.parent_id
        while parent is not None and parent not in seen:
            if parent == reporter.id:
                return True
            seen.add(parent)
            node = self.devices.get(parent)
            parent = node.parent_id if node is not None else None
        return False

    # -- state -------------------------------------------------------------------------------

    def validate_states(self, device: DeviceRecord, body: Any) -> list[tuple[int, dict[str, Any]]]:
        """One state or a list of states as (time, data) pairs, with undefined attributes left out.

        Raises ValidationError (nothing stored) for a malformed state or a value of the
        wrong type. The time rules are applied later, by ``store_states``.
        """
        states = body if isinstance(body, list) else [body]
        if not states:
            raise ValidationError("no state given")
        now = self.clock()
        out: list[tuple[int, dict[str, Any]]] = []
        for state in states:
            if not isinstance(state, Mapping) or not isinstance(state.get("data"), Mapping):
                raise ValidationError("a state must be an object with a data object")
            stamp = parse_losant_time(state.get("time"), now=now)
            data: dict[str, Any] = {}
            for name, value in state["data"].items():
                attr = device.attributes.get(name)
                if attr is None:
                    self.counters.attributes_ignored += 1
                    continue
                try:
                    data[name] = _coerce(attr, value)
                except (ValueError, TypeError):
                    raise ValidationError(
                        f"attribute {name} is a {attr.data_type}; {type(value).__name__} value rejected"
                    ) from None
            out.append((now if stamp is None else stamp, data))
        return out

    def store_states(self, device: DeviceRecord, states: list[tuple[int, dict[str, Any]]]) -> int:
        """Apply Losant's time rules and store; returns how many states were kept."""
        history = self._history.get(device.id)
        if history is None:
            return 0
        now = self.clock()
        kept = 0
        for stamp, data in states:
            if stamp < now - _MAX_AGE_MS:
                self.counters.states_too_old += 1
                continue
            if stamp > now + _MAX_AHEAD_MS:
                self.counters.states_too_new += 1
                continue
            if not data:
                continue
            existing = history.by_time.get(stamp)
            if existing is None:
                history.by_time[stamp] = dict(data)
                if not history.times or stamp > history.times[-1]:
                    history.times.append(stamp)
                else:
                    bisect.insort(history.times, stamp)
            else:
                # same millisecond: the later report overwrites the attributes it carries
                existing.update(data)
            for name, value in data.items():
                current = history.composite.get(name)
                if current is None or stamp >= current[1]:
                    history.composite[name] = (value, stamp)
            history.accepted += 1
            kept += 1
            self.counters.states_accepted += 1
            if self._state_listeners:
                record = StateRecord(device.id, stamp, dict(data))
                for listener in list(self._state_listeners):
                    listener(record)
        return kept

    def record_state(self, device: DeviceRecord, body: Any) -> int:
        """Validate and store; a wrong value raises ValidationError and counts as invalid."""
        try:
            states = self.validate_states(device, body)
        except ValidationError:
            self.counters.states_invalid += 1
            raise
        return self.store_states(device, states)

    def accepted_count(self, device_id: str) -> int:
        """How many states the device has had accepted."""
        history = self._history.get(device_id)
        return 0 if history is None else history.accepted

    def states(
        self,
        device_id: str,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
        descending: bool = True,
    ) -> list[StateRecord]:
        """Stored states with start <= time <= end, newest first by default."""
        history = self._history.get(device_id)
        if history is None:
            return []
        times = history.times
        lo = 0 if start is None else bisect.bisect_left(times, start)
        hi = len(times) if end is None else bisect.bisect_right(times, end)
        if lo >= hi:
            return []
        if descending:
            first = hi - limit if limit is not None else lo
            selected = times[max(lo, first):hi][::-1]
        else:
            selected = times[lo:hi if limit is None else min(hi, lo + limit)]
        return [StateRecord(device_id, t, dict(history.by_time[t])) for t in selected]

    def remove_states(
        self, device_id: str, *, start: int | None = None, end: int | None = None, attributes: Iterable[str] | None = None
    ) -> int:
        """Forget stored state with start <= time <= end (only ``attributes``, when given); returns
        how many states were touched. The composite state is rebuilt from what remains."""
        history = self._history.get(device_id)
        if history is None:
            return 0
        names = set(attributes) if attributes is not None else None
        touched = 0
        kept: list[int] = []
        for stamp in history.times:
            if (start is not None and stamp < start) or (end is not None and stamp > end):
                kept.append(stamp)
                continue
            touched += 1
            data = history.by_time[stamp]
            if names is not None:
                for name in names:
                    data.pop(name, None)
            if names is None or not data:
                del history.by_time[stamp]
            else:
                kept.append(stamp)
        history.times = kept
        history.composite = {}
        for stamp in kept:
            for name, value in history.by_time[stamp].items():
                history.composite[name] = (value, stamp)
        return touched

    def composite_state(
        self, device_id: str, *, start: int | None = None, end: int | None = None
    ) -> dict[str, tuple[Any, int]]:
        """Attribute -> (latest value, its time), optionally within ``start``..``end``."""
        history = self._history.get(device_id)
        if history is None:
            return {}
        if start is None and end is None:
            return dict(history.composite)
        out: dict[str, tuple[Any, int]] = {}
        for record in self.states(device_id, start=start, end=end, descending=True):
            for name, value in record.data.items():
                out.setdefault(name, (value, record.time))
        return out

    # -- commands and connections --------------------------------------------------------------

    def record_command(self, device_id: str, name: str, payload: Any, time: int | None = None) -> CommandRecord:
        """Record a command sent to the device and tell the listeners."""
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise ValidationError("command name must be 1 to 255 characters")
        record = CommandRecord(device_id, name, payload, self.clock() if time is None else time)
        history = self._history.get(device_id)
        if history is not None:
            history.commands.append(record)
        self.counters.commands_sent += 1
        for listener in list(self._command_listeners):
            listener(record)
        return record

    def commands(self, device_id: str) -> list[CommandRecord]:
        """The commands sent to the device, oldest first."""
        history = self._history.get(device_id)
        return [] if history is None else list(history.commands)

    def set_connection(self, device_id: str, connected: bool, *, time: int | None = None, reason: str | None = None) -> None:
        """Mark the device connected or disconnected, logging it for the listeners."""
        device = self.devices.get(device_id)
        history = self._history.get(device_id)
        if device is None or history is None:
            return
        stamp = self.clock() if time is None else time
        device.connected = 1 if connected else 0
        device.connection_time = stamp
        entry = ConnectionLogEntry(device_id, connected, stamp, reason)
        history.log.append(entry)
        for listener in list(self._connection_listeners):
            listener(entry)

    def connection_log(self, device_id: str) -> list[ConnectionLogEntry]:
        """The device's connects and disconnects, oldest first."""
        history = self._history.get(device_id)
        return [] if history is None else list(history.log)

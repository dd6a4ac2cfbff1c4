"""Losant's broker rules as plain decisions over the store: who connects, what may be published, subscribed, received.

No I/O and no awaiting: the MQTT server asks, this module answers and keeps the
counts (throttle windows, bans, connection rates) on the store's clock, so tests
move time instead of sleeping.
"""

from __future__ import annotations

import enum
from collections import deque

from ..errors import ValidationError
from ._limits import MAX_PAYLOAD, decode_json
from ._mqtt_codec import Connect
from .store import DeviceRecord, KeyRecord, Store

__all__ = [
    "BAN_FIRST_MS",
    "BAN_MAX_MS",
    "CONNECTION_RATE_LIMIT",
    "MAX_PAYLOAD",
    "THROTTLE_CONNECTION_LIMIT",
    "THROTTLE_LIMIT",
    "THROTTLE_WINDOW_MS",
    "Admission",
    "PublishVerdict",
    "Rules",
    "covers",
    "matches",
]

THROTTLE_LIMIT = 30
"""Messages per topic and direction per window (a gateway's peripherals each have their own topics)."""
THROTTLE_CONNECTION_LIMIT = 300
"""Messages per connection per window, whatever the topics."""
CONNECTION_RATE_LIMIT = 300
"""New connections per application per window."""
THROTTLE_WINDOW_MS = 15_000
BAN_FIRST_MS = 30_000
"""The first ban; each repeat offence doubles it, up to ``BAN_MAX_MS``."""
BAN_MAX_MS = 3_600_000
_OFFENCES_FORGOTTEN_MS = BAN_MAX_MS
"""An hour after the last ban ended without a new offence, the next ban is a first one again."""

# CONNACK return codes (MQTT 3.1.1, 3.2.2.3)
ACCEPTED = 0
UNACCEPTABLE_PROTOCOL = 1
SERVER_UNAVAILABLE = 3
NOT_AUTHORIZED = 5


class PublishVerdict(enum.Enum):
    STORED = "stored"
    """A state, validated and stored (or dropped by Losant's time rules): never delivered."""
    DELIVER = "deliver"
    """A custom topic: deliver to the application's subscribers."""
    DENIED = "denied"
    """Dropped silently, the connection stays (as Losant does)."""
    THROTTLED = "throttled"
    """Over a limit: dropped, the connection closed and the device banned."""


class Admission:
    """What ``Rules.connect`` decided: a CONNACK return code and, when accepted, who connected."""

    __slots__ = ("device", "key", "return_code")

    def __init__(self, return_code: int, device: DeviceRecord | None = None, key: KeyRecord | None = None) -> None:
        self.return_code = return_code
        self.device = device
        self.key = key


def matches(topic_filter: str, topic: str) -> bool:
    """Whether an MQTT filter matches a topic name (``$`` topics never match a leading wildcard)."""
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == topic
    if topic.startswith("$") and topic_filter[0] in "+#":
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels) or (level != "+" and level != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


def covers(outer: str, inner: str) -> bool:
    """Whether every topic ``inner`` (a filter) can match is matched by ``outer``."""
    o_levels = outer.split("/")
    i_levels = inner.split("/")
    for i, level in enumerate(o_levels):
        if level == "#":
            return True
        if i >= len(i_levels):
            return False
        if level == "+":
            if i_levels[i] == "#":
                return False
            continue
        if level != i_levels[i]:
            return False
    return len(o_levels) == len(i_levels)


def _overlaps(a: str, b: str) -> bool:
    """Whether some topic matches both filters."""
    a_levels = a.split("/")
    b_levels = b.split("/")
    for i in range(max(len(a_levels), len(b_levels))):
        x = a_levels[i] if i < len(a_levels) else None
        y = b_levels[i] if i < len(b_levels) else None
        if x == "#" or y == "#":
            return True
        if x is None or y is None:
            return False
        if x != y and x != "+" and y != "+":
            return False
    return True


class Rules:
    """Losant's broker rules over the store. ``throttle`` turns every rate limit on (off by default)."""

    def __init__(self, store: Store, *, throttle: bool = False) -> None:
        self.store = store
        self.throttle = throttle
        self.max_json_depth = 64
        """A state nested deeper is dropped and counted as invalid (the server sets it from its limits)."""
        self._windows: dict[tuple[str, str, str], deque[int]] = {}
        self._banned_until: dict[str, int] = {}
        self._offences: dict[str, tuple[int, int]] = {}
        self._connects: dict[str, deque[int]] = {}

    # -- connect ---------------------------------------------------------------------------

    def connect(self, request: Connect) -> Admission:
        """Admit a 3.1.1 CONNECT or say which CONNACK code refuses it.

        Wrong or missing credentials, a client id that is not a device of the key's
        application, a peripheral, and clean session 0 get 5 (not authorized: the same
        CONNECT will never succeed, so clients must not retry it). A banned device and
        an application over its connection rate get 3 (server unavailable: retry later).
        """
        store = self.store
        counters = store.counters
        device = store.devices.get(request.client_id) if request.client_id else None
        if (
            device is None
            or device.device_class == "peripheral"
            or not request.clean_session
            or not store.check_key(request.username, request.password, device)
        ):
            counters.mqtt_connects_refused += 1
            return Admission(NOT_AUTHORIZED)
        now = store.clock()
        if self.throttle:
            until = self._banned_until.get(device.id)
            if until is not None:
                if now < until:
                    # reconnecting at once only extends the ban (Losant's words)
                    self._banned_until[device.id] = max(until, now + BAN_FIRST_MS)
                    counters.mqtt_connects_refused += 1
                    return Admission(SERVER_UNAVAILABLE)
                del self._banned_until[device.id]
            recent = self._connects.get(device.application_id)
            if recent is None:
                recent = self._connects[device.application_id] = deque()
            while recent and recent[0] <= now - THROTTLE_WINDOW_MS:
                recent.popleft()
            if len(recent) >= CONNECTION_RATE_LIMIT:
                counters.mqtt_connects_refused += 1
                return Admission(SERVER_UNAVAILABLE)
            recent.append(now)
        return Admission(ACCEPTED, device, store.keys.get(request.username or ""))

    def ban(self, device_id: str) -> int:
        """Ban a device after a throttle offence; returns the ban's length in ms."""
        now = self.store.clock()
        count, last_end = self._offences.get(device_id, (0, now))
        if count and now - last_end > _OFFENCES_FORGOTTEN_MS:
            count = 0
        count += 1
        length = min(BAN_FIRST_MS << min(count - 1, 20), BAN_MAX_MS)
        self._offences[device_id] = (count, now + length)
        self._banned_until[device_id] = now + length
        self.store.counters.mqtt_throttled += 1
        return length

    def banned_until(self, device_id: str) -> int | None:
        """When the device's current ban ends (store clock, ms), or None."""
        until = self._banned_until.get(device_id)
        return until if until is not None and until > self.store.clock() else None

    # -- throttle ----------------------------------------------------------------------------

    def within_limits(self, device_id: str, topic: str, direction: str) -> bool:
        """Count one message; False when it is over the topic's or the connection's budget."""
        if not self.throttle:
            return True
        now = self.store.clock()
        per_topic = self._window((device_id, direction, topic), now)
        per_connection = self._window((device_id, "", ""), now)
        if len(per_topic) >= THROTTLE_LIMIT or len(per_connection) >= THROTTLE_CONNECTION_LIMIT:
            return False
        per_topic.append(now)
        per_connection.append(now)
        return True

    def _window(self, key: tuple[str, str, str], now: int) -> deque[int]:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = deque()
        while window and window[0] <= now - THROTTLE_WINDOW_MS:
            window.popleft()
        return window

    def forget(self, device_id: str) -> None:
        """Drop a closed connection's throttle windows (its bans stay)."""
        for key in [k for k in self._windows if k[0] == device_id]:
            del self._windows[key]

    # -- publish -----------------------------------------------------------------------------

    def publish(self, device: DeviceRecord, key: KeyRecord | None, topic: str, payload: bytes) -> PublishVerdict:
        """Judge an accepted-size, valid-topic PUBLISH from ``device``; stores a state."""
        counters = self.store.counters
        if not topic.startswith("losant/"):
            if topic.startswith("$") or not self._custom_allowed(key, topic, publish=True):
                counters.mqtt_publishes_denied += 1
                return PublishVerdict.DENIED
            return PublishVerdict.DELIVER
        parts = topic.split("/")
        target = self.store.devices.get(parts[1]) if len(parts) == 3 and parts[2] == "state" else None
        if target is None or not self.store.reports_for(device, target.id):
            counters.mqtt_publishes_denied += 1
            return PublishVerdict.DENIED
        # Losant drops a bad state silently over MQTT; the counters show it
        try:
            body = decode_json(payload, self.max_json_depth)
        except ValueError:
            counters.states_invalid += 1
            return PublishVerdict.DENIED
        try:
            self.store.record_state(target, body)
        except ValidationError:
            return PublishVerdict.DENIED  # counted by the store
        except (ValueError, TypeError, OverflowError, RecursionError):
            # a state nothing can make sense of costs the state, never the device's connection
            counters.states_invalid += 1
            return PublishVerdict.DENIED
        return PublishVerdict.STORED

    # -- subscribe and receive -----------------------------------------------------------------

    def subscribe(self, device: DeviceRecord, key: KeyRecord | None, topic_filter: str) -> bool:
        """Whether the device may hold this (valid) filter."""
        first = topic_filter.split("/", 1)[0]
        ok: bool
        if first in ("+", "#") or first.startswith("$"):
            ok = False  # would cover the reserved losant/ prefix, or a broker topic
        elif first == "losant":
            parts = topic_filter.split("/")
            ok = len(parts) == 3 and parts[2] == "command" and self.store.reports_for(device, parts[1])
        else:
            ok = self._custom_allowed(key, topic_filter, publish=False)
        if not ok:
            self.store.counters.mqtt_subscribes_denied += 1
        return ok

    def may_receive(self, key: KeyRecord | None, topic: str) -> bool:
        """The delivery-time check for a custom topic reached through a wildcard filter."""
        if key is None or key.filter_type == "all":
            return True
        return self._custom_allowed(key, topic, publish=False)

    @staticmethod
    def _custom_allowed(key: KeyRecord | None, topic: str, *, publish: bool) -> bool:
        """The key's filter for topics outside ``losant/``; ``topic`` may be a subscription filter."""
        if key is None:
            return True
        kind = key.filter_type
        if kind == "all":
            return True
        if kind == "none":
            return False
        listed = key.pub_topics if publish else key.sub_topics
        if kind == "whitelist":
            return any(covers(allowed, topic) for allowed in listed)
        # blacklist: a filter that could reach a denied topic is refused
        return not any(_overlaps(denied, topic) for denied in listed)

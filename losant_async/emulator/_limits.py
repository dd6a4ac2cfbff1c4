"""The emulator's server-side limits: every bound on what a peer can make it hold or wait for, in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .. import _json
from ..errors import ValidationError

__all__ = ["Limits", "decode_json", "default_limits", "descriptor_limit", "json_depth"]

MAX_PAYLOAD = 256 * 1024
"""Losant's cap on one MQTT message."""
_MQTT_PUBLISH = MAX_PAYLOAD + 2 + 65535 + 2
"""A PUBLISH longer than this cannot fit under Losant's 256 KB whatever its topic."""


def json_depth(value: Any, limit: int) -> int:
    """How deeply arrays and objects nest in ``value``, counting no further than ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def decode_json(raw: bytes | str, max_depth: int) -> Any:
    """One JSON value nested at most ``max_depth`` deep; ValueError naming the problem otherwise."""
    try:
        value = _json.decode_any(raw)
    except _json.TooDeepError:  # msgspec's own guard, far deeper than ours
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    if json_depth(value, max_depth) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return value


def descriptor_limit() -> int | None:
    """The process's soft limit on open file descriptors, where the platform has one."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one peer, and all of them together, may make the emulator hold. Defaults: ``default_limits()``."""

    # -- MQTT ----------------------------------------------------------------------------------
    connect_deadline_s: float = 10.0
    """From a connection's first byte of TCP to its CONNECT, however slowly it drips: then closed."""
    max_connect_bytes: int = 64 * 1024
    """A CONNECT's remaining length (client id, credentials, will): checked on the fixed header,
    before anything is buffered or authenticated."""
    max_subscribe_bytes: int = 64 * 1024
    """A SUBSCRIBE's or UNSUBSCRIBE's remaining length."""
    max_publish_bytes: int = _MQTT_PUBLISH
    """A PUBLISH's remaining length (Losant's 256 KB payload plus the longest topic)."""
    max_mqtt_connections: int = 10_000
    """Open MQTT connections (TCP and WebSockets) in all; one more is refused with CONNACK 3."""
    max_pending_per_address: int = 256
    """Connections from one address that have not yet been accepted by a CONNECT."""
    output_soft_bytes: int = 1024 * 1024
    """Bytes waiting to be written to one session: above this a QoS 0 message to it is dropped
    (counted) and a QoS 1 message closes it."""
    output_hard_bytes: int = 4 * 1024 * 1024
    """Above this anything written closes the session (a client that pings but never reads)."""
    output_stall_s: float = 30.0
    """A session whose output stays over the soft limit this long is closed by the reaper."""
    # -- REST ----------------------------------------------------------------------------------
    rest_header_deadline_s: float = 10.0
    """From a connection's opening (or its previous request's head) to a complete request head."""
    rest_idle_s: float = 15.0
    """A keep-alive connection with no request in flight is closed after this."""
    rest_body_deadline_s: float = 30.0
    """For a request's whole body to arrive."""
    rest_max_body_bytes: int = 4 * 1024 * 1024
    """A request body, on every route (multipart included)."""
    max_rest_connections: int = 512
    """Open REST connections in all; one more gets 503 and is closed."""
    rest_max_line_bytes: int = 8190
    """The request line (method, path and query) and each header line."""
    rest_max_headers: int = 128
    rest_max_query_params: int = 1000
    """Query parameters of one request; more is a 400."""
    max_json_depth: int = 64
    """Nesting of arrays and objects in a JSON body or MQTT state; deeper is a 400 (REST) or a
    dropped state (MQTT)."""

    def replace(self, **changes: float) -> Limits:
        """A copy with some limits changed (each must stay positive)."""
        for name, value in changes.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValidationError(f"limit {name} must be a positive number")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def default_limits() -> Limits:
    """The defaults, with the connection caps kept under the process's descriptor limit.

    With 1,024 descriptors (a common default) MQTT gets 720 and REST 240, leaving
    64 for listeners, the store and logs: a flood of connections is refused
    instead of starving everything of descriptors.
    """
    base = Limits()
    fds = descriptor_limit()
    if fds is None:
        return base
    spare = max(fds - 64, 32)
    rest = min(base.max_rest_connections, max(spare // 4, 8))
    mqtt = min(base.max_mqtt_connections, max(spare - rest, 8))
    pending = min(base.max_pending_per_address, max(mqtt // 2, 4))
    return dataclasses.replace(base, max_rest_connections=rest, max_mqtt_connections=mqtt, max_pending_per_address=pending)

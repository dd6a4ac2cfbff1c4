"""What the console's pages show, read from the store: device rows with filters and pages, a device's history, the fleet's figures."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..store import CommandRecord, ConnectionLogEntry, DeviceRecord, StateRecord, Store

__all__ = [
    "PAGE_SIZE",
    "DevicePage",
    "DeviceRow",
    "FleetFigures",
    "application_rows",
    "device_page",
    "device_row",
    "disconnect_kind",
    "fleet_figures",
    "numeric_points",
    "parse_tag_filter",
]

PAGE_SIZE = 50
"""Devices per page of an application's device list."""
MAX_FILTER = 200
"""Longest name or tag filter accepted (longer ones are cut: they could match nothing more)."""

# The emulator's disconnect reasons (``MqttSession.close``) by what they mean to a user.
# First match wins: "slow consumer: output over the limit" is a slow consumer, not a large message.
_KINDS = (
    ("throttled", "throttle ban"),
    ("keepalive", "keepalive"),
    ("connection lost", "network"),
    ("credential", "credentials"),
    ("revoked", "credentials"),
    ("key", "credentials"),
    ("displaced", "displaced"),
    ("deleted", "platform"),
    ("platform", "platform"),
    ("stopped", "emulator stopped"),
    ("slow consumer", "slow consumer"),
    ("256 kb", "message too large"),
    (" bytes", "message too large"),
    ("protocol error", "protocol error"),
    ("qos 2", "protocol error"),
    ("text frame", "protocol error"),
    ("emulator error", "emulator error"),
)


def disconnect_kind(entry: ConnectionLogEntry) -> str:
    """A connection log entry's cause in a word: ``network``, ``keepalive``, ``throttle ban``, ``credentials``..."""
    if entry.connected:
        return "connected"
    if entry.reason is None:
        return "client disconnected"
    reason = entry.reason.lower()
    for needle, kind in _KINDS:
        if needle in reason:
            return kind
    return "other"


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One device as the list shows it."""

    id: str
    name: str
    device_class: str
    tags: tuple[tuple[str, str], ...]
    connected: bool | None
    """None: never connected."""
    since: int | None
    last_state: int | None


def last_state_time(store: Store, device_id: str) -> int | None:
    """The time of the device's newest attribute value, or None when it has reported nothing."""
    composite = store.series.composite(device_id)
    return max((t for _v, t in composite.values()), default=None)


def device_row(store: Store, device: DeviceRecord) -> DeviceRow:
    connected = None if device.connected is None else bool(device.connected)
    return DeviceRow(
        device.id, device.name, device.device_class, tuple(device.tags), connected, device.connection_time,
        last_state_time(store, device.id),
    )


def parse_tag_filter(raw: str) -> tuple[str, str | None] | None:
    """``key`` or ``key=value`` (blank: no filter)."""
    raw = raw.strip()[:MAX_FILTER]
    if not raw:
        return None
    key, sep, value = raw.partition("=")
    return key.strip(), (value.strip() if sep else None)


def _matches(device: DeviceRecord, name: str, tag: tuple[str, str | None] | None) -> bool:
    if name and name not in device.name.lower():
        return False
    if tag is not None:
        key, value = tag
        return any(k == key and (value is None or v == value) for k, v in device.tags)
    return True


@dataclass(frozen=True, slots=True)
class DevicePage:
    """One page of an application's devices under a filter."""

    rows: tuple[DeviceRow, ...]
    total: int
    matched: int
    page: int
    pages: int


def device_page(store: Store, application_id: str, *, name: str = "", tag: str = "", page: int = 1) -> DevicePage:
    """The ``page``-th (from 1) page of the application's devices whose name contains ``name`` (any case)
    and that carry ``tag`` (``key`` or ``key=value``), sorted by name."""
    wanted = name.strip()[:MAX_FILTER].lower()
    tag_filter = parse_tag_filter(tag)
    total = 0
    found: list[DeviceRecord] = []
    for device in store.devices.values():
        if device.application_id != application_id:
            continue
        total += 1
        if _matches(device, wanted, tag_filter):
            found.append(device)
    pages = max(1, math.ceil(len(found) / PAGE_SIZE))
    page = min(max(page, 1), pages)
    start = (page - 1) * PAGE_SIZE
    found.sort(key=lambda d: (d.name.lower(), d.id))
    shown = found[start:start + PAGE_SIZE]
    return DevicePage(tuple(device_row(store, d) for d in shown), total, len(found), page, pages)


@dataclass(frozen=True, slots=True)
class ApplicationRow:
    id: str
    name: str
    description: str
    devices: int
    connected: int


def application_rows(store: Store) -> list[ApplicationRow]:
    """Every application with its device count and how many are connected, by name."""
    counts: dict[str, list[int]] = {app_id: [0, 0] for app_id in store.applications}
    for device in store.devices.values():
        count = counts.get(device.application_id)
        if count is not None:
            count[0] += 1
            count[1] += 1 if device.connected else 0
    rows = [ApplicationRow(a.id, a.name, a.description, *counts[a.id]) for a in store.applications.values()]
    return sorted(rows, key=lambda r: (r.name.lower(), r.id))


def numeric_points(states: Iterable[StateRecord], attributes: Iterable[str]) -> list[list[Any]]:
    """States as chart rows ``[time_s, value per attribute...]``, oldest first; a missing or
    non-numeric value is None (a gap in the line)."""
    names = list(attributes)
    rows: list[list[Any]] = []
    for record in states:
        row: list[Any] = [record.time / 1000]
        for name in names:
            value = record.data.get(name)
            row.append(value if isinstance(value, (int, float)) and not isinstance(value, bool) else None)
        rows.append(row)
    return rows


def numeric_attributes(device: DeviceRecord) -> list[str]:
    """The device's number attributes, by name (what the chart draws)."""
    return sorted(name for name, attr in device.attributes.items() if attr.data_type == "number")


def state_json(record: StateRecord) -> dict[str, Any]:
    return {"time": record.time, "data": dict(record.data)}


def command_json(record: CommandRecord) -> dict[str, Any]:
    return {"time": record.time, "name": record.name, "payload": record.payload}


def log_json(entry: ConnectionLogEntry) -> dict[str, Any]:
    return {"time": entry.time, "connected": entry.connected, "reason": entry.reason, "kind": disconnect_kind(entry)}


@dataclass(frozen=True, slots=True)
class FleetFigures:
    """The fleet overview's numbers at one moment."""

    devices: int
    connected: int
    counters: Mapping[str, int]

    @property
    def refusals(self) -> int:
        c = self.counters
        return (c.get("mqtt_connects_refused", 0) + c.get("mqtt_publishes_denied", 0)
                + c.get("mqtt_subscribes_denied", 0) + c.get("states_invalid", 0))

    @property
    def bans(self) -> int:
        return self.counters.get("mqtt_throttled", 0)


def fleet_figures(store: Store) -> FleetFigures:
    """Devices, how many are connected, and the store's counters, now."""
    connected = sum(1 for d in store.devices.values() if d.connected)
    return FleetFigures(len(store.devices), connected, store.counters.as_dict())

"""Per-device history in the data directory's SQLite database: the series backend of ``LocalLosant(data_dir=...)``."""

from __future__ import annotations

import sqlite3
import time as _time
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from ._datadir import DataDir
from ._records import CommandRecord, ConnectionLogEntry, StateRecord

__all__ = ["DiskSeries"]

_encode = msgspec.msgpack.Encoder().encode
_decode_data = msgspec.msgpack.Decoder(dict[str, Any]).decode
_decode_any = msgspec.msgpack.Decoder().decode

_ADD_STATE = (
    "INSERT INTO states (dev, time, data) VALUES (?, ?, ?) "
    "ON CONFLICT (dev, time) DO UPDATE SET data = merge_state(data, excluded.data)"
)
PRUNE_EVERY_S = 60.0
"""How often the writer deletes history older than Losant's 30 days."""


class _Device:
    __slots__ = ("accepted", "composite", "dev")

    def __init__(self, dev: int, accepted: int = 0) -> None:
        self.dev = dev
        self.accepted = accepted
        self.composite: dict[str, tuple[Any, int]] | None = {} if accepted == 0 else None
        """None until first asked for after a restart (then read from disk)."""


class DiskSeries:
    """Every device's history on disk: only each device's composite state stays in memory.

    Writes are queued to the data directory's writer thread; reads commit what is queued
    first. History is kept for Losant's 30 days (pruned by the writer once a minute), with
    no count bound.
    """

    def __init__(self, data: DataDir) -> None:
        self._data = data
        self._devices: dict[str, _Device] = {}
        counts = dict(data.read("SELECT dev, COUNT(*) FROM states GROUP BY dev"))
        for dev, device_id in data.read("SELECT dev, device_id FROM series"):
            self._devices[device_id] = _Device(dev, counts.get(dev, 0))
        self._next_dev = max((d.dev for d in self._devices.values()), default=0) + 1
        self._floor = 0
        self._pruned_at = 0.0
        self.expired = 0
        """States and commands the writer deleted for age (read by the store's counters)."""
        self._expired_told = 0
        data.after_flush.append(self._prune)

    def _prune(self, conn: sqlite3.Connection) -> None:
        now = _time.monotonic()
        if not self._floor or now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        gone = conn.execute("DELETE FROM states WHERE time < ?", (self._floor,)).rowcount
        gone += conn.execute("DELETE FROM commands WHERE time < ?", (self._floor,)).rowcount
        conn.execute("DELETE FROM connections WHERE time < ?", (self._floor,))
        self.expired += gone

    def _expired_since(self) -> int:
        fresh = self.expired - self._expired_told
        self._expired_told += fresh
        return fresh

    def create(self, device_id: str) -> None:
        if device_id in self._devices:
            return
        self._devices[device_id] = _Device(self._next_dev)
        self._data.write("INSERT INTO series (dev, device_id) VALUES (?, ?)", (self._next_dev, device_id))
        self._next_dev += 1

    def drop(self, device_id: str) -> None:
        device = self._devices.pop(device_id, None)
        if device is not None:
            for table in ("states", "commands", "connections", "series"):
                self._data.write(f"DELETE FROM {table} WHERE dev = ?", (device.dev,))

    def has(self, device_id: str) -> bool:
        return device_id in self._devices

    def add_state(self, device_id: str, time: int, data: Mapping[str, Any], floor: int) -> int:
        device = self._devices.get(device_id)
        if device is None:
            return 0
        self._data.write(_ADD_STATE, (device.dev, time, _encode(data)))
        composite = device.composite
        if composite is not None:
            for name, value in data.items():
                current = composite.get(name)
                if current is None or time >= current[1]:
                    composite[name] = (value, time)
        device.accepted += 1
        self._floor = floor
        return self._expired_since() if self.expired != self._expired_told else 0

    def accepted(self, device_id: str) -> int:
        device = self._devices.get(device_id)
        return 0 if device is None else device.accepted

    def states(
        self, device_id: str, *, start: int | None, end: int | None, limit: int | None, descending: bool
    ) -> list[StateRecord]:
        device = self._devices.get(device_id)
        if device is None:
            return []
        rows = self._data.read(
            "SELECT time, data FROM states WHERE dev = ? AND time >= ? AND time <= ? "
            f"ORDER BY time {'DESC' if descending else 'ASC'} LIMIT ?",
            (device.dev, -(2**62) if start is None else start, 2**62 if end is None else end, -1 if limit is None else limit),
        )
        return [StateRecord(device_id, stamp, _decode_data(data)) for stamp, data in rows]

    def remove_states(
        self, device_id: str, *, start: int | None, end: int | None, attributes: Iterable[str] | None
    ) -> int:
        device = self._devices.get(device_id)
        if device is None:
            return 0
        low, high = -(2**62) if start is None else start, 2**62 if end is None else end
        rows = self._data.read(
            "SELECT time, data FROM states WHERE dev = ? AND time >= ? AND time <= ?", (device.dev, low, high)
        )
        names = set(attributes) if attributes is not None else None
        for stamp, packed in rows:
            data = {} if names is None else {k: v for k, v in _decode_data(packed).items() if k not in names}
            if data:
                self._data.write("UPDATE states SET data = ? WHERE dev = ? AND time = ?", (_encode(data), device.dev, stamp))
            else:
                self._data.write("DELETE FROM states WHERE dev = ? AND time = ?", (device.dev, stamp))
        device.composite = None
        return len(rows)

    def composite(self, device_id: str) -> dict[str, tuple[Any, int]]:
        device = self._devices.get(device_id)
        if device is None:
            return {}
        if device.composite is None:
            composite: dict[str, tuple[Any, int]] = {}
            for stamp, packed in self._data.read("SELECT time, data FROM states WHERE dev = ? ORDER BY time", (device.dev,)):
                for name, value in _decode_data(packed).items():
                    composite[name] = (value, stamp)
            device.composite = composite
        return dict(device.composite)

    def add_command(self, record: CommandRecord, floor: int) -> int:
        device = self._devices.get(record.device_id)
        if device is not None:
            self._data.write(
                "INSERT INTO commands (dev, time, body) VALUES (?, ?, ?)",
                (device.dev, record.time, _encode((record.name, record.payload))),
            )
        self._floor = floor
        return 0

    def commands(self, device_id: str) -> list[CommandRecord]:
        device = self._devices.get(device_id)
        if device is None:
            return []
        rows = self._data.read("SELECT time, body FROM commands WHERE dev = ? ORDER BY seq", (device.dev,))
        out: list[CommandRecord] = []
        for stamp, body in rows:
            name, payload = _decode_any(body)
            out.append(CommandRecord(device_id, name, payload, stamp))
        return out

    def add_connection(self, entry: ConnectionLogEntry) -> None:
        device = self._devices.get(entry.device_id)
        if device is not None:
            self._data.write(
                "INSERT INTO connections (dev, time, body) VALUES (?, ?, ?)",
                (device.dev, entry.time, _encode((entry.connected, entry.reason))),
            )

    def connection_log(self, device_id: str) -> list[ConnectionLogEntry]:
        device = self._devices.get(device_id)
        if device is None:
            return []
        rows = self._data.read("SELECT time, body FROM connections WHERE dev = ? ORDER BY seq", (device.dev,))
        out: list[ConnectionLogEntry] = []
        for stamp, body in rows:
            connected, reason = _decode_any(body)
            out.append(ConnectionLogEntry(device_id, connected, stamp, reason))
        return out


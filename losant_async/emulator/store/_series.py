"""Per-device time series (states, commands, connection log): the interface a backend implements, and its in-memory form."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ._records import CommandRecord, ConnectionLogEntry, StateRecord

__all__ = ["MemorySeries", "SeriesBackend"]


class SeriesBackend(Protocol):
    """Where the store keeps each device's history. Synchronous: the event loop is its only user.

    The store checks values and Losant's time rules first; a backend only keeps what it is
    given and answers range queries over it. Times are epoch milliseconds.
    """

    def create(self, device_id: str) -> None:
        """Start an empty history for a new device."""

    def drop(self, device_id: str) -> None:
        """Forget a device's history (the device was deleted)."""

    def has(self, device_id: str) -> bool:
        """Whether the device has a history (it exists)."""

    def add_state(self, device_id: str, time: int, data: Mapping[str, Any]) -> None:
        """Keep one accepted state; a state at a time already kept merges into it (later values win)."""

    def accepted(self, device_id: str) -> int:
        """How many states were accepted for the device (merges included)."""

    def states(
        self, device_id: str, *, start: int | None, end: int | None, limit: int | None, descending: bool
    ) -> list[StateRecord]:
        """Kept states with start <= time <= end, at most ``limit`` from the newest (descending) or oldest."""

    def remove_states(
        self, device_id: str, *, start: int | None, end: int | None, attributes: Iterable[str] | None
    ) -> int:
        """Forget states in the range (only ``attributes``, when given); returns how many were touched."""

    def composite(self, device_id: str) -> dict[str, tuple[Any, int]]:
        """Attribute -> (latest value, its time) over everything kept."""

    def add_command(self, record: CommandRecord) -> None:
        """Keep a command sent to a device."""

    def commands(self, device_id: str) -> list[CommandRecord]:
        """The device's commands, oldest first."""

    def add_connection(self, entry: ConnectionLogEntry) -> None:
        """Keep a connect or disconnect."""

    def connection_log(self, device_id: str) -> list[ConnectionLogEntry]:
        """The device's connects and disconnects, oldest first."""


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


class MemorySeries:
    """Every device's history in this process's memory (the default backend)."""

    def __init__(self) -> None:
        self._history: dict[str, _History] = {}

    def create(self, device_id: str) -> None:
        self._history[device_id] = _History()

    def drop(self, device_id: str) -> None:
        self._history.pop(device_id, None)

    def has(self, device_id: str) -> bool:
        return device_id in self._history

    def add_state(self, device_id: str, time: int, data: Mapping[str, Any]) -> None:
        history = self._history.get(device_id)
        if history is None:
            return
        existing = history.by_time.get(time)
        if existing is None:
            history.by_time[time] = dict(data)
            if not history.times or time > history.times[-1]:
                history.times.append(time)
            else:
                bisect.insort(history.times, time)
        else:
            # same millisecond: the later report overwrites the attributes it carries
            existing.update(data)
        for name, value in data.items():
            current = history.composite.get(name)
            if current is None or time >= current[1]:
                history.composite[name] = (value, time)
        history.accepted += 1

    def accepted(self, device_id: str) -> int:
        history = self._history.get(device_id)
        return 0 if history is None else history.accepted

    def states(
        self, device_id: str, *, start: int | None, end: int | None, limit: int | None, descending: bool
    ) -> list[StateRecord]:
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
        self, device_id: str, *, start: int | None, end: int | None, attributes: Iterable[str] | None
    ) -> int:
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

    def composite(self, device_id: str) -> dict[str, tuple[Any, int]]:
        history = self._history.get(device_id)
        return {} if history is None else dict(history.composite)

    def add_command(self, record: CommandRecord) -> None:
        history = self._history.get(record.device_id)
        if history is not None:
            history.commands.append(record)

    def commands(self, device_id: str) -> list[CommandRecord]:
        history = self._history.get(device_id)
        return [] if history is None else list(history.commands)

    def add_connection(self, entry: ConnectionLogEntry) -> None:
        history = self._history.get(entry.device_id)
        if history is not None:
            history.log.append(entry)

    def connection_log(self, device_id: str) -> list[ConnectionLogEntry]:
        history = self._history.get(device_id)
        return [] if history is None else list(history.log)

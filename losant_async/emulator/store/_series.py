"""Per-device time series (states, commands, connection log): the interface a backend implements, and its in-memory form."""

from __future__ import annotations

import bisect
from array import array
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import msgspec

from ._records import CommandRecord, ConnectionLogEntry, StateRecord

__all__ = ["DEFAULT_MAX_COMMANDS", "DEFAULT_MAX_STATES", "DEFAULT_MAX_TOTAL_STATES", "MemorySeries", "SeriesBackend", "StateCodec"]

DEFAULT_MAX_STATES = 10_000
"""States kept in memory per device unless told otherwise: the newest win."""
DEFAULT_MAX_COMMANDS = 10_000
"""Commands (and, separately, connection log entries) kept in memory per device."""
DEFAULT_MAX_TOTAL_STATES = 1_000_000
"""States kept in memory over all devices (about 85 MB): each device keeps at most its share."""


class SeriesBackend(Protocol):
    """Where the store keeps each device's history. Synchronous: the event loop is its only user.

    The store checks values and Losant's time rules first; a backend only keeps what it is
    given and answers range queries over it. Times are epoch milliseconds. ``floor`` is the
    oldest time Losant still keeps (30 days back): a backend may forget anything older.
    """

    def create(self, device_id: str) -> None:
        """Start an empty history for a new device."""

    def drop(self, device_id: str) -> None:
        """Forget a device's history (the device was deleted)."""

    def has(self, device_id: str) -> bool:
        """Whether the device has a history (it exists)."""

    def add_state(self, device_id: str, time: int, data: Mapping[str, Any], floor: int) -> int:
        """Keep one accepted state (a state at a time already kept merges into it, later values
        win); returns how many older states were dropped to stay within the backend's bounds."""

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

    def add_command(self, record: CommandRecord, floor: int) -> int:
        """Keep a command sent to a device; returns how many older ones were dropped."""

    def commands(self, device_id: str) -> list[CommandRecord]:
        """The device's commands, oldest first."""

    def add_connection(self, entry: ConnectionLogEntry) -> None:
        """Keep a connect or disconnect."""

    def connection_log(self, device_id: str) -> list[ConnectionLogEntry]:
        """The device's connects and disconnects, oldest first."""


class StateCodec:
    """A state's data as a few bytes: its attribute names once per distinct set, its values packed.

    A state of three numbers takes about 30 bytes of payload instead of a dict of boxed
    values (the whole stored state went from about 370 to under 100 bytes). Past
    ``max_shapes`` distinct name sets, a state is packed with its names.
    """

    __slots__ = ("_decoder", "_encoder", "_ids", "_shapes", "max_shapes")

    def __init__(self, max_shapes: int = 65_536) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder()
        self._ids: dict[tuple[str, ...], int] = {}
        self._shapes: list[tuple[str, ...]] = []
        self.max_shapes = max_shapes

    def encode(self, data: Mapping[str, Any]) -> bytes:
        """The packed form of a state's data."""
        shape = tuple(data)
        ident = self._ids.get(shape)
        if ident is None:
            if len(self._shapes) >= self.max_shapes:
                return self._encoder.encode(dict(data))
            ident = len(self._shapes)
            self._ids[shape] = ident
            self._shapes.append(shape)
        return self._encoder.encode((ident, *data.values()))

    def decode(self, packed: bytes) -> dict[str, Any]:
        """The state's data back from its packed form."""
        value = self._decoder.decode(packed)
        if isinstance(value, dict):
            return value  # pyright: ignore[reportUnknownVariableType]
        return dict(zip(self._shapes[value[0]], value[1:], strict=False))


_GONE = b""


class _History:
    """One device's states, sorted by time, in two parallel arrays (times, packed data).

    Dropping the oldest moves ``start`` instead of shifting the arrays; they are compacted
    once a quarter of them is dropped, so retention costs O(1) per state.
    """

    __slots__ = ("accepted", "commands", "composite", "log", "rows", "start", "times")

    def __init__(self) -> None:
        self.times: array[int] = array("q")
        self.rows: list[bytes] = []
        self.start = 0
        self.composite: dict[str, tuple[Any, int]] = {}
        self.accepted = 0
        self.commands: deque[CommandRecord] = deque()
        self.log: deque[ConnectionLogEntry] = deque()

    def __len__(self) -> int:
        return len(self.times) - self.start

    def drop_oldest(self) -> None:
        self.rows[self.start] = _GONE
        self.start += 1
        if self.start >= 256 and self.start * 4 >= len(self.times):
            del self.times[: self.start]
            del self.rows[: self.start]
            self.start = 0


class MemorySeries:
    """Every device's history in this process's memory (the default backend), bounded.

    Each device keeps its newest states, at most ``max_states`` and at most its share of
    ``max_total_states`` (divided evenly among the devices, applied as each reports), and
    its newest ``max_commands`` commands and connection log entries; anything older than
    Losant's 30 days goes too. So memory stays flat however long a load test runs.
    """

    def __init__(
        self,
        *,
        max_states: int = DEFAULT_MAX_STATES,
        max_commands: int = DEFAULT_MAX_COMMANDS,
        max_total_states: int = DEFAULT_MAX_TOTAL_STATES,
    ) -> None:
        bounds = (("max_states", max_states), ("max_commands", max_commands), ("max_total_states", max_total_states))
        for name, bound in bounds:
            if isinstance(bound, bool) or not isinstance(bound, int) or bound < 1:
                raise ValueError(f"{name} must be a positive integer, not {bound!r}")
        self.max_states = max_states
        self.max_commands = max_commands
        self.max_total_states = max_total_states
        self._history: dict[str, _History] = {}
        self._codec = StateCodec()

    def create(self, device_id: str) -> None:
        self._history[device_id] = _History()

    def drop(self, device_id: str) -> None:
        self._history.pop(device_id, None)

    def has(self, device_id: str) -> bool:
        return device_id in self._history

    def add_state(self, device_id: str, time: int, data: Mapping[str, Any], floor: int) -> int:
        history = self._history.get(device_id)
        if history is None:
            return 0
        times = history.times
        if not len(history) or time > times[-1]:
            times.append(time)
            history.rows.append(self._codec.encode(data))
        else:
            at = bisect.bisect_left(times, time, history.start)
            if at < len(times) and times[at] == time:
                # same millisecond: the later report overwrites the attributes it carries
                merged = self._codec.decode(history.rows[at])
                merged.update(data)
                history.rows[at] = self._codec.encode(merged)
            else:
                times.insert(at, time)
                history.rows.insert(at, self._codec.encode(data))
        for name, value in data.items():
            current = history.composite.get(name)
            if current is None or time >= current[1]:
                history.composite[name] = (value, time)
        history.accepted += 1
        dropped = 0
        bound = min(self.max_states, max(1, self.max_total_states // len(self._history)))
        while len(history) > bound or (len(history) and history.times[history.start] < floor):
            history.drop_oldest()
            dropped += 1
        return dropped

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
        lo = history.start if start is None else bisect.bisect_left(times, start, history.start)
        hi = len(times) if end is None else bisect.bisect_right(times, end, lo)
        if lo >= hi:
            return []
        if descending:
            first = max(lo, hi - limit) if limit is not None else lo
            picked: Iterable[int] = range(hi - 1, first - 1, -1)
        else:
            picked = range(lo, hi if limit is None else min(hi, lo + limit))
        decode, rows = self._codec.decode, history.rows
        return [StateRecord(device_id, times[i], decode(rows[i])) for i in picked]

    def remove_states(
        self, device_id: str, *, start: int | None, end: int | None, attributes: Iterable[str] | None
    ) -> int:
        history = self._history.get(device_id)
        if history is None:
            return 0
        names = set(attributes) if attributes is not None else None
        touched = 0
        times: array[int] = array("q")
        rows: list[bytes] = []
        composite: dict[str, tuple[Any, int]] = {}
        for i in range(history.start, len(history.times)):
            stamp, row = history.times[i], history.rows[i]
            inside = not ((start is not None and stamp < start) or (end is not None and stamp > end))
            data: dict[str, Any] | None = None
            if inside:
                touched += 1
                if names is None:
                    continue
                data = self._codec.decode(row)
                for name in names:
                    data.pop(name, None)
                if not data:
                    continue
                row = self._codec.encode(data)
            times.append(stamp)
            rows.append(row)
            for name, value in (data if data is not None else self._codec.decode(row)).items():
                composite[name] = (value, stamp)
        history.times, history.rows, history.start, history.composite = times, rows, 0, composite
        return touched

    def composite(self, device_id: str) -> dict[str, tuple[Any, int]]:
        history = self._history.get(device_id)
        return {} if history is None else dict(history.composite)

    def add_command(self, record: CommandRecord, floor: int) -> int:
        history = self._history.get(record.device_id)
        if history is None:
            return 0
        history.commands.append(record)
        return _trim(history.commands, self.max_commands, floor)

    def commands(self, device_id: str) -> list[CommandRecord]:
        history = self._history.get(device_id)
        return [] if history is None else list(history.commands)

    def add_connection(self, entry: ConnectionLogEntry) -> None:
        history = self._history.get(entry.device_id)
        if history is not None:
            history.log.append(entry)
            _trim(history.log, self.max_commands, entry.time - 30 * 86_400_000)

    def connection_log(self, device_id: str) -> list[ConnectionLogEntry]:
        history = self._history.get(device_id)
        return [] if history is None else list(history.log)


def _trim(entries: deque[CommandRecord] | deque[ConnectionLogEntry], bound: int, floor: int) -> int:
    """Drop the oldest entries beyond ``bound`` or before ``floor``; returns how many."""
    dropped = 0
    while entries and (len(entries) > bound or entries[0].time < floor):
        entries.popleft()
        dropped += 1
    return dropped

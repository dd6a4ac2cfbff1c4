"""The store's history side: states checked and kept by Losant's rules, commands sent, connections logged."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..._time import parse_losant_time
from ...errors import ValidationError
from ._auth import AuthStore
from ._records import (
    MAX_AGE_MS,
    MAX_AHEAD_MS,
    MAX_STRING,
    AttributeRecord,
    CommandRecord,
    ConnectionLogEntry,
    DeviceRecord,
    StateRecord,
    check_time,
)

__all__ = ["HistoryStore", "coerce_value"]


def coerce_value(attr: AttributeRecord, value: Any) -> Any:
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
        if kind == "string" and len(value) > MAX_STRING:
            raise ValueError
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError


class HistoryStore(AuthStore):
    """Device states, commands and connections, kept in the store's series backend."""

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
                # Values already of their attribute's type, checked inline: this runs per attribute
                # of every state the fleet sends (a call to coerce_value cost 0.2 us each).
                tp, kind = type(value), attr.data_type
                if ((tp is float and kind == "number" and value - value == 0.0)
                        or (tp is bool and kind == "boolean") or (tp is int and kind == "number")):
                    data[name] = value
                    continue
                try:
                    data[name] = coerce_value(attr, value)
                except (ValueError, TypeError):
                    raise ValidationError(
                        f"attribute {name} is a {attr.data_type}; {type(value).__name__} value rejected"
                    ) from None
            out.append((now if stamp is None else stamp, data))
        return out

    def store_states(self, device: DeviceRecord, states: list[tuple[int, dict[str, Any]]]) -> int:
        """Apply Losant's time rules and store; returns how many states were kept."""
        if not self.series.has(device.id):
            return 0
        now = self.clock()
        kept = 0
        for stamp, data in states:
            if stamp < now - MAX_AGE_MS:
                self.counters.states_too_old += 1
                continue
            if stamp > now + MAX_AHEAD_MS:
                self.counters.states_too_new += 1
                continue
            if not data:
                continue
            self.counters.states_evicted += self.series.add_state(device.id, stamp, data, now - MAX_AGE_MS)
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
        return self.series.accepted(device_id)

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
        return self.series.states(device_id, start=start, end=end, limit=limit, descending=descending)

    def remove_states(
        self, device_id: str, *, start: int | None = None, end: int | None = None, attributes: Iterable[str] | None = None
    ) -> int:
        """Forget stored state with start <= time <= end (only ``attributes``, when given); returns
        how many states were touched. The composite state is rebuilt from what remains."""
        return self.series.remove_states(device_id, start=start, end=end, attributes=attributes)

    def composite_state(
        self, device_id: str, *, start: int | None = None, end: int | None = None
    ) -> dict[str, tuple[Any, int]]:
        """Attribute -> (latest value, its time), optionally within ``start``..``end``."""
        if start is None and end is None:
            return self.series.composite(device_id)
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
        now = self.clock()
        stamp = now if time is None else check_time(time, "command time")
        record = CommandRecord(device_id, name, payload, stamp)
        self.counters.commands_evicted += self.series.add_command(record, now - MAX_AGE_MS)
        self.counters.commands_sent += 1
        for listener in list(self._command_listeners):
            listener(record)
        return record

    def commands(self, device_id: str) -> list[CommandRecord]:
        """The commands sent to the device, oldest first."""
        return self.series.commands(device_id)

    def set_connection(self, device_id: str, connected: bool, *, time: int | None = None, reason: str | None = None) -> None:
        """Mark the device connected or disconnected, logging it for the listeners."""
        device = self.devices.get(device_id)
        if device is None or not self.series.has(device_id):
            return
        stamp = self.clock() if time is None else time
        device.connected = 1 if connected else 0
        device.connection_time = stamp
        entry = ConnectionLogEntry(device_id, connected, stamp, reason)
        self.series.add_connection(entry)
        for listener in list(self._connection_listeners):
            listener(entry)

    def connection_log(self, device_id: str) -> list[ConnectionLogEntry]:
        """The device's connects and disconnects, oldest first."""
        return self.series.connection_log(device_id)

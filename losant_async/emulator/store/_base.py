"""The store's shared parts: clock, counters, collections of records and documents, listeners."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..._time import now_ms
from ._records import (
    ApiTokenRecord,
    ApplicationRecord,
    BlobRecord,
    Clock,
    CommandRecord,
    ConnectionLogEntry,
    Counters,
    DeviceRecord,
    KeyRecord,
    StateRecord,
    UserRecord,
)
from ._series import MemorySeries, SeriesBackend

__all__ = ["StoreBase"]


class StoreBase:
    """What every part of the store shares: the clock, the counters, the collections and the listeners."""

    def __init__(self, *, clock: Clock | None = None, series: SeriesBackend | None = None) -> None:
        self.clock: Clock = clock or now_ms
        self.counters: Counters = Counters()
        self.applications: dict[str, ApplicationRecord] = {}
        self.devices: dict[str, DeviceRecord] = {}
        self.keys: dict[str, KeyRecord] = {}
        self.tokens: dict[str, ApiTokenRecord] = {}
        self.users: dict[str, UserRecord] = {}
        self.docs: dict[str, dict[str, dict[str, Any]]] = {}
        """Every other object of the API: collection name (``data_tables``) -> id -> its JSON document."""
        self.blobs: dict[str, BlobRecord] = {}
        """Downloadable bytes by id (``<rest_url>/_emulator/blobs/<id>``)."""
        self.series: SeriesBackend = series if series is not None else MemorySeries()
        """Each device's states, commands and connection log."""
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

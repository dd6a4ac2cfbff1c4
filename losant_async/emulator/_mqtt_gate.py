"""The MQTT server's door: connection caps, per address and in all, and which connection gives way under them.

A connection still without its CONNECT is the cheapest to lose: over the
per-address cap the address's oldest such connection is closed to make room,
and over the total cap the oldest anywhere. Only when every connection is an
accepted session is the new one refused. So a flood of silent sockets never
locks a device out, and accepted sessions are never cut.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ._limits import Limits
from .store import Counters

__all__ = ["Gate"]

_log = logging.getLogger("losant_async.testing.broker")


class Waiting(Protocol):
    """A connection as the gate sees it: where it comes from, and how to close it."""

    @property
    def address(self) -> str: ...

    def close(self, reason: str | None, *, logged: bool = True) -> None: ...


class Gate:
    """Counts connections without a CONNECT per address (oldest first) and decides who gives way."""

    def __init__(self, limits: Limits, counters: Counters) -> None:
        self._limits = limits
        self._counters = counters
        self._pending: dict[str, int] = {}
        self._waiting: dict[Waiting, None] = {}
        """Connections without an accepted CONNECT, oldest first."""

    def enter(self, session: Waiting, open_now: int) -> bool:
        """Make room for a new connection (``open_now`` are open); False when it must be refused."""
        limits = self._limits
        if self._pending.get(session.address, 0) >= limits.max_pending_per_address:
            self._evict(session.address)
            open_now -= 1
        if open_now >= limits.max_mqtt_connections and not self._evict(None):
            counters = self._counters
            counters.mqtt_connections_refused += 1
            refused = counters.mqtt_connections_refused
            if refused in (1, 10, 100) or refused % 1000 == 0:
                _log.warning("refusing MQTT connections: %d open, the cap; %d refused so far", open_now, refused)
            return False
        self._waiting[session] = None
        self._pending[session.address] = self._pending.get(session.address, 0) + 1
        return True

    def settled(self, session: Waiting) -> None:
        """The connection is no longer waiting: accepted by a CONNECT, or gone."""
        if session not in self._waiting:
            return
        del self._waiting[session]
        left = self._pending.get(session.address, 0) - 1
        if left > 0:
            self._pending[session.address] = left
        else:
            self._pending.pop(session.address, None)

    def _evict(self, address: str | None) -> bool:
        """Close the oldest connection without a CONNECT (from ``address``, or any); whether there was one."""
        victim = next((s for s in self._waiting if address is None or s.address == address), None)
        if victim is None:
            return False
        self._counters.mqtt_pending_evicted += 1
        victim.close(None, logged=False)  # its release settles it
        return True

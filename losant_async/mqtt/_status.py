"""What a device tells its users about its connection: ``ConnectionEvent`` streams, the last problem, change notices."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import weakref

from ._streams import Stream
from ._supervisor import ConnectionEvent, ConnectionState

__all__ = ["Status"]


class Status:
    """One device's connection events and its waiters for a change of state.

    ``emit`` stamps an event with the device and the time, remembers a FAILED
    one (``failed_event``, handed first to later listeners) and the reason of
    the last disconnect (``last_problem``), and pushes it to every stream.
    ``notify`` wakes whoever waits in ``changed``.
    """

    __slots__ = ("_changed", "_streams", "device_id", "failed_event", "last_problem")

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self._streams: weakref.WeakSet[Stream[ConnectionEvent]] = weakref.WeakSet()
        self._changed: asyncio.Event | None = None
        #: The reason of the last RECONNECTING or DISCONNECTED event, for a failed start's error.
        self.last_problem = ""
        #: The FAILED event, once the device failed.
        self.failed_event: ConnectionEvent | None = None

    def stream(self, maxsize: int, *, ended: bool) -> Stream[ConnectionEvent]:
        """Events from now on; a FAILED one comes first if failed; ``ended``: the device is closed."""
        stream: Stream[ConnectionEvent] = Stream(maxsize, self._streams.discard)
        if self.failed_event is not None:
            stream.push(self.failed_event)  # a late listener still learns why the device stopped
        if ended:
            stream.end()
        else:
            self._streams.add(stream)
        return stream

    def emit(self, event: ConnectionEvent) -> None:
        if not event.device_id:
            event = dataclasses.replace(event, device_id=self.device_id, at=time.time())
        if event.state is ConnectionState.FAILED:
            self.failed_event = event
        if event.state in (ConnectionState.RECONNECTING, ConnectionState.DISCONNECTED) and event.reason:
            self.last_problem = event.reason
        if self._streams:  # most devices have no listener: skip the WeakSet's iteration guard
            for stream in list(self._streams):
                stream.push(event)

    def end(self) -> None:
        """End every stream (the device closed)."""
        for stream in list(self._streams):
            stream.end()

    def notify(self) -> None:
        """Wake whoever waits in ``changed`` (connected, disconnected, failed or closed)."""
        event, self._changed = self._changed, None
        if event is not None:
            event.set()

    async def changed(self) -> None:
        """Wait for the next ``notify``."""
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()

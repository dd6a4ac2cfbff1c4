"""One callback per event-loop turn that writes what every connection of the loop coalesced in it."""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol

__all__ = ["Flushable", "Flusher", "flusher_of"]


class Flushable(Protocol):
    """What the flusher needs of a connection."""

    def _flush_pending(self) -> None: ...

    def _fail(self, exc: BaseException) -> None: ...


class Flusher:
    """Writes, at the end of a turn of the event loop, what every connection of the loop coalesced in it.

    One callback for all of them: a fleet publishing from thousands of connections
    would otherwise schedule (and run) one callback per connection per turn.
    """

    __slots__ = ("__weakref__", "_dirty", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Flushable] = []

    def add(self, conn: Flushable) -> None:
        dirty = self._dirty
        dirty.append(conn)
        if len(dirty) == 1:
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            try:
                conn._flush_pending()
            except Exception as exc:  # one connection's fault must not keep the others' bytes back
                conn._fail(exc)


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Flusher] = weakref.WeakKeyDictionary()


def flusher_of(loop: asyncio.AbstractEventLoop) -> Flusher:
    """The loop's flusher (one per loop)."""
    flusher = _flushers.get(loop)
    if flusher is None:
        flusher = _flushers[loop] = Flusher(loop)
    return flusher

"""Messages between this event loop and another process over a ``multiprocessing`` pipe, without blocking the loop."""

from __future__ import annotations

import asyncio
import threading
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["PipeInbox"]

_CLOSED = object()


class PipeInbox:
    """Receives from ``conn`` in a daemon thread and hands each message to the running asyncio loop.

    The thread ends when the other end closes (its process exited or closed
    the pipe); ``get`` then raises ``EOFError``. A daemon thread, because a
    thread blocked in ``recv`` cannot be interrupted and must not hold the
    interpreter open.
    """

    def __init__(self, conn: Connection, name: str) -> None:
        self._conn = conn
        self._name = name
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._read, name=name, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                message = _CLOSED
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, message)
            except RuntimeError:  # the loop is closed: nobody listens any more
                return
            if message is _CLOSED:
                return

    async def get(self) -> Any:
        """The next message; ``EOFError`` once the other end has closed."""
        message = await self._queue.get()
        if message is _CLOSED:
            self._queue.put_nowait(_CLOSED)
            raise EOFError(f"{self._name}: the other end closed the pipe")
        return message

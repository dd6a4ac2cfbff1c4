"""A running LocalLosant's data directory (history on disk, objects saved once a second) and its /health route."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .store import DataDir, DiskSeries, Store, WorldSaver

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["SAVE_INTERVAL", "Persistence", "health_middleware"]

SAVE_INTERVAL = 1.0
"""Seconds between saves of the objects (applications, devices, credentials, documents) to a data directory."""


class Persistence:
    """Opens a data directory for a store: its history goes to disk, its objects are loaded, then
    saved as a diff every ``SAVE_INTERVAL`` seconds and at ``close``."""

    def __init__(self, store: Store, path: str | os.PathLike[str]) -> None:
        self.data = DataDir(path)
        try:
            store.series = DiskSeries(self.data)
            self._saver = WorldSaver(store, self.data)
            self.loaded = self._saver.load()
        except BaseException:
            self.data.close()
            raise
        self._task = asyncio.get_running_loop().create_task(self._save_often(), name="losant-emulator-persist")

    async def _save_often(self) -> None:
        while True:
            await asyncio.sleep(SAVE_INTERVAL)
            self._saver.save()

    async def close(self) -> None:
        """Save the objects, commit everything queued, release the directory."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._saver.save()
        await asyncio.to_thread(self.data.close)


def health_middleware(answer: Callable[[], dict[str, Any]]) -> Any:
    """An aiohttp middleware answering ``GET /health`` with ``answer()`` and passing everything else on."""
    from aiohttp import web

    @web.middleware
    async def health(request: web.Request, handler: Any) -> web.StreamResponse:
        # Not a Losant route: the emulator's own, for process managers and CI waits (no auth, no secrets).
        if request.path == "/health" and request.method in ("GET", "HEAD"):
            return web.json_response(answer())
        response: web.StreamResponse = await handler(request)
        return response

    return health


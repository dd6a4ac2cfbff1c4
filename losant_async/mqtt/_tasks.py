"""One device's task: the supervisor and every side task (async command callbacks, (un)subscribes) in one task group."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from ._waits import settle

__all__ = ["Tasks"]

log = logging.getLogger("losant_async.mqtt")


class Tasks:
    """The one task of a device and the anyio task group it owns.

    ``start(main, closing)`` runs ``main()`` (the supervisor) in the group's own
    task (one task per device, not two: a fleet pays per task); once it returns
    the group keeps serving side tasks until ``stop()``, unless ``closing()``.
    A bug in ``main`` or a side task is logged and handed to ``crashed(error)``.
    """

    __slots__ = ("_crashed", "_device_id", "_idle", "_side", "task", "tg")

    def __init__(self, device_id: str, *, crashed: Callable[[BaseException], None]) -> None:
        self._device_id = device_id
        self._crashed = crashed
        self._side = 0
        self._idle: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None
        self.tg: anyio.abc.TaskGroup | None = None

    def start(self, main: Callable[[], Awaitable[None]], closing: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self._run(main, closing), name=f"losant-mqtt:{self._device_id}")

    async def _run(self, main: Callable[[], Awaitable[None]], closing: Callable[[], bool]) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                # After a fatal refusal the supervisor returns and the group keeps serving side
                # tasks until closed.
                await main()
                if not closing():
                    await anyio.sleep_forever()
        except Exception as exc:  # a bug in the supervisor or a side task: fail loudly, at once
            error = _first_leaf(exc)
            log.error("device %s: failed: %r", self._device_id, error, exc_info=error,
                      extra={"device_id": self._device_id})
            self._crashed(error)
        finally:
            self.tg = None

    def spawn(self, awaitable: Awaitable[Any], name: str) -> None:
        """Run ``awaitable`` in the device's task group (dropped once the group is gone: the device closed)."""
        tg = self.tg
        if tg is None:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            return
        self._side += 1
        tg.start_soon(self._side_task, awaitable, name=name)

    async def _side_task(self, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        finally:
            self._side -= 1
            if not self._side and self._idle is not None:
                self._idle.set()

    async def side_tasks_done(self) -> None:
        """Wait until every side task (async command callback, peripheral (un)subscribe) ended."""
        while self._side:
            if self._idle is None:
                self._idle = asyncio.Event()
            self._idle.clear()
            await self._idle.wait()

    async def stop(self) -> None:
        """Cancel the group (or the task, not started yet: it never runs) and wait until it ended."""
        tg = self.tg
        if tg is not None:
            tg.cancel_scope.cancel()
        elif self.task is not None:
            self.task.cancel()
        if self.task is not None and not self.task.done():
            # settle: the task's own end is not our error; a cancellation of this close
            # waits for the task (it was told to stop) and then propagates.
            await settle(self.task)


def _first_leaf(exc: BaseException) -> BaseException:
    # Duck-typed: BaseExceptionGroup is a builtin only from Python 3.11 (anyio backports it).
    while True:
        inner = getattr(exc, "exceptions", None)
        if not inner or not isinstance(inner[0], BaseException):
            return exc
        exc = inner[0]

"""Waits with a deadline that never swallow a cancellation, on every Python from 3.10.

``asyncio.wait_for`` on Python 3.10 and 3.11 can return the inner result and drop
a cancellation of the waiting task that lands in the same turn as that result: a
cancelled ``start()`` then carries on with a connection nobody closes, and a
cancelled parent never ends. ``asyncio.wait`` raises the waiter's cancellation
whatever the awaited work did, so every deadline in the device layer goes
through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["settle", "within"]

T = TypeVar("T")


async def within(coro: Awaitable[T], timeout: float | None, on_timeout: Callable[[], BaseException]) -> T:
    """Run ``coro`` for at most ``timeout`` seconds: its result, or ``on_timeout()`` raised.

    Cancelled, or timed out, the work is cancelled too and awaited before this returns.
    """
    task = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:
        task.cancel()
        await settle(task)
        raise
    if not done:
        task.cancel()
        await settle(task)
        if not task.cancelled() and task.exception() is None:
            return task.result()  # it finished as the deadline passed: not a timeout
        if not task.cancelled():
            raise task.exception()  # type: ignore[misc]
        raise on_timeout()
    return task.result()


async def settle(task: asyncio.Future[Any]) -> None:
    """Wait until ``task`` (already told to stop) has ended, even through repeated cancellations of ours.

    A cancellation that arrives meanwhile is raised once the task has ended: cleanup
    first, then the cancellation is honoured. Whatever the task ended with is retrieved.
    """
    cancelled: BaseException | None = None
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    if not task.cancelled():
        task.exception()
    if cancelled is not None:
        raise cancelled

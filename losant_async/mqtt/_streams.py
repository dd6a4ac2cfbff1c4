"""Bounded one-consumer streams fed from paho's read path: commands, messages, connection events."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

import msgspec

from .._json import decode_any

__all__ = ["Message", "Stream"]

T = TypeVar("T")


class Message(msgspec.Struct, frozen=True):
    """A message received on a custom subscription."""

    topic: str
    payload: bytes
    qos: int = 0

    def json(self) -> object:
        """The payload decoded as JSON (``DecodeError`` if it is not JSON)."""
        return decode_any(self.payload)


class Stream(Generic[T]):
    """Items pushed by the device, iterated by one consumer.

    Pushing never waits: when ``maxsize`` items are waiting, the oldest is
    dropped and counted in ``dropped``. Use it as ``async for`` directly, or as
    ``async with`` to bound its life to a block; it ends when the device closes.
    """

    __slots__ = ("__weakref__", "_closed", "_error", "_items", "_on_close", "_waiter", "dropped", "maxsize")

    def __init__(self, maxsize: int = 1000, on_close: Callable[[Stream[T]], None] | None = None) -> None:
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._on_close = on_close
        #: Items discarded because the consumer fell ``maxsize`` behind.
        self.dropped = 0

    def push(self, item: T) -> None:
        if self._closed:
            return
        items = self._items
        if len(items) >= self.maxsize:
            items.popleft()
            self.dropped += 1
        items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def end(self, error: BaseException | None = None) -> None:
        """No more items: iteration stops after what is buffered (raising ``error`` if given)."""
        self._closed = True
        if error is not None and self._error is None:
            self._error = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __len__(self) -> int:
        return len(self._items)

    def __aiter__(self) -> Stream[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            if self._items:
                return self._items.popleft()
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def get(self, timeout: float | None = None) -> T:
        """The next item; ``TimeoutError`` after ``timeout`` seconds, ``StopAsyncIteration`` at the end."""
        if timeout is None:
            return await self.__anext__()
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"nothing arrived within {timeout} s") from None

    def close(self) -> None:
        """Stop receiving (unregisters from the device)."""
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)
        self.end()

    async def __aenter__(self) -> Stream[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

"""Bounded one-consumer streams fed from paho's read path: commands, messages, connection events."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Generic, Literal, TypeVar

import msgspec

from .._json import decode_any
from ._waits import within

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

    ``policy="drop_oldest"`` (the default): pushing never waits; when
    ``maxsize`` items are waiting, the oldest is dropped and counted in
    ``dropped``. ``policy="wait"``: nothing is dropped; reaching ``maxsize``
    calls ``on_full(stream, True)`` (the device stops reading from its
    connection, so the broker and TCP hold what follows) and falling to half of
    it calls ``on_full(stream, False)``. Use it as ``async for`` directly, or as
    ``async with`` to bound its life to a block; it ends when the device closes.
    """

    __slots__ = (
        "__weakref__", "_closed", "_error", "_full", "_items", "_on_close", "_on_full", "_waiter", "dropped",
        "maxsize", "policy",
    )

    def __init__(
        self,
        maxsize: int = 1000,
        on_close: Callable[[Stream[T]], None] | None = None,
        *,
        policy: Literal["drop_oldest", "wait"] = "drop_oldest",
        on_full: Callable[[Stream[T], bool], None] | None = None,
    ) -> None:
        self.maxsize: int = maxsize
        self.policy = policy
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._on_close = on_close
        self._on_full = on_full
        self._full = False
        #: Items discarded because the consumer fell ``maxsize`` behind (policy "drop_oldest").
        self.dropped: int = 0

    def push(self, item: T) -> None:
        """Hand an item to the stream's reader, applying the overflow policy; ignored once closed."""
        if self._closed:
            return
        items = self._items
        if len(items) >= self.maxsize and self.policy == "drop_oldest":
            items.popleft()
            self.dropped += 1
        items.append(item)
        if not self._full and len(items) >= self.maxsize and self.policy == "wait":
            self._set_full(True)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _set_full(self, full: bool) -> None:
        self._full = full
        if self._on_full is not None:
            self._on_full(self, full)

    def end(self, error: BaseException | None = None) -> None:
        """No more items: iteration stops after what is buffered (raising ``error`` if given)."""
        self._closed = True
        if self._full:
            self._set_full(False)  # an ended stream holds back nothing
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
                item = self._items.popleft()
                if self._full and len(self._items) <= self.maxsize // 2:
                    self._set_full(False)
                return item
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
        return await within(self.__anext__(), timeout, lambda: TimeoutError(f"nothing arrived within {timeout} s"))

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

"""The bounded one-consumer streams behind commands(), events() and subscribe()."""

from __future__ import annotations

import asyncio

import pytest

from losant_async.errors import AuthenticationRefusedError
from losant_async.mqtt import Stream


async def test_stream_drops_the_oldest_when_the_consumer_falls_behind() -> None:
    stream: Stream[int] = Stream(maxsize=3)
    for i in range(5):
        stream.push(i)
    assert stream.dropped == 2
    stream.end()
    assert [i async for i in stream] == [2, 3, 4]


async def test_a_waiting_consumer_is_woken_by_a_push() -> None:
    stream: Stream[str] = Stream()
    waiter = asyncio.ensure_future(stream.get(5))
    await asyncio.sleep(0)
    assert not waiter.done()
    stream.push("x")
    assert await waiter == "x"


async def test_ending_with_an_error_raises_it_after_the_buffered_items() -> None:
    stream: Stream[int] = Stream()
    stream.push(1)
    stream.end(AuthenticationRefusedError("refused", 5))
    assert await stream.get() == 1
    with pytest.raises(AuthenticationRefusedError):
        await stream.get()


async def test_closing_unregisters_once() -> None:
    closed: list[Stream[int]] = []
    stream: Stream[int] = Stream(on_close=closed.append)
    async with stream:
        pass
    stream.close()
    assert closed == [stream]
    with pytest.raises(StopAsyncIteration):
        await stream.get()


async def test_get_times_out_with_the_builtin_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        await Stream[int]().get(0.01)


async def test_a_waiting_stream_drops_nothing_and_reports_full_and_room() -> None:
    calls: list[bool] = []
    stream: Stream[int] = Stream(4, policy="wait", on_full=lambda s, full: calls.append(full))
    for i in range(6):
        stream.push(i)
    assert calls == [True] and len(stream) == 6 and stream.dropped == 0
    got = [await stream.get(1) for _ in range(4)]  # down to 2 = half of maxsize: room again
    assert got == [0, 1, 2, 3] and calls == [True, False]
    stream.push(6)
    stream.end()
    assert [i async for i in stream] == [4, 5, 6]

"""The pure pieces of the REST core: backoff, Retry-After, the SSE parser, the paginator, bulk runs."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
import pytest

from losant_async.errors import DecodeError, NotFoundError, ValidationError
from losant_async.rest import Paginator, RetryPolicy
from losant_async.rest._retry import parse_retry_after
from losant_async.rest.bulk import BulkResult, run_bulk
from losant_async.rest.sse import EventStream, SSEEvent, SSEParser

# -- backoff -------------------------------------------------------------------


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    top = RetryPolicy(base=0.5, cap=8.0, rng=lambda: 0.999999)
    assert [round(top.backoff(n), 3) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert RetryPolicy(rng=lambda: 0.0).backoff(3) == 0.0
    assert RetryPolicy().backoff(10_000) <= 8.0


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "5"}, 0) == 5.0
    assert parse_retry_after({"Retry-After": " 1.5 "}, 0) == 1.5
    assert parse_retry_after({"Retry-After": "-3"}, 0) == 0.0
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 1445412470.0) == 10.0
    assert parse_retry_after({"Retry-After": "soon"}, 0) is None
    assert parse_retry_after({}, 0) is None


# -- SSE parser --------------------------------------------------------------------


def test_sse_events_comments_and_multiline_data() -> None:
    parser = SSEParser()
    stream = b': keepalive\n\nevent: deviceState\ndata: {"a":\ndata: 1}\nid: 7\n\ndata: plain\n\n'
    assert parser.feed(stream) == [
        SSEEvent("deviceState", '{"a":\n1}', "7"),
        SSEEvent("message", "plain", "7"),
    ]


def test_sse_handles_any_line_ending_and_any_chunking() -> None:
    text = b"event: e\r\ndata: x\r\n\r\nevent: f\rdata:y\r\rdata: z\n\n"
    expected = [SSEEvent("e", "x"), SSEEvent("f", "y"), SSEEvent("message", "z")]
    for size in (1, 2, 3, 5, len(text)):
        parser = SSEParser()
        events: list[SSEEvent] = []
        for i in range(0, len(text), size):
            events += parser.feed(text[i : i + size])
        assert events == expected, size


def test_sse_incomplete_event_waits_for_the_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: 1\n") == []
    assert parser.feed(b"\n") == [SSEEvent("message", "1")]


# -- paginator -----------------------------------------------------------------------


class Pages:
    """Fake list endpoint: ``total`` items, ``per_page`` a page, tracking concurrency."""

    def __init__(self, total: int, per_page: int, *, announce_total: bool = True) -> None:
        self.total, self.per_page, self.announce = total, per_page, announce_total
        self.requested: list[int | None] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, page: int | None) -> dict[str, Any]:
        self.requested.append(page)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(3):  # give other fetches a chance to start
                await asyncio.sleep(0)
            n = page or 0
            items = list(range(n * self.per_page, min(self.total, (n + 1) * self.per_page)))
            body: dict[str, Any] = {
                "items": items,
                "page": n,
                "perPage": self.per_page,
                "count": len(items),
            }
            if self.announce:
                body["totalCount"] = self.total
            return body
        finally:
            self.in_flight -= 1


async def test_await_gives_the_first_page() -> None:
    pages = Pages(25, 10)
    first = await Paginator[dict[str, Any], int](pages)
    assert first["items"] == list(range(10))
    assert pages.requested == [None]


async def test_iteration_yields_every_item_in_order_with_bounded_prefetch() -> None:
    pages = Pages(95, 10)
    items = [item async for item in Paginator[dict[str, Any], int](pages, prefetch=3)]
    assert items == list(range(95))
    assert sorted(p or 0 for p in pages.requested) == list(range(10))
    assert 1 < pages.max_in_flight <= 3


async def test_iteration_without_a_total_walks_until_a_short_page() -> None:
    pages = Pages(23, 10, announce_total=False)
    assert [i async for i in Paginator[dict[str, Any], int](pages)] == list(range(23))
    assert pages.requested == [None, 1, 2]
    assert pages.max_in_flight == 1


async def test_iteration_from_a_later_page_and_pages() -> None:
    pages = Pages(30, 10)
    got = [p["page"] async for p in Paginator[dict[str, Any], int](pages, start_page=1).pages()]
    assert got == [1, 2]


async def test_empty_first_page_ends_iteration() -> None:
    assert [i async for i in Paginator[dict[str, Any], int](Pages(0, 10))] == []


async def test_leaving_early_cancels_pages_fetched_ahead() -> None:
    pages = Pages(1000, 10)
    iterator = Paginator[dict[str, Any], int](pages, prefetch=4).__aiter__()
    async with contextlib.aclosing(iterator):  # type: ignore[type-var]  # an async generator at runtime
        async for item in iterator:
            if item == 15:
                break
    assert pages.in_flight == 0
    assert len(pages.requested) <= 6


async def test_a_failing_page_surfaces_and_cancels_the_rest() -> None:
    pages = Pages(100, 10)

    async def fetch(page: int | None) -> dict[str, Any]:
        if page == 3:
            raise NotFoundError(404, "NotFound", "gone")
        return await pages(page)

    seen: list[int] = []
    with pytest.raises(NotFoundError):
        async for item in Paginator[dict[str, Any], int](fetch, prefetch=4):
            seen.append(item)
    assert seen == list(range(30))
    assert pages.in_flight == 0


async def test_unpaged_paginator_stops_after_the_one_answer() -> None:
    pages = Pages(100, 10)
    assert len([i async for i in Paginator[dict[str, Any], int](pages, paged=False)]) == 10


# -- bulk --------------------------------------------------------------------------------


async def test_run_bulk_keeps_input_order_and_every_failure() -> None:
    active = 0
    peak = 0

    async def call(key: str, value: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            for _ in range(value % 4):
                await asyncio.sleep(0)
            if value % 5 == 0:
                raise ValueError(f"bad {value}")
            return value * 2
        finally:
            active -= 1

    results = await run_bulk(((f"d{i}", i) for i in range(40)), call, concurrency=6)
    assert [r.key for r in results] == [f"d{i}" for i in range(40)]
    assert peak <= 6
    for i, r in enumerate(results):
        if i % 5 == 0:
            assert not r.ok and isinstance(r.error, ValueError)
            with pytest.raises(ValueError):
                r.unwrap()
        else:
            assert r.ok and r.unwrap() == i * 2


async def test_run_bulk_validates_concurrency_and_handles_empty_input() -> None:
    async def call(key: str, value: int) -> int:
        return value

    assert await run_bulk([], call) == []
    with pytest.raises(ValidationError):
        await run_bulk([("a", 1)], call, concurrency=0)
    assert await run_bulk([("a", 1)], call) == [BulkResult("a", 1)]


class FakeSource:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.closed = False

    async def read_chunk(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def close(self) -> None:
        self.closed = True


class Reading(msgspec.Struct):
    value: int


async def test_event_stream_decodes_typed_or_raw_and_skips_unknown_events() -> None:
    chunks = [b": hi\n\nevent: other\ndata: 1\n\nevent: r", b'eading\ndata: {"value": 3}\n\n']
    for raw, expected in ((False, [Reading(3)]), (True, [{"value": 3}])):
        source = FakeSource(chunks)

        async def opener(source: FakeSource = source) -> FakeSource:
            return source

        stream: EventStream[Any] = EventStream(opener, {"reading": Reading}, raw=raw)
        assert [e async for e in stream] == expected
        assert source.closed and stream.closed


async def test_event_stream_bad_data_raises_decode_error_and_closes() -> None:
    source = FakeSource([b"event: reading\ndata: {oops\n\n"])

    async def opener() -> FakeSource:
        return source

    stream: EventStream[Reading] = EventStream(opener, {"reading": Reading})
    with pytest.raises(DecodeError, match="reading"):
        async with stream:
            async for _ in stream:
                pass
    assert source.closed


async def test_event_stream_aclose_before_the_end() -> None:
    source = FakeSource([b'event: reading\ndata: {"value": 1}\n\n'] * 5)

    async def opener() -> FakeSource:
        return source

    stream: EventStream[Reading] = EventStream(opener, {"reading": Reading})
    assert await stream.__anext__() == Reading(1)
    await stream.aclose()
    assert source.closed
    assert [e async for e in stream] == []


# -- bounds (issue 19): a stream that never ends a line or an event cannot grow memory ------------


def test_a_line_without_an_end_past_the_cap_is_a_decode_error_and_nothing_more_is_kept() -> None:
    parser = SSEParser(max_line=1024)
    parser.feed(b"data: " + b"x" * 1000)
    with pytest.raises(DecodeError, match="longer than the limit of 1024"):
        parser.feed(b"x" * 100)
    assert len(parser._buffer) == 0
    with pytest.raises(DecodeError, match="longer than the limit"):
        SSEParser(max_line=1024).feed(b"data: " + b"y" * 2000 + b"\n")


def test_an_event_whose_data_never_ends_past_the_cap_is_a_decode_error() -> None:
    parser = SSEParser(max_event=10_000)
    with pytest.raises(DecodeError, match="10000 bytes of data"):
        for _ in range(200):
            parser.feed(b"data: " + b"z" * 100 + b"\n")  # no blank line: one event that keeps growing
    ok = SSEParser(max_event=10_000)
    assert [e.data for e in ok.feed(b"data: a\ndata: b\n\n")] == ["a\nb"]


async def test_an_event_stream_over_the_caps_raises_decode_error_naming_the_action_and_closes() -> None:
    from losant_async.rest.sse import MAX_LINE_BYTES

    source = FakeSource([b"data: " + b"x" * 65536] * (MAX_LINE_BYTES // 65536 + 2))

    async def opener() -> FakeSource:
        return source

    stream: EventStream[Reading] = EventStream(opener, {"reading": Reading}, name="device.stateStream")
    with pytest.raises(DecodeError, match=r"^device\.stateStream: an event-stream line"):
        async for _ in stream:
            pass
    assert source.closed and stream.closed

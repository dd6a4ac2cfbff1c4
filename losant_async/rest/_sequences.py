"""Operations that answer with a sequence: pages as a ``Paginator``, server-sent events as an ``EventStream``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ..errors import DecodeError
from ._operation import Operation
from ._request import PreparedRequest, prepare
from .options import RequestOptions
from .pagination import Paginator
from .sse import EventStream
from .transport import HTTPResponse

__all__ = ["event_stream", "paginator"]

Call = Callable[[Operation, tuple[Any, ...], bool, "RequestOptions | None"], Awaitable[Any]]
"""The client's ``call``: one operation, its arguments, ``raw`` and the options."""


def paginator(
    call: Call,
    op: Operation,
    args: tuple[Any, ...],
    raw: bool,
    options: RequestOptions | None,
    *,
    prefetch: int,
) -> Paginator[Any, Any]:
    """A ``Paginator`` over ``op``'s pages, each fetched by ``call``; bad arguments raise here."""
    prepare(op, args)
    index = {p.api_name: i for i, p in enumerate(op.params)}
    if "offset" in index and "limit" in index:
        return _offset_paginator(call, op, args, raw, options, index["offset"], index["limit"], prefetch)
    page_index = index.get("page")
    per_page_index = index.get("perPage")

    async def fetch(page: int | None) -> Any:
        call_args = args
        if page is not None and page_index is not None:
            call_args = (*args[:page_index], page, *args[page_index + 1 :])
        return await call(op, call_args, raw, options)

    start = _optional_int(args[page_index]) if page_index is not None else None
    per_page = _optional_int(args[per_page_index]) if per_page_index is not None else None
    return Paginator(
        fetch,
        paged=page_index is not None,
        start_page=start,
        per_page=per_page,
        prefetch=prefetch,
    )


def _offset_paginator(
    call: Call,
    op: Operation,
    args: tuple[Any, ...],
    raw: bool,
    options: RequestOptions | None,
    offset_index: int,
    limit_index: int,
    prefetch: int,
) -> Paginator[Any, Any]:
    """Pages of ``limit`` items from the caller's ``offset`` (a call without ``limit`` takes the reply's)."""
    skip = _optional_int(args[offset_index]) or 0
    limit = _optional_int(args[limit_index])
    learned: list[int] = []

    async def fetch(page: int | None) -> Any:
        if page is None:
            reply = await call(op, args, raw, options)
            size = limit if limit is not None else _page_limit(reply)
            if size is not None:
                learned.append(size)
            return reply
        size = limit if limit is not None else (learned[0] if learned else None)
        if size is None:  # the first reply said nothing of its size: nothing to step by
            raise DecodeError(f"{op.full_name}: the reply does not say its limit, so the next offset is unknown")
        call_args = list(args)
        call_args[offset_index] = skip + page * size
        call_args[limit_index] = size
        return await call(op, tuple(call_args), raw, options)

    return Paginator(fetch, per_page=limit, skip=skip, prefetch=prefetch)


def event_stream(
    open_stream: Callable[[PreparedRequest], Awaitable[HTTPResponse]],
    op: Operation,
    args: tuple[Any, ...],
    raw: bool,
) -> EventStream[Any]:
    """An ``EventStream`` of ``op``'s events, opened by ``open_stream``; bad arguments raise here."""
    prepared = prepare(op, args)

    async def opener() -> Any:
        resp = await open_stream(prepared)
        assert resp.stream is not None
        return resp.stream

    return EventStream(opener, op.sse_events or {}, raw=raw, name=op.full_name)


def _optional_int(value: Any) -> int | None:
    if value is None or value is msgspec.UNSET or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _page_limit(reply: Any) -> int | None:
    """The ``limit`` an offset-paged reply says it used (a dict with ``raw=True``, else a Struct)."""
    value = reply.get("limit") if isinstance(reply, dict) else getattr(reply, "limit", None)
    return _optional_int(value)

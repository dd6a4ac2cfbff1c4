"""The base class of every generated resource, and the interface it calls into."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from ._operation import Operation, UploadSource

if TYPE_CHECKING:
    from .options import RequestOptions
    from .pagination import Paginator
    from .sse import EventStream

__all__ = ["Requester", "Resource"]


class Requester(Protocol):
    """What a resource needs from the client: implemented once, by ``LosantClient``.

    A requester may also offer ``call``, ``paginate_call`` and ``stream_call``:
    the same three with positional arguments (``op, args, raw, options``). When
    it does (``LosantClient`` does), a resource binds them directly, so a
    generated method reaches the client with no forwarding hop in between.
    """

    async def request(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> Any:
        """Send one operation and return its decoded (or raw) reply."""

    def paginate(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> Paginator[Any, Any]:
        """Iterate over every item of a paged operation."""

    def stream(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> EventStream[Any]:
        """Open a server-sent event stream operation."""


_Call = Callable[[Operation, tuple[Any, ...], bool, "RequestOptions | None"], Awaitable[Any]]
_Paginate = Callable[[Operation, tuple[Any, ...], bool, "RequestOptions | None"], "Paginator[Any, Any]"]
_Stream = Callable[[Operation, tuple[Any, ...], bool, "RequestOptions | None"], "EventStream[Any]"]


class Resource:
    """A group of actions (``client.device``); its methods are generated.

    ``_call``, ``_paginate`` and ``_stream`` are stored on the instance: the
    requester's own positional methods when it has them (no hop between a
    generated method and the client), else adapters to its keyword methods.
    """

    __slots__ = ("_call", "_paginate", "_requester", "_stream")

    _call: _Call
    _paginate: _Paginate
    _stream: _Stream

    def __init__(self, requester: Requester) -> None:
        self._requester = requester
        call: _Call | None = getattr(requester, "call", None)
        paginate: _Paginate | None = getattr(requester, "paginate_call", None)
        stream: _Stream | None = getattr(requester, "stream_call", None)
        self._call = call if call is not None else self._call_by_keyword
        self._paginate = paginate if paginate is not None else self._paginate_by_keyword
        self._stream = stream if stream is not None else self._stream_by_keyword

    async def _call_by_keyword(
        self, op: Operation, args: tuple[Any, ...], raw: bool, options: RequestOptions | None
    ) -> Any:
        return await self._requester.request(op, args, raw=raw, options=options)

    def _paginate_by_keyword(
        self, op: Operation, args: tuple[Any, ...], raw: bool, options: RequestOptions | None
    ) -> Paginator[Any, Any]:
        return self._requester.paginate(op, args, raw=raw, options=options)

    def _stream_by_keyword(
        self, op: Operation, args: tuple[Any, ...], raw: bool, options: RequestOptions | None
    ) -> EventStream[Any]:
        return self._requester.stream(op, args, raw=raw, options=options)

    async def _upload(
        self,
        create: Operation,
        get: Operation,
        source: UploadSource,
        application_id: str,
        name: str | None,
        parent_directory: str | None,
        content_type: str | None,
        wait: float,
        options: RequestOptions | None,
        file_id: str | None = None,
    ) -> Any:
        """A two-step upload in one call (``losant_async.rest.uploads``); ``file_id``: new content for that file."""
        from .uploads import upload_two_step

        return await upload_two_step(
            self._requester,
            create,
            get,
            source,
            application_id=application_id,
            name=name,
            parent_directory=parent_directory,
            content_type=content_type,
            wait=wait,
            options=options,
            file_id=file_id,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} resource>"

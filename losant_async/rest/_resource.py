"""The base class of every generated resource, and the interface it calls into."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from ._operation import Operation

if TYPE_CHECKING:
    from .options import RequestOptions
    from .pagination import Paginator
    from .sse import EventStream

__all__ = ["Requester", "Resource"]


class Requester(Protocol):
    """What a resource needs from the client: implemented once, by ``LosantClient``.

    ``call``, ``paginate_call`` and ``stream_call`` take their arguments
    positionally (the generated methods' hot path); ``request``, ``paginate``
    and ``stream`` are the same with keywords.
    """

    async def call(
        self, op: Operation, args: tuple[Any, ...], raw: bool, options: RequestOptions | None
    ) -> Any: ...

    def paginate_call(
        self, op: Operation, args: tuple[Any, ...], raw: bool, options: RequestOptions | None
    ) -> Paginator[Any, Any]: ...

    def stream_call(
        self, op: Operation, args: tuple[Any, ...], raw: bool, options: RequestOptions | None
    ) -> EventStream[Any]: ...

    async def request(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> Any: ...


class Resource:
    """A group of actions (``client.device``); its methods are generated.

    ``_call``, ``_paginate`` and ``_stream`` are the requester's own bound
    methods, stored on the instance: a generated method reaches the client's
    request function directly, with no forwarding hop in between.
    """

    __slots__ = ("_call", "_paginate", "_requester", "_stream")

    _call: Callable[[Operation, tuple[Any, ...], bool, RequestOptions | None], Awaitable[Any]]
    _paginate: Callable[[Operation, tuple[Any, ...], bool, RequestOptions | None], Paginator[Any, Any]]
    _stream: Callable[[Operation, tuple[Any, ...], bool, RequestOptions | None], EventStream[Any]]

    def __init__(self, requester: Requester) -> None:
        self._requester = requester
        self._call = requester.call
        self._paginate = requester.paginate_call
        self._stream = requester.stream_call

    def __repr__(self) -> str:
        return f"<{type(self).__name__} resource>"

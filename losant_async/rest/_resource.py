"""The base class of every generated resource, and the interface it calls into."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ._operation import Operation

if TYPE_CHECKING:
    from .options import RequestOptions
    from .pagination import Paginator
    from .sse import EventStream

__all__ = ["Requester", "Resource"]


class Requester(Protocol):
    """What a resource needs from the client: implemented once, by ``LosantClient``."""

    async def request(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> Any: ...

    def paginate(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> Paginator[Any, Any]: ...

    def stream(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> EventStream[Any]: ...


class Resource:
    """A group of actions (``client.device``); its methods are generated."""

    __slots__ = ("_requester",)

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    async def _call(
        self, op: Operation, args: tuple[Any, ...], raw: bool, options: RequestOptions | None
    ) -> Any:
        return await self._requester.request(op, args, raw=raw, options=options)

    def _paginate(
        self, op: Operation, args: tuple[Any, ...], raw: bool, options: RequestOptions | None
    ) -> Paginator[Any, Any]:
        return self._requester.paginate(op, args, raw=raw, options=options)

    def _stream(
        self, op: Operation, args: tuple[Any, ...], raw: bool, options: RequestOptions | None
    ) -> EventStream[Any]:
        return self._requester.stream(op, args, raw=raw, options=options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} resource>"

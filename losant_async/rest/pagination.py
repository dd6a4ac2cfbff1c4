"""Paginated list calls: await for the first page, or iterate over every item across pages."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar

import msgspec

__all__ = ["Paginator"]

PageT = TypeVar("PageT")
ItemT = TypeVar("ItemT")


_ATTRS = {"items": "items", "page": "page", "perPage": "per_page", "totalCount": "total_count"}


def _field(page: Any, name: str) -> Any:
    """A page's field by its wire name, from a raw dict or a typed Struct (snake_case attributes)."""
    if isinstance(page, dict):
        return page.get(name)
    value = getattr(page, _ATTRS.get(name, name), None)
    return None if value is msgspec.UNSET else value


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (float, str)):
        try:
            return int(value)
        except ValueError:
            return None
    return None


class Paginator(Generic[PageT, ItemT]):
    """The result of a list call.

    - ``await paginator``: the first requested page (a typed page Struct, or a
      dict with ``raw=True``);
    - ``async for item in paginator``: every item of every page from there on,
      in order. Once the first page tells ``totalCount`` and ``perPage``, up to
      ``prefetch`` following pages are fetched concurrently ahead of the
      consumer; items are still yielded in page order;
    - ``async for page in paginator.pages()``: the pages themselves.

    Offset-paged actions (``limit``/``offset``, e.g. ``data_table_rows.query``)
    work the same way: a page is ``limit`` items (the reply's ``limit`` when the
    call gave none), and the next starts where the previous ended.

    Iteration stops at the first empty page or after the last page the total
    announces. Leaving the loop early cancels the pages fetched ahead once the
    iterator is closed; ``aclose()`` (or ``async with
    contextlib.aclosing(paginator) as items:``) does that at once::

        async with contextlib.aclosing(client.devices.get(application_id=app)) as devices:
            async for device in devices:
                if device.name == "pump":
                    break  # the pages fetched ahead are cancelled on leaving the block
    """

    __slots__ = ("_fetch", "_open", "_paged", "_per_page", "_prefetch", "_skip", "_start")

    def __init__(
        self,
        fetch: Callable[[int | None], Awaitable[PageT]],
        *,
        start_page: int | None = None,
        per_page: int | None = None,
        prefetch: int = 4,
        paged: bool = True,
        skip: int | None = None,
    ) -> None:
        """``fetch(n)`` gets page ``n`` (``None``: the page the caller asked for).

        ``paged=False``: the action takes no page number, so its one answer is all.
        ``skip``: the action pages by offset, and the caller's first page starts
        after ``skip`` items; ``fetch(n)`` then gets the ``n``-th page of ``limit``
        items from there (``n = 0`` is the first).
        """
        self._paged = paged
        self._skip = skip
        self._fetch = fetch
        self._start = start_page
        self._per_page = per_page
        self._prefetch = max(1, prefetch)
        # Strong references: after a ``break`` the loop drops its iterator, and ``aclose()``
        # must still reach it to cancel the pages fetched ahead at once.
        self._open: list[AsyncGenerator[Any, None]] = []

    def __await__(self) -> Generator[Any, None, PageT]:
        return self._fetch(self._start).__await__()

    def __aiter__(self) -> AsyncIterator[ItemT]:
        """Every item of every page, in order (each ``async for`` starts from the first page)."""
        items = self._items()
        self._track(items)
        return items

    async def aclose(self) -> None:
        """Stop every iteration of this paginator still open and cancel the pages fetched ahead.

        An iteration that is stopped this way ends (its next step raises
        ``StopAsyncIteration``); a later ``async for`` starts from the first page again.
        """
        while self._open:
            await self._open.pop().aclose()

    def _track(self, iteration: AsyncGenerator[Any, None]) -> None:
        # Forget the iterations that have ended (a finished generator has no frame).
        self._open = [g for g in self._open if getattr(g, "ag_frame", None) is not None]
        self._open.append(iteration)

    async def _items(self) -> AsyncGenerator[ItemT, None]:
        async with contextlib.aclosing(self._pages()) as pages:
            async for page in pages:
                for item in _field(page, "items") or ():
                    yield item

    def pages(self) -> AsyncGenerator[PageT, None]:
        """Every page from the first requested one on (``aclose()`` stops this iteration too)."""
        pages = self._pages()
        self._track(pages)
        return pages

    async def _pages(self) -> AsyncGenerator[PageT, None]:
        first = await self._fetch(self._start)
        yield first
        items = _field(first, "items") or []
        if not items or not self._paged:
            return
        total = _int(_field(first, "totalCount"))
        current: int = 0
        per_page: int | None
        if self._skip is not None:
            per_page = self._per_page or _int(_field(first, "limit"))
            if total is not None:
                total -= self._skip
        else:
            numbered = _int(_field(first, "page"))
            current = numbered if numbered is not None else self._start or 0
            per_page = _int(_field(first, "perPage")) or self._per_page
        if total is not None and per_page:
            last = math.ceil(total / per_page) - 1
            async with contextlib.aclosing(self._ahead(current + 1, last)) as ahead:
                async for page in ahead:
                    yield page
            return
        # Without a total, walk one page at a time until a short or empty page.
        number = current + 1
        while per_page is None or len(items) >= per_page:
            page = await self._fetch(number)
            items = _field(page, "items") or []
            if not items:
                return
            yield page
            number += 1

    async def _ahead(self, first: int, last: int) -> AsyncGenerator[PageT, None]:
        window: deque[asyncio.Future[PageT]] = deque()
        number = first
        try:
            while number <= last or window:
                while number <= last and len(window) < self._prefetch:
                    window.append(asyncio.ensure_future(self._fetch(number)))
                    number += 1
                page = await window.popleft()
                if not _field(page, "items"):
                    return
                yield page
        finally:
            for task in window:
                task.cancel()
            if window:
                # Wait for the cancelled fetches so none outlives the iteration.
                await asyncio.gather(*window, return_exceptions=True)

    def __repr__(self) -> str:
        return f"<Paginator from page {self._start or 0}, prefetch {self._prefetch}>"

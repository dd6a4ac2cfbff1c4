"""``Paginator.aclose()``: ``contextlib.aclosing(paginator)`` stops its iterations and the pages fetched ahead."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from losant_async.rest import Paginator


class Pages:
    """A fake list endpoint of ``total`` items, 10 a page, counting the fetches in flight."""

    def __init__(self, total: int, *, stall_from: int | None = None) -> None:
        self.total = total
        self.requested: list[int | None] = []
        self.in_flight = 0
        self.stall_from = stall_from
        self.never = asyncio.Event()

    async def __call__(self, page: int | None) -> dict[str, Any]:
        self.requested.append(page)
        self.in_flight += 1
        try:
            for _ in range(3):  # let the other fetches start
                await asyncio.sleep(0)
            n = page or 0
            if self.stall_from is not None and n >= self.stall_from:
                await self.never.wait()  # only a cancellation ends this fetch
            items = list(range(n * 10, min(self.total, (n + 1) * 10)))
            return {"items": items, "page": n, "perPage": 10, "totalCount": self.total}
        finally:
            self.in_flight -= 1


async def test_aclosing_the_paginator_cancels_the_pages_fetched_ahead() -> None:
    pages = Pages(1000, stall_from=2)
    seen: list[int] = []
    async with contextlib.aclosing(Paginator[dict[str, Any], int](pages, prefetch=4)) as items:
        async for item in items:
            seen.append(item)
            if item == 15:
                break  # page 1 is done; the ones after it never answer
        assert pages.in_flight > 0  # pages 2.. are still being fetched ahead
    assert pages.in_flight == 0
    assert seen == list(range(16))
    assert len(pages.requested) <= 6


async def test_aclose_ends_an_open_iteration_and_pages() -> None:
    pages = Pages(1000)
    paginator = Paginator[dict[str, Any], int](pages, prefetch=2)
    items = aiter(paginator)
    page_iter = paginator.pages()
    assert await anext(items) == 0
    assert (await anext(page_iter))["page"] == 0
    await paginator.aclose()
    assert pages.in_flight == 0
    assert [i async for i in items] == []
    assert [p async for p in page_iter] == []
    # The paginator itself stays usable: a new loop starts from the first page.
    assert [i async for i in Paginator[dict[str, Any], int](Pages(12))] == list(range(12))
    assert await anext(aiter(paginator)) == 0
    await paginator.aclose()


async def test_aclose_without_any_iteration_is_a_no_op() -> None:
    pages = Pages(5)
    paginator = Paginator[dict[str, Any], int](pages)
    await paginator.aclose()
    assert pages.requested == []
    assert (await paginator)["items"] == [0, 1, 2, 3, 4]

"""Paginated list calls: await for the first page, or iterate over every item across pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import Any, Generic, TypeVar

__all__ = ["Paginator"]

PageT = TypeVar("PageT")
ItemT = TypeVar("ItemT")


class Paginator(Generic[PageT, ItemT]):
    """PLACEHOLDER: the REST core implements this."""

    def __await__(self) -> Generator[Any, None, PageT]:
        raise NotImplementedError
        yield  # pragma: no cover

    def __aiter__(self) -> AsyncIterator[ItemT]:
        raise NotImplementedError

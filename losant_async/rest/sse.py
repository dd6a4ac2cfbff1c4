"""Server-sent-event streams as async iterators of decoded events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Generic, TypeVar

__all__ = ["EventStream"]

EventT = TypeVar("EventT")


class EventStream(Generic[EventT]):
    """PLACEHOLDER: the REST core implements this."""

    def __aiter__(self) -> AsyncIterator[EventT]:
        raise NotImplementedError

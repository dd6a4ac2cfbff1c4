"""Server-sent-event streams as async iterators of decoded events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from .._json import decode, decode_any
from ..errors import DecodeError

__all__ = ["MAX_EVENT_BYTES", "MAX_LINE_BYTES", "EventStream", "SSEEvent", "SSEParser"]

#: The longest line an event stream may send (Losant's events are a few KiB).
MAX_LINE_BYTES = 1 << 20
#: The most ``data`` one event may accumulate before its blank line.
MAX_EVENT_BYTES = 4 << 20

EventT = TypeVar("EventT")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its name (``message`` when none was given), data and id."""

    event: str
    data: str
    id: str | None = None


class SSEParser:
    """The text/event-stream format, fed bytes as they arrive; pure, no I/O.

    Lines end in ``\\n``, ``\\r\\n`` or ``\\r``; ``data:`` lines accumulate
    (joined by ``\\n``), a blank line dispatches, ``:`` lines are comments
    (the server's keepalives) and are dropped, as are unknown fields.

    Bounded: a line longer than ``max_line`` bytes, or an event whose data
    grows past ``max_event`` bytes, raises ``DecodeError`` (nothing more of it
    is buffered).
    """

    __slots__ = ("_buffer", "_data", "_data_size", "_event", "_id", "_pending_cr", "max_event", "max_line")

    def __init__(self, *, max_line: int = MAX_LINE_BYTES, max_event: int = MAX_EVENT_BYTES) -> None:
        self.max_line = max_line
        self.max_event = max_event
        self._buffer = bytearray()
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._id: str | None = None
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by ``chunk``."""
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the \n of a \r\n split across chunks
        self._pending_cr = False
        self._buffer += chunk
        events: list[SSEEvent] = []
        buf = self._buffer
        start = 0
        n = len(buf)
        while start < n:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf != -1 else n)
            if cr != -1:
                end, nxt = cr, cr + 1
                if nxt < n and buf[nxt] == 0x0A:
                    nxt += 1
                elif nxt == n:
                    self._pending_cr = True
            elif lf != -1:
                end, nxt = lf, lf + 1
            else:
                break
            if end - start > self.max_line:
                self._too_long(end - start)
            event = self._line(bytes(buf[start:end]).decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
            start = nxt
        del buf[:start]
        if len(buf) > self.max_line:
            self._too_long(len(buf))
        return events

    def _too_long(self, size: int) -> None:
        self._buffer.clear()
        raise DecodeError(f"an event-stream line of over {size} bytes, longer than the limit of {self.max_line}",
                          raw_size=size)

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data), self._id)
            self._data = []
            self._data_size = 0
            self._event = ""
            return event
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self.max_event:
                self._data = []
                self._data_size = 0
                raise DecodeError(
                    f"an event-stream event of over {self.max_event} bytes of data, beyond the limit",
                    raw_size=self.max_event,
                )
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


class _Source(Protocol):
    async def read_chunk(self) -> bytes: ...

    def close(self) -> None: ...


class EventStream(Generic[EventT]):
    """The events of one server-sent-event action, decoded, in arrival order.

    Use it as ``async with client.device.state_stream(...) as events:`` and
    ``async for state in events:``; a bare ``async for`` works too. The
    connection opens on entry (or on the first iteration), and closes when the
    block is left, on ``aclose()``, when the iteration is cancelled, or when
    the server ends the stream. Events whose name the action does not declare
    are skipped; keepalive comments never surface. There is no read timeout:
    the server's keepalives pace the stream.
    """

    def __init__(
        self,
        opener: Callable[[], Awaitable[_Source]],
        event_types: Mapping[str, Any],
        *,
        raw: bool = False,
        name: str = "",
    ) -> None:
        self._name = name
        self._opener = opener
        self._types = dict(event_types)
        self._raw = raw
        self._source: _Source | None = None
        self._parser = SSEParser()
        self._pending: list[EventT] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def _open(self) -> None:
        if self._source is None and not self._closed:
            self._source = await self._opener()

    async def __aenter__(self) -> EventStream[EventT]:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> EventStream[EventT]:
        return self

    async def __anext__(self) -> EventT:
        if self._pending:
            return self._pending.pop(0)
        if self._closed:
            raise StopAsyncIteration
        try:
            await self._open()
            while not self._pending:
                source = self._source
                if source is None:  # closed meanwhile (aclose from another task)
                    raise StopAsyncIteration
                chunk = await source.read_chunk()
                if not chunk:
                    self._close()
                    raise StopAsyncIteration
                try:
                    events = self._parser.feed(chunk)
                except DecodeError as exc:
                    raise DecodeError(f"{self._name or 'event stream'}: {exc}", raw_size=exc.raw_size) from None
                for event in events:
                    decoded = self._decode(event)
                    if decoded is not _SKIP:
                        self._pending.append(decoded)
        except BaseException:
            # Cancelled or failed mid-read: drop the connection now, not at GC.
            self._close()
            raise
        return self._pending.pop(0)

    def _decode(self, event: SSEEvent) -> Any:
        if event.event not in self._types:
            return _SKIP
        tp = self._types[event.event]
        data = event.data.encode()
        try:
            if self._raw or tp is None:
                return decode_any(data)
            return decode(data, tp)
        except DecodeError as exc:
            raise DecodeError(
                f"event {event.event!r}: {exc}", raw=exc.raw, path=exc.path, raw_size=exc.raw_size
            ) from None

    def _close(self) -> None:
        self._closed = True
        source, self._source = self._source, None
        if source is not None:
            source.close()

    async def aclose(self) -> None:
        """Close the connection; pending events are dropped."""
        self._pending.clear()
        self._close()

    def __repr__(self) -> str:
        state = (
            "closed" if self._closed else ("open" if self._source is not None else "not started")
        )
        return f"<EventStream {'/'.join(self._types) or '?'} {state}>"


_SKIP: Any = object()

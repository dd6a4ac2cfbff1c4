"""The emulator's HTTP listeners (REST, MQTT over WebSockets): connection caps, a request-head deadline, idle closing, JSON errors, peer watching.

aiohttp serves each connection with a ``RequestHandler``; here every one is
wrapped in a guard that refuses connections over the cap (503 in Losant's
JSON shape), closes one that has not sent a complete request head within the
deadline, and tells SSE streams when their peer has gone. aiohttp's own
refusals (a request line too long, too many headers) answer in Losant's JSON
shape too.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .. import _json
from ._limits import Limits
from .store import Counters

__all__ = ["GuardedSite", "Listener"]

_log = logging.getLogger("losant_async.testing.rest")

_TYPES = {400: "Validation", 408: "RequestTimeout", 413: "RequestEntityTooLarge", 431: "Validation", 503: "ServiceUnavailable"}


def _error_bytes(status: int, reason: str, message: str) -> bytes:
    body = _json.encode({"type": _TYPES.get(status, "InternalError"), "message": message})
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


@functools.cache
def _handler_options() -> frozenset[str]:
    """The options this aiohttp's RequestHandler takes (the oldest supported may lack some)."""
    return frozenset(inspect.signature(RequestHandler.__init__).parameters)


class _JsonErrors(RequestHandler):
    """aiohttp's handler, with its own error answers (400 for a bad request line...) in Losant's shape."""

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started: no error answer can follow")
        if status >= 500:
            _log.error("emulator REST failure", exc_info=exc)
            text = "emulator failure"
        else:
            text = message or (str(exc) if exc is not None else "Bad request")
        body = _json.encode({"type": _TYPES.get(status, "InternalError" if status >= 500 else "Validation"), "message": text})
        response = web.Response(body=body, status=status, content_type="application/json")
        response.force_close()
        return response


class _Guard(asyncio.Protocol):
    """One REST connection: the deadline for its request head, its place in the cap, who watches it close."""

    __slots__ = ("_callbacks", "_head_done", "_inner", "_listener", "_tail", "_timer", "closed", "transport")

    def __init__(self, listener: Listener, inner: RequestHandler) -> None:
        self._listener = listener
        self._inner = inner
        self._head_done = False
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None
        self._callbacks: list[Callable[[], None]] = []
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        listener = self._listener
        if len(listener.open) >= listener.max_connections:
            listener.counters.rest_connections_refused += 1
            self.closed = True
            transport.write(_error_bytes(503, "Service Unavailable", "too many connections to the emulator's REST server"))
            transport.close()
            return
        self.transport = transport
        listener.open[transport] = self
        self._inner.connection_made(transport)
        self._timer = asyncio.get_running_loop().call_later(listener.limits.rest_header_deadline_s, self._head_late)

    def _head_late(self) -> None:
        self._timer = None
        if not self._head_done and self.transport is not None:
            self._listener.counters.rest_timeouts += 1
            # a request that never finished its head gets no answer: there is no request to answer
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if not self._head_done:
            seen = self._tail + data
            if b"\r\n\r\n" in seen:
                self._head_done = True
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if not self.closed:
            self._inner.eof_received()
        return None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._listener.open.pop(self.transport, None)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                _log.exception("a REST close callback failed")
        self._inner.connection_lost(exc)

    def on_close(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once the connection closes (at once when it has); returns the remover."""
        if self.closed:
            callback()
            return lambda: None
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove


class Listener:
    """The open connections of one HTTP listener and their limits; makes each connection's guarded handler."""

    def __init__(self, limits: Limits, counters: Counters, *, max_connections: int | None = None) -> None:
        self.limits = limits
        self.counters = counters
        self.max_connections = limits.max_rest_connections if max_connections is None else max_connections
        self.open: dict[asyncio.BaseTransport, _Guard] = {}

    def protocol(self, server: web.Server) -> asyncio.Protocol:
        limits = self.limits
        options: dict[str, Any] = {
            "keepalive_timeout": limits.rest_idle_s,
            "access_log": None,  # no access log
            "max_line_size": limits.rest_max_line_bytes,
            "max_field_size": limits.rest_max_line_bytes,
            "max_headers": limits.rest_max_headers,
        }
        accepted = _handler_options()
        inner = _JsonErrors(
            server, loop=asyncio.get_running_loop(), **{k: v for k, v in options.items() if k in accepted}
        )
        return _Guard(self, inner)

    def watch(self, request: web.BaseRequest) -> _Guard | None:
        """The guard of a request's connection (what an SSE stream watches for its peer going)."""
        transport = request.transport
        return self.open.get(transport) if transport is not None else None


class GuardedSite(web.TCPSite):
    """A TCP site whose connections go through the listener's guards."""

    __slots__ = ("_listener",)

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, listener: Listener, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self._listener = listener

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        listener = self._listener
        self._server = await asyncio.get_running_loop().create_server(
            lambda: listener.protocol(server), self._host, self._port, ssl=self._ssl_context, backlog=self._backlog
        )

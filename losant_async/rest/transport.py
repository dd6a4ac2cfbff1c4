"""The transport seam: what ``LosantClient`` sends its requests through, and ``MockTransport`` for tests.

A transport is any object with two coroutine methods (``Transport``)::

    async def send(self, request: HTTPRequest) -> HTTPResponse
    async def aclose(self) -> None

``LosantClient`` builds the ``HTTPRequest`` (absolute URL already quoted,
headers, encoded body), hands it to ``send``, and does everything else itself:
retries, re-authentication, error mapping and decoding. The default transport
is ``AiohttpTransport``; ``MockTransport`` answers from a function, so a unit
test of code that uses ``LosantClient`` needs no server and no patching::

    def handler(request: HTTPRequest) -> HTTPResponse:
        assert request.method == "POST"
        return HTTPResponse.from_json({"success": True})

    async with LosantClient("token", transport=MockTransport(handler)) as client:
        await client.device.send_state(application_id=..., device_id=..., device_state=...)

What a transport raises, so the client can decide about retrying: errors
from ``losant_async.errors``: ``RequestNotSentError`` (or ``ConnectTimeoutError``)
when the request certainly never reached the server (always retried),
``ConnectError`` / ``RequestTimeoutError`` when it may have (retried only for
requests safe to repeat), ``TLSVerificationError`` for a certificate failure
and ``ResponseTooLargeError`` past ``request.max_response_bytes`` (never retried).
Anything else propagates unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .._json import decode_any, encode
from ..errors import ResponseTooLargeError
from ._request import Part
from .options import Timeout

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "HTTPRequest",
    "HTTPResponse",
    "MockTransport",
    "ResponseStream",
    "Transport",
]

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""The default cap on one reply's body, after decompression (64 MiB)."""


@dataclass(slots=True)
class HTTPRequest:
    """One request as the client hands it to a transport (treat it as read-only)."""

    method: str
    url: str
    """The absolute URL, path and query already percent-encoded."""
    headers: Mapping[str, str] = field(repr=False)
    """Includes ``Authorization``: never shown in the repr."""
    body: bytes | None = field(default=None, repr=False)
    """The encoded JSON body, if any."""
    parts: tuple[Part, ...] | None = field(default=None, repr=False)
    """A multipart body (files already read into memory), if any."""
    timeout: Timeout = field(default_factory=Timeout)
    stream: bool = False
    """A server-sent-event stream: answer as soon as the headers arrive, with ``HTTPResponse.stream``."""
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    """Refuse (``ResponseTooLargeError``) a body larger than this, after decompression."""

    def json(self) -> Any:
        """The JSON body decoded into plain Python values (``None`` without a body)."""
        return None if self.body is None else decode_any(self.body)


class ResponseStream(Protocol):
    """The body of a streamed answer, read piece by piece."""

    async def read_chunk(self) -> bytes:
        """The next piece of the body; ``b""`` at its end."""
        ...

    def close(self) -> None:
        """Stop reading and release the connection."""
        ...


@dataclass(slots=True)
class HTTPResponse:
    """A transport's answer: status, headers and the whole body, or an open ``stream``."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: ResponseStream | None = None
    """For ``request.stream``: the open body (``body`` is then empty)."""

    @classmethod
    def from_json(
        cls, value: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> HTTPResponse:
        """An answer whose body is ``value`` encoded as JSON (Structs, dicts, lists...)."""
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        return cls(status, hdrs, encode(value, what="response"))


@runtime_checkable
class Transport(Protocol):
    """What ``LosantClient(transport=...)`` accepts: see the module docstring for the contract."""

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        """Send ``request``; answer with the whole body (or an open stream when ``request.stream``)."""
        ...

    async def aclose(self) -> None:
        """Release what the transport holds; the client calls it when it closes."""
        ...


class _BytesStream:
    """A body already in memory, served as a stream in chunks."""

    __slots__ = ("_chunks", "_closed")

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = list(chunks)
        self._closed = False

    async def read_chunk(self) -> bytes:
        if self._closed or not self._chunks:
            return b""
        return self._chunks.pop(0)

    def close(self) -> None:
        self._closed = True


Handler = Callable[[HTTPRequest], "HTTPResponse | Awaitable[HTTPResponse]"]


class MockTransport:
    """A transport that answers every request with ``handler(request)`` (plain or async).

    Every request is kept in ``requests``, in order. For a stream request the
    handler's ``body`` is served as the stream (or give ``stream=`` yourself).
    An exception the handler raises propagates as the transport's error, so
    ``raise RequestNotSentError("down")`` tests the client's retries.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[HTTPRequest] = []
        self.closed: bool = False

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        """Record the request and answer it with the handler's reply."""
        if self.closed:
            raise RuntimeError("MockTransport is closed")
        self.requests.append(request)
        answer = self._handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if not isinstance(answer, HTTPResponse):
            raise TypeError(f"the handler must return an HTTPResponse, not {type(answer).__name__}")
        if answer.stream is None and len(answer.body) > request.max_response_bytes:
            raise ResponseTooLargeError(
                f"{request.method}: the reply is larger than {request.max_response_bytes} bytes",
                request.max_response_bytes,
            )
        if request.stream and answer.stream is None:
            answer = HTTPResponse(answer.status, answer.headers, b"", _BytesStream([answer.body]))
        return answer

    async def aclose(self) -> None:
        """Mark the transport closed; later sends raise."""
        self.closed = True

    def __repr__(self) -> str:
        return f"<MockTransport {len(self.requests)} requests>"

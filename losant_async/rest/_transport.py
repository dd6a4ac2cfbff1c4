"""The HTTP transport: the only module that uses aiohttp's client.

It owns (or borrows) one ``ClientSession``, sends prepared requests, reads
bodies, and translates aiohttp's exceptions into ours at this one boundary,
so an aiohttp upgrade touches nothing else.
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import yarl

from ..errors import ConnectError, RequestTimeoutError, ValidationError
from ._request import Part
from .options import Timeout

__all__ = [
    "ClientSession",
    "ConnectTimeoutError",
    "NotSentError",
    "Response",
    "StreamResponse",
    "Transport",
    "default_user_agent",
]

_T = TypeVar("_T")

ClientSession = aiohttp.ClientSession
"""What ``LosantClient(session=...)`` accepts, named here so no other module imports aiohttp."""

# ConnectionTimeoutError appeared in aiohttp 3.10; before it a connect timeout is
# indistinguishable from a read timeout, and is (safely) treated as one.
_CONNECT_TIMEOUT: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(aiohttp, "ConnectionTimeoutError", None),) if isinstance(t, type)
)
_NOT_RETRYABLE_CONNECT: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorCertificateError,
    aiohttp.ClientSSLError,
)


class NotSentError(ConnectError):
    """The connection failed before the request was written: the server never saw it."""


class ConnectTimeoutError(RequestTimeoutError):
    """No connection within the connect timeout: the server never saw the request."""


def default_user_agent(prefix: str | None = None) -> str:
    """``losant-async/<version> (Python x.y.z; aiohttp a.b.c)``, after ``prefix`` if given."""
    from .._version import __version__

    base = (
        f"losant-async/{__version__} (Python {platform.python_version()}; "
        f"aiohttp {aiohttp.__version__})"
    )
    return f"{prefix} {base}" if prefix else base


@dataclass(frozen=True, slots=True)
class Response:
    """A complete answer: status, headers, body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class StreamResponse:
    """An open response read incrementally (server-sent events); close it when done."""

    __slots__ = ("_closed", "_resp")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self._closed = False

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    async def read(self) -> bytes:
        """The whole body (for an error answer), then close."""
        try:
            return await _guard(self._resp.read())
        finally:
            self.close()

    async def read_chunk(self) -> bytes:
        """The next piece of the body as it arrives; ``b""`` at its end."""
        if self._closed:
            return b""
        chunk = await _guard(self._resp.content.readany())
        return bytes(chunk)

    def close(self) -> None:
        """Drop the connection (an unfinished stream cannot go back to the pool)."""
        if not self._closed:
            self._closed = True
            self._resp.close()

    @property
    def closed(self) -> bool:
        return self._closed


async def _guard(awaitable: Awaitable[_T]) -> _T:
    try:
        return await awaitable
    except (asyncio.TimeoutError, TimeoutError):
        raise RequestTimeoutError("timed out reading the response") from None
    except aiohttp.ClientError as exc:
        raise ConnectError(
            f"connection failed while reading the response: {_describe(exc)}"
        ) from None


def _describe(exc: BaseException) -> str:
    # aiohttp's connection messages name host and port, never headers; a response
    # error's message carries the full URL (query included), so it is left out.
    text = "" if isinstance(exc, aiohttp.ClientResponseError) else str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Transport:
    """Sends requests over one ``aiohttp.ClientSession``.

    A session passed in is used as is and never closed here; otherwise one is
    created by ``start()`` and closed by ``close()``.
    """

    __slots__ = ("_base", "_limit", "_owns", "_session", "_timeouts")

    def __init__(
        self, base_url: str, session: aiohttp.ClientSession | None = None, *, limit: int = 100
    ) -> None:
        url = yarl.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValidationError(f"url must be an http(s) URL, got {base_url!r}")
        self._base = str(url).rstrip("/")
        self._session = session
        self._owns = session is None
        self._limit = limit
        self._timeouts: dict[tuple[Timeout, bool], aiohttp.ClientTimeout] = {}

    @property
    def base_url(self) -> str:
        return self._base

    @property
    def owns_session(self) -> bool:
        return self._owns

    @property
    def open(self) -> bool:
        """A session exists and is not closed."""
        return self._session is not None and not self._session.closed

    def start(self) -> None:
        """Create the session, if none was given (needs a running event loop)."""
        if self._session is None or (self._owns and self._session.closed):
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                # Our errors carry status and body; aiohttp must not raise on them first.
                raise_for_status=False,
            )
            self._owns = True

    async def close(self) -> None:
        """Close the session if this transport created it."""
        session = self._session
        if self._owns and session is not None and not session.closed:
            await session.close()

    def _client_timeout(self, timeout: Timeout, stream: bool) -> aiohttp.ClientTimeout:
        key = (timeout, stream)
        ct = self._timeouts.get(key)
        if ct is None:
            if stream:  # keepalives arrive at the server's pace; only connecting is bounded
                ct = aiohttp.ClientTimeout(total=None, connect=timeout.connect, sock_read=None)
            else:
                ct = aiohttp.ClientTimeout(
                    total=timeout.total, connect=timeout.connect, sock_read=timeout.read
                )
            self._timeouts[key] = ct
        return ct

    def _url(self, path_and_query: str) -> yarl.URL:
        # Already quoted by the request builder: tell yarl not to quote again.
        return yarl.URL(self._base + path_and_query, encoded=True)

    def _session_or_start(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns and self._session.closed):
            self.start()
        assert self._session is not None
        return self._session

    async def send(
        self,
        method: str,
        path_and_query: str,
        headers: Mapping[str, str],
        body: bytes | None,
        parts: tuple[Part, ...] | None,
        timeout: Timeout,
    ) -> Response:
        """Send one request and read the whole answer."""
        session = self._session_or_start()
        data: Any = _form(parts) if parts is not None else body
        try:
            async with session.request(
                method,
                self._url(path_and_query),
                headers=headers,
                data=data,
                timeout=self._client_timeout(timeout, False),
                allow_redirects=False,
            ) as resp:
                payload = await resp.read()
                return Response(resp.status, resp.headers, payload)
        except _TRANSLATED as exc:
            # from None: aiohttp's exception may carry the request's headers (the token).
            raise _translate(exc, method) from None

    async def open_stream(
        self, method: str, path_and_query: str, headers: Mapping[str, str], timeout: Timeout
    ) -> StreamResponse:
        """Send a request and return the response as soon as its headers arrive."""
        session = self._session_or_start()
        try:
            resp = await session.request(
                method,
                self._url(path_and_query),
                headers=headers,
                timeout=self._client_timeout(timeout, True),
                allow_redirects=False,
            )
        except _TRANSLATED as exc:
            # from None: aiohttp's exception may carry the request's headers (the token).
            raise _translate(exc, method) from None
        return StreamResponse(resp)


_TRANSLATED = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError)


def _translate(exc: BaseException, method: str) -> Exception:
    """aiohttp's exception (one of ``_TRANSLATED``) as ours."""
    if _CONNECT_TIMEOUT and isinstance(exc, _CONNECT_TIMEOUT):
        return ConnectTimeoutError(f"{method}: no connection within the connect timeout")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return RequestTimeoutError(f"{method}: no complete answer within the timeout")
    if isinstance(exc, _NOT_RETRYABLE_CONNECT):
        return ConnectError(f"{method}: TLS failed: {_describe(exc)}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return NotSentError(f"{method}: could not connect: {_describe(exc)}")
    return ConnectError(f"{method}: connection failed: {_describe(exc)}")


def _form(parts: tuple[Part, ...]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for part in parts:
        if part.filename is None:
            form.add_field(part.name, part.value)
        else:
            form.add_field(
                part.name, part.value, filename=part.filename, content_type=part.content_type
            )
    return form

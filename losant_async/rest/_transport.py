"""The default HTTP transport, ``AiohttpTransport``: the only module that uses aiohttp's client.

It owns (or borrows) one ``ClientSession``, sends requests, reads bodies within
the size cap, and translates aiohttp's exceptions into ours at this one
boundary, so an aiohttp upgrade touches nothing else.
"""

from __future__ import annotations

import asyncio
import platform
import ssl as _ssl
from collections.abc import Awaitable, Mapping
from typing import TypeVar

import aiohttp
import yarl
from multidict import CIMultiDict

from ..errors import (
    ConnectError,
    ConnectTimeoutError,
    RequestNotSentError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TLSVerificationError,
    ValidationError,
)
from ._request import Part
from .options import Timeout
from .transport import HTTPRequest, HTTPResponse

__all__ = [
    "AiohttpTransport",
    "ClientSession",
    "ConnectTimeoutError",
    "NotSentError",
    "default_user_agent",
    "check_base_url",
]

_T = TypeVar("_T")

ClientSession = aiohttp.ClientSession
"""What ``LosantClient(session=...)`` accepts, named here so no other module imports aiohttp."""

NotSentError = RequestNotSentError
"""The old name of ``losant_async.errors.RequestNotSentError``."""

# ConnectionTimeoutError appeared in aiohttp 3.10; before it a connect timeout is
# indistinguishable from a read timeout, and is (safely) treated as one.
_CONNECT_TIMEOUT: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(aiohttp, "ConnectionTimeoutError", None),) if isinstance(t, type)
)


def default_user_agent(prefix: str | None = None) -> str:
    """``losant-async/<version> (Python x.y.z; aiohttp a.b.c)``, after ``prefix`` if given."""
    from .._version import __version__

    base = (
        f"losant-async/{__version__} (Python {platform.python_version()}; "
        f"aiohttp {aiohttp.__version__})"
    )
    return f"{prefix} {base}" if prefix else base


def check_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash, or ``ValidationError`` unless it is an http(s) URL."""
    if not isinstance(base_url, str):
        raise ValidationError(f"url must be a string, not {type(base_url).__name__}")
    url = yarl.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValidationError(f"url must be an http(s) URL, got {base_url!r}")
    if url.query_string or url.fragment:
        raise ValidationError("url must not carry a query or a fragment")
    return str(url).rstrip("/")


class _Stream:
    """An open aiohttp response read incrementally (server-sent events)."""

    __slots__ = ("_closed", "_resp")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self._closed = False

    async def read_chunk(self) -> bytes:
        if self._closed:
            return b""
        return bytes(await _guard(self._resp.content.readany()))

    def close(self) -> None:
        # An unfinished stream cannot go back to the pool: drop the connection.
        if not self._closed:
            self._closed = True
            self._resp.close()


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


class AiohttpTransport:
    """The default transport: one ``aiohttp.ClientSession`` with a connection pool.

    A ``session`` passed in is used as is and never closed here; otherwise one
    is created on first use and closed by ``aclose()``, with ``limit``
    connections, ``ssl`` (an ``ssl.SSLContext``, e.g. trusting a private CA;
    ``None`` verifies against the system's trust store; never ``False``
    silently: pass it explicitly to disable verification) and ``trust_env``
    (``True``: honour ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` and
    ``~/.netrc``, as aiohttp does).
    """

    __slots__ = (
        "_headers_in",
        "_headers_out",
        "_last_client_timeout",
        "_last_timeout",
        "_limit",
        "_owns",
        "_session",
        "_ssl",
        "_timeouts",
        "_trust_env",
        "_urls",
    )

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        limit: int = 100,
        ssl: _ssl.SSLContext | bool | None = None,
        trust_env: bool = False,
    ) -> None:
        if ssl is not None and not isinstance(ssl, (_ssl.SSLContext, bool)):
            raise ValidationError(f"ssl must be an ssl.SSLContext or a bool, not {type(ssl).__name__}")
        if session is not None and (ssl is not None or trust_env):
            raise ValidationError("ssl and trust_env configure a session the client creates; "
                                  "set them on the session you pass instead")
        self._session = session
        self._owns = session is None
        self._limit = limit
        self._ssl: _ssl.SSLContext | bool = True if ssl is None else ssl
        self._trust_env = trust_env
        self._timeouts: dict[tuple[Timeout, bool], aiohttp.ClientTimeout] = {}
        # The client hands the same header dict to every request with the same token: convert
        # it to the multidict aiohttp wants once, not per request.
        self._headers_in: Mapping[str, str] | None = None
        self._headers_out: CIMultiDict[str] = CIMultiDict()
        # The same URLs recur (one per device and action): parse each once. Bounded.
        self._urls: dict[str, yarl.URL] = {}
        self._last_timeout: Timeout | None = None
        self._last_client_timeout = aiohttp.ClientTimeout()

    @property
    def owns_session(self) -> bool:
        return self._owns

    @property
    def open(self) -> bool:
        """A session exists and is not closed."""
        return self._session is not None and not self._session.closed

    def start(self) -> aiohttp.ClientSession:
        """Create the session, if none was given (needs a running event loop)."""
        session = self._session
        if session is None or (self._owns and session.closed):
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl),
                # Our errors carry status and body; aiohttp must not raise on them first.
                raise_for_status=False,
                trust_env=self._trust_env,
            )
            self._owns = True
        return session

    async def aclose(self) -> None:
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
            if len(self._timeouts) >= 16:
                self._timeouts.clear()
            self._timeouts[key] = ct
        return ct

    async def send(self, request: HTTPRequest) -> HTTPResponse:
        """Send ``request`` and read the answer (or return it open, for a stream)."""
        session = self._session
        if session is None:
            session = self.start()
        parts = request.parts
        method = request.method
        headers = request.headers
        if headers is self._headers_in:
            multi = self._headers_out
        else:
            multi = CIMultiDict(headers)
            self._headers_in, self._headers_out = headers, multi
        url = self._urls.get(request.url)
        if url is None:
            # Already quoted by the request builder: yarl must not quote again.
            url = yarl.URL(request.url, encoded=True)
            if len(self._urls) >= 4096:
                self._urls.clear()
            self._urls[request.url] = url
        timeout = request.timeout
        if timeout is self._last_timeout and not request.stream:
            ct = self._last_client_timeout
        else:
            ct = self._client_timeout(timeout, request.stream)
            if not request.stream:
                self._last_timeout, self._last_client_timeout = timeout, ct
        try:
            resp = await session.request(
                method,
                url,
                headers=multi,
                data=_form(parts) if parts is not None else request.body,
                timeout=ct,
                allow_redirects=False,
            )
        except _TRANSLATED as exc:
            # from None: aiohttp's exception may carry the request's headers (the token).
            raise _translate(exc, method) from None
        if request.stream and resp.status < 300:
            return HTTPResponse(resp.status, resp.headers, b"", _Stream(resp))
        try:
            cap = request.max_response_bytes
            length = resp.content_length
            if length is not None and length <= cap and "Content-Encoding" not in resp.headers:
                # An exact, uncompressed length within the cap: aiohttp reads just that.
                body = await resp.read()
            else:
                body = await _read_capped(resp, cap, method)
        except (asyncio.TimeoutError, TimeoutError):
            resp.close()  # a half-read body cannot go back to the pool
            raise RequestTimeoutError(f"{method}: no complete answer within the timeout") from None
        except aiohttp.ClientError as exc:
            resp.close()
            raise ConnectError(
                f"{method}: connection failed while reading the response: {_describe(exc)}"
            ) from None
        except BaseException:
            resp.close()
            raise
        resp.release()
        return HTTPResponse(resp.status, resp.headers, body)


async def _read_capped(resp: aiohttp.ClientResponse, cap: int, method: str) -> bytes:
    """The whole body, decompressed, but never more than ``cap`` bytes (plus one chunk) in memory."""
    length = resp.content_length
    if length is not None and length > cap and "Content-Encoding" not in resp.headers:
        raise ResponseTooLargeError(
            f"{method}: the reply announces {length} bytes; the limit is {cap}", cap
        )
    content = resp.content
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > cap:
            raise ResponseTooLargeError(
                f"{method}: the reply is larger than the limit of {cap} bytes", cap
            )
        chunks.append(chunk)
    if len(chunks) == 1:
        return bytes(chunks[0])
    return b"".join(chunks)


_TRANSLATED = (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError)


def _is_certificate_failure(exc: BaseException) -> bool:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return True
    cause = getattr(exc, "os_error", None) or exc.__cause__
    return isinstance(cause, _ssl.SSLCertVerificationError)


def _translate(exc: BaseException, method: str) -> Exception:
    """aiohttp's exception (one of ``_TRANSLATED``) as ours."""
    if _CONNECT_TIMEOUT and isinstance(exc, _CONNECT_TIMEOUT):
        return ConnectTimeoutError(f"{method}: no connection within the connect timeout")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return RequestTimeoutError(f"{method}: no complete answer within the timeout")
    if _is_certificate_failure(exc):
        return TLSVerificationError(
            f"{method}: the server's TLS certificate failed verification: {_describe(exc)} "
            "(pass ssl= an SSLContext that trusts its CA, if it is a private one)"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return ConnectError(f"{method}: TLS failed: {_describe(exc)}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return RequestNotSentError(f"{method}: could not connect: {_describe(exc)}")
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

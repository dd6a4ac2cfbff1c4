"""``LosantClient``: the whole Losant REST API over one transport, with retries and auth.

The request path of every generated method ends here: ``LosantClient.call``
prepares the request (``_request.prepare``), sends it through the transport
(``AiohttpTransport`` by default) and decodes the answer (``_reply``);
retries, token renewal and error mapping take the slow path only when the
first attempt fails. Pages and event streams are built in ``_sequences``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import ssl as _ssl
import time
import warnings
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from .. import _env
from .._state import KeyedStamper
from .._time import now_ms
from ..errors import (
    ConnectTimeoutError,
    LosantError,
    RateLimitedError,
    RequestNotSentError,
    ResponseTooLargeError,
    TLSVerificationError,
    TransportError,
    ValidationError,
)
from ._generated import RESOURCES, GeneratedResources
from ._operation import Operation
from ._reply import api_error, decode_reply
from ._request import API_VERSION, PreparedRequest, global_query, load_files, prepare
from ._retry import RETRY_STATUSES, RetryPolicy, parse_retry_after
from ._sequences import event_stream, paginator
from ._transport import AiohttpTransport, ClientSession, check_base_url, default_user_agent
from .auth import DeviceCredentials, StaticToken, TokenSource
from .bulk import Bulk
from .options import (
    RequestOptions,
    Timeout,
    check_header,
    check_max_response_bytes,
)
from .pagination import Paginator
from .sse import EventStream
from .transport import DEFAULT_MAX_RESPONSE_BYTES, HTTPRequest, HTTPResponse, Transport

__all__ = ["DEFAULT_URL", "LosantClient"]

DEFAULT_URL = "https://api.losant.com"
_DEFAULT_TIMEOUT = Timeout()

_log = logging.getLogger("losant_async.rest")
# Never retried: a wrong CA or host name is not a transient fault.
_NEVER_RETRIED = (TLSVerificationError,)
_ALWAYS_RETRIABLE = (RequestNotSentError, ConnectTimeoutError)


class LosantClient(GeneratedResources):
    """The Losant REST API: every resource an attribute, every action a coroutine method.

    ``token`` is a bearer token string, a ``TokenSource`` (``DeviceCredentials``,
    ``UserCredentials``, ...) or None. None reads the environment:
    ``LOSANT_API_TOKEN``, else device credentials from ``LOSANT_DEVICE_ID``,
    ``LOSANT_ACCESS_KEY`` and ``LOSANT_ACCESS_SECRET``, else no token (for the
    few actions that need none). ``url`` None reads ``LOSANT_URL``, else
    ``https://api.losant.com``. ``LOSANT_LOG=debug|info`` turns on the
    library's logging (see ``losant_async._env``).

    Use it as ``async with LosantClient(token) as client:``.

    Transport: by default an ``AiohttpTransport`` that creates its own aiohttp
    session with ``connection_limit`` connections, verifying TLS against the
    system's trust store or ``ssl`` (an ``ssl.SSLContext``, e.g. one trusting a
    private instance's CA), and honouring ``HTTP_PROXY``/``HTTPS_PROXY``/
    ``NO_PROXY`` when ``trust_env=True``. ``session`` uses your aiohttp
    session as is (never closed by the client). ``transport`` replaces all of
    that with any ``losant_async.rest.Transport`` (``MockTransport`` in unit
    tests); the client closes it (``aclose``) when it closes.

    Retries: connection failures, 429 and 503 (after ``Retry-After`` when sent,
    never sooner than ``retry.min_retry_after``) and 500/502/504, up to
    ``max_retries`` times with exponential backoff and full jitter (``retry``).
    A call that may change something on the server is repeated only when the
    server provably did not process it (no connection, 429) or when repeating
    cannot duplicate anything. A certificate failure (``TLSVerificationError``)
    is never retried.

    State reports: ``device.send_state`` (and ``bulk.send_states``) check every
    state exactly as the MQTT device does (``ValidationError`` before anything
    is sent), and give each state without a ``time`` the next distinct
    millisecond of its device: Losant keeps one state per device per
    millisecond, and a retry overwrites the same points instead of
    duplicating them. An explicit ``time`` is sent as given.

    ``timeout`` applies to each attempt; ``max_response_bytes`` caps a reply's
    body after decompression (64 MiB by default; ``ResponseTooLargeError``).
    ``RequestOptions`` (the ``request_options=`` argument of every method)
    overrides timeout, retries, size cap, headers and Losant's global flags for
    one call. ``sleep``, ``clock`` (epoch seconds) and ``stamp_clock`` (epoch
    milliseconds, for state stamps) are injectable for tests.

    Also: ``user_agent`` is put in front of the library's own product token;
    ``losantdomain`` is Losant's domain header; ``page_prefetch`` bounds the
    pages a list iteration fetches ahead. Header values are checked on
    construction (a control character is a ``ValidationError``). Redirects
    are not followed (a 3xx is an ``APIError``), so the token never travels to
    another host.
    """

    def __init__(
        self,
        token: str | TokenSource | None = None,
        *,
        url: str | None = None,
        transport: Transport | None = None,
        session: ClientSession | None = None,
        ssl: _ssl.SSLContext | bool | None = None,
        trust_env: bool = False,
        timeout: Timeout | float = _DEFAULT_TIMEOUT,
        max_retries: int = 3,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        user_agent: str | None = None,
        retry: RetryPolicy | None = None,
        losantdomain: str | None = None,
        actions: bool = False,
        links: bool = True,
        embedded: bool = True,
        page_prefetch: int = 4,
        connection_limit: int = 100,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        stamp_clock: Callable[[], int] = now_ms,
    ) -> None:
        _env.configure_logging()
        if token is None:
            token = _token_from_env()
        if isinstance(token, str):
            token = StaticToken(token)
        elif token is not None and not isinstance(token, TokenSource):
            raise ValidationError(
                f"token must be a string or a TokenSource, not {type(token).__name__}"
            )
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValidationError("max_retries must be an integer >= 0")
        if url is None:
            url = _env.get(_env.URL) or DEFAULT_URL
        self._base = check_base_url(url)
        if transport is not None:
            if session is not None or ssl is not None or trust_env:
                raise ValidationError(
                    "transport replaces session, ssl and trust_env: configure the transport instead"
                )
            if not isinstance(transport, Transport):
                raise ValidationError(
                    "transport must have async send(request) and aclose() (losant_async.rest.Transport)"
                )
        else:
            transport = AiohttpTransport(
                session, limit=connection_limit, ssl=ssl, trust_env=trust_env
            )
        self._transport: Transport = transport
        self._token_source: TokenSource | None = token
        self._static_source = token if type(token) is StaticToken else None
        self._static_token = token.token if type(token) is StaticToken else None
        self._timeout = _as_timeout(timeout, _DEFAULT_TIMEOUT)
        self._max_retries = max_retries
        self._max_response_bytes = check_max_response_bytes(max_response_bytes)
        self._retry = retry or RetryPolicy()
        self._flags = (actions, links, embedded)
        self._global_query = global_query(actions, links, embedded)
        self._page_prefetch = page_prefetch
        self._sleep = sleep
        self._clock = clock
        self._stamper = KeyedStamper(stamp_clock)
        base = {
            "Accept": "application/json",
            "Accept-Version": f"^{API_VERSION}",
            "User-Agent": check_header("User-Agent", default_user_agent(user_agent), what="user_agent"),
        }
        if losantdomain:
            base["losantdomain"] = check_header("losantdomain", losantdomain, what="losantdomain")
        self._base_headers = base
        # (token, json body) -> a ready header dict; tokens change rarely.
        self._headers_cache: dict[tuple[str | None, bool], dict[str, str]] = {}
        # The same for a fixed token, indexed by "has a JSON body": no key tuple per call.
        self._static_headers: list[dict[str, str] | None] = [None, None]
        self._bulk: Bulk | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> LosantClient:
        if self._closed:
            raise LosantError("this LosantClient is closed; create a new one")
        if isinstance(self._transport, AiohttpTransport):
            self._transport.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the transport (the default one closes its session, never one passed in)."""
        self._closed = True
        # Shielded: a second cancellation must not leave the connector half-closed.
        await asyncio.shield(self._transport.aclose())

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        transport = getattr(self, "_transport", None)
        if isinstance(transport, AiohttpTransport) and transport.owns_session and transport.open:
            _warn(
                "LosantClient was never closed: use 'async with LosantClient(...)' or await close()",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    @property
    def url(self) -> str:
        return self._base

    @property
    def token_source(self) -> TokenSource | None:
        return self._token_source

    @property
    def transport(self) -> Transport:
        return self._transport

    def __repr__(self) -> str:
        auth = type(self._token_source).__name__ if self._token_source else None
        return f"<LosantClient {self.url} auth={auth}>"

    # -- resources -----------------------------------------------------------

    def _resource(self, name: str) -> Any:
        """The resource called ``name``, its module imported on first use.

        Called once per resource and client: the generated properties are cached properties.
        """
        try:
            module_name, class_name = RESOURCES[name]
        except KeyError:
            raise AttributeError(f"LosantClient has no resource {name!r}") from None
        return getattr(importlib.import_module(module_name), class_name)(self)

    @property
    def bulk(self) -> Bulk:
        """Many devices at once: ``send_states``, ``send_command_many``."""
        if self._bulk is None:
            self._bulk = Bulk(self.device)
        return self._bulk

    # -- Requester: the path of every generated method -------------------------

    async def call(
        self, op: Operation, args: tuple[Any, ...], raw: bool, options: RequestOptions | None
    ) -> Any:
        """Send ``op`` with ``args`` (in ``op.params`` order) and decode the answer.

        The fast path: one attempt, inline. Anything but a 2xx (or a transport
        error) continues in ``_execute``, which owns retries and renewal.
        """
        if self._closed:
            raise LosantError("this LosantClient is closed")
        prepared = prepare(op, args, stamp=self._stamper)
        if prepared.parts is not None or options is not None:
            resp = await self._execute(op, prepared, options, stream=False)
            return decode_reply(op, resp, raw)
        source = self._token_source if op.auth_required else None
        json_body = prepared.body is not None
        headers: dict[str, str] | None
        if source is None:
            token = None
            headers = self._headers_cache.get((None, json_body))
        elif source is self._static_source:  # a fixed token: no coroutine, no cache key to build
            token = self._static_token
            headers = self._static_headers[json_body]
            if headers is None and not prepared.headers:
                headers = self._static_headers[json_body] = self._headers(
                    token, json_body, None, prepared
                )
        else:
            token = await source.get_token(self)
            headers = self._headers_cache.get((token, json_body))
        if headers is None or prepared.headers:
            headers = self._headers(token, json_body, None, prepared)
        query = prepared.query
        flags = self._global_query
        request = HTTPRequest(
            prepared.method,
            f"{self._base}{prepared.path}?{query}&{flags}" if query else f"{self._base}{prepared.path}?{flags}",
            headers,
            prepared.body,
            None,
            self._timeout,
            False,
            self._max_response_bytes,
        )
        try:
            resp = await self._transport.send(request)
        except TransportError as exc:
            resp = await self._execute(op, prepared, None, stream=False, first=(exc, token))
        else:
            if resp.status >= 300:
                resp = await self._execute(op, prepared, None, stream=False, first=(resp, token))
            elif _log.isEnabledFor(logging.DEBUG):
                _log.debug("%s %s -> %d", prepared.method, prepared.path, resp.status)
        return decode_reply(op, resp, raw)

    async def request(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> Any:
        """``call`` with keyword arguments."""
        return await self.call(op, args, raw, options)

    def paginate_call(
        self, op: Operation, args: tuple[Any, ...], raw: bool, options: RequestOptions | None
    ) -> Paginator[Any, Any]:
        """A ``Paginator`` over ``op``'s pages; bad arguments raise here, before anything is sent."""
        return paginator(self.call, op, args, raw, options, prefetch=self._page_prefetch)

    def paginate(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> Paginator[Any, Any]:
        """``paginate_call`` with keyword arguments."""
        return self.paginate_call(op, args, raw, options)

    def stream_call(
        self, op: Operation, args: tuple[Any, ...], raw: bool, options: RequestOptions | None
    ) -> EventStream[Any]:
        """An ``EventStream`` of ``op``'s events; bad arguments raise here, before anything is sent."""

        def open_stream(prepared: PreparedRequest) -> Awaitable[HTTPResponse]:
            return self._execute(op, prepared, options, stream=True)

        return event_stream(open_stream, op, args, raw)

    def stream(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> EventStream[Any]:
        """``stream_call`` with keyword arguments."""
        return self.stream_call(op, args, raw, options)

    # -- the request loop ----------------------------------------------------------

    def _headers(
        self,
        token: str | None,
        json_body: bool,
        options: RequestOptions | None,
        prepared: PreparedRequest,
    ) -> dict[str, str]:
        key = (token, json_body)
        headers = self._headers_cache.get(key)
        if headers is None:
            headers = dict(self._base_headers)
            if token is not None:
                headers["Authorization"] = f"Bearer {check_header('Authorization', token, what='token')}"
            if json_body:
                headers["Content-Type"] = "application/json"
            if len(self._headers_cache) >= 8:
                self._headers_cache.clear()
            self._headers_cache[key] = headers
        if prepared.headers or (options is not None and (options.headers or options.losantdomain)):
            headers = dict(headers)
            for name, value in prepared.headers:
                headers[name] = check_header(name, value, what="header parameter")
            if options is not None:
                if options.losantdomain:
                    headers["losantdomain"] = options.losantdomain
                if options.headers:
                    headers.update(options.headers)
        return headers

    def _path_and_query(
        self, op: Operation, prepared: PreparedRequest, options: RequestOptions | None
    ) -> str:
        if op.sse_events is not None:
            flags = ""  # Losant's own clients send none of the global flags on streams
        elif options is None or (
            options.actions is None and options.links is None and options.embedded is None
        ):
            flags = self._global_query
        else:
            actions, links, embedded = self._flags
            flags = global_query(
                actions if options.actions is None else options.actions,
                links if options.links is None else options.links,
                embedded if options.embedded is None else options.embedded,
            )
        query = prepared.query
        if query and flags:
            return f"{prepared.path}?{query}&{flags}"
        if query or flags:
            return f"{prepared.path}?{query or flags}"
        return prepared.path

    async def _execute(
        self,
        op: Operation,
        prepared: PreparedRequest,
        options: RequestOptions | None,
        *,
        stream: bool,
        first: tuple[HTTPResponse | TransportError, str | None] | None = None,
    ) -> HTTPResponse:
        """Send until a 2xx, retrying what is safe to retry; ``first`` is a failed first attempt."""
        if self._closed:
            raise LosantError("this LosantClient is closed")
        max_retries = self._max_retries
        timeout = self._timeout
        cap = self._max_response_bytes
        if options is not None:
            if options.max_retries is not None:
                max_retries = options.max_retries
            if options.timeout is not None:
                timeout = _as_timeout(options.timeout, self._timeout)
            if options.max_response_bytes is not None:
                cap = options.max_response_bytes
        url = self._base + self._path_and_query(op, prepared, options)
        parts = await load_files(prepared.parts) if prepared.parts else prepared.parts
        source = self._token_source if op.auth_required else None
        json_body = prepared.body is not None
        attempt = 0
        reauthenticated = False
        transport = self._transport
        retry = self._retry
        while True:
            outcome: HTTPResponse | TransportError
            if first is not None:
                outcome, token = first
                first = None
            else:
                token = await source.get_token(self) if source is not None else None
                headers = self._headers(token, json_body, options, prepared)
                if stream:  # what EventSource (Losant's JS client) sends for a stream
                    headers = {**headers, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
                request = HTTPRequest(
                    prepared.method, url, headers, prepared.body, parts, timeout, stream, cap
                )
                try:
                    outcome = await transport.send(request)
                except TransportError as failure:
                    outcome = failure
            if isinstance(outcome, TransportError):
                error_ = outcome
                retriable = not isinstance(error_, _NEVER_RETRIED) and (
                    isinstance(error_, _ALWAYS_RETRIABLE) or prepared.retry_safe
                )
                if attempt < max_retries and retriable:
                    delay = retry.backoff(attempt)
                    attempt += 1
                    _log.info(
                        "%s %s: %s; retry %d of %d in %.2fs",
                        prepared.method, prepared.path, error_, attempt, max_retries, delay,
                    )
                    await self._sleep(delay)
                    continue
                raise error_
            resp = outcome
            status = resp.status
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("%s %s -> %d", prepared.method, prepared.path, status)
            if status < 300:  # redirects are not followed: a token must not travel elsewhere
                if len(resp.body) > cap:  # a transport that does not enforce the cap itself
                    raise ResponseTooLargeError(
                        f"{op.full_name}: the reply is larger than the limit of {cap} bytes", cap
                    )
                return resp
            if resp.stream is not None:  # an error answer to a stream request: read it, bounded
                resp = await _drain(resp, cap, op)
            if status == 401 and source is not None and not reauthenticated:
                reauthenticated = True
                renewed = await source.refresh(self, token)
                if renewed is not None:  # authenticated afresh: worth exactly one more try
                    continue
            error = api_error(prepared, resp, self._clock)
            if (
                status in RETRY_STATUSES
                and attempt < max_retries
                and (status == 429 or prepared.retry_safe)
            ):
                delay = retry.backoff(attempt)
                if status in (429, 503):
                    hint = (
                        error.retry_after
                        if isinstance(error, RateLimitedError)
                        else parse_retry_after(resp.headers, self._clock())
                    )
                    if hint is not None:
                        if hint > retry.max_retry_after:
                            raise error
                        delay = hint
                    # A zero or negative Retry-After (or a jittered 0) must not hammer the server.
                    delay = max(delay, retry.min_retry_after)
                attempt += 1
                _log.info(
                    "%s %s: HTTP %d; retry %d of %d in %.2fs",
                    prepared.method, prepared.path, status, attempt, max_retries, delay,
                )
                await self._sleep(delay)
                continue
            raise error


async def _drain(resp: HTTPResponse, cap: int, op: Operation) -> HTTPResponse:
    stream = resp.stream
    assert stream is not None
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := await stream.read_chunk():
            size += len(chunk)
            if size > cap:
                raise ResponseTooLargeError(
                    f"{op.full_name}: the error reply is larger than the limit of {cap} bytes", cap
                )
            chunks.append(chunk)
    finally:
        stream.close()
    return HTTPResponse(resp.status, resp.headers, b"".join(chunks))


def _token_from_env() -> TokenSource | None:
    token = _env.get(_env.API_TOKEN)
    if token is not None:
        return StaticToken(token)
    device = _env.device_credentials()
    if device is not None:
        return DeviceCredentials(device.device_id, device.key, device.secret)
    return None


def _as_timeout(value: Timeout | float | int, default: Timeout) -> Timeout:
    if isinstance(value, Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValidationError("timeout must be a Timeout or a number of seconds > 0")
    return Timeout(total=float(value), connect=default.connect, read=default.read)

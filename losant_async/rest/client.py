"""``LosantClient``: the whole Losant REST API over one aiohttp session, with retries and auth."""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from .._json import decode, decode_any
from ..errors import (
    APIError,
    DecodeError,
    LosantError,
    RateLimitedError,
    TransportError,
    ValidationError,
    error_for_status,
)
from ._generated import RESOURCES, GeneratedResources
from ._operation import Operation
from ._request import API_VERSION, PreparedRequest, global_query, load_files, prepare
from ._resource import Resource
from ._retry import RETRY_STATUSES, RetryPolicy, parse_retry_after
from ._transport import (
    ClientSession,
    ConnectTimeoutError,
    NotSentError,
    Response,
    StreamResponse,
    Transport,
    default_user_agent,
)
from .auth import StaticToken, TokenSource
from .options import RequestOptions, Timeout
from .pagination import Paginator
from .sse import EventStream

if TYPE_CHECKING:
    from .bulk import Bulk

__all__ = ["DEFAULT_URL", "LosantClient"]

DEFAULT_URL = "https://api.losant.com"
_DEFAULT_TIMEOUT = Timeout()

_log = logging.getLogger("losant_async.rest")
_MISSING: Any = object()


class LosantClient(GeneratedResources):
    """The Losant REST API: every resource an attribute, every action a coroutine method.

    ``token`` is a bearer token string, a ``TokenSource`` (``DeviceCredentials``,
    ``UserCredentials``, ...) or None for the few actions that need none.
    Use it as ``async with LosantClient(token) as client:``; entering creates
    an aiohttp session unless ``session`` is given, which is then used as is
    and never closed by the client (share your application's session).

    Retries: connection failures, 429 (after ``Retry-After`` when sent) and
    500/502/503/504, up to ``max_retries`` times with exponential backoff and
    full jitter (``retry``). A call that may change something on the server is
    repeated only when the server provably did not process it (no connection,
    429) or when repeating cannot duplicate anything: a state report whose
    every state carries its own ``time`` overwrites the same data points, so
    ``device.send_state`` stamps states that lack a ``time`` with the call's
    time before the first attempt (when retries are enabled).

    ``timeout`` applies to each attempt; ``RequestOptions`` (the ``request_options=``
    argument of every method) overrides timeout, retries, headers and Losant's
    global flags for one call. ``sleep`` and ``clock`` are injectable for tests.

    Also: ``url`` for private instances (or the local emulator);
    ``user_agent`` is put in front of the library's own product token;
    ``page_prefetch`` bounds the pages a list iteration fetches ahead;
    ``connection_limit`` the connections of a session the client creates.
    Redirects are not followed (a 3xx is an ``APIError``), so the token
    never travels to another host.
    """

    def __init__(
        self,
        token: str | TokenSource | None = None,
        *,
        url: str = DEFAULT_URL,
        session: ClientSession | None = None,
        timeout: Timeout | float = _DEFAULT_TIMEOUT,
        max_retries: int = 3,
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
    ) -> None:
        if isinstance(token, str):
            token = StaticToken(token)
        elif token is not None and not isinstance(token, TokenSource):
            raise ValidationError(
                f"token must be a string or a TokenSource, not {type(token).__name__}"
            )
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValidationError("max_retries must be an integer >= 0")
        self._token_source: TokenSource | None = token
        self._transport = Transport(url, session, limit=connection_limit)
        self._timeout = _as_timeout(timeout, _DEFAULT_TIMEOUT)
        self._max_retries = max_retries
        self._retry = retry or RetryPolicy()
        self._flags = (actions, links, embedded)
        self._global_query = global_query(actions, links, embedded)
        self._page_prefetch = page_prefetch
        self._sleep = sleep
        self._clock = clock
        base = {
            "Accept": "application/json",
            "Accept-Version": f"^{API_VERSION}",
            "User-Agent": default_user_agent(user_agent),
        }
        if losantdomain:
            base["losantdomain"] = losantdomain
        self._base_headers = base
        # (token, json body) -> a ready header dict; tokens change rarely.
        self._headers_cache: dict[tuple[str | None, bool], dict[str, str]] = {}
        self._resources: dict[str, Resource] = {}
        self._bulk: Bulk | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> LosantClient:
        if self._closed:
            raise LosantError("this LosantClient is closed; create a new one")
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
        """Close the session if the client created it (a session passed in stays open)."""
        self._closed = True
        # Shielded: a second cancellation must not leave the connector half-closed.
        await asyncio.shield(self._transport.close())

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        transport = getattr(self, "_transport", None)
        if transport is not None and transport.owns_session and transport.open:
            _warn(
                "LosantClient was never closed: use 'async with LosantClient(...)' or await close()",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    @property
    def url(self) -> str:
        return self._transport.base_url

    @property
    def token_source(self) -> TokenSource | None:
        return self._token_source

    def __repr__(self) -> str:
        return f"<LosantClient {self.url} auth={type(self._token_source).__name__ if self._token_source else None}>"

    # -- resources -----------------------------------------------------------

    def _resource(self, name: str) -> Any:
        """The resource called ``name``, its module imported on first use, one per client."""
        resource = self._resources.get(name)
        if resource is None:
            try:
                module_name, class_name = RESOURCES[name]
            except KeyError:
                raise AttributeError(f"LosantClient has no resource {name!r}") from None
            cls = getattr(importlib.import_module(module_name), class_name)
            resource = cls(self)
            self._resources[name] = resource
        return resource

    @property
    def bulk(self) -> Bulk:
        """Many devices at once: ``send_states``, ``send_command_many``."""
        if self._bulk is None:
            from .bulk import Bulk

            self._bulk = Bulk(self)
        return self._bulk

    # -- Requester -------------------------------------------------------------

    async def request(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> Any:
        """Send ``op`` with ``args`` (in ``op.params`` order) and decode the answer."""
        max_retries = self._max_retries
        if options is not None and options.max_retries is not None:
            max_retries = options.max_retries
        prepared = prepare(op, args, stamp_time=max_retries > 0)
        resp = await self._execute(op, prepared, options, max_retries, stream=False)
        assert isinstance(resp, Response)
        return self._decode(op, resp, raw)

    def paginate(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> Paginator[Any, Any]:
        """A ``Paginator`` over ``op``'s pages; bad arguments raise here, before anything is sent."""
        prepare(op, args)
        page_index = next((i for i, p in enumerate(op.params) if p.api_name == "page"), None)
        per_page_index = next((i for i, p in enumerate(op.params) if p.api_name == "perPage"), None)

        async def fetch(page: int | None) -> Any:
            call_args = args
            if page is not None and page_index is not None:
                call_args = (*args[:page_index], page, *args[page_index + 1 :])
            return await self.request(op, call_args, raw=raw, options=options)

        start = _optional_int(args[page_index]) if page_index is not None else None
        per_page = _optional_int(args[per_page_index]) if per_page_index is not None else None
        return Paginator(
            fetch,
            paged=page_index is not None,
            start_page=start,
            per_page=per_page,
            prefetch=self._page_prefetch,
        )

    def stream(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> EventStream[Any]:
        """An ``EventStream`` of ``op``'s events; bad arguments raise here, before anything is sent."""
        prepared = prepare(op, args)
        max_retries = self._max_retries
        if options is not None and options.max_retries is not None:
            max_retries = options.max_retries

        async def opener() -> StreamResponse:
            resp = await self._execute(op, prepared, options, max_retries, stream=True)
            assert isinstance(resp, StreamResponse)
            return resp

        return EventStream(opener, op.sse_events or {}, raw=raw)

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
                headers["Authorization"] = f"Bearer {token}"
            if json_body:
                headers["Content-Type"] = "application/json"
            if len(self._headers_cache) >= 8:
                self._headers_cache.clear()
            self._headers_cache[key] = headers
        if prepared.headers or (options is not None and (options.headers or options.losantdomain)):
            headers = dict(headers)
            headers.update(prepared.headers)
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
        max_retries: int,
        *,
        stream: bool,
    ) -> Response | StreamResponse:
        if self._closed:
            raise LosantError("this LosantClient is closed")
        timeout = (
            self._timeout
            if options is None or options.timeout is None
            else _as_timeout(options.timeout, self._timeout)
        )
        url = self._path_and_query(op, prepared, options)
        parts = await load_files(prepared.parts) if prepared.parts else prepared.parts
        source = self._token_source if op.auth_required else None
        json_body = prepared.body is not None
        attempt = 0
        reauthenticated = False
        transport = self._transport
        while True:
            token = await source.get_token(self) if source is not None else None
            headers = self._headers(token, json_body, options, prepared)
            if stream:  # what EventSource (Losant's JS client) sends for a stream
                headers = {**headers, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
            try:
                if stream:
                    sresp = await transport.open_stream(prepared.method, url, headers, timeout)
                    if sresp.status < 300:
                        return sresp
                    resp = Response(sresp.status, sresp.headers, await sresp.read())
                else:
                    resp = await transport.send(
                        prepared.method, url, headers, prepared.body, parts, timeout
                    )
            except TransportError as exc:
                not_sent = isinstance(exc, (NotSentError, ConnectTimeoutError))
                if attempt < max_retries and (not_sent or prepared.retry_safe):
                    delay = self._retry.backoff(attempt)
                    attempt += 1
                    _log.info(
                        "%s %s: %s; retry %d of %d in %.2fs",
                        prepared.method,
                        prepared.path,
                        exc,
                        attempt,
                        max_retries,
                        delay,
                    )
                    await self._sleep(delay)
                    continue
                raise
            status = resp.status
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("%s %s -> %d", prepared.method, prepared.path, status)
            if status < 300:  # redirects are not followed: a token must not travel elsewhere
                return resp
            if status == 401 and source is not None and not reauthenticated:
                reauthenticated = True
                renewed = await source.refresh(self, token)
                if renewed is not None:  # authenticated afresh: worth exactly one more try
                    continue
            error = self._api_error(prepared, resp)
            if (
                status in RETRY_STATUSES
                and attempt < max_retries
                and (status == 429 or prepared.retry_safe)
            ):
                delay = self._retry.backoff(attempt)
                if isinstance(error, RateLimitedError) and error.retry_after is not None:
                    if error.retry_after > self._retry.max_retry_after:
                        raise error
                    delay = error.retry_after
                attempt += 1
                _log.info(
                    "%s %s: HTTP %d; retry %d of %d in %.2fs",
                    prepared.method,
                    prepared.path,
                    status,
                    attempt,
                    max_retries,
                    delay,
                )
                await self._sleep(delay)
                continue
            raise error

    def _api_error(self, prepared: PreparedRequest, resp: Response) -> APIError:
        status = resp.status
        raw = resp.body
        body: Any = None
        if raw:
            try:
                body = decode_any(raw)
            except DecodeError:
                body = raw.decode("utf-8", "replace")
        kind = body.get("type") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message:
            try:
                message = HTTPStatus(status).phrase
            except ValueError:
                message = "error"
        cls = error_for_status(status)
        kwargs: dict[str, Any] = {"method": prepared.method, "path": prepared.path}
        if cls is RateLimitedError:
            kwargs["retry_after"] = parse_retry_after(resp.headers, self._clock())
        return cls(status, kind if isinstance(kind, str) else None, message, body, **kwargs)

    def _decode(self, op: Operation, resp: Response, raw: bool) -> Any:
        body = resp.body
        if resp.status == 204 or not body or body.isspace():
            return None
        if raw:
            return decode_any(body)
        tp = op.responses.get(resp.status, _MISSING)
        if tp is _MISSING:
            declared = [t for t in op.responses.values() if t is not None]
            tp = declared[0] if len(declared) == 1 else Any
        if tp is None:
            return None
        try:
            return decode(body, tp)
        except DecodeError as exc:
            raise DecodeError(f"{op.full_name}: {exc}", raw=exc.raw, path=exc.path) from None


def _as_timeout(value: Timeout | float | int, default: Timeout) -> Timeout:
    if isinstance(value, Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValidationError("timeout must be a Timeout or a number of seconds > 0")
    return Timeout(total=float(value), connect=default.connect, read=default.read)


def _optional_int(value: Any) -> int | None:
    if value is None or value is msgspec.UNSET or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

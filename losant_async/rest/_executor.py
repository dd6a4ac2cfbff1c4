"""Sending a prepared request: headers, URL, retries, token renewal and the close of the transport.

``LosantClient`` owns one ``Executor`` and keeps only the fast path's single
``transport.send`` itself (so a generated method reaches the transport with no
hop in between); the request that send carries is built here, and every
attempt after a failed first one is made here. Reading the reply is ``_reply``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

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
from ._operation import Operation
from ._reply import api_error
from ._request import API_VERSION, PreparedRequest, global_query, load_files
from ._retry import RETRY_STATUSES, RetryPolicy, parse_retry_after
from ._transport import default_user_agent
from .auth import StaticToken, TokenSource
from .options import RequestOptions, Timeout, check_header, check_max_response_bytes
from .transport import HTTPRequest, HTTPResponse, Transport

if TYPE_CHECKING:
    from ._resource import Requester

__all__ = ["Executor", "as_timeout"]

_log = logging.getLogger("losant_async.rest")
# Never retried: a wrong CA or host name is not a transient fault.
_NEVER_RETRIED = (TLSVerificationError,)
_ALWAYS_RETRIABLE = (RequestNotSentError, ConnectTimeoutError)


class Executor:
    """One client's request machinery: its transport, token source, defaults and header caches.

    ``requester`` (the client) is passed to each call that may need a token,
    not kept: token sources authenticate through it, and the executor holds
    no reference back to its client.
    """

    def __init__(
        self,
        transport: Transport,
        token_source: TokenSource | None,
        *,
        base_url: str,
        timeout: Timeout,
        max_retries: int,
        max_response_bytes: int,
        retry: RetryPolicy,
        flags: tuple[bool, bool, bool],
        user_agent: str | None,
        losantdomain: str | None,
        sleep: Callable[[float], Awaitable[Any]],
        clock: Callable[[], float],
    ) -> None:
        self.transport = transport
        self.token_source = token_source
        self.static_source = token_source if type(token_source) is StaticToken else None
        self.static_token = token_source.token if type(token_source) is StaticToken else None
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_response_bytes = check_max_response_bytes(max_response_bytes)
        self._retry = retry
        self._flags = flags
        self._global_query = global_query(*flags)
        self._sleep = sleep
        self._clock = clock
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
        self.closed = False

    async def close(self) -> None:
        """Refuse further calls and close the transport."""
        self.closed = True
        # Shielded: a second cancellation must not leave the connector half-closed.
        await asyncio.shield(self.transport.aclose())

    def first_request(self, prepared: PreparedRequest, token: str | None) -> HTTPRequest:
        """The fast path's request: the client's defaults, headers from the caches."""
        json_body = prepared.body is not None
        headers: dict[str, str] | None
        if prepared.headers:
            headers = None
        elif token is not None and token is self.static_token:  # no cache key to build
            headers = self._static_headers[json_body]
            if headers is None:
                headers = self._static_headers[json_body] = self.headers(token, json_body, None, prepared)
        else:
            headers = self._headers_cache.get((token, json_body))
        if headers is None:
            headers = self.headers(token, json_body, None, prepared)
        query = prepared.query
        flags = self._global_query
        return HTTPRequest(
            prepared.method,
            f"{self.base_url}{prepared.path}?{query}&{flags}" if query else f"{self.base_url}{prepared.path}?{flags}",
            headers,
            prepared.body,
            None,
            self.timeout,
            False,
            self.max_response_bytes,
        )

    def headers(
        self,
        token: str | None,
        json_body: bool,
        options: RequestOptions | None,
        prepared: PreparedRequest,
    ) -> dict[str, str]:
        """The request's headers: the cached ones for (token, body), plus per-call ones."""
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

    def path_and_query(
        self, op: Operation, prepared: PreparedRequest, options: RequestOptions | None
    ) -> str:
        """The request's path and query string, Losant's global flags included (none on streams)."""
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

    async def execute(
        self,
        requester: Requester,
        op: Operation,
        prepared: PreparedRequest,
        options: RequestOptions | None,
        *,
        stream: bool,
        first: tuple[HTTPResponse | TransportError, str | None] | None = None,
    ) -> HTTPResponse:
        """Send until a 2xx, retrying what is safe to retry; ``first`` is a failed first attempt.

        ``requester`` is what the token source authenticates through (the client).
        """
        if self.closed:
            raise LosantError("this LosantClient is closed")
        max_retries = self.max_retries
        timeout = self.timeout
        cap = self.max_response_bytes
        if options is not None:
            if options.max_retries is not None:
                max_retries = options.max_retries
            if options.timeout is not None:
                timeout = as_timeout(options.timeout, self.timeout)
            if options.max_response_bytes is not None:
                cap = options.max_response_bytes
        url = self.base_url + self.path_and_query(op, prepared, options)
        parts = await load_files(prepared.parts) if prepared.parts else prepared.parts
        source = self.token_source if op.auth_required else None
        json_body = prepared.body is not None
        attempt = 0
        reauthenticated = False
        transport = self.transport
        retry = self._retry
        while True:
            outcome: HTTPResponse | TransportError
            if first is not None:
                outcome, token = first
                first = None
            else:
                token = await source.get_token(requester) if source is not None else None
                headers = self.headers(token, json_body, options, prepared)
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
                renewed = await source.refresh(requester, token)
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


def as_timeout(value: Timeout | float | int, default: Timeout) -> Timeout:
    """``value`` as a ``Timeout``: a number is the total, the rest from ``default``."""
    if isinstance(value, Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValidationError("timeout must be a Timeout or a number of seconds > 0")
    return Timeout(total=float(value), connect=default.connect, read=default.read)

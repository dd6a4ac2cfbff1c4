"""``LosantClient``: the whole Losant REST API over one transport, with retries and auth.

The request path of every generated method ends here: ``LosantClient.call``
prepares the request (``_request.prepare``), sends it through the transport
(``AiohttpTransport`` by default) and decodes the answer (``_reply``);
retries, token renewal and error mapping take the slow path
(``_executor.Executor``) only when the first attempt fails. Pages and event
streams are built in ``_sequences``.
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
from ..errors import LosantError, TransportError, ValidationError
from ._executor import Executor, as_timeout
from ._generated import RESOURCES, GeneratedResources
from ._operation import Operation
from ._reply import decode_reply
from ._request import PreparedRequest, prepare
from ._retry import RetryPolicy
from ._sequences import event_stream, paginator
from ._transport import AiohttpTransport, ClientSession, check_base_url
from .auth import DeviceCredentials, StaticToken, TokenSource
from .bulk import Bulk
from .options import RequestOptions, Timeout
from .pagination import Paginator
from .sse import EventStream
from .transport import DEFAULT_MAX_RESPONSE_BYTES, HTTPResponse, Transport

__all__ = ["DEFAULT_URL", "LosantClient"]

DEFAULT_URL = "https://api.losant.com"
_DEFAULT_TIMEOUT = Timeout()

_log = logging.getLogger("losant_async.rest")


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
        base_url = check_base_url(url)
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
        self._executor = Executor(
            transport,
            token,
            base_url=base_url,
            timeout=as_timeout(timeout, _DEFAULT_TIMEOUT),
            max_retries=max_retries,
            max_response_bytes=max_response_bytes,
            retry=retry or RetryPolicy(),
            flags=(actions, links, embedded),
            user_agent=user_agent,
            losantdomain=losantdomain,
            sleep=sleep,
            clock=clock,
        )
        self._page_prefetch = page_prefetch
        self._stamper = KeyedStamper(stamp_clock)
        self._bulk: Bulk | None = None

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> LosantClient:
        if self._executor.closed:
            raise LosantError("this LosantClient is closed; create a new one")
        transport = self._executor.transport
        if isinstance(transport, AiohttpTransport):
            transport.start()
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
        await self._executor.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        executor = getattr(self, "_executor", None)
        transport = executor.transport if executor is not None else None
        if isinstance(transport, AiohttpTransport) and transport.owns_session and transport.open:
            _warn(
                "LosantClient was never closed: use 'async with LosantClient(...)' or await close()",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    @property
    def url(self) -> str:
        return self._executor.base_url

    @property
    def token_source(self) -> TokenSource | None:
        return self._executor.token_source

    @property
    def transport(self) -> Transport:
        return self._executor.transport

    def __repr__(self) -> str:
        source = self._executor.token_source
        auth = type(source).__name__ if source else None
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
        error) continues in ``Executor.execute``, which owns retries and renewal.
        """
        executor = self._executor
        if executor.closed:
            raise LosantError("this LosantClient is closed")
        prepared = prepare(op, args, stamp=self._stamper)
        if prepared.parts is not None or options is not None:
            resp = await executor.execute(self, op, prepared, options, stream=False)
            return decode_reply(op, resp, raw)
        source = executor.token_source if op.auth_required else None
        if source is None:
            token = None
        elif source is executor.static_source:  # a fixed token: no coroutine
            token = executor.static_token
        else:
            token = await source.get_token(self)
        request = executor.first_request(prepared, token)
        try:
            resp = await executor.transport.send(request)
        except TransportError as exc:
            resp = await executor.execute(self, op, prepared, None, stream=False, first=(exc, token))
        else:
            if resp.status >= 300:
                resp = await executor.execute(self, op, prepared, None, stream=False, first=(resp, token))
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
            return self._executor.execute(self, op, prepared, options, stream=True)

        return event_stream(open_stream, op, args, raw)

    def stream(
        self, op: Operation, args: tuple[Any, ...], *, raw: bool, options: RequestOptions | None
    ) -> EventStream[Any]:
        """``stream_call`` with keyword arguments."""
        return self.stream_call(op, args, raw, options)


def _token_from_env() -> TokenSource | None:
    token = _env.get(_env.API_TOKEN)
    if token is not None:
        return StaticToken(token)
    device = _env.device_credentials()
    if device is not None:
        return DeviceCredentials(device.device_id, device.key, device.secret)
    return None

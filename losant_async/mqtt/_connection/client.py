"""The aiomqtt client a connection is built on: quiet logging, no message queue, our timeouts, one shared TLS context."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any, Literal

import aiomqtt

from .internals import check_once

if TYPE_CHECKING:
    from .._config import Proxy

__all__ = ["default_tls_context", "new_client"]

_shared_tls: ssl.SSLContext | None = None
# PySocks' proxy type numbers (socks.SOCKS4, SOCKS5, HTTP), which paho passes on to it.
_PROXY_TYPES = {"socks4": 1, "socks5": 2, "http": 3}


async def default_tls_context() -> ssl.SSLContext:
    """One verifying TLS context for the whole process (system CAs), built off the event loop.

    Sharing it keeps thousands of devices from loading the CA store thousands of times.
    """
    global _shared_tls
    if _shared_tls is None:
        ctx = await asyncio.to_thread(ssl.create_default_context)
        if _shared_tls is None:
            _shared_tls = ctx
    return _shared_tls


def new_client(
    *,
    host: str,
    port: int,
    client_id: str,
    username: str | None,
    password: str | None,
    transport: Literal["tcp", "websockets"],
    tls_context: ssl.SSLContext | None,
    keepalive: int,
    max_inflight: int,
    connect_timeout: float,
    websocket_path: str,
    proxy: Proxy | None,
) -> aiomqtt.Client:
    """An ``aiomqtt.Client`` (not connected) whose paho client queues nothing and logs nothing.

    The first one of the process checks the private names this package relies on
    (``MQTTError`` naming what an upgrade changed).
    """
    proxy_settings = None
    if proxy is not None:
        proxy_settings = aiomqtt.ProxySettings(
            proxy_type=_PROXY_TYPES[proxy.scheme],
            proxy_addr=proxy.host,
            proxy_port=proxy.port,
            proxy_rdns=proxy.remote_dns,
            proxy_username=proxy.username,
            proxy_password=proxy.password,
        )
    client = aiomqtt.Client(
        host,
        port,
        username=username,
        password=password,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=True,
        transport=transport,
        keepalive=keepalive,
        timeout=connect_timeout,
        tls_context=tls_context,
        websocket_path=websocket_path if transport == "websockets" else None,
        max_inflight_messages=max_inflight,
        logger=_quiet_logger(),
        queue_type=_UnusedQueue,
        proxy=proxy_settings,
    )
    check_once(client)
    paho_client = client._client
    paho_client.max_queued_messages_set(0)
    # paho's own bound on the TCP connect and the TLS handshake (5 s by default): ours, so a
    # handshake nobody answers fails within connect_timeout.
    paho_client.connect_timeout = connect_timeout
    # paho formats a debug record per packet when a logger is attached; connection
    # failures reach us through on_disconnect instead.
    paho_client.disable_logger()
    return client


class _UnusedQueue(asyncio.Queue):  # type: ignore[type-arg]
    """Stands in for aiomqtt's incoming-message queue, which this package never uses.

    Incoming PUBLISHes go straight to ``on_message`` (see ``Inbound``), so
    aiomqtt's queue would stay empty; a real ``asyncio.Queue`` still costs each
    device of a fleet ~2 KiB of deques.
    """

    def __init__(self, maxsize: int = 0) -> None:  # no deques: nothing is ever queued
        pass

    def qsize(self) -> int:
        return 0

    def put_nowait(self, item: Any) -> None:
        raise RuntimeError("aiomqtt's message queue is not used by losant_async")


_wire_logger: logging.Logger | None = None


def _quiet_logger() -> logging.Logger:
    # aiomqtt warns once per publish beyond 10 pending calls and paho logs every packet
    # at debug; neither helps users of this layer, and password-bearing state must not leak.
    # Set once: setLevel clears every logger's cache, a cost per connection of a fleet.
    global _wire_logger
    if _wire_logger is None:
        _wire_logger = logging.getLogger("losant_async.mqtt.wire")
        _wire_logger.setLevel(logging.WARNING)
        _wire_logger.addFilter(_handled_by_us)
    return _wire_logger


def _handled_by_us(record: logging.LogRecord) -> bool:
    """Drop aiomqtt's ERROR tracebacks for what this layer handles.

    A SUBACK or UNSUBACK arriving after its (un)subscribe was cancelled (a device
    closing, a cancelled ``subscribe``) has nobody waiting: nothing is wrong, but
    aiomqtt logs it with a KeyError traceback.
    """
    return not str(record.msg).startswith("Unexpected message ID")

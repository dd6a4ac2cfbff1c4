"""``Connection``: one CONNECT..DISCONNECT of a device, and its publish path (coalesced writes past paho)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from typing import TYPE_CHECKING, Any, Literal

import aiomqtt
import paho.mqtt.client as paho

from ...errors import ConnectionLostError
from .client import new_client
from .flusher import flusher_of
from .handshake import Handshake, retrieve
from .inbound import AckHandler, Inbound, MessageHandler
from .reader import Reader
from .wire import ReadBuffered, named_topic, qos0_packet, qos1_publish

if TYPE_CHECKING:
    from .._config import Proxy

__all__ = ["Connection"]

# Coalesced QoS 0 bytes written at once rather than at the end of the loop's turn.
_COALESCE_BYTES = 64 * 1024


class Connection:
    """One CONNECT..DISCONNECT. Not reused: every reconnect builds a fresh one.

    ``on_message(topic, payload)`` and ``on_ack(mid)`` run on the event loop,
    straight from paho's read path: they must be quick and must not raise.
    Collaborators: ``Handshake`` (connect), ``Reader`` (reads, keepalive),
    ``Inbound`` (incoming PUBLISH and PUBACK); the publish path is here.
    """

    def __init__(
        self,
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
        websocket_path: str = "/mqtt",
        proxy: Proxy | None = None,
        on_message: MessageHandler,
        on_ack: AckHandler,
    ) -> None:
        self._client = new_client(
            host=host, port=port, client_id=client_id, username=username, password=password, transport=transport,
            tls_context=tls_context, keepalive=keepalive, max_inflight=max_inflight, connect_timeout=connect_timeout,
            websocket_path=websocket_path, proxy=proxy,
        )
        self._paho: paho.Client = self._client._client
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._flusher = flusher_of(self._loop)
        #: PUBLISH packets of this turn of the loop, written together (see _coalesce).
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._drained: asyncio.Event | None = None
        self._last_topic: str | None = None
        self._last_named = b""
        self._closed = False
        #: True once a DISCONNECT we sent was written and the socket closed by paho.
        self.closed_cleanly: bool = False
        self._handshake = Handshake(self._client, host=host, port=port, tls=tls_context is not None,
                                    timeout=connect_timeout, closed=lambda: self._closed, kill=self._kill)
        self._reader = Reader(self._paho, self._loop, client_id=client_id, keepalive=keepalive, fail=self._fail)
        inbound = Inbound(self._paho, client_id=client_id, on_message=on_message, on_ack=on_ack)
        # The publish path adds every QoS 1 mid to one of these (the inbound side acknowledges it).
        self._pending_acks = inbound.pending_acks
        self._direct_acks = inbound.direct_acks
        self._aiomqtt_unregister_write: Any = self._paho.on_socket_unregister_write
        self._paho.on_socket_unregister_write = self._on_unregister_write
        self._paho.on_socket_open = self._reader.on_socket_open
        self._paho.on_socket_register_write = self._on_register_write
        # Whatever ends these futures is reported through connect() and lost_reason(); a
        # connection abandoned by a cancellation must not make asyncio log "never retrieved".
        for fut in (self._client._connected, self._client._disconnected):
            fut.add_done_callback(retrieve)

    # -- paho's writer callbacks (on the event loop, or the connect thread) ------------------
    def _on_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        # aiomqtt always defers add_writer through call_soon_threadsafe; if the socket is
        # closed before that runs, asyncio logs EBADF (or watches a reused descriptor).
        # On the loop thread register at once; from the connect thread, check on arrival.
        fd = sock.fileno()

        def add() -> None:
            if self._paho._sock is not None and self._paho._sock.fileno() == fd:
                self._loop.add_writer(fd, self._on_writable)

        if threading.get_ident() == self._loop_thread:
            if self._pending:
                # paho just queued a packet behind QoS 0 messages still coalescing here: they go first.
                data = self._take_pending()
                self._paho._out_packet.appendleft(_queued_packet(data, 0))
            add()
        else:
            self._loop.call_soon_threadsafe(add)

    def _on_unregister_write(self, client: Any, userdata: Any, sock: Any) -> None:
        self._aiomqtt_unregister_write(client, userdata, sock)
        if self._drained is not None:
            self._drained.set()

    def _on_writable(self) -> None:
        try:
            self._paho.loop_write()
        except Exception as exc:  # a broken socket: report it as the end of the connection
            fut = self._client._disconnected
            if not fut.done():
                fut.set_exception(exc)

    def _fail(self, exc: BaseException) -> None:
        """End the connection with ``exc`` as the reason (a broken socket, seen outside paho)."""
        fut = self._client._disconnected
        if not fut.done():
            fut.set_exception(exc)

    def pause_reading(self, paused: bool) -> None:
        """Stop reading incoming packets (a consumer is full) or start again; PINGRESPs wait too."""
        self._reader.pause(paused)

    # -- life ---------------------------------------------------------------------------
    async def connect(self) -> None:
        """CONNECT and wait for CONNACK; ``AuthenticationRefusedError`` or ``ConnectionLostError``.

        Cancellation and early hang-ups leave nothing half-open (see ``Handshake.run``).
        """
        await self._handshake.run()

    @property
    def lost(self) -> asyncio.Future[None]:
        """Resolves (maybe with an exception) when the connection ends."""
        return self._client._disconnected

    @property
    def is_lost(self) -> bool:
        return self._closed or self._client._disconnected.done()

    def lost_reason(self) -> str:
        """Why the connection ended, in words, for events and logs."""
        fut = self._client._disconnected
        if not fut.done():
            return "connected"
        if fut.cancelled():
            return "cancelled"
        exc = fut.exception()
        return "closed by us" if exc is None else str(exc) or type(exc).__name__

    async def close(self) -> None:
        """DISCONNECT politely (bounded), then make sure the socket is gone. Safe to call twice."""
        if self._closed:
            return
        self._flush_pending()  # QoS 0 messages still coalescing go out before DISCONNECT
        self._closed = True
        self._reader.stop()
        try:
            if not self._client._disconnected.done():
                self._paho.disconnect()
                # asyncio.wait neither raises the future's error nor swallows our cancellation.
                await asyncio.wait({self._client._disconnected}, timeout=2.0)
                self.closed_cleanly = self._client._disconnected.done()
        finally:
            self._kill()

    def _kill(self) -> None:
        self._closed = True
        self._reader.stop()
        self._pending.clear()
        self._pending_size = 0
        # Closing paho's socket runs aiomqtt's on_socket_close, which removes the reader
        # and cancels aiomqtt's misc task.
        with contextlib.suppress(Exception):
            self._paho._reset_sockets()
        fut = self._client._disconnected
        if not fut.done():
            fut.set_result(None)
        elif not fut.cancelled():
            fut.exception()  # retrieved: a lost connection is reported, not an unhandled error
        connected = self._client._connected
        if connected.done() and not connected.cancelled():
            connected.exception()  # a refused CONNACK, already reported through the handshake
        if self._drained is not None:
            self._drained.set()

    # -- traffic ------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, qos: int) -> int:
        """Hand one message to paho's write buffer; its mid. Never waits."""
        if self._closed:
            raise ConnectionLostError("the connection is closed")
        sock = self._paho._sock
        direct = type(sock) is ReadBuffered and not self._paho._out_packet
        if qos:
            if direct and qos == 1:
                # paho's mid generator: SUBSCRIBE/UNSUBSCRIBE ids come from it too, so none collide.
                mid = self._paho._mid_generate()
                self._direct_acks.add(mid)
                self._coalesce(qos1_publish(topic.encode(), payload, mid))
                return mid
            info = self._paho.publish(topic, payload, qos)
            if info.rc == paho.MQTT_ERR_SUCCESS:
                self._pending_acks.add(info.mid)
        else:
            if direct:
                self._coalesce(self._qos0_packet(topic, payload))
                return 0
            info = self._paho.publish(topic, payload, 0)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise ConnectionLostError(f"could not publish: {paho.error_string(info.rc)}")
        return info.mid

    def _qos0_packet(self, topic: str, payload: bytes) -> bytes:
        # A device repeats its topic: its length-prefixed bytes are kept from the last call.
        if topic is not self._last_topic:
            self._last_topic, self._last_named = topic, named_topic(topic)
        return qos0_packet(self._last_named, payload)

    def _coalesce(self, packet: bytes) -> None:
        """A PUBLISH for a TCP or TLS socket whose write buffer is empty, written with others.

        paho would build a message-info object (with a threading.Condition), queue
        the packet and have the loop register, call and unregister a writer: two
        epoll changes and a callback per message, and one ``send`` (over TLS, one
        record) per packet. Here packets published in one turn of the event loop
        are joined and written with one ``send`` when the turn ends (one callback
        for every connection of the loop: a fleet sends from many at once), or at
        once past ``_COALESCE_BYTES``. Order is kept: this path runs only while
        paho has nothing queued, and a packet paho queues meanwhile (a PINGREQ,
        SUBSCRIBE, DISCONNECT) is put behind these (see ``_on_register_write``).
        What the socket does not take goes to paho's queue, whose writer finishes
        it. QoS 1 packets written here are acknowledged through ``_direct_acks``,
        never through paho's message store (the outbox re-sends after a reconnect).
        """
        pending = self._pending
        pending.append(packet)
        self._pending_size += len(packet)
        if self._pending_size >= _COALESCE_BYTES:
            self._flush_pending()
        elif len(pending) == 1:
            self._flusher.add(self)

    def _take_pending(self) -> bytes:
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._pending_size = 0
        return data

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        data = self._take_pending()
        client = self._paho
        sock = client._sock
        if self._closed or type(sock) is not ReadBuffered:
            return  # the connection ended: QoS 0 messages handed to it are lost, as documented
        if client._out_packet:
            # Unreachable while the invariant holds (paho's queue was empty); keep order regardless.
            client._out_packet.append(_queued_packet(data, 0))
            return
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            # TLS: OpenSSL may have taken part of the record; it must be retried with the same
            # bytes, which is what paho does with a queued packet whose ``pos`` is 0.
            sent = 0
        except OSError as exc:  # a broken socket: report it as the end of the connection
            fut = self._client._disconnected
            if not fut.done():
                fut.set_exception(ConnectionLostError(f"could not publish: {exc}"))
            return
        client._last_msg_out = paho.time_func()  # what paho times its keepalive with
        if sent < len(data):
            client._out_packet.append(_queued_packet(data, sent))
            client._call_socket_register_write()

    @property
    def buffered(self) -> int:
        """Packets waiting to be written (coalesced here or in paho's write buffer)."""
        return len(self._paho._out_packet) + len(self._pending)

    async def drained(self) -> None:
        """Return when everything handed over is written to the socket (or the connection ended)."""
        self._flush_pending()
        while self._paho._out_packet and not self.is_lost:
            if self._drained is None:
                self._drained = asyncio.Event()
            self._drained.clear()
            waiter = asyncio.ensure_future(self._drained.wait())
            try:
                await asyncio.wait((waiter, self._client._disconnected), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    async def subscribe(self, filters: list[str], qos: int = 1, timeout: float | None = None) -> list[int]:
        """SUBSCRIBE and wait for SUBACK; granted QoS per filter (128 = refused)."""
        if not filters:
            return []
        if self.is_lost:
            raise ConnectionLostError("the connection is closed")
        try:
            codes = await self._client.subscribe([(f, qos) for f in filters], timeout=timeout)
        except aiomqtt.MqttError as exc:
            raise ConnectionLostError(f"subscribe failed: {exc}") from None
        return [128 if (v := _rc_value(c)) is None else v for c in codes]

    async def unsubscribe(self, filters: list[str], timeout: float | None = None) -> None:
        """UNSUBSCRIBE and wait for UNSUBACK."""
        if not filters or self.is_lost:
            return
        try:
            await self._client.unsubscribe(filters, timeout=timeout)
        except aiomqtt.MqttError as exc:
            raise ConnectionLostError(f"unsubscribe failed: {exc}") from None


def _queued_packet(data: bytes, sent: int) -> Any:  # paho's _OutPacket
    """``data`` (of which ``sent`` bytes are written) as an entry of paho's write queue, which its writer finishes."""
    return {
        "command": paho.PUBLISH,
        "mid": 0,
        "qos": 0,
        "pos": sent,
        "to_process": len(data) - sent,
        "packet": data,
        "info": paho.MQTTMessageInfo(0),
    }


def _rc_value(rc: Any) -> int | None:
    value: Any = getattr(rc, "value", rc)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

"""One MQTT connection over aiomqtt: the only module that touches aiomqtt or paho.

aiomqtt builds and configures the paho client (TLS, WebSockets, credentials)
and runs its subscribe and unsubscribe. The hot paths go around it on purpose,
through the paho client it wraps (``client._client``):

- publish: aiomqtt awaits paho's ``on_publish`` for every message, even at
  QoS 0, an event-loop round trip per message that caps a connection near
  12,000 messages/s, and paho writes each packet with its own ``send`` (over
  TLS, its own record). Here QoS 0 and QoS 1 PUBLISH packets are built here
  (QoS 1 with paho's mid generator) and those of one event-loop turn written
  with one ``send``, on TCP and TLS alike; the caller yields every few hundred
  messages, when the buffer grows, or (QoS 1) when its window of
  unacknowledged messages is full. WebSockets, and a moment when paho has
  something queued, take paho's own publish.
- PUBACK and incoming PUBLISH: paho decodes MQTT 5 reason codes and
  properties for every ack and builds a message object, a log line and a
  callback search for every PUBLISH; 3.1.1 packets are read here directly
  (QoS 2 and anything odd still go to paho).
- reads: aiomqtt handles one packet per readiness event and paho reads each
  packet with three ``recv`` calls; here one wakeup drains every packet
  buffered, from one large ``recv``.
- keepalive: aiomqtt runs a task per client that wakes every second to call
  paho's ``loop_misc``: 10,000 devices cost 10,000 task steps a second doing
  nothing. Here one timer per connection fires when ``loop_misc`` can next
  have something to do (a keepalive after the last packet out or bytes in, or
  a PINGRESP overdue), about once per keepalive period.
- connect and writer registration: taken apart so that cancellation and early
  hang-ups leave nothing half-open (see ``connect``).

This private access lives here and nowhere else, so an aiomqtt or paho
upgrade touches this one file; every private name is listed in
``PRIVATE_NEEDS`` and checked once per process (and by the canary test in
tests/unit/mqtt/test_internals.py). aiomqtt and paho exceptions are turned
into ``losant_async.errors`` here too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.metadata
import inspect
import logging
import socket
import ssl
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import aiomqtt
import anyio
import paho.mqtt.client as paho

from ..errors import (
    AuthenticationRefusedError,
    BrokerRefusedError,
    ConnectionLostError,
    MQTTError,
    TLSHandshakeError,
    TLSVerificationError,
)

if TYPE_CHECKING:
    from ._config import Proxy

__all__ = ["PRIVATE_NEEDS", "Connection", "check_internals", "default_tls_context"]

log = logging.getLogger("losant_async.mqtt")

MessageHandler = Callable[[str, bytes], None]
AckHandler = Callable[[int], None]

# paho reports MQTT 3.1.1 CONNACK codes as v5 reason codes: 134 = 4 (bad user name or
# password), 135 = 5 (not authorised), 140 bad authentication method. A refusal of the credentials.
_AUTH_REFUSED = {4: 4, 5: 5, 134: 4, 135: 5, 140: 140}
# "Not now": 3 / 136 server unavailable, 137 server busy, 138 banned, 151 quota exceeded,
# 159 connection rate exceeded. Retried, but never at once (a ban grows with early retries).
_UNAVAILABLE = {3: 3, 136: 3, 137: 137, 138: 138, 151: 151, 159: 159}
#: Incoming packets larger than this end the connection before they are buffered: Losant's
#: own limit is 256 KB, so anything far beyond it is a broken or hostile peer.
MAX_INCOMING_PACKET = 1 << 20

_shared_tls: ssl.SSLContext | None = None
# PySocks' proxy type numbers (socks.SOCKS4, SOCKS5, HTTP), which paho passes on to it.
_PROXY_TYPES = {"socks4": 1, "socks5": 2, "http": 3}
# Packets handled per readiness callback before yielding to other connections.
_READ_BATCH = 512
# Coalesced QoS 0 bytes written at once rather than at the end of the loop's turn.
_COALESCE_BYTES = 64 * 1024


def _qos0_publish(topic: bytes, payload: bytes) -> bytes:
    """An MQTT 3.1.1 PUBLISH packet at QoS 0, no retain, no dup."""
    remaining = 2 + len(topic) + len(payload)
    header = bytearray(b"\x30")
    while True:
        byte, remaining = remaining & 0x7F, remaining >> 7
        header.append(byte | 0x80 if remaining else byte)
        if not remaining:
            break
    return b"".join((header, len(topic).to_bytes(2, "big"), topic, payload))


def _named_topic(topic: str) -> bytes:
    """A topic as PUBLISH carries it: two length bytes, then UTF-8."""
    encoded = topic.encode()
    return len(encoded).to_bytes(2, "big") + encoded


def _qos0_packet(named: bytes, payload: bytes) -> bytes:
    """``_qos0_publish`` for a topic already in ``_named_topic`` form; headers of 1-2 length bytes in one step."""
    remaining = len(named) + len(payload)
    if remaining < 0x80:
        return b"".join((bytes((0x30, remaining)), named, payload))
    if remaining < 0x4000:
        return b"".join((bytes((0x30, (remaining & 0x7F) | 0x80, remaining >> 7)), named, payload))
    return _qos0_publish(named[2:], payload)


def _qos1_publish(topic: bytes, payload: bytes, mid: int) -> bytes:
    """An MQTT 3.1.1 PUBLISH packet at QoS 1 with packet identifier ``mid``, no retain, no dup."""
    remaining = 4 + len(topic) + len(payload)
    header = bytearray(b"\x32")
    while True:
        byte, remaining = remaining & 0x7F, remaining >> 7
        header.append(byte | 0x80 if remaining else byte)
        if not remaining:
            break
    return b"".join((header, len(topic).to_bytes(2, "big"), topic, mid.to_bytes(2, "big"), payload))


class PacketTooLarge(Exception):
    """paho asked for the body of an incoming packet larger than the cap (raised from ``recv``)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(size, limit)
        self.size = size
        self.limit = limit


class _ReadBuffered:
    """A socket whose reads come from one large ``recv``.

    paho reads each packet with ``recv(1)``, ``recv(1)`` and ``recv(rest)``: three
    system calls per message. Feeding those small reads from a 64 KiB buffer turns
    a burst of commands or PUBACKs into one system call. Everything else is the
    socket's own. paho's first read of a packet's body asks for all of it, so a
    packet over ``max_packet`` is refused there, before any of it is buffered.
    """

    __slots__ = ("_buf", "_pos", "_sock", "max_packet", "plain", "send")

    def __init__(self, sock: socket.socket, max_packet: int = MAX_INCOMING_PACKET) -> None:
        self._sock = sock
        self.max_packet = max_packet
        self._buf = b""
        self._pos = 0
        #: A plain TCP socket (not TLS): ``send`` writes the bytes given, as given.
        self.plain = not isinstance(sock, ssl.SSLSocket)
        # Bound once: every outgoing packet goes through send, so skip __getattr__.
        self.send = sock.send

    def recv(self, bufsize: int) -> bytes:
        if bufsize > self.max_packet:
            raise PacketTooLarge(bufsize, self.max_packet)  # not an OSError: paho lets it through
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            buf = self._sock.recv(65536)
            if not buf:
                return b""
            self._buf = buf
            pos = 0
        end = pos + bufsize
        self._pos = end if end < len(buf) else len(buf)
        return buf[pos:end]

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return self.buffered + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Capped:
    """Any other socket paho reads from (its WebSocket wrapper): only the incoming packet cap."""

    __slots__ = ("_sock", "max_packet")

    def __init__(self, sock: Any, max_packet: int) -> None:
        self._sock = sock
        self.max_packet = max_packet

    def recv(self, bufsize: int) -> bytes:
        if bufsize > self.max_packet:
            raise PacketTooLarge(bufsize, self.max_packet)
        data: bytes = self._sock.recv(bufsize)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


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


class _UnusedQueue(asyncio.Queue):  # type: ignore[type-arg]
    """Stands in for aiomqtt's incoming-message queue, which this module never uses.

    Incoming PUBLISHes go straight to ``on_message`` (see ``_on_publish_packet``), so
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


# -- the private names this module relies on ------------------------------------------------
# Written against paho-mqtt 2.1-2.2 and aiomqtt 2.5 (pyproject pins both). Each entry is
# (owner, name, kind): "method" with its parameter names after self, or the type an attribute
# holds. ``check_internals`` verifies them once per process, so an upgrade that renames one
# fails at the first connect naming it (and in tests/unit/mqtt/test_internals.py), instead of
# hanging in production.
_Kind = tuple[str, tuple[str, ...]] | type | tuple[type, ...]
PRIVATE_NEEDS: tuple[tuple[str, str, _Kind], ...] = (
    ("aiomqtt.Client", "_client", paho.Client),
    ("aiomqtt.Client", "_client_connect", ("method", ())),
    ("aiomqtt.Client", "_connected", asyncio.Future),
    ("aiomqtt.Client", "_disconnected", asyncio.Future),
    ("paho.Client", "_handle_pubackcomp", ("method", ("cmd",))),
    ("paho.Client", "_handle_publish", ("method", ())),
    ("paho.Client", "_send_puback", ("method", ("mid",))),
    ("paho.Client", "_update_inflight", ("method", ())),
    ("paho.Client", "_mid_generate", ("method", ())),
    ("paho.Client", "_packet_read", ("method", ())),
    ("paho.Client", "_loop_rc_handle", ("method", ("rc",))),
    ("paho.Client", "_reset_sockets", ("method", ("sockpair_only",))),
    ("paho.Client", "_call_socket_register_write", ("method", ())),
    ("paho.Client", "_sock", (type(None), socket.socket)),
    ("paho.Client", "_in_packet", dict),
    ("paho.Client", "_out_packet", collections.deque),
    ("paho.Client", "_out_messages", dict),
    ("paho.Client", "_out_message_mutex", type(threading.RLock())),
    ("paho.Client", "_inflight_messages", int),
    ("paho.Client", "_max_inflight_messages", int),
    ("paho.Client", "_last_msg_out", (int, float)),
    # When bytes last came in: paho 2.2 renamed it ("a|b": whichever this release has).
    ("paho.Client", "_last_bytes_received|_last_msg_in", (int, float)),
    ("paho.Client", "_ping_t", (int, float)),
    ("paho.MQTTMessageInfo", "_set_as_published", ("method", ())),
)
#: Keys of paho's packet dicts read (``_in_packet``) or built (``_out_packet`` entries) here.
IN_PACKET_KEYS = ("command", "packet")
#: Module-level names of paho used here.
PAHO_NAMES = ("time_func", "MQTTMessageInfo", "PUBLISH", "MQTT_ERR_SUCCESS", "MQTT_ERR_AGAIN", "error_string",
              "WebsocketConnectionError", "CallbackAPIVersion")

_internals_checked = False
#: paho's "when bytes last came in" attribute in the installed release (set by the check).
_bytes_in = "_last_bytes_received"


def check_internals(aio_client: Any, message_info: Any, module: Any = paho) -> list[str]:
    """What is missing or changed among the private names this module relies on (empty: all fine).

    ``aio_client`` is an ``aiomqtt.Client`` (its paho client is read from it),
    ``message_info`` a ``paho.MQTTMessageInfo``, ``module`` paho's client module.
    """
    problems: list[str] = []
    owners = {
        "aiomqtt.Client": aio_client,
        "paho.Client": getattr(aio_client, "_client", None),
        "paho.MQTTMessageInfo": message_info,
    }
    for owner, entry, kind in PRIVATE_NEEDS:
        obj = owners[owner]
        where = f"{owner}.{entry}"
        name = next((n for n in entry.split("|") if obj is not None and hasattr(obj, n)), None)
        if name is None:
            problems.append(f"{where} is missing")
            continue
        value = getattr(obj, name)
        if isinstance(kind, tuple) and kind and kind[0] == "method":
            if not callable(value):
                problems.append(f"{where} is no longer a method")
                continue
            try:
                params = tuple(inspect.signature(value).parameters)
            except (TypeError, ValueError):
                continue
            if params != kind[1]:
                problems.append(f"{where} takes {params}, expected {kind[1]}")
        elif not isinstance(value, kind):  # type: ignore[arg-type]
            problems.append(f"{where} is a {type(value).__name__}, expected {kind}")
    in_packet = getattr(owners["paho.Client"], "_in_packet", None)
    if isinstance(in_packet, dict):
        problems += [f"paho.Client._in_packet has no {key!r}" for key in IN_PACKET_KEYS if key not in in_packet]
    problems += [f"paho.mqtt.client.{name} is missing" for name in PAHO_NAMES if not hasattr(module, name)]
    return problems


def _check_internals_once(aio_client: aiomqtt.Client) -> None:
    global _internals_checked, _bytes_in
    if _internals_checked:
        return
    problems = check_internals(aio_client, paho.MQTTMessageInfo(0))
    if not hasattr(aio_client._client, _bytes_in):
        _bytes_in = "_last_msg_in"  # paho 2.1
    if problems:
        raise MQTTError(
            "this aiomqtt/paho-mqtt release differs from the one losant_async was written against "
            f"(aiomqtt {_version('aiomqtt')}, paho-mqtt {_version('paho-mqtt')}): " + "; ".join(problems)
        )
    _internals_checked = True


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


class _Flusher:
    """Writes, at the end of a turn of the event loop, what every connection of the loop coalesced in it.

    One callback for all of them: a fleet publishing from thousands of connections
    would otherwise schedule (and run) one callback per connection per turn.
    """

    __slots__ = ("__weakref__", "_dirty", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Connection] = []

    def add(self, conn: Connection) -> None:
        dirty = self._dirty
        dirty.append(conn)
        if len(dirty) == 1:
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            try:
                conn._flush_pending()
            except Exception as exc:  # one connection's fault must not keep the others' bytes back
                conn._fail(exc)


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = weakref.WeakKeyDictionary()


def _flusher_of(loop: asyncio.AbstractEventLoop) -> _Flusher:
    flusher = _flushers.get(loop)
    if flusher is None:
        flusher = _flushers[loop] = _Flusher(loop)
    return flusher


class Connection:
    """One CONNECT..DISCONNECT. Not reused: every reconnect builds a fresh one.

    ``on_message(topic, payload)`` and ``on_ack(mid)`` run on the event loop,
    straight from paho's read path: they must be quick and must not raise.
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
        self._client = aiomqtt.Client(
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
        _check_internals_once(self._client)
        self._paho: paho.Client = self._client._client
        self._paho.max_queued_messages_set(0)
        # paho's own bound on the TCP connect and the TLS handshake (5 s by default): ours, so a
        # handshake nobody answers fails within connect_timeout.
        self._paho.connect_timeout = connect_timeout
        # paho formats a debug record per packet when a logger is attached; connection
        # failures reach us through on_disconnect instead.
        self._paho.disable_logger()
        self._connect_timeout = connect_timeout
        self._tls = tls_context is not None
        #: Incoming packets over this many bytes end the connection (see ``MAX_INCOMING_PACKET``).
        self.max_incoming_packet = MAX_INCOMING_PACKET
        self._host = host
        self._port = port
        self._client_id = client_id
        self._on_message_cb = on_message
        self._on_ack_cb = on_ack
        self._pending_acks: set[int] = set()
        #: QoS 1 mids written by ``_coalesce`` and not yet acknowledged.
        self._direct_acks: set[int] = set()
        #: PUBLISH packets of this turn of the loop, written together (see _coalesce).
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._drained: asyncio.Event | None = None
        self._last_topic: str | None = None
        self._last_named = b""
        self._connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._closed = False
        self._reading_paused = False
        self._keepalive = keepalive
        self._keepalive_timer: asyncio.TimerHandle | None = None
        #: True once a DISCONNECT we sent was written and the socket closed by paho.
        self.closed_cleanly: bool = False
        self._aiomqtt_unregister_write: Any = self._paho.on_socket_unregister_write
        self._aiomqtt_on_connect: Any = self._paho.on_connect
        self._aiomqtt_on_disconnect: Any = self._paho.on_disconnect
        self._paho.on_connect = self._on_connect
        self._paho.on_disconnect = self._on_disconnect
        self._paho.on_message = self._on_message
        self._paho.on_socket_unregister_write = self._on_unregister_write
        self._paho.on_socket_open = self._on_socket_open
        self._paho.on_socket_register_write = self._on_register_write
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._flusher = _flusher_of(self._loop)
        # on_publish stays unset: paho builds a ReasonCode and a Properties object per
        # message just to call it. PUBACKs are handled by _on_puback instead, which for
        # MQTT 3.1.1 needs only the two bytes of the message id; paho's own handler
        # decodes reason codes and properties that 3.1.1 does not have.
        self._paho.on_publish = None
        self._paho_pubackcomp = self._paho._handle_pubackcomp
        self._paho._handle_pubackcomp = self._on_puback  # type: ignore[method-assign]
        # Incoming PUBLISH likewise: paho builds an MQTTMessage, formats a log line and
        # walks its callback matcher per message; the topic and payload are all we need.
        self._paho_handle_publish = self._paho._handle_publish
        self._paho._handle_publish = self._on_publish_packet  # type: ignore[method-assign]
        # Whatever ends these futures is reported through connect() and lost_reason(); a
        # connection abandoned by a cancellation must not make asyncio log "never retrieved".
        for fut in (self._client._connected, self._client._disconnected, self._connack):
            fut.add_done_callback(_retrieve)

    # -- paho callbacks (on the event loop, except on_socket_open: the connect thread) -------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        rc = int(getattr(reason, "value", reason))
        if not self._connack.done():
            self._connack.set_result(rc)
        self._aiomqtt_on_connect(client, userdata, flags, reason, properties)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if not self._connack.done():
            # Closed before any CONNACK: aiomqtt would wait for its timeout.
            self._connack.set_exception(ConnectionLostError(f"the broker closed the connection before CONNACK ({reason})"))
            self._connack.exception()
        self._aiomqtt_on_disconnect(client, userdata, flags, reason, properties)

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            self._on_message_cb(message.topic, bytes(message.payload))
        except Exception:  # a bug in a handler must not break paho's read loop
            log.exception("device %s: handling an incoming message failed", self._client_id,
                          extra={"device_id": self._client_id})

    def _on_publish_packet(self) -> Any:
        client = self._paho
        qos = (client._in_packet["command"] & 0x06) >> 1
        packet = client._in_packet["packet"]
        if qos > 1 or len(packet) < 2:
            return self._paho_handle_publish()
        end = 2 + ((packet[0] << 8) | packet[1])
        if len(packet) < end + 2 * qos:
            return self._paho_handle_publish()  # malformed: paho reports it its way
        try:
            topic = bytes(packet[2:end]).decode()
        except UnicodeDecodeError:
            return self._paho_handle_publish()
        if qos:
            mid = (packet[end] << 8) | packet[end + 1]
            end += 2
        try:
            self._on_message_cb(topic, bytes(packet[end:]))
        except Exception:  # a bug in a handler must not break paho's read loop
            log.exception("device %s: handling an incoming message failed", self._client_id,
                          extra={"device_id": self._client_id})
        return client._send_puback(mid) if qos else paho.MQTT_ERR_SUCCESS

    def _on_puback(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> Any:
        client = self._paho
        packet = client._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) < 2:
            return self._paho_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        direct = self._direct_acks
        if mid in direct:  # written by _coalesce: paho never knew this message
            direct.discard(mid)
            self._on_ack_cb(mid)
            return paho.MQTT_ERR_SUCCESS
        if len(packet) != 2:  # not 3.1.1: let paho decode it, then report the ack
            rc = self._paho_pubackcomp(cmd)
        else:
            rc = paho.MQTT_ERR_SUCCESS
            with client._out_message_mutex:
                msg = client._out_messages.pop(mid, None)
                if msg is None:
                    return rc  # a duplicate PUBACK
                msg.info._set_as_published()
                if msg.qos > 0:
                    client._inflight_messages -= 1
                    # paho rescans every stored message here; only needed when it queued some.
                    if client._max_inflight_messages > 0 and len(client._out_messages) > client._inflight_messages:
                        rc = client._update_inflight()
        pending = self._pending_acks
        if mid in pending:
            pending.discard(mid)
            self._on_ack_cb(mid)
        return rc

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        # Runs in the executor thread that connects, before CONNECT is sent. Replaces
        # aiomqtt's handler so a readable socket drains every packet it holds, not one.
        if isinstance(sock, socket.socket):
            self._paho._sock = _ReadBuffered(sock, self.max_incoming_packet)
        else:
            self._paho._sock = _Capped(sock, self.max_incoming_packet)
        fd = sock.fileno()

        def start() -> None:
            if self._closed or self._paho._sock is None:
                return
            if not self._reading_paused:
                self._loop.add_reader(fd, self._on_readable)
            self._arm_keepalive()

        self._loop.call_soon_threadsafe(start)

    def _arm_keepalive(self) -> None:
        """Wake ``loop_misc`` when it can next act, not every second as aiomqtt's task does.

        Before the earliest of (last packet out, last bytes in, PINGREQ sent) plus
        the keepalive, paho's ``loop_misc`` is a no-op; each call that acts moves
        those times on (or ends the connection), so the timer never spins.
        """
        client = self._paho
        if self._keepalive <= 0 or self._closed or client._sock is None:
            return
        due = min(client._last_msg_out, getattr(client, _bytes_in))
        ping = client._ping_t
        if ping > 0 and ping < due:
            due = ping
        # A millisecond late rather than early: early would only re-arm for the rest.
        delay = due + self._keepalive - paho.time_func() + 0.001
        self._keepalive_timer = self._loop.call_later(delay if delay > 0 else 0, self._on_keepalive)

    def _on_keepalive(self) -> None:
        self._keepalive_timer = None
        if self._closed:
            return
        try:
            rc = self._paho.loop_misc()
        except Exception as exc:  # a broken socket: report it as the end of the connection
            self._fail(exc)
            return
        if rc == paho.MQTT_ERR_SUCCESS:
            self._arm_keepalive()

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
                self._paho._out_packet.appendleft(self._pending_packet(data, 0))
            add()
        else:
            self._loop.call_soon_threadsafe(add)

    def _fail(self, exc: BaseException) -> None:
        """End the connection with ``exc`` as the reason (a broken socket, seen outside paho)."""
        fut = self._client._disconnected
        if not fut.done():
            fut.set_exception(exc)

    def _on_writable(self) -> None:
        try:
            self._paho.loop_write()
        except Exception as exc:  # a broken socket: report it as the end of the connection
            fut = self._client._disconnected
            if not fut.done():
                fut.set_exception(exc)

    def pause_reading(self, paused: bool) -> None:
        """Stop reading incoming packets (a consumer is full) or start again; PINGRESPs wait too."""
        if paused == self._reading_paused:
            return
        self._reading_paused = paused
        sock = self._paho._sock
        if sock is None or self._closed:
            return
        fd = sock.fileno()
        if paused:
            self._loop.remove_reader(fd)
        else:
            self._loop.add_reader(fd, self._on_readable)
            self._loop.call_soon(self._on_readable)  # bytes may wait in the user-space buffer

    def _on_readable(self) -> None:
        paho_client = self._paho
        try:
            for _ in range(_READ_BATCH):
                if paho_client._sock is None or self._reading_paused:
                    return
                rc = paho_client._packet_read()
                if rc > 0:
                    paho_client._loop_rc_handle(rc)
                    return
                if rc == paho.MQTT_ERR_AGAIN:
                    return
            # Bytes may be left in the user-space buffer, where the selector cannot see them.
            self._loop.call_soon(self._on_readable)
        except PacketTooLarge as exc:
            log.warning("device %s: dropped the connection: the broker sent a packet of %d bytes, over the "
                        "limit of %d", self._client_id, exc.size, exc.limit, extra={"device_id": self._client_id})
            self._fail(ConnectionLostError(
                f"the broker sent a packet of {exc.size} bytes, over the limit of {exc.limit} bytes: "
                "connection dropped"
            ))
            with contextlib.suppress(Exception):
                self._paho._reset_sockets()  # stop reading now: the rest of the packet is not wanted
        except Exception as exc:  # a broken socket: report it as the end of the connection
            fut = self._client._disconnected
            if not fut.done():
                fut.set_exception(exc)

    def _on_unregister_write(self, client: Any, userdata: Any, sock: Any) -> None:
        self._aiomqtt_unregister_write(client, userdata, sock)
        if self._drained is not None:
            self._drained.set()

    # -- life ---------------------------------------------------------------------------
    async def connect(self) -> None:
        """CONNECT and wait for CONNACK; ``AuthenticationRefusedError`` or ``ConnectionLostError``.

        This is aiomqtt's ``__aenter__`` taken apart: the socket is opened in an
        executor thread (paho's connect blocks), then CONNACK is awaited on the
        loop. Apart, a cancellation can wait for the thread alone, and a broker
        that closes the socket without a CONNACK ends the attempt at once
        instead of after the timeout.
        """
        thread = self._loop.run_in_executor(None, self._connect_in_thread)
        try:
            await asyncio.shield(thread)
        except asyncio.CancelledError:
            # A cancelled connect closes what it opened, whatever the moment the cancellation
            # landed (the CONNECT may be out, or even accepted).
            # The thread cannot be interrupted: let it finish (paho bounds it by its own
            # socket timeout) so the socket it opens is closed here, not leaked.
            try:
                # Shielded from the owner's task group, which repeats its cancellation
                # until the task leaves: the wait is bounded by the timeout instead.
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({thread}, timeout=self._connect_timeout + 1)
            finally:
                if thread.done() and not thread.cancelled():
                    thread.exception()  # retrieved: the attempt is abandoned either way
                self._kill()
            raise
        except ssl.SSLCertVerificationError as exc:
            self._kill()
            # A wrong CA, host name or an expired certificate: not a fault that retrying heals.
            raise TLSVerificationError(
                f"the TLS certificate of {self._host}:{self._port} failed verification: {exc.verify_message or exc}"
            ) from None
        except (OSError, ValueError, paho.WebsocketConnectionError) as exc:
            self._kill()
            if self._tls and _in_tls_handshake(exc):
                raise TLSHandshakeError(
                    f"the TLS handshake with {self._host}:{self._port} failed ({exc or type(exc).__name__}): "
                    "the port may be plain MQTT over TCP; if so, pass transport=\"tcp\" (usually port 1883)"
                ) from None
            raise ConnectionLostError(f"could not connect: {exc}") from None
        except BaseException:
            self._kill()
            raise
        try:
            # asyncio.wait, not wait_for: on Python 3.10/3.11 wait_for can swallow a cancellation
            # that lands in the turn the CONNACK arrives, leaving a connection nobody closes.
            done, _ = await asyncio.wait({self._connack}, timeout=self._connect_timeout)
        except BaseException:
            self._kill()
            raise
        if not done:
            self._kill()
            raise ConnectionLostError(f"no CONNACK within {self._connect_timeout:g} s")
        error = self._connack.exception()
        if error is not None:
            self._kill()
            raise error
        rc = self._connack.result()
        if rc == 0:
            return
        self._kill()
        if rc in _AUTH_REFUSED:
            raise AuthenticationRefusedError(
                f"the broker refused the credentials (CONNACK return code {_AUTH_REFUSED[rc]})",
                return_code=_AUTH_REFUSED[rc],
            )
        if rc in _UNAVAILABLE:
            raise BrokerRefusedError(
                f"the broker refused the connection for now (CONNACK return code {_UNAVAILABLE[rc]})",
                return_code=_UNAVAILABLE[rc],
            )
        raise ConnectionLostError(f"the broker refused the connection (CONNACK {rc})")

    def _connect_in_thread(self) -> None:
        # Abandoned (a cancelled connect killed this connection) before the executor got to it:
        # do not connect at all; a queue of cancelled starts then drains at once.
        if self._closed:
            return
        self._client._client_connect()
        if self._closed:
            # Abandoned while connecting, and the waiter may be gone: close what was opened here.
            with contextlib.suppress(Exception):
                self._paho._reset_sockets()

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
        timer, self._keepalive_timer = self._keepalive_timer, None
        if timer is not None:
            timer.cancel()
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
            connected.exception()  # a refused CONNACK, already reported through _connack
        if self._drained is not None:
            self._drained.set()

    # -- traffic ------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, qos: int) -> int:
        """Hand one message to paho's write buffer; its mid. Never waits."""
        if self._closed:
            raise ConnectionLostError("the connection is closed")
        sock = self._paho._sock
        direct = type(sock) is _ReadBuffered and not self._paho._out_packet
        if qos:
            if direct and qos == 1:
                # paho's mid generator: SUBSCRIBE/UNSUBSCRIBE ids come from it too, so none collide.
                mid = self._paho._mid_generate()
                self._direct_acks.add(mid)
                self._coalesce(_qos1_publish(topic.encode(), payload, mid))
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
            self._last_topic, self._last_named = topic, _named_topic(topic)
        return _qos0_packet(self._last_named, payload)

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

    def _pending_packet(self, data: bytes, sent: int) -> Any:  # paho's _OutPacket
        return {
            "command": paho.PUBLISH,
            "mid": 0,
            "qos": 0,
            "pos": sent,
            "to_process": len(data) - sent,
            "packet": data,
            "info": paho.MQTTMessageInfo(0),
        }

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        data = self._take_pending()
        client = self._paho
        sock = client._sock
        if self._closed or type(sock) is not _ReadBuffered:
            return  # the connection ended: QoS 0 messages handed to it are lost, as documented
        if client._out_packet:
            # Unreachable while the invariant holds (paho's queue was empty); keep order regardless.
            client._out_packet.append(self._pending_packet(data, 0))
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
            client._out_packet.append(self._pending_packet(data, sent))
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

    async def subscribe(self, filters: list[str], qos: int = 1, timeout: float | None = None) -> list[int]:  # noqa: ASYNC109
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

    async def unsubscribe(self, filters: list[str], timeout: float | None = None) -> None:  # noqa: ASYNC109
        """UNSUBSCRIBE and wait for UNSUBACK."""
        if not filters or self.is_lost:
            return
        try:
            await self._client.unsubscribe(filters, timeout=timeout)
        except aiomqtt.MqttError as exc:
            raise ConnectionLostError(f"unsubscribe failed: {exc}") from None


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def _in_tls_handshake(exc: BaseException) -> bool:
    """Whether ``exc`` came out of a TLS handshake (an SSL error, or a timeout while waiting for its answer)."""
    if isinstance(exc, ssl.SSLError):
        return True
    # asyncio turns a TimeoutError from the executor into a new one, without the traceback:
    # OpenSSL's words are what is left ("_ssl.c: The handshake operation timed out").
    if isinstance(exc, TimeoutError) and "handshake" in str(exc):
        return True
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "do_handshake":
            return True
        tb = tb.tb_next
    return False


def _rc_value(rc: Any) -> int | None:
    value: Any = getattr(rc, "value", rc)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


"""``Device``: one Losant device over MQTT that reconnects by itself and loses no state."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import ssl
import time as _time
import warnings
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeVar

from .._state import Stamper
from ..errors import (
    ConnectionLostError,
    DecodeError,
    DeviceClosedError,
    MQTTError,
    TopicNotAllowedError,
    ValidationError,
)
from ._connection import Connection, default_tls_context
from ._outbox import MemoryOutbox, Outbox
from ._payloads import (
    Command,
    check_qos,
    check_retain,
    decode_command,
    encode_payload,
    encode_state,
)
from ._streams import Message, Stream
from ._supervisor import (
    Activity,
    Backoff,
    ConnectionEvent,
    ConnectionState,
    KnownCredentials,
    Supervisor,
)
from ._throttle import Throttle, ThrottleConfig, TokenBucket
from ._topics import (
    check_publish_topic,
    check_subscribe_filter,
    command_topic,
    state_topic,
    topic_matches,
    validate_device_id,
)

__all__ = ["CommandCallback", "Device", "DeviceStats", "Transport"]

log = logging.getLogger("losant_async.mqtt")

Transport = Literal["tls", "tcp", "websockets", "wss"]
CommandCallback = Callable[[Command], "Awaitable[None] | None"]

_D = TypeVar("_D", bound="Device")

LOSANT_BROKER = "broker.losant.com"
_DEFAULT_PORTS = {"tls": 8883, "tcp": 1883, "websockets": 80, "wss": 443}
# A QoS 0 burst yields to the event loop this often so paho's writer runs and
# other tasks get a turn; more often costs throughput, less often grows buffers.
_YIELD_EVERY = 256
# Packets in paho's write buffer beyond which a sender waits for the socket.
_HIGH_WATER = 4096


@dataclass(frozen=True)
class DeviceStats:
    """Counters of one device (a snapshot).

    ``sent``: messages handed to the connection; ``acked``: QoS 1 messages the
    broker acknowledged; ``dropped``: messages the outbox discarded
    (drop_oldest); ``outbox_depth``: messages held now; ``throttle_waited``:
    seconds of waiting the throttle imposed; ``outbox_waited``: seconds senders
    waited for room in a full outbox; ``malformed_commands``: commands that
    could not be decoded; ``commands_received``: commands decoded and
    delivered; ``reconnects``: successful reconnects.
    """

    sent: int
    acked: int
    dropped: int
    outbox_depth: int
    throttle_waited: float
    outbox_waited: float
    malformed_commands: int
    commands_received: int
    reconnects: int


class Device:
    """A Losant device: ``async with Device(id, key, secret) as device: ...``.

    Entering connects (CONNECT, CONNACK, subscriptions) and returns when the
    device is ready; leaving flushes what is queued (bounded by
    ``close_timeout``) and disconnects. In between a supervisor reconnects
    after any fault with backoff and jitter, resubscribes, and re-sends.

    Delivery: ``send_state`` returns once the state is accepted, either handed
    to the connection or held in the outbox (while disconnected, throttled or
    behind earlier messages). With ``qos=1`` a message leaves the outbox only
    when the broker acknowledged it, so a cut connection re-sends every
    unacknowledged state in order with its original timestamp (a duplicate is
    harmless: Losant keys state by time). With ``qos=0`` a message handed to a
    connection that then breaks can be lost. ``flush()`` waits until all is
    written (QoS 1: acknowledged).

    ``throttle``: None keeps Losant's limits only against broker.losant.com,
    False never, True or a ``ThrottleConfig`` always. ``transport``: "tls"
    (8883), "tcp" (1883), "wss" (secure WebSockets, 443) or "websockets"
    (plain, 80); ``port`` overrides. TLS verifies against the system's CAs
    unless ``tls_context`` is given. Wrong credentials raise
    ``AuthenticationRefusedError`` from entering, ``send_state`` and
    ``wait_connected``; the device does not retry them.

    Entering waits up to ``ready_timeout`` seconds for the first connection
    (then raises ``ConnectionLostError`` naming the last problem);
    ``wait_ready=False`` returns at once and lets the device start offline,
    its states waiting in the outbox. ``backoff`` sets the reconnect waits;
    ``ban_detection`` (default: only against broker.losant.com) treats a
    disconnect right after a burst as a throttle ban and waits at least 30 s.
    ``max_inflight`` bounds unacknowledged QoS 1 messages.
    """

    _gateway = False

    def __init__(
        self,
        device_id: str,
        key: str,
        secret: str,
        *,
        host: str = LOSANT_BROKER,
        port: int | None = None,
        transport: Transport = "tls",
        tls_context: ssl.SSLContext | None = None,
        qos: int = 0,
        keepalive: int = 15,
        throttle: ThrottleConfig | bool | None = None,
        outbox: Outbox | None = None,
        backoff: Backoff | None = None,
        ban_detection: bool | None = None,
        max_inflight: int = 50,
        connect_timeout: float = 10.0,
        close_timeout: float = 5.0,
        wait_ready: bool = True,
        ready_timeout: float | None = 30.0,
        websocket_path: str = "/mqtt",
        stream_size: int = 1000,
    ) -> None:
        self.device_id = validate_device_id(device_id)
        if not isinstance(key, str) or not key:
            raise ValidationError("key (the access key) must be a non-empty string")
        if not isinstance(secret, str) or not secret:
            raise ValidationError("secret (the access secret) must be a non-empty string")
        if not isinstance(host, str) or not host:
            raise ValidationError("host must be a non-empty string")
        if transport not in _DEFAULT_PORTS:
            raise ValidationError(f"transport must be one of {sorted(_DEFAULT_PORTS)}, not {transport!r}")
        if port is None:
            port = _DEFAULT_PORTS[transport]
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValidationError(f"port must be an int in 1..65535, not {port!r}")
        if tls_context is not None and transport in ("tcp", "websockets"):
            raise ValidationError(f"tls_context given but transport={transport!r} does not use TLS")
        if not isinstance(keepalive, int) or isinstance(keepalive, bool) or keepalive < 1:
            raise ValidationError("keepalive must be a positive int (seconds)")
        if not isinstance(max_inflight, int) or not 1 <= max_inflight <= 65535:
            raise ValidationError("max_inflight must be an int in 1..65535")
        self._key = key
        self._secret = secret
        self.host = host
        self.port = port
        self.transport: Transport = transport
        self._tls_context = tls_context
        self.qos = check_qos(qos)
        self.keepalive = keepalive
        self._max_inflight = max_inflight
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._wait_ready = wait_ready
        self._ready_timeout = ready_timeout
        self._last_problem = ""
        self._websocket_path = websocket_path
        self._stream_size = stream_size
        on_losant = host == LOSANT_BROKER
        if throttle is None:
            throttle = on_losant
        self._throttle_config = (
            throttle if isinstance(throttle, ThrottleConfig) else ThrottleConfig() if throttle else None
        )
        self._throttle: Throttle | None = Throttle(self._throttle_config) if self._throttle_config else None
        self._ban_detection = on_losant if ban_detection is None else bool(ban_detection)
        self._backoff = backoff or Backoff()
        self._outbox: Outbox = outbox if outbox is not None else MemoryOutbox()
        # Set by Fleet: the application-wide budget of new connections.
        self._connect_bucket: TokenBucket | None = None

        self._state_topic = state_topic(self.device_id)
        # Losant keeps one state per millisecond: stamps of this device never repeat.
        self._stamp = Stamper()
        self._own_ids: set[str] = {self.device_id}
        self._command_topics: dict[str, str] = {command_topic(self.device_id): self.device_id}
        self._command_streams: dict[str, weakref.WeakSet[Stream[Command]]] = {}
        self._command_callbacks: dict[str, list[CommandCallback]] = {}
        self._custom: dict[str, tuple[int, set[Stream[Message]]]] = {}
        self._event_streams: weakref.WeakSet[Stream[ConnectionEvent]] = weakref.WeakSet()

        self._conn: Connection | None = None
        self._inflight: dict[int, int] = {}
        self._wake: asyncio.Event | None = None
        self._state_event: asyncio.Event | None = None
        self._ready: asyncio.Future[None] | None = None
        self._supervisor: Supervisor | None = None
        self._task: asyncio.Task[None] | None = None
        self._close_task: asyncio.Future[None] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._failure: BaseException | None = None
        self._failed_event: ConnectionEvent | None = None
        self._entered = False
        self._closing = False
        self._closed = False
        self._since_yield = 0
        self._activity = Activity(self._throttle_config.window if self._throttle_config else 15.0)
        self._sent = 0
        self._acked = 0
        self._malformed = 0
        self._commands = 0

    # -- life -----------------------------------------------------------------------------
    async def __aenter__(self: _D) -> _D:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose(flush=exc_type is None)

    async def start(self) -> None:
        """Connect (what ``async with`` does on entry). Prefer ``async with``."""
        if self._entered:
            raise MQTTError("a Device can be started only once; create a new one")
        self._entered = True
        try:
            if self.transport in ("tls", "wss") and self._tls_context is None:
                self._tls_context = await default_tls_context()
            await self._outbox.open()
        except BaseException:
            self._closed = True  # nothing was started that needs stopping
            raise
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._wake = asyncio.Event()
        self._supervisor = Supervisor(
            connect=self._connect_once,
            serve=self._serve,  # type: ignore[arg-type]
            emit=self._emit,
            fail=self._set_failure,
            backoff=self._backoff,
            ban_detection=self._ban_detection,
            # Throttled, the device stays within the limits by itself: only a burst beyond the
            # connection limit suggests a ban. Unthrottled, Losant's per-topic limit is the line.
            burst_threshold=self._throttle_config.per_connection if self._throttle_config else 30,
            activity=self._activity,
            is_closing=lambda: self._closing,
            lost_reason=lambda c: c.lost_reason(),  # type: ignore[attr-defined]
            device_id=self.device_id,
            credentials=KnownCredentials.digest(self.host, str(self.port), self.device_id, self._key, self._secret),
        )
        self._task = loop.create_task(self._supervisor.run(), name=f"losant-mqtt-supervisor:{self.device_id}")
        self._task.add_done_callback(self._supervisor_done)
        if not self._wait_ready:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self._ready_timeout)
        except asyncio.TimeoutError:
            await self.aclose(flush=False)
            last = f" (last: {self._last_problem})" if self._last_problem else ""
            raise ConnectionLostError(
                f"could not connect to {self.host}:{self.port} within {self._ready_timeout:g} s{last}"
            ) from None
        except BaseException:
            await self.aclose(flush=False)
            raise

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("device %s supervisor failed", self.device_id, exc_info=exc)
            self._set_failure(exc)

    async def aclose(self, *, flush: bool = True) -> None:
        """Flush (bounded by ``close_timeout``), disconnect and stop everything. Idempotent."""
        if not self._entered:
            self._closed = True
            return
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close(flush))
        # Shielded: a second cancellation must not leave the socket or tasks half-closed.
        await asyncio.shield(self._close_task)

    async def _close(self, flush: bool) -> None:
        if flush and self._failure is None and self._conn is not None and (self._outbox.depth or self._inflight):
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(self.flush(), self._close_timeout)
        self._closing = True
        try:
            if self._task is not None and not self._task.done():
                self._task.cancel()
                # asyncio.wait: the task's own end (cancelled or failed) is not our error,
                # while a cancellation of this close still propagates.
                await asyncio.wait({self._task})
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()
            for side in list(self._side_tasks):
                side.cancel()
            if self._side_tasks:
                await asyncio.gather(*self._side_tasks, return_exceptions=True)
            await self._outbox.aclose()
        finally:
            self._closed = True
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(DeviceClosedError("the device was closed before it connected"))
                self._ready.exception()
            self._emit(ConnectionEvent(ConnectionState.CLOSED, "closed"))
            for streams in self._command_streams.values():
                for stream in list(streams):
                    stream.end()
            for _, msg_streams in self._custom.values():
                for msg_stream in list(msg_streams):
                    msg_stream.end()
            for ev_stream in list(self._event_streams):
                ev_stream.end()
            self._notify_state()

    def __del__(self) -> None:
        if getattr(self, "_entered", False) and not getattr(self, "_closed", True):
            warnings.warn(f"{self!r} was never closed; use 'async with'", ResourceWarning, source=self, stacklevel=1)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._conn is not None else "disconnected"
        return f"{type(self).__name__}(device_id={self.device_id!r}, host={self.host!r}, port={self.port}, {state})"

    # -- state ----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while a connection is up and subscribed."""
        return self._conn is not None and not self._conn.is_lost

    @property
    def stats(self) -> DeviceStats:
        return DeviceStats(
            sent=self._sent,
            acked=self._acked,
            dropped=self._outbox.dropped,
            outbox_depth=self._outbox.depth,
            throttle_waited=self._throttle.waited if self._throttle else 0.0,
            outbox_waited=self._outbox.waited,
            malformed_commands=self._malformed,
            commands_received=self._commands,
            reconnects=self._supervisor.reconnects if self._supervisor else 0,
        )

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closing or self._closed:
            raise DeviceClosedError(f"device {self.device_id} is closed")
        if not self._entered:
            raise DeviceClosedError(f"device {self.device_id} is not started; use 'async with'")

    def _set_failure(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(exc)
            self._ready.exception()
        if self._outbox is not None:
            # Senders waiting for room would wait forever.
            for event in (self._outbox._space, self._outbox._empty):
                if event is not None:
                    event.set()
        self._notify_state()
        for streams in self._command_streams.values():
            for stream in list(streams):
                stream.end(exc)

    def _notify_state(self) -> None:
        event, self._state_event = self._state_event, None
        if event is not None:
            event.set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return when connected; ``TimeoutError`` after ``timeout`` s; the fatal error if any."""

        async def _wait() -> None:
            while True:
                self._check_usable()
                if self.connected:
                    return
                if self._state_event is None:
                    self._state_event = asyncio.Event()
                await self._state_event.wait()

        if timeout is None:
            await _wait()
            return
        try:
            await asyncio.wait_for(_wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"device {self.device_id} did not connect within {timeout} s") from None

    def events(self, maxsize: int = 100) -> Stream[ConnectionEvent]:
        """Connection events from now on (``async for`` or ``async with``)."""
        stream: Stream[ConnectionEvent] = Stream(maxsize, self._event_streams.discard)
        if self._failed_event is not None:
            stream.push(self._failed_event)  # a late listener still learns why the device stopped
        if self._closed:
            stream.end()
        else:
            self._event_streams.add(stream)
        return stream

    def _emit(self, event: ConnectionEvent) -> None:
        if not event.device_id:
            event = dataclasses.replace(event, device_id=self.device_id, at=_time.time())
        if event.state is ConnectionState.FAILED:
            self._failed_event = event
        if event.state in (ConnectionState.RECONNECTING, ConnectionState.DISCONNECTED) and event.reason:
            self._last_problem = event.reason
        for stream in list(self._event_streams):
            stream.push(event)

    # -- connection ---------------------------------------------------------------------
    async def _connect_once(self) -> Connection:
        if self._connect_bucket is not None:
            delay = self._connect_bucket.reserve()
            if delay > 0:
                await asyncio.sleep(delay)
        conn = Connection(
            host=self.host,
            port=self.port,
            client_id=self.device_id,
            username=self._key,
            password=self._secret,
            transport="websockets" if self.transport in ("websockets", "wss") else "tcp",
            tls_context=self._tls_context if self.transport in ("tls", "wss") else None,
            keepalive=self.keepalive,
            max_inflight=self._max_inflight,
            connect_timeout=self._connect_timeout,
            websocket_path=self._websocket_path,
            on_message=self._on_message,
            on_ack=self._on_ack,
        )
        await conn.connect()
        return conn

    async def _serve(self, conn: Connection) -> None:
        wake = self._wake
        assert wake is not None
        conn.lost.add_done_callback(lambda _: wake.set())
        try:
            filters = list(self._command_topics)
            custom = [(f, q) for f, (q, _) in self._custom.items()]
            granted = await conn.subscribe(filters, self.qos, timeout=self._connect_timeout)
            for f, code in zip(filters, granted, strict=False):
                if code >= 128:
                    log.warning("the broker refused the subscription to %s", f)
            for f, q in custom:
                await conn.subscribe([f], q, timeout=self._connect_timeout)
        except ConnectionLostError as exc:
            log.info("device %s lost its connection while subscribing: %s", self.device_id, exc)
            await conn.close()
            return
        self._outbox.rewind()
        self._inflight.clear()
        self._conn = conn
        self._since_yield = 0
        self._emit(ConnectionEvent(ConnectionState.CONNECTED, "connected"))
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        self._notify_state()
        try:
            await self._pump(conn)
        finally:
            self._conn = None
            self._inflight.clear()
            self._outbox.rewind()
            self._notify_state()
            await asyncio.shield(conn.close())

    async def _pump(self, conn: Connection) -> None:
        """Send what the outbox holds, keeping at most ``max_inflight`` QoS 1 messages unacknowledged."""
        outbox = self._outbox
        wake = self._wake
        assert wake is not None
        throttle = self._throttle
        inflight = self._inflight
        window = self._max_inflight
        activity = self._activity if self._ban_detection else None
        while not conn.is_lost:
            wake.clear()
            batch = 0
            while len(inflight) < window:
                item = outbox.take()
                if item is None:
                    break
                if throttle is not None:
                    delay = throttle.reserve(item.topic)
                    if delay > 0:
                        # asyncio.wait, not wait_for: a lost connection ends the wait without raising.
                        await asyncio.wait({conn.lost}, timeout=delay)
                        if conn.is_lost:
                            return
                try:
                    mid = conn.publish(item.topic, item.payload, item.qos)
                except ConnectionLostError:
                    return
                self._sent += 1
                if activity is not None:
                    activity.add()
                if item.qos:
                    inflight[mid] = item.seq
                else:
                    outbox.ack(item.seq)
                batch += 1
                if batch >= _YIELD_EVERY:
                    batch = 0
                    if conn.buffered > _HIGH_WATER:
                        await conn.drained()
                    else:
                        await asyncio.sleep(0)
                    if conn.is_lost:
                        return
            await outbox.sync()
            if outbox.has_unsent and len(inflight) < window and not conn.is_lost:
                await asyncio.sleep(0)
                continue
            await wake.wait()

    def _on_ack(self, mid: int) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is not None:
            self._outbox.ack(seq)
            self._acked += 1
            wake = self._wake
            if wake is not None:
                wake.set()

    # -- sending ------------------------------------------------------------------------
    async def send_state(
        self,
        data: Mapping[str, Any],
        time: datetime | int | float | None = None,
        *,
        flow_version: str | None = None,
        wait: bool = True,
    ) -> None:
        """Report state: ``{"data": data, "time": time}`` on ``losant/<id>/state``.

        ``time`` is an aware datetime or epoch ms; None stamps the time of this
        call. Returns once the state is accepted (handed to the connection, or
        held in the outbox). A full outbox with policy "wait" makes this wait,
        or raise ``OutboxFullError`` when ``wait=False``. Bad data raises a
        ``ValidationError`` before anything is sent.
        """
        self._check_usable()
        payload = encode_state(data, time, flow_version=flow_version, now=self._stamp() if time is None else None)
        await self._send(self._state_topic, payload, self.qos, wait)

    async def publish(self, topic: str, payload: object, qos: int = 0, *, retain: bool = False, wait: bool = True) -> None:
        """Publish to a custom topic (or, for a gateway, any device's Losant topic).

        ``payload``: bytes as is, str as UTF-8, anything else as JSON. A non-gateway
        publishing to another device's ``losant/`` topic gets ``TopicNotAllowedError``.
        """
        self._check_usable()
        qos = check_qos(qos)
        check_retain(retain)
        check_publish_topic(topic, self._own_ids, gateway=self._gateway)
        await self._send(topic, encode_payload(payload), qos, wait)

    async def _send(self, topic: str, payload: bytes, qos: int, wait: bool) -> None:
        conn = self._conn
        throttle = self._throttle
        if (
            qos == 0
            and conn is not None
            and not self._outbox.depth
            and (throttle is None or throttle.take(topic))
        ):
            # The fast path, TLS or not, throttled while tokens are left: no outbox, no await
            # unless the batch is due a yield. Nothing is queued, so order is kept.
            try:
                conn.publish(topic, payload, 0)
            except ConnectionLostError:
                pass
            else:
                self._sent += 1
                if self._ban_detection:
                    self._activity.add()
                n = self._since_yield + 1
                if n >= _YIELD_EVERY:
                    self._since_yield = 0
                    if conn.buffered > _HIGH_WATER:
                        await conn.drained()
                    else:
                        await asyncio.sleep(0)
                else:
                    self._since_yield = n
                return
        await self._outbox.put(topic, payload, qos, wait=wait)
        if self._failure is not None:
            raise self._failure
        wake = self._wake
        if wake is not None:
            wake.set()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued is written (QoS 1: acknowledged by the broker)."""

        async def _flush() -> None:
            while True:
                self._check_usable()
                await self._outbox.wait_empty()
                self._check_usable()
                conn = self._conn
                if conn is not None:
                    await conn.drained()
                if not self._outbox.depth:
                    return

        if timeout is None:
            await _flush()
            return
        try:
            await asyncio.wait_for(_flush(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"device {self.device_id} did not flush within {timeout} s") from None

    # -- receiving ----------------------------------------------------------------------
    def commands(self) -> Stream[Command]:
        """Commands from now on: ``async for command in device.commands()`` (or ``async with``)."""
        return self._command_stream(self.device_id)

    def on_command(self, callback: CommandCallback) -> Callable[[], None]:
        """Call ``callback(command)`` for each command (a coroutine function runs as a task).

        Returns a function that removes the callback.
        """
        return self._add_command_callback(self.device_id, callback)

    def _command_stream(self, device_id: str) -> Stream[Command]:
        streams = self._command_streams.setdefault(device_id, weakref.WeakSet())
        stream: Stream[Command] = Stream(self._stream_size, streams.discard)
        if self._closed:
            stream.end()
        else:
            streams.add(stream)
        return stream

    def _add_command_callback(self, device_id: str, callback: CommandCallback) -> Callable[[], None]:
        if not callable(callback):
            raise ValidationError("on_command needs a callable")
        callbacks = self._command_callbacks.setdefault(device_id, [])
        callbacks.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                callbacks.remove(callback)

        return remove

    def _on_message(self, topic: str, payload: bytes) -> None:
        device_id = self._command_topics.get(topic)
        if device_id is not None:
            self._dispatch_command(device_id, payload)
            return
        if self._custom:
            message: Message | None = None
            for topic_filter, (_, streams) in self._custom.items():
                if topic_matches(topic_filter, topic):
                    if message is None:
                        message = Message(topic, payload)
                    for stream in streams:
                        stream.push(message)

    def _dispatch_command(self, device_id: str, payload: bytes) -> None:
        try:
            command = decode_command(payload, device_id)
        except DecodeError as exc:
            self._malformed += 1
            # The reason names the shape problem; the payload itself is not logged.
            log.warning("ignored a malformed command for %s (%d bytes): %s", device_id, len(payload), exc.args[0])
            return
        self._commands += 1
        streams = self._command_streams.get(device_id)
        if streams:
            for stream in streams:
                stream.push(command)
        callbacks = self._command_callbacks.get(device_id)
        if callbacks:
            for callback in list(callbacks):
                try:
                    result = callback(command)
                except Exception:
                    log.exception("a command callback of %s failed", device_id)
                    continue
                if result is not None and inspect.isawaitable(result):
                    self._spawn(_guard(result, device_id), f"losant-mqtt-command:{device_id}")

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- custom subscriptions -------------------------------------------------------------
    def subscribe(self, topic_filter: str, qos: int = 0, *, maxsize: int | None = None) -> _Subscription:
        """``async with device.subscribe("custom/#") as messages: async for m in messages: ...``.

        Subscribes on entry (waiting for SUBACK when connected), again after every
        reconnect, and unsubscribes on exit.
        """
        self._check_usable()
        check_subscribe_filter(topic_filter, self._own_ids, gateway=self._gateway)
        return _Subscription(self, topic_filter, check_qos(qos), maxsize or self._stream_size)

    async def _subscribe_filter(self, topic_filter: str, qos: int, stream: Stream[Message]) -> None:
        entry = self._custom.get(topic_filter)
        if entry is None:
            self._custom[topic_filter] = (qos, {stream})
        else:
            entry[1].add(stream)
        conn = self._conn
        if conn is not None and entry is None:
            try:
                granted = await conn.subscribe([topic_filter], qos, timeout=self._connect_timeout)
            except ConnectionLostError:
                return  # resubscribed on the next connection
            if granted and granted[0] >= 128:
                self._unregister_filter(topic_filter, stream)
                raise TopicNotAllowedError(f"the broker refused the subscription to {topic_filter!r}")

    def _unregister_filter(self, topic_filter: str, stream: Stream[Message]) -> bool:
        entry = self._custom.get(topic_filter)
        if entry is None:
            return False
        entry[1].discard(stream)
        if entry[1]:
            return False
        del self._custom[topic_filter]
        return True

    async def _unsubscribe_filter(self, topic_filter: str, stream: Stream[Message]) -> None:
        if self._unregister_filter(topic_filter, stream):
            conn = self._conn
            if conn is not None:
                with contextlib.suppress(ConnectionLostError, asyncio.TimeoutError):
                    await conn.unsubscribe([topic_filter], timeout=self._connect_timeout)


async def _guard(awaitable: Awaitable[Any], device_id: str) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("a command callback of %s failed", device_id)


class _Subscription:
    """The life of one custom subscription, as an ``async with`` block."""

    def __init__(self, device: Device, topic_filter: str, qos: int, maxsize: int) -> None:
        self._device = device
        self.topic_filter = topic_filter
        self.qos = qos
        self._stream: Stream[Message] = Stream(maxsize)

    async def __aenter__(self) -> Stream[Message]:
        await self._device._subscribe_filter(self.topic_filter, self.qos, self._stream)
        return self._stream

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stream.end()
        await asyncio.shield(self._device._unsubscribe_filter(self.topic_filter, self._stream))

"""The session: one live connection at a time: subscribe, pump the outbox, the in-flight window and acks, the fast path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

import anyio

from ..errors import ConnectionLostError, TopicNotAllowedError
from ._config import DeviceConfig
from ._connection import Connection
from ._inbox import Inbox
from ._outbox import Outbox
from ._supervisor import Activity
from ._throttle import Throttle, TokenBucket

__all__ = ["Session"]

log = logging.getLogger("losant_async.mqtt")

# A QoS 0 burst yields to the event loop this often so the coalesced writes go out and
# other tasks get a turn; more often costs throughput, less often grows buffers.
_YIELD_EVERY = 256
# Packets waiting to be written beyond which a sender waits for the socket.
_HIGH_WATER = 4096


class Session:
    """Serves each connection the supervisor makes, one at a time, for one device (or gateway).

    ``connect()`` builds and opens a ``Connection``; ``serve(conn)`` subscribes
    (the inbox's command topics and custom filters), marks the device ready,
    then pumps the outbox until the connection ends. ``send`` is the publish
    path: at QoS 0, connected, with nothing queued and (throttled) a token
    free, a message goes straight to the connection; otherwise to the outbox,
    which the pump drains keeping at most ``max_inflight`` QoS 1 messages
    unacknowledged.
    """

    __slots__ = (
        "_count_activity", "_failure", "_inflight", "_on_connected", "_on_disconnected", "_paused", "_since_yield",
        "_wake", "acked", "activity", "config", "conn", "connect_bucket", "inbox", "outbox", "sent", "throttle",
        "tls_context",
    )

    def __init__(
        self,
        config: DeviceConfig,
        *,
        outbox: Outbox,
        inbox: Inbox,
        on_connected: Callable[[], None],
        on_disconnected: Callable[[], None],
        failure: Callable[[], BaseException | None],
    ) -> None:
        self.config: DeviceConfig = config
        self.outbox: Outbox = outbox
        self.inbox: Inbox = inbox
        self.throttle: Throttle | None = Throttle(config.throttle) if config.throttle else None
        self.activity: Activity = Activity(config.throttle.window if config.throttle else 15.0)
        self._count_activity = config.ban_detection
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._failure = failure
        #: The live connection, while one is up and subscribed.
        self.conn: Connection | None = None
        self.tls_context: ssl.SSLContext | None = config.tls_context
        #: Set by Fleet: the application-wide budget of new connections.
        self.connect_bucket: TokenBucket | None = None
        self._inflight: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._since_yield = 0
        self._paused = False
        #: Messages handed to a connection; QoS 1 messages the broker acknowledged.
        self.sent: int = 0
        self.acked: int = 0

    # -- a connection's life -------------------------------------------------------------
    async def connect(self) -> Connection:
        """Open a new connection to the broker (waiting for the connect throttle first)."""
        if self.connect_bucket is not None:
            delay = self.connect_bucket.reserve()
            if delay > 0:
                await asyncio.sleep(delay)
        cfg = self.config
        conn = Connection(
            host=cfg.host,
            port=cfg.port,
            client_id=cfg.device_id,
            username=cfg.key,
            password=cfg.secret,
            transport="websockets" if cfg.transport in ("websockets", "wss") else "tcp",
            tls_context=self.tls_context if cfg.uses_tls else None,
            keepalive=cfg.keepalive,
            max_inflight=cfg.max_inflight,
            connect_timeout=cfg.connect_timeout,
            websocket_path=cfg.websocket_path,
            proxy=cfg.proxy,
            on_message=self.inbox.on_message,
            on_ack=self._on_ack,
        )
        await conn.connect()
        return conn

    async def serve(self, conn: Connection) -> None:
        """Subscribe, then pump until ``conn`` ends; always closes it."""
        cfg = self.config
        wake = self._wake
        conn.lost.add_done_callback(lambda _: wake.set())
        try:
            filters = self.inbox.command_filters()
            granted = await conn.subscribe(filters, cfg.qos, timeout=cfg.connect_timeout)
            for f, code in zip(filters, granted, strict=False):
                if code >= 128:
                    self._log(logging.WARNING, "the broker refused the subscription to %s", f)
            for f, q in self.inbox.custom_filters():
                await conn.subscribe([f], q, timeout=cfg.connect_timeout)
        except (ConnectionLostError, asyncio.TimeoutError) as exc:
            self._log(logging.INFO, "lost the connection while subscribing: %s", exc)
            await conn.close()
            return
        except BaseException:
            # Cancelled (the device is closing) before the connection was handed over: close it
            # here, or nobody will.
            with anyio.CancelScope(shield=True):
                await conn.close()
            raise
        self.outbox.rewind()
        self._inflight.clear()
        self.conn = conn
        self._since_yield = 0
        if self._paused:
            conn.pause_reading(True)
        self._on_connected()
        try:
            await self._pump(conn)
        finally:
            self.conn = None
            self._inflight.clear()
            self.outbox.rewind()
            self._on_disconnected()
            # Shielded and awaited (bounded by close's own timeout): no close left running alone.
            with anyio.CancelScope(shield=True):
                await conn.close()

    def wake(self) -> None:
        """Nudge the pump: something was queued or acknowledged."""
        self._wake.set()

    def pause_reading(self, paused: bool) -> None:
        """Stop (or resume) reading from the connection: a command stream is full (overflow "wait")."""
        self._paused = paused
        conn = self.conn
        if conn is not None:
            conn.pause_reading(paused)

    def _log(self, level: int, message: str, *args: object) -> None:
        device_id = self.config.device_id
        log.log(level, "device %s: " + message, device_id, *args, extra={"device_id": device_id})

    # -- sending ------------------------------------------------------------------------
    async def send(self, topic: str, payload: bytes, qos: int, wait: bool) -> None:
        """Publish a message: straight to the connection when possible, else through the outbox."""
        conn = self.conn
        throttle = self.throttle
        if (
            qos == 0
            and conn is not None
            and not self.outbox.depth
            and (throttle is None or throttle.take(topic))
        ):
            # The fast path, TLS or not, throttled while tokens are left: no outbox, no await
            # unless the batch is due a yield. Nothing is queued, so order is kept.
            try:
                conn.publish(topic, payload, 0)
            except ConnectionLostError:
                pass
            else:
                self.sent += 1
                if self._count_activity:
                    self.activity.add()
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
        await self.outbox.put(topic, payload, qos, wait=wait)
        failure = self._failure()
        if failure is not None:
            raise failure
        self._wake.set()

    async def _pump(self, conn: Connection) -> None:
        """Send what the outbox holds, keeping at most ``max_inflight`` QoS 1 messages unacknowledged."""
        outbox = self.outbox
        wake = self._wake
        throttle = self.throttle
        inflight = self._inflight
        window = self.config.max_inflight
        activity = self.activity if self._count_activity else None
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
                self.sent += 1
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
            self.outbox.ack(seq)
            self.acked += 1
            self._wake.set()

    @property
    def unacked(self) -> int:
        return len(self._inflight)

    async def drained(self) -> None:
        """Wait until the live connection's write buffer has drained (no-op when disconnected)."""
        conn = self.conn
        if conn is not None:
            await conn.drained()

    # -- subscriptions while connected ----------------------------------------------------
    async def subscribe(self, topic_filter: str, qos: int) -> bool:
        """SUBSCRIBE now if connected (else the next connection does); False when the broker refused it."""
        conn = self.conn
        if conn is None:
            return True
        try:
            granted = await conn.subscribe([topic_filter], qos, timeout=self.config.connect_timeout)
        except (ConnectionLostError, asyncio.TimeoutError) as exc:
            self._log(logging.INFO, "subscribing %s waits for the next connection: %s", topic_filter, exc)
            return True
        return not (granted and granted[0] >= 128)

    async def subscribe_or_raise(self, topic_filter: str, qos: int) -> None:
        """Subscribe to ``topic_filter``; TopicNotAllowedError when the broker refuses."""
        if not await self.subscribe(topic_filter, qos):
            raise TopicNotAllowedError(f"the broker refused the subscription to {topic_filter!r}")

    async def unsubscribe(self, topic_filter: str) -> None:
        """Unsubscribe from ``topic_filter`` on the live connection, if any (best effort)."""
        conn = self.conn
        if conn is not None:
            with contextlib.suppress(ConnectionLostError, asyncio.TimeoutError):
                await conn.unsubscribe([topic_filter], timeout=self.config.connect_timeout)

    async def close(self) -> None:
        """Close the live connection, if any."""
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.close()

"""The emulator's MQTT broker: embedded amqtt with a plugin that enforces Losant's broker rules.

amqtt 0.12.1 has no hook that can veto a PUBLISH by payload, QoS or retain flag
(see docs/amqtt-notes.md), so the rules sit at two places:

- Connections are ours (``asyncio.start_server`` / ``websockets.serve`` handed to an
  ``external`` listener, so ports are ephemeral and known) and their reader runs an
  ``_InboundGuard`` over the fixed header of every packet: QoS 2 and hopelessly
  oversized PUBLISHes close the connection unread, the retain bit is cleared, and
  the time of the last read feeds keepalive reaping (amqtt does not enforce it).
- Each accepted connection's session gets a ``_JudgingQueue`` as its delivery
  queue: amqtt queues every incoming PUBLISH there *before* it sends the PUBACK,
  and the queue judges it on the spot (topic rights, the exact 256 KB cap,
  throttling) and stores an accepted state. So a state the device saw
  acknowledged is stored even when the connection drops before amqtt's own loop
  reaches it (amqtt then discards the queue). The verdict waits in the queue
  until ``topic_filtering(PUBLISH)`` for the same message pops it, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable  # emu-rest block below
from dataclasses import dataclass
from typing import Any

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from .. import _json
from .._time import to_ejson_date
from ..errors import ValidationError
from ._store import Counters, DeviceRecord, Store

__all__ = ["MAX_PAYLOAD", "EmbeddedBroker", "LosantRulesPlugin", "Rules"]

_log = logging.getLogger("losant_async.testing.broker")

MAX_PAYLOAD = 256 * 1024
"""Losant's cap on one MQTT message."""
THROTTLE_LIMIT = 30
"""Messages per topic per window (a gateway's peripherals each have their own state topic)."""
THROTTLE_CONNECTION_LIMIT = 300
"""Messages per connection per window, whatever the topics."""
THROTTLE_WINDOW_MS = 15_000
THROTTLE_BAN_MS = 30_000
_REAP_FACTOR = 1.5


_PUBLISH = 3
# A PUBLISH whose remaining length exceeds this cannot fit under the cap whatever its topic.
_MAX_PUBLISH_REMAINING = MAX_PAYLOAD + 2 + 65535 + 2


class _InboundGuard:
    """Watches client bytes packet by packet, before amqtt parses them.

    amqtt reads exactly: one header byte, the remaining-length bytes one at a
    time, then the rest. Following that lets the emulator act on the fixed
    header, which no plugin hook can: a QoS 2 PUBLISH or one that cannot fit
    under 256 KB closes the connection before its payload is read (Losant
    disconnects), and the retain bit is cleared so amqtt never stores it.
    It also stamps the time of the last read, for keepalive reaping.
    """

    __slots__ = ("_counters", "_header", "_left", "_length", "_shift", "_state", "closed", "last_read")

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self.last_read = time.monotonic()
        self.closed = False
        self._state = 0  # 0 header byte next, 1 length bytes, 2 rest of packet, 3 gave up following
        self._header = 0
        self._length = 0
        self._shift = 0
        self._left = 0

    def feed(self, data: bytes) -> bytes:
        self.last_read = time.monotonic()
        if self.closed:
            return b""
        state = self._state
        if state == 2:
            self._left -= len(data)
            if self._left <= 0:
                self._state = 0 if self._left == 0 else 3
            return data
        if state == 3 or len(data) != 1:
            self._state = 3  # an unexpected read pattern: stop interpreting, pass bytes through
            return data
        byte = data[0]
        if state == 0:
            if byte >> 4 == _PUBLISH:
                if (byte >> 1) & 3 == 2:
                    self._counters.mqtt_qos2_closed += 1
                    return self._close()
                if byte & 1:
                    self._counters.mqtt_retain_stripped += 1
                    byte &= 0xFE
                    data = bytes((byte,))
            self._header = byte
            self._length = self._shift = 0
            self._state = 1
            return data
        self._length |= (byte & 0x7F) << self._shift
        self._shift += 7
        if byte & 0x80:
            return data
        if self._header >> 4 == _PUBLISH and self._length > _MAX_PUBLISH_REMAINING:
            self._counters.mqtt_oversize_closed += 1
            return self._close()
        self._left = self._length
        self._state = 2 if self._length else 0
        return data

    def _close(self) -> bytes:
        self.closed = True
        return b""


class _GuardedStreamReader(StreamReaderAdapter):  # type: ignore[misc]
    def __init__(self, reader: asyncio.StreamReader, guard: _InboundGuard) -> None:
        super().__init__(reader)
        self.guard = guard

    async def read(self, n: int = -1) -> bytes:
        if self.guard.closed:
            return b""
        data: bytes = await super().read(n)
        return self.guard.feed(data)


def _guarded_ws_reader(websocket: Any, guard: _InboundGuard) -> Any:
    from amqtt.adapters import WebSocketsReader

    class _GuardedWebSocketsReader(WebSocketsReader):  # type: ignore[misc]
        async def read(self, n: int = -1) -> bytes:
            if guard.closed:
                return b""
            data: bytes = await super().read(n)
            return guard.feed(data)

    reader = _GuardedWebSocketsReader(websocket)
    reader.guard = guard
    return reader


@dataclass(slots=True)
class _Verdict:
    allow: bool
    close: bool = False


class _JudgingQueue(asyncio.Queue[Any]):
    """A session's delivery queue that judges each PUBLISH as amqtt queues it.

    amqtt puts an incoming message here and only then sends its PUBACK (QoS 1),
    so judging at this point is what makes "acknowledged" mean "stored".
    """

    def __init__(self, rules: Rules, client_id: str) -> None:
        super().__init__()
        self._rules = rules
        self._client_id = client_id
        self.verdicts: deque[_Verdict] = deque()

    def put_nowait(self, item: Any) -> None:
        if item is not None:  # asyncio.Queue.put() ends here too
            self.verdicts.append(self._rules.judge(self._client_id, item))
        super().put_nowait(item)


class Rules:
    """Losant's broker rules over the store; amqtt calls in through ``LosantRulesPlugin``."""

    def __init__(self, store: Store, *, throttle: bool = False) -> None:
        self.store = store
        self.throttle = throttle
        self.broker: Broker | None = None
        # client id -> (session, handler) of the connection we consider live; amqtt's own
        # table keeps refused and displaced sessions, so it cannot say who is connected.
        self.live: dict[str, tuple[Any, Any]] = {}
        self._windows: dict[tuple[str, str], deque[int]] = {}
        self._banned_until: dict[str, int] = {}
        self._closing: set[asyncio.Task[None]] = set()

    # -- connect ---------------------------------------------------------------------------

    def device_for(self, client_id: str | None) -> DeviceRecord | None:
        if not client_id:
            return None
        return self.store.devices.get(client_id)

    async def authenticate(self, session: Any) -> bool:
        client_id: str | None = session.client_id
        device = self.device_for(client_id)
        ok = (
            device is not None
            and device.device_class != "peripheral"
            and session.clean_session is not False
            and self.store.check_key(session.username, session.password, device)
            and not self._is_banned(device.id)
        )
        if client_id and client_id in self.live:
            # a second CONNECT displaces the first; amqtt has already taken the old
            # connection's subscriptions, so even a refused one must not leave it deaf
            _old_session, old_handler = self.live.pop(client_id)
            self.store.counters.mqtt_displaced += 1
            self.store.set_connection(client_id, False, reason="displaced by a new connection")
            await self.close_handler(old_handler)
        if not ok:
            self.store.counters.mqtt_connects_refused += 1
        else:
            assert client_id is not None
            session.delivered_message_queue = _JudgingQueue(self, client_id)
        return ok

    def _is_banned(self, device_id: str) -> bool:
        until = self._banned_until.get(device_id)
        if until is None:
            return False
        if self.store.clock() >= until:
            del self._banned_until[device_id]
            return False
        return True

    def connected(self, client_id: str, session: Any) -> None:
        broker = self.broker
        entry = broker.sessions.get(client_id) if broker is not None else None
        if entry is None or entry[0] is not session:
            return
        self.live[client_id] = entry
        self.store.set_connection(client_id, True)

    def disconnected(self, client_id: str, session: Any) -> None:
        current = self.live.get(client_id)
        if current is None or current[0] is not session:
            return  # a displaced or refused connection: not the device's state any more
        del self.live[client_id]
        self.store.set_connection(client_id, False)

    # -- publish ---------------------------------------------------------------------------

    def judge(self, client_id: str, message: Any) -> _Verdict:
        """Decide a PUBLISH, storing an accepted state; runs before its PUBACK and never awaits."""
        try:
            return self._judge(client_id, message)
        except Exception:
            _log.exception("judging a message failed; dropping it")
            return _Verdict(False)

    def _judge(self, client_id: str, message: Any) -> _Verdict:
        counters = self.store.counters
        packet = getattr(message, "publish_packet", None)
        if packet is not None and packet.retain_flag:
            # the inbound guard clears the bit first; this covers a stream it stopped following
            packet.retain_flag = False
            counters.mqtt_retain_stripped += 1
        if message.qos == 2:
            counters.mqtt_qos2_closed += 1
            return _Verdict(False, close=True)
        data: bytes = message.data or b""
        if len(data) > MAX_PAYLOAD:
            counters.mqtt_oversize_closed += 1
            return _Verdict(False, close=True)
        topic: str = message.topic or ""
        device = self.device_for(client_id)
        if device is None:
            return _Verdict(False)
        if self.throttle and self._over_limit(client_id, topic):
            counters.mqtt_throttled += 1
            self._banned_until[client_id] = self.store.clock() + THROTTLE_BAN_MS
            return _Verdict(False, close=True)
        if not topic.startswith("losant/"):
            return _Verdict(True)
        parts = topic.split("/")
        if len(parts) != 3 or parts[2] != "state" or not self.store.reports_for(device, parts[1]):
            counters.mqtt_publishes_denied += 1
            return _Verdict(False)
        target = self.store.devices.get(parts[1])
        if target is None:
            counters.mqtt_publishes_denied += 1
            return _Verdict(False)
        # Losant drops a bad state silently over MQTT; the counters show it
        try:
            body = _json.decode_any(data)
        except ValueError:
            counters.states_invalid += 1
            return _Verdict(False)
        try:
            self.store.record_state(target, body)
        except ValidationError:
            return _Verdict(False)
        return _Verdict(True)

    def _over_limit(self, client_id: str, topic: str) -> bool:
        now = self.store.clock()
        per_topic = self._window((client_id, topic), now)
        per_connection = self._window((client_id, ""), now)
        if len(per_topic) >= THROTTLE_LIMIT or len(per_connection) >= THROTTLE_CONNECTION_LIMIT:
            return True
        per_topic.append(now)
        per_connection.append(now)
        return False

    def _window(self, key: tuple[str, str], now: int) -> deque[int]:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = deque()
        while window and window[0] <= now - THROTTLE_WINDOW_MS:
            window.popleft()
        return window

    async def allow_publish(self, session: Any, topic: str) -> bool:
        queue = getattr(session, "delivered_message_queue", None)
        verdicts = queue.verdicts if isinstance(queue, _JudgingQueue) else None
        verdict = verdicts.popleft() if verdicts else None
        if verdict is None:
            # no judged message (should not happen): fall back to the topic rule alone
            return self._topic_allowed(session.client_id, topic, subscribe=False)
        if verdict.close:
            entry = self.live.get(session.client_id)
            if entry is not None and entry[0] is session:
                await self.close_handler(entry[1])
        return verdict.allow

    # -- subscribe ---------------------------------------------------------------------------

    def allow_subscribe(self, session: Any, topic_filter: str) -> bool:
        ok = self._topic_allowed(session.client_id, topic_filter, subscribe=True)
        if not ok:
            self.store.counters.mqtt_subscribes_denied += 1
        return ok

    def _topic_allowed(self, client_id: str, topic: str, *, subscribe: bool) -> bool:
        first = topic.split("/", 1)[0]
        if first in ("+", "#"):
            return False  # would cover the reserved losant/ prefix
        if first != "losant":
            return True
        device = self.device_for(client_id)
        parts = topic.split("/")
        if device is None or len(parts) != 3:
            return False
        kind = "command" if subscribe else "state"
        return parts[2] == kind and self.store.reports_for(device, parts[1])

    # -- closing ----------------------------------------------------------------------------

    async def close_handler(self, handler: Any) -> None:
        try:
            await handler.handle_connection_closed()
        except Exception:  # a dying connection may already be half torn down
            _log.debug("closing a connection failed", exc_info=True)

    def reap(self, now: float | None = None) -> None:
        """Close connections silent for longer than 1.5 x their keepalive."""
        current = time.monotonic() if now is None else now
        for session, handler in list(self.live.values()):
            keepalive = getattr(session, "keep_alive", 0) or 0
            guard = getattr(getattr(handler, "reader", None), "guard", None)
            last = getattr(guard, "last_read", None)
            if keepalive <= 0 or last is None:
                continue
            if current - last > keepalive * _REAP_FACTOR:
                self.store.counters.mqtt_reaped += 1
                task = asyncio.ensure_future(self.close_handler(handler))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def drain(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class LosantRulesPlugin(BaseAuthPlugin, BaseTopicPlugin):  # type: ignore[misc]
    """amqtt plugin delegating to ``Rules``; every hook is wrapped: an exception must not drop a client."""

    @dataclass
    class Config:
        rules: Any = None

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.rules: Rules = self.config.rules

    async def authenticate(self, *, session: Any) -> bool | None:
        try:
            return await self.rules.authenticate(session)
        except Exception:
            _log.exception("authenticate failed; refusing the connection")
            return False

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Action | None = None
    ) -> bool | None:
        try:
            if action == Action.RECEIVE:
                return True  # subscriptions were vetted at SUBSCRIBE; wildcards over losant/ refused
            if session is None or topic is None:
                return False
            if action == Action.PUBLISH:
                return await self.rules.allow_publish(session, topic)
            return self.rules.allow_subscribe(session, topic)
        except Exception:
            _log.exception("topic check failed; denying")
            return False

    async def on_broker_client_connected(self, *, client_id: str, client_session: Any) -> None:
        try:
            self.rules.connected(client_id, client_session)
        except Exception:
            _log.exception("connect bookkeeping failed")

    async def on_broker_client_disconnected(self, *, client_id: str, client_session: Any) -> None:
        try:
            self.rules.disconnected(client_id, client_session)
        except Exception:
            _log.exception("disconnect bookkeeping failed")


class EmbeddedBroker:
    """amqtt with Losant's rules on 127.0.0.1: TCP and, optionally, WebSockets."""

    def __init__(
        self,
        store: Store,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_port: int | None = 0,
        throttle: bool = False,
        reap_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.host = host
        self._port = port
        self._ws_port = ws_port
        self.rules = Rules(store, throttle=throttle)
        self._reap_interval = reap_interval
        self._broker: Broker | None = None
        self._server: asyncio.Server | None = None
        self._ws_server: Any = None
        self._reaper: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self.port = 0
        self.ws_port: int | None = None

    async def start(self) -> None:
        amqtt_logger = logging.getLogger("amqtt")
        if amqtt_logger.level == logging.NOTSET:
            # amqtt logs tracebacks for ordinary refusals and disconnects
            amqtt_logger.setLevel(logging.CRITICAL)
        listeners: dict[str, Any] = {"default": {"type": "external", "bind": "-"}}
        if self._ws_port is not None:
            listeners["ws"] = {"type": "external", "bind": "-"}
        config = {
            "listeners": listeners,
            "plugins": {f"{__name__}.LosantRulesPlugin": {"rules": self.rules}},
        }
        broker = Broker(config)
        self.rules.broker = broker
        await broker.start()
        self._broker = broker
        try:
            self._server = await asyncio.start_server(self._on_tcp, self.host, self._port)
            self.port = self._server.sockets[0].getsockname()[1]
            if self._ws_port is not None:
                from websockets.asyncio.server import serve

                self._ws_server = await serve(
                    self._on_ws,
                    self.host,
                    self._ws_port,
                    subprotocols=["mqtt"],  # type: ignore[list-item]
                    max_size=MAX_PAYLOAD + 64 * 1024,
                )
                self.ws_port = next(iter(self._ws_server.sockets)).getsockname()[1]
            self._reaper = asyncio.create_task(self._reap_loop(), name="losant-emulator-reaper")
        except BaseException:
            await self.stop()
            raise

    def _track(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        broker = self._broker
        if broker is None:
            writer.close()
            return
        self._track()
        try:
            guarded = _GuardedStreamReader(reader, _InboundGuard(self.store.counters))
            await broker.external_connected(guarded, StreamWriterAdapter(writer), "default")
        except Exception:
            _log.debug("MQTT connection ended with an error", exc_info=True)
        finally:
            writer.close()

    async def _on_ws(self, websocket: Any) -> None:
        from amqtt.adapters import WebSocketsWriter

        broker = self._broker
        if broker is None:
            return
        self._track()
        try:
            reader = _guarded_ws_reader(websocket, _InboundGuard(self.store.counters))
            await broker.external_connected(reader, WebSocketsWriter(websocket), "ws")
        except Exception:
            _log.debug("MQTT-over-WebSocket connection ended with an error", exc_info=True)

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reap_interval)
            self.rules.reap()

    async def publish_command(self, device_id: str, name: str, payload: Any, time_ms: int) -> None:
        """Deliver a command on ``losant/<id>/command`` at QoS 0, in the form Losant's clients parse."""
        broker = self._broker
        if broker is None:
            return
        body = _json.encode({"name": name, "payload": payload, "time": to_ejson_date(time_ms)})
        await broker.internal_message_broadcast(f"losant/{device_id}/command", body, 0)

    # --- begin emu-rest block: publish / on_message for the REST side (the broker rewrite provides these) ---
    async def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        """Deliver a message to subscribers as the platform would (no publish ACL)."""
        broker = self._broker
        if broker is None:
            return
        await broker.internal_message_broadcast(topic, payload, qos)

    def on_message(self, listener: Callable[[str, str, bytes], None]) -> Callable[[], None]:
        """Call ``listener(client_id, topic, payload)`` for every accepted PUBLISH from a client;
        returns the function that removes it."""
        listeners: list[Callable[[str, str, bytes], None]] | None = getattr(self, "_message_listeners", None)
        if listeners is None:
            listeners = []
            self._message_listeners = listeners
            judge = self.rules.judge

            def judged(client_id: str, message: Any) -> _Verdict:
                verdict = judge(client_id, message)
                if verdict.allow:
                    for each in list(listeners):
                        each(client_id, message.topic or "", bytes(message.data or b""))
                return verdict

            self.rules.judge = judged  # type: ignore[method-assign]
        listeners.append(listener)
        return lambda: listeners.remove(listener) if listener in listeners else None
    # --- end emu-rest block ---

    def is_connected(self, device_id: str) -> bool:
        return device_id in self.rules.live

    async def disconnect(self, device_id: str) -> None:
        """Close the device's connection, if it has one (as Losant does for a deleted device)."""
        entry = self.rules.live.get(device_id)
        if entry is not None:
            await self.rules.close_handler(entry[1])

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for server in (self._server, self._ws_server):
            if server is not None:
                server.close()
        broker, self._broker = self._broker, None
        if broker is not None:
            with contextlib.suppress(Exception):
                await broker.shutdown()
        await self.rules.drain()
        if self._connections:
            # amqtt closed the sockets; give their loops a moment to notice, then insist
            _done, pending = await asyncio.wait(set(self._connections), timeout=2)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._ws_server is not None:
            await self._ws_server.wait_closed()
            self._ws_server = None
        for device_id in list(self.rules.live):
            self.rules.live.pop(device_id, None)
            self.store.set_connection(device_id, False, reason="emulator stopped")


"""The emulator's MQTT 3.1.1 server: TCP and WebSocket listeners, sessions, subscriptions and delivery.

Every packet is handled as it is read, in the connection's ``data_received``: a
state is judged and stored, its PUBACK written and a custom topic delivered
before the next packet is looked at, and a command goes straight into the
subscriber's socket buffer. There is no broker-wide queue for a command to wait
in behind state traffic, and delivery looks topics up in a dictionary instead
of scanning every subscription. The rules themselves live in ``_rules``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as _ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._access import session_allowed
from ._certs import DeviceCertificates
from ._limits import Limits, default_limits
from ._mqtt_codec import (
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PUBACK,
    PUBLISH,
    SUBSCRIBE,
    UNSUBSCRIBE,
    Connect,
    OversizeError,
    PacketReader,
    ProtocolError,
    encode_connack,
    encode_pingresp,
    encode_puback,
    encode_publish,
    encode_suback,
    encode_unsuback,
    parse_connect,
    parse_publish,
    parse_subscribe,
    parse_unsubscribe,
    valid_filter,
    valid_topic,
)
from ._mqtt_gate import Gate
from ._rules import (
    ACCEPTED,
    MAX_PAYLOAD,
    SERVER_UNAVAILABLE,
    UNACCEPTABLE_PROTOCOL,
    PublishVerdict,
    Rules,
    matches,
)

if TYPE_CHECKING:
    from aiohttp import web

    from .store import DeviceRecord, KeyRecord

__all__ = ["MqttServer", "MqttSession"]

_log = logging.getLogger("losant_async.testing.broker")

_REAP_FACTOR = 1.5
_SUBACK_FAILURE = 0x80
_NAMES = {CONNECT: "CONNECT", PUBLISH: "PUBLISH", SUBSCRIBE: "SUBSCRIBE", UNSUBSCRIBE: "UNSUBSCRIBE"}

MessageListener = Callable[[str, str, bytes], None]


class MqttSession:
    """One client connection, from its first byte to its close."""

    __slots__ = (
        "_abort",
        "_buffered",
        "_next_id",
        "_reader",
        "_server",
        "_write",
        "address",
        "closed",
        "device",
        "graceful",
        "keepalive",
        "key",
        "last_read",
        "last_tick",
        "opened_at",
        "opened_tick",
        "over_since",
        "peer_certificate",
        "request",
        "subscriptions",
    )

    def __init__(
        self,
        server: MqttServer,
        write: Callable[[bytes], None],
        abort: Callable[[], None],
        buffered: Callable[[], int] = lambda: 0,
        address: str = "",
    ) -> None:
        self._server = server
        self._write = write
        self._abort = abort
        self._buffered = buffered
        """Bytes written to this session and not yet taken by its peer."""
        limits = server.limits
        self._reader = PacketReader(
            limits.max_publish_bytes,
            per_type={
                CONNECT: limits.max_connect_bytes,
                SUBSCRIBE: limits.max_subscribe_bytes,
                UNSUBSCRIBE: limits.max_subscribe_bytes,
                PUBACK: 2,
                PINGREQ: 0,
                DISCONNECT: 0,
            },
        )
        self._next_id = 0
        self.address = address
        self.opened_at = server.loop.time()
        self.opened_tick = server.ticks
        self.over_since: float | None = None
        """When the session's output went over the soft limit (None: it is under)."""
        self.closed = False
        self.graceful = False
        self.device: DeviceRecord | None = None
        self.key: KeyRecord | None = None
        self.peer_certificate: bytes | None = None
        """The client certificate (DER) the TLS peer presented, if any: it then authenticates the CONNECT."""
        self.request: Connect | None = None
        self.keepalive = 0
        self.last_read = server.loop.time()
        self.last_tick = server.ticks
        self.subscriptions: dict[str, int] = {}

    @property
    def client_id(self) -> str:
        return self.device.id if self.device is not None else ""

    # -- inbound -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        server = self._server
        self.last_read = server.loop.time()
        self.last_tick = server.ticks
        try:
            for kind, flags, body in self._reader.feed(data):
                self._handle(kind, flags, body)
                if self.closed:
                    return
        except OversizeError as exc:
            self._server.rules.store.counters.mqtt_oversize_closed += 1
            name = _NAMES.get(exc.kind, f"packet type {exc.kind}")
            self.close("message over 256 KB" if exc.kind == PUBLISH else f"{name} over {exc.limit} bytes")
        except ProtocolError as exc:
            self.close(f"protocol error: {exc}")
        except Exception:  # a bug here must cost one connection, not the server
            _log.exception("handling an MQTT packet failed; closing the connection")
            self.close("emulator error")

    def _handle(self, kind: int, flags: int, body: bytes) -> None:
        if kind == PUBLISH and self.device is not None:
            self._on_publish(flags, body)
        elif self.device is None:
            if kind != CONNECT:
                raise ProtocolError("first packet is not CONNECT")
            self._on_connect(body)
        elif kind == PINGREQ:
            self._out(encode_pingresp())
        elif kind == PUBACK:
            pass  # outbound QoS 1 is not redelivered, so there is nothing to release
        elif kind == SUBSCRIBE:
            self._on_subscribe(flags, body)
        elif kind == UNSUBSCRIBE:
            packet_id, filters = parse_unsubscribe(flags, body)
            for topic_filter in filters:
                self._server.unsubscribe(self, topic_filter)
            self._out(encode_unsuback(packet_id))
        elif kind == DISCONNECT:
            self.graceful = True
            self.close(None)
        else:
            raise ProtocolError(f"unexpected packet type {kind}")

    def _on_connect(self, body: bytes) -> None:
        request = parse_connect(body)
        if not request.is_311:
            # MQTT 3.1 and 5: Losant speaks 3.1.1 only (3.1.2.2: CONNACK 1, then close)
            self._server.rules.store.counters.mqtt_connects_refused += 1
            self._write(encode_connack(UNACCEPTABLE_PROTOCOL))
            self.close(None, logged=False)
            return
        if self.peer_certificate is not None:
            admission = self._server.certificates.connect(self._server.rules, request, self.peer_certificate)
        else:
            admission = self._server.rules.connect(request)
        if admission.return_code != ACCEPTED or admission.device is None:
            self._write(encode_connack(admission.return_code))
            self.close(None, logged=False)
            return
        self.request = request
        self.keepalive = request.keepalive
        self.key = admission.key
        self.device = admission.device
        self._server.admit(self)
        self._write(encode_connack(ACCEPTED))

    def _on_publish(self, flags: int, body: bytes) -> None:
        server = self._server
        counters = server.rules.store.counters
        if (flags >> 1) & 3 == 2:
            counters.mqtt_qos2_closed += 1
            self.close("QoS 2 is not supported")
            return
        message = parse_publish(flags, body)
        if message.retain:
            counters.mqtt_retain_stripped += 1
        if len(message.payload) > MAX_PAYLOAD:
            counters.mqtt_oversize_closed += 1
            self.close("message over 256 KB")
            return
        device = self.device
        assert device is not None
        rules = server.rules
        if not session_allowed(rules.store, self.key, device, coverage=False):
            counters.mqtt_sessions_revoked += 1
            self.close("access revoked")
            return
        if not rules.within_limits(device.id, message.topic, "in"):
            rules.ban(device.id)
            self.close("throttled")
            return
        verdict = rules.publish(device, self.key, message.topic, message.payload)
        if message.qos:
            self._out(encode_puback(message.packet_id))
        if verdict is PublishVerdict.DENIED:
            return
        if verdict is PublishVerdict.DELIVER:
            server.deliver(device.application_id, message.topic, message.payload, message.qos)
        server.notify(device.id, message.topic, message.payload)

    def _on_subscribe(self, flags: int, body: bytes) -> None:
        packet_id, requests = parse_subscribe(flags, body)
        device = self.device
        assert device is not None
        codes: list[int] = []
        for topic_filter, qos in requests:
            if valid_filter(topic_filter) and self._server.rules.subscribe(device, self.key, topic_filter):
                granted = min(qos, 1)  # Losant has no QoS 2
                self._server.subscribe(self, topic_filter, granted)
                codes.append(granted)
            else:
                if not valid_filter(topic_filter):
                    self._server.rules.store.counters.mqtt_subscribes_denied += 1
                codes.append(_SUBACK_FAILURE)
        self._out(encode_suback(packet_id, codes))

    # -- outbound ----------------------------------------------------------------------------

    def send(self, topic: str, encoded_topic: bytes, payload: bytes, qos: int) -> None:
        """Deliver one message at ``qos`` (already capped by the subscription)."""
        if self.closed:
            return
        device = self.device
        rules = self._server.rules
        if device is not None and rules.throttle and not rules.within_limits(device.id, topic, "out"):
            rules.ban(device.id)
            self.close("throttled")
            return
        waiting = self._buffered()
        if waiting > self._server.limits.output_soft_bytes:
            # a slow consumer: QoS 0 is dropped, counted; QoS 1 cannot be, so the session ends
            if self.over_since is None:
                self.over_since = self._server.loop.time()
            counters = rules.store.counters
            if not qos:
                counters.mqtt_slow_consumer_dropped += 1
                return
            counters.mqtt_slow_consumer_closed += 1
            self.close("slow consumer: QoS 1 message over the output limit")
            return
        self.over_since = None
        if qos:
            self._next_id = self._next_id % 65535 + 1
            self._out(encode_publish(encoded_topic, payload, 1, self._next_id))
        else:
            self._out(encode_publish(encoded_topic, payload))

    def stalled(self, now: float) -> bool:
        """Whether the peer has left more than the soft limit unread for longer than the stall limit."""
        limits = self._server.limits
        if self._buffered() <= limits.output_soft_bytes:
            self.over_since = None
            return False
        if self.over_since is None:
            self.over_since = now
        return now - self.over_since > limits.output_stall_s

    def refuse(self, connack: bytes) -> None:
        """Answer a connection refused before it was registered, and close it."""
        self.closed = True
        with contextlib.suppress(Exception):
            self._write(connack)
            self._abort()

    def _out(self, data: bytes) -> None:
        """Write, unless the peer has left more than the hard limit unread: then the session ends."""
        if self._buffered() + len(data) > self._server.limits.output_hard_bytes:
            self._server.rules.store.counters.mqtt_slow_consumer_closed += 1
            self.close("slow consumer: output over the limit")
            return
        self._write(data)

    # -- closing -----------------------------------------------------------------------------

    def close(self, reason: str | None, *, logged: bool = True) -> None:
        """Close the connection (buffered packets, such as a CONNACK, are still sent)."""
        if self.closed:
            return
        self.closed = True
        self._server.release(self, reason if logged else None)
        with contextlib.suppress(Exception):
            self._abort()

    def connection_lost(self) -> None:
        if not self.closed:
            self.closed = True
            self._server.release(self, "connection lost")


class _TcpProtocol(asyncio.Protocol):
    __slots__ = ("_server", "session", "transport")

    def __init__(self, server: MqttServer) -> None:
        self._server = server
        self.session: MqttSession | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        session = MqttSession(self._server, transport.write, transport.close, transport.get_write_buffer_size, address)
        self.session = session
        tls = transport.get_extra_info("ssl_object")
        if tls is not None:
            session.peer_certificate = tls.getpeercert(binary_form=True)
        self._server.opened(session)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.data_received(data)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.connection_lost()


class MqttServer:
    """Listeners plus the registry of sessions and subscriptions, per application."""

    def __init__(
        self,
        rules: Rules,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_port: int | None = 0,
        ssl: _ssl.SSLContext | None = None,
        reap_interval: float = 1.0,
        limits: Limits | None = None,
    ) -> None:
        self.rules = rules
        self.limits = limits or default_limits()
        rules.max_json_depth = self.limits.max_json_depth
        self.host = host
        self._port = port
        self._ws_port = ws_port
        self._ssl = ssl
        self.certificates = DeviceCertificates(rules.store)
        if ssl is not None:
            self.certificates.prepare(ssl)
        self._reap_interval = reap_interval
        self.loop = asyncio.get_running_loop()
        self.port = 0
        self.ws_port: int | None = None
        self.live: dict[str, MqttSession] = {}
        self.ticks = 0
        """Reaper rounds so far: silence is also counted in rounds, so a starved event loop reaps nobody."""
        self._sessions: set[MqttSession] = set()
        self._gate = Gate(self.limits, rules.store.counters)
        # application id -> exact topic -> subscribed session -> granted QoS
        self._exact: dict[str, dict[str, dict[MqttSession, int]]] = {}
        # application id -> (session, filter) -> granted QoS, for filters with wildcards
        self._wild: dict[str, dict[tuple[MqttSession, str], int]] = {}
        self._listeners: list[MessageListener] = []
        self._server: asyncio.Server | None = None
        self._ws_runner: web.AppRunner | None = None
        self._reaper: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            self._server = await self.loop.create_server(
                lambda: _TcpProtocol(self), self.host, self._port, ssl=self._ssl
            )
            self.port = self._server.sockets[0].getsockname()[1]
            if self._ws_port is not None:
                await self._start_ws(self._ws_port)
            self._reaper = asyncio.create_task(self._reap_loop(), name="losant-emulator-reaper")
        except BaseException:
            await self.stop()
            raise

    async def _start_ws(self, port: int) -> None:
        from aiohttp import web

        from ._http_listener import GuardedSite, Listener

        app = web.Application()
        app.router.add_get("/{tail:.*}", self._on_ws)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._ws_runner = runner
        # the HTTP upgrade is bounded like REST (head deadline, connection cap); the session then like TCP's
        listener = Listener(self.limits, self.rules.store.counters, max_connections=self.limits.max_mqtt_connections)
        site = GuardedSite(runner, self.host, port, listener, ssl_context=self._ssl)
        await site.start()
        self.ws_port = runner.addresses[0][1]

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.close("emulator stopped")
        if self._ws_runner is not None:
            await self._ws_runner.cleanup()
            self._ws_runner = None
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reap_interval)
            self.ticks += 1
            self.reap()

    def reap(self) -> None:
        """Close connections silent for longer than 1.5 x their keepalive, or without a CONNECT.

        Silence must hold both in seconds and in reaper rounds: when the loop is
        too busy to run the reaper on time, it is also too busy to read the pings
        the clients did send, and nobody is reaped for the loop's delay.
        """
        now = self.loop.time()
        interval = self._reap_interval
        limits = self.limits
        counters = self.rules.store.counters
        for session in list(self._sessions):
            silent = now - session.last_read
            rounds = (self.ticks - session.last_tick) * interval
            if session.device is None:
                # absolute: a CONNECT dripped a byte at a time does not restart it (but, as for
                # silence, the deadline holds in reaper rounds too: a starved loop reaps nobody)
                since = min(now - session.opened_at, (self.ticks - session.opened_tick) * interval)
                if since > limits.connect_deadline_s:
                    counters.mqtt_connect_timeouts += 1
                    session.close(None, logged=False)
            elif session.keepalive and min(silent, rounds) > session.keepalive * _REAP_FACTOR:
                counters.mqtt_reaped += 1
                session.close("keepalive expired")
            elif session.stalled(now):
                counters.mqtt_slow_consumer_closed += 1
                session.close("slow consumer: output stalled over the limit")
            elif not session_allowed(self.rules.store, session.key, session.device, coverage=False):
                counters.mqtt_sessions_revoked += 1
                session.close("access revoked")

    def revalidate(self) -> int:
        """End every session its credentials no longer allow (a key deleted, deactivated or narrowed)."""
        ended = 0
        for session in list(self.live.values()):
            device = session.device
            if device is not None and not session_allowed(self.rules.store, session.key, device):
                self.rules.store.counters.mqtt_sessions_revoked += 1
                session.close("access revoked")
                ended += 1
        return ended

    # -- WebSockets --------------------------------------------------------------------------

    async def _on_ws(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(protocols=("mqtt",), max_msg_size=self.limits.max_publish_bytes + 16)
        await ws.prepare(request)
        outbox = bytearray()
        wake = asyncio.Event()
        done = False

        def write(data: bytes) -> None:
            outbox.extend(data)
            wake.set()

        def abort() -> None:
            nonlocal done
            done = True
            wake.set()

        async def sender() -> None:
            while True:
                await wake.wait()
                wake.clear()
                if outbox:
                    chunk = bytes(outbox)
                    outbox.clear()
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.send_bytes(chunk)
                if done:
                    await ws.close()
                    return

        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        session = MqttSession(self, write, abort, lambda: len(outbox), address)
        self.opened(session)
        if session.closed:
            await ws.send_bytes(bytes(outbox))
            await ws.close()
            return ws
        send_task = asyncio.create_task(sender(), name="losant-emulator-ws-sender")
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    session.data_received(message.data)
                elif message.type == WSMsgType.TEXT:
                    session.close("text frame on an MQTT WebSocket")
                if session.closed:
                    break
        finally:
            session.connection_lost()
            abort()
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(send_task, 2)
            if not send_task.done():
                send_task.cancel()
                await asyncio.gather(send_task, return_exceptions=True)
        return ws

    # -- registry ----------------------------------------------------------------------------

    def opened(self, session: MqttSession) -> None:
        """Register a new connection within the caps, or refuse it (CONNACK 3, then closed)."""
        if not self._gate.enter(session, len(self._sessions)):
            session.refuse(encode_connack(SERVER_UNAVAILABLE))
            return
        self._sessions.add(session)

    def admit(self, session: MqttSession) -> None:
        """Make an accepted session the device's connection; a second one displaces the first."""
        device = session.device
        assert device is not None
        self._gate.settled(session)
        store = self.rules.store
        old = self.live.get(device.id)
        if old is not None:
            store.counters.mqtt_displaced += 1
            old.close("displaced by a new connection")
        self.live[device.id] = session
        store.set_connection(device.id, True)

    def release(self, session: MqttSession, reason: str | None) -> None:
        """Forget a closing session: subscriptions, liveness, and its will when it died abnormally."""
        if session not in self._sessions:
            return
        self._sessions.discard(session)
        if session.device is None:
            self._gate.settled(session)
        for topic_filter in list(session.subscriptions):
            self.unsubscribe(session, topic_filter)
        device = session.device
        if device is None or self.live.get(device.id) is not session:
            return
        del self.live[device.id]
        self.rules.forget(device.id)
        self.rules.store.set_connection(device.id, False, reason=reason)
        request = session.request
        if not session.graceful and request is not None and request.will_topic:
            self._publish_will(session, device, request)

    def _publish_will(self, session: MqttSession, device: DeviceRecord, request: Connect) -> None:
        topic = request.will_topic or ""
        if not valid_topic(topic) or len(request.will_payload) > MAX_PAYLOAD:
            return
        verdict = self.rules.publish(device, session.key, topic, request.will_payload)
        if verdict is PublishVerdict.DELIVER:
            self.deliver(device.application_id, topic, request.will_payload, min(request.will_qos, 1))
        if verdict is not PublishVerdict.DENIED:
            self.notify(device.id, topic, request.will_payload)

    def subscribe(self, session: MqttSession, topic_filter: str, qos: int) -> None:
        device = session.device
        assert device is not None
        app = device.application_id
        session.subscriptions[topic_filter] = qos
        if "+" in topic_filter or "#" in topic_filter:
            self._wild.setdefault(app, {})[(session, topic_filter)] = qos
        else:
            self._exact.setdefault(app, {}).setdefault(topic_filter, {})[session] = qos

    def unsubscribe(self, session: MqttSession, topic_filter: str) -> None:
        if session.subscriptions.pop(topic_filter, None) is None or session.device is None:
            return
        app = session.device.application_id
        if "+" in topic_filter or "#" in topic_filter:
            wild = self._wild.get(app)
            if wild is not None:
                wild.pop((session, topic_filter), None)
            return
        topics = self._exact.get(app)
        subscribers = topics.get(topic_filter) if topics is not None else None
        if subscribers is not None:
            subscribers.pop(session, None)
            if not subscribers and topics is not None:
                del topics[topic_filter]

    # -- delivery ----------------------------------------------------------------------------

    def deliver(self, application_id: str | None, topic: str, payload: bytes, qos: int) -> int:
        """Send to the subscribers of one application (None: every application); how many got it."""
        apps = [application_id] if application_id is not None else list({*self._exact, *self._wild})
        encoded = topic.encode()
        custom = not topic.startswith("losant/")
        sent = 0
        for app in apps:
            subscribers = self._exact.get(app, {}).get(topic)
            if subscribers:
                for session, granted in list(subscribers.items()):
                    session.send(topic, encoded, payload, min(qos, granted))
                    sent += 1
            wild = self._wild.get(app)
            if wild:
                for (session, topic_filter), granted in list(wild.items()):
                    if matches(topic_filter, topic) and (not custom or self.rules.may_receive(session.key, topic)):
                        session.send(topic, encoded, payload, min(qos, granted))
                        sent += 1
        return sent

    def on_message(self, listener: MessageListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def notify(self, client_id: str, topic: str, payload: bytes) -> None:
        for listener in list(self._listeners):
            try:
                listener(client_id, topic, payload)
            except Exception:
                _log.exception("an MQTT message listener failed")

    def session_of(self, device_id: str) -> MqttSession | None:
        return self.live.get(device_id)

    def connection_count(self) -> int:
        return len(self._sessions)

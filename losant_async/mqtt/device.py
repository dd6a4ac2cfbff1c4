"""``Device``: one Losant device over MQTT that reconnects by itself and loses no state (the public facade)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from .. import _env
from .._state import Stamper
from ..errors import ValidationError
from ._config import (
    LOSANT_BROKER,
    Certificate,
    CommandOverflow,
    DeviceConfig,
    Proxy,
    Transport,
    options_from_env,
)
from ._inbox import CommandCallback, Inbox
from ._lifecycle import Lifecycle
from ._outbox import MemoryOutbox, Outbox
from ._payloads import Command, check_qos, check_retain, encode_payload, encode_state
from ._session import Session
from ._status import Status
from ._streams import Message, Stream
from ._supervisor import Backoff, ConnectionEvent
from ._throttle import ThrottleConfig, TokenBucket
from ._topics import check_publish_topic, check_subscribe_filter, state_topic
from ._waits import within

__all__ = ["LOSANT_BROKER", "CommandCallback", "Device", "DeviceStats", "Transport"]

log: logging.Logger = logging.getLogger("losant_async.mqtt")

_D = TypeVar("_D", bound="Device")


@dataclass(frozen=True)
class DeviceStats:
    """Counters of one device (a snapshot), or of a fleet (``DeviceStats.total``).

    ``sent``: messages handed to the connection; ``acked``: QoS 1 messages the
    broker acknowledged; ``dropped``: messages the outbox discarded
    (drop_oldest); ``outbox_depth``: messages held now; ``throttle_waited``:
    seconds of waiting the throttle imposed; ``outbox_waited``: seconds senders
    waited for room in a full outbox; ``malformed_commands``: commands that
    could not be decoded; ``commands_received``: commands decoded and
    delivered; ``reconnects``: successful reconnects; ``unsent_at_close``:
    messages still queued when the device closed (kept by a persistent outbox,
    lost with a memory one); ``commands_dropped``: commands an async
    ``on_command`` callback never got, its queue being full (drop_oldest).
    """

    sent: int = 0
    acked: int = 0
    dropped: int = 0
    outbox_depth: int = 0
    throttle_waited: float = 0.0
    outbox_waited: float = 0.0
    malformed_commands: int = 0
    commands_received: int = 0
    reconnects: int = 0
    unsent_at_close: int = 0
    commands_dropped: int = 0

    @classmethod
    def total(cls, stats: Iterable[DeviceStats]) -> DeviceStats:
        """The sum of several devices' counters, field by field."""
        sums: dict[str, Any] = {f.name: 0 for f in dataclasses.fields(cls)}
        for one in stats:
            for name in sums:
                sums[name] += getattr(one, name)
        return cls(**sums)


class Device:
    """A Losant device: ``async with Device(id, key, secret) as device: ...``.

    Entering connects (CONNECT, CONNACK, subscriptions) and returns when the
    device is ready; leaving flushes what is queued (bounded by
    ``close_timeout``, reconnecting if need be) and disconnects, reporting
    what it could not deliver (see ``aclose``). Cancellation at any await
    closes what was opened before it propagates. In between a supervisor reconnects
    after any fault with backoff and jitter, resubscribes, and re-sends.

    Delivery: ``send_state`` returns once the state is accepted, either handed
    to the connection or held in the outbox (while disconnected, throttled or
    behind earlier messages). With ``qos=1`` a message leaves the outbox only
    when the broker acknowledged it, so a cut connection re-sends every
    unacknowledged state in order with its original timestamp (a duplicate is
    harmless: Losant keys state by time). With ``qos=0`` a message handed to a
    connection that then breaks can be lost. ``flush()`` waits until all is
    written (QoS 1: acknowledged). States stamped here (no ``time``) get
    strictly increasing milliseconds, so none overwrites another.

    ``throttle``: None keeps Losant's limits only against broker.losant.com,
    False never, True or a ``ThrottleConfig`` always: pass ``throttle=True``
    for a private Losant instance, which enforces the same limits.
    ``transport``: "tls" (8883), "tcp" (1883), "wss" (secure WebSockets, 443)
    or "websockets" (plain, 80); ``port`` overrides. TLS verifies against the
    system's CAs unless ``tls_context`` is given; a certificate that fails
    verification raises ``TLSVerificationError`` and is not retried.
    ``proxy``: an ``http://``, ``socks4://`` or ``socks5://`` URL (or a
    ``Proxy``) the connection goes through (needs PySocks).

    ``certificate=(cert_file, key_file)`` instead of ``key`` and ``secret``:
    the device authenticates with an X.509 client certificate (Losant's
    "Device Certificates": signed by a CA registered in the application, and
    registered itself), over TLS only; no username or password is sent. The
    certificate is loaded into ``tls_context`` when one is given.

    Refused credentials: a refusal (CONNACK 4/5) on the first connect of these
    credentials in this process raises ``AuthenticationRefusedError`` from
    entering, ``send_state`` and ``wait_connected``. A refusal (CONNACK 3, 4
    or 5, or their MQTT 5 codes) of credentials that connected before is a ban
    (Losant bans a device that bursts beyond its limits for 30 s, longer for
    repeat offenders): on any host the device waits at least
    ``backoff.ban_initial`` (30 s), doubling on repeats up to
    ``backoff.ban_cap`` (1 h), with jitter, and retries; no refusal is retried
    sooner than ``backoff.refusal_floor`` (5 s). ``transport="tls"`` against a
    plain-TCP port raises ``TLSHandshakeError`` from entering. ``ban_detection``
    (default: on against broker.losant.com and wherever the throttle is on,
    so ``throttle=True`` brings it for a private instance) also treats a
    disconnect right after a burst as a ban.

    Entering waits up to ``ready_timeout`` seconds for the first connection
    (then raises ``ConnectionLostError`` naming the last problem);
    ``wait_ready=False`` returns at once and lets the device start offline,
    its states waiting in the outbox. ``max_inflight`` bounds unacknowledged
    QoS 1 messages. ``command_overflow``: what a command stream that holds
    ``stream_size`` commands does with the next: "drop_oldest" (counted in
    ``Stream.dropped``) or "wait" (stop reading from the connection until the
    consumer catches up; a consumer stalled past the keepalive loses the
    connection, which then reconnects).

    A fatal failure (refused credentials, a failed certificate check, a bug)
    surfaces at once: on the next call, and as a FAILED event in ``events()``.
    """

    _gateway = False

    def __init__(
        self,
        device_id: str,
        key: str | None = None,
        secret: str | None = None,
        *,
        certificate: Certificate | None = None,
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
        command_overflow: CommandOverflow = "drop_oldest",
        proxy: Proxy | str | None = None,
    ) -> None:
        _env.configure_logging()  # LOSANT_LOG (also applied on import); a bad value is a ValidationError
        if outbox is not None and not isinstance(outbox, Outbox):
            raise ValidationError("outbox must be an Outbox (MemoryOutbox or SQLiteOutbox)")
        cfg = DeviceConfig.build(
            device_id, key, secret, certificate=certificate, host=host, port=port, transport=transport, tls_context=tls_context, qos=qos,
            keepalive=keepalive, throttle=throttle, backoff=backoff, ban_detection=ban_detection,
            max_inflight=max_inflight, connect_timeout=connect_timeout, close_timeout=close_timeout,
            wait_ready=wait_ready, ready_timeout=ready_timeout, websocket_path=websocket_path,
            stream_size=stream_size, command_overflow=command_overflow, proxy=proxy,
        )
        self._config = cfg
        self.device_id: str = cfg.device_id
        self.host: str = cfg.host
        self.port: int = cfg.port
        self.transport: Transport = cfg.transport
        self.qos: int = cfg.qos
        self.keepalive: int = cfg.keepalive
        self._state_topic = state_topic(self.device_id)
        # Losant keeps one state per millisecond: stamps of this device never repeat.
        self._stamp = Stamper()
        self._status = Status(self.device_id)
        life = self._life = Lifecycle(cfg, outbox=outbox if outbox is not None else MemoryOutbox(), status=self._status)
        # The parts a send or a gateway uses, bound here: no hop through the lifecycle per message.
        self._inbox: Inbox = life.inbox
        self._session: Session = life.session
        self._check_usable: Callable[[], None] = life.check_usable
        self._spawn = life.tasks.spawn

    @classmethod
    def from_env(cls: type[_D], *, environ: Mapping[str, str] | None = None, **kwargs: Any) -> _D:
        """A device from ``LOSANT_DEVICE_ID``, ``LOSANT_ACCESS_KEY``, ``LOSANT_ACCESS_SECRET`` and,
        optionally, ``LOSANT_MQTT_HOST``, ``LOSANT_MQTT_PORT``, ``LOSANT_MQTT_TRANSPORT``.

        Keyword arguments are the constructor's and win over the environment. A
        missing or malformed variable raises ``ValidationError`` naming it (never its value).
        """
        options = options_from_env(environ)
        options.update(kwargs)
        device_id, key, secret = options.pop("device_id"), options.pop("key"), options.pop("secret")
        return cls(device_id, key, secret, **options)

    # -- life -----------------------------------------------------------------------------
    async def __aenter__(self: _D) -> _D:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # The count of what was not delivered is in stats and logged; a with block has no result.
        await self.aclose(flush=exc_type is None)

    async def start(self) -> None:
        """Connect (what ``async with`` does on entry). Prefer ``async with``."""
        await self._life.start()

    async def aclose(self, *, flush: bool = True) -> int:
        """Flush (bounded by ``close_timeout``), disconnect and stop everything. Idempotent.

        Disconnected, the device keeps reconnecting while it flushes. Returns how many
        queued messages were not delivered (0: all were); a non-zero count is logged (a
        WARNING naming the device, when a memory outbox loses them) and kept in
        ``stats.unsent_at_close``.
        """
        return await self._life.aclose(flush=flush)

    def __del__(self) -> None:
        life = getattr(self, "_life", None)
        if life is not None and life.entered and not life.closed:
            warnings.warn(f"{self!r} was never closed; use 'async with'", ResourceWarning, source=self, stacklevel=1)

    def __repr__(self) -> str:
        state = "closed" if self._life.closed else "connected" if self.connected else "disconnected"
        return f"{type(self).__name__}(device_id={self.device_id!r}, host={self.host!r}, port={self.port}, {state})"

    # -- state ----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while a connection is up and subscribed."""
        return self._life.connected

    @property
    def stats(self) -> DeviceStats:
        session = self._session
        outbox = session.outbox
        supervisor = self._life.supervisor
        return DeviceStats(
            sent=session.sent,
            acked=session.acked,
            dropped=outbox.dropped,
            outbox_depth=outbox.depth,
            throttle_waited=session.throttle.waited if session.throttle else 0.0,
            outbox_waited=outbox.waited,
            malformed_commands=self._inbox.malformed,
            commands_received=self._inbox.commands,
            reconnects=supervisor.reconnects if supervisor else 0,
            unsent_at_close=self._life.unsent_at_close,
            commands_dropped=self._inbox.callbacks_dropped,
        )

    @property
    def _failure(self) -> BaseException | None:
        """The fatal error that stopped this device, if any (the simulator names failed devices by it)."""
        return self._life.failure

    def _join_fleet(self, tls_context: ssl.SSLContext | None, connect_bucket: TokenBucket | None) -> None:
        """Fleet's settings: a shared TLS context (unless this device brought one) and the connection budget."""
        session = self._session
        if tls_context is not None and self._config.uses_tls and session.tls_context is None:
            session.tls_context = tls_context
        session.connect_bucket = connect_bucket

    @property
    def _needs_tls_context(self) -> bool:
        return self._config.uses_tls and self._session.tls_context is None

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return when connected; ``TimeoutError`` after ``timeout`` s; the fatal error if any."""
        if timeout is None:
            await self._life.wait_connected()
            return
        await within(self._life.wait_connected(), timeout,
                     lambda: TimeoutError(f"device {self.device_id} did not connect within {timeout} s"))

    def events(self, maxsize: int = 100) -> Stream[ConnectionEvent]:
        """Connection events from now on (``async for`` or ``async with``); a FAILED one comes first if failed."""
        return self._status.stream(maxsize, ended=self._life.closed)

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

        ``time`` is an aware datetime or epoch ms, sent as given; None stamps the
        time of this call (strictly after this device's previous stamp). Returns
        once the state is accepted (handed to the connection, or held in the
        outbox). A full outbox with policy "wait" makes this wait, or raise
        ``OutboxFullError`` when ``wait=False``. Bad data raises a
        ``ValidationError`` before anything is sent.
        """
        self._check_usable()
        payload = encode_state(data, time, flow_version=flow_version, now=self._stamp() if time is None else None)
        await self._session.send(self._state_topic, payload, self.qos, wait)

    async def publish(self, topic: str, payload: object, qos: int = 0, *, retain: bool = False, wait: bool = True) -> None:
        """Publish to a custom topic (or, for a gateway, any device's Losant topic).

        ``payload``: bytes as is, str as UTF-8, anything else as JSON. A non-gateway
        publishing to another device's ``losant/`` topic gets ``TopicNotAllowedError``.
        """
        self._check_usable()
        qos = check_qos(qos)
        check_retain(retain)
        check_publish_topic(topic, self._inbox.own_ids, gateway=self._gateway)
        await self._session.send(topic, encode_payload(payload), qos, wait)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued is written (QoS 1: acknowledged by the broker)."""
        if timeout is None:
            await self._life.flush()
            return
        await within(self._life.flush(), timeout,
                     lambda: TimeoutError(f"device {self.device_id} did not flush within {timeout} s"))

    # -- receiving ----------------------------------------------------------------------
    def commands(self) -> Stream[Command]:
        """Commands from now on: ``async for command in device.commands()`` (or ``async with``)."""
        return self._inbox.command_stream(self.device_id)

    def on_command(self, callback: CommandCallback) -> Callable[[], None]:
        """Call ``callback(command)`` for each command (a coroutine function runs in the device's task group).

        Returns a function that removes the callback.
        """
        return self._inbox.add_callback(self.device_id, callback)

    # -- custom subscriptions -------------------------------------------------------------
    def subscribe(self, topic_filter: str, qos: int = 0, *, maxsize: int | None = None) -> _Subscription:
        """``async with device.subscribe("custom/#") as messages: async for m in messages: ...``.

        Subscribes on entry (waiting for SUBACK when connected), again after every
        reconnect, and unsubscribes on exit.
        """
        self._check_usable()
        check_subscribe_filter(topic_filter, self._inbox.own_ids, gateway=self._gateway)
        return _Subscription(self._inbox, self._session, topic_filter, check_qos(qos),
                             maxsize or self._config.stream_size)


class _Subscription:
    """The life of one custom subscription, as an ``async with`` block."""

    def __init__(self, inbox: Inbox, session: Session, topic_filter: str, qos: int, maxsize: int) -> None:
        self._inbox = inbox
        self._session = session
        self.topic_filter = topic_filter
        self.qos = qos
        self._stream: Stream[Message] = Stream(maxsize)

    async def __aenter__(self) -> Stream[Message]:
        if self._inbox.add_filter(self.topic_filter, self.qos, self._stream):
            try:
                await self._session.subscribe_or_raise(self.topic_filter, self.qos)
            except BaseException:
                self._inbox.remove_filter(self.topic_filter, self._stream)
                raise
        return self._stream

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stream.end()
        if self._inbox.remove_filter(self.topic_filter, self._stream):
            await asyncio.shield(self._session.unsubscribe(self.topic_filter))

"""One device's life: start, a fatal failure, flush and close; it owns the device's session, inbox and task."""

from __future__ import annotations

import asyncio
import logging

from ..errors import ConnectionLostError, DeviceClosedError, MQTTError
from ._config import DeviceConfig
from ._connection import default_tls_context
from ._inbox import Inbox
from ._outbox import Outbox, SQLiteOutbox
from ._session import Session
from ._status import Status
from ._supervisor import ConnectionEvent, ConnectionState, KnownCredentials, Supervisor
from ._tasks import Tasks
from ._waits import settle, within

__all__ = ["Lifecycle"]

log = logging.getLogger("losant_async.mqtt")


class Lifecycle:
    """Starts, fails and closes one device; ``Device`` is its public face.

    ``start()`` connects (and waits until ready, unless ``wait_ready=False``);
    ``fail(exc)`` makes a fatal error surface at once, on the next call
    (``check_usable``) and to every waiter; ``aclose(flush)`` flushes (bounded by
    ``close_timeout``), disconnects and stops everything, once, whoever calls.
    Connection events go to ``status``.
    """

    __slots__ = ("_close_task", "_flush_task", "_ready", "closed", "closing", "config", "entered", "failure",
                 "inbox", "session", "status", "supervisor", "tasks", "unsent_at_close")

    def __init__(self, config: DeviceConfig, *, outbox: Outbox, status: Status) -> None:
        self.config = config
        self.status = status
        self.tasks = Tasks(config.device_id, crashed=self._crashed)
        self.inbox = Inbox(config.device_id, stream_size=config.stream_size, overflow=config.command_overflow,
                           spawn=self.tasks.spawn, pause=self._pause_reading)
        self.session = Session(config, outbox=outbox, inbox=self.inbox, on_connected=self._on_connected,
                               on_disconnected=status.notify, failure=lambda: self.failure)
        self.supervisor: Supervisor | None = None
        self._ready: asyncio.Future[None] | None = None
        self._close_task: asyncio.Future[None] | None = None
        self._flush_task: asyncio.Future[None] | None = None
        #: Messages still queued when the device closed.
        self.unsent_at_close = 0
        #: The fatal error, once there is one.
        self.failure: BaseException | None = None
        self.entered = False
        self.closing = False
        self.closed = False

    async def start(self) -> None:
        if self.entered:
            raise MQTTError("a Device can be started only once; create a new one")
        self.entered = True
        cfg = self.config
        session = self.session
        try:
            if cfg.uses_tls and session.tls_context is None:
                session.tls_context = await default_tls_context()
            await session.outbox.open()
        except BaseException:
            self.closed = True  # nothing was started that needs stopping
            raise
        self._ready = asyncio.get_running_loop().create_future()
        self.supervisor = supervisor = Supervisor(
            connect=session.connect,
            serve=session.serve,  # type: ignore[arg-type]
            emit=self.status.emit,
            fail=self.fail,
            backoff=cfg.backoff,
            ban_detection=cfg.ban_detection,
            # Throttled, the device stays within the limits by itself: only a burst beyond the
            # connection limit suggests a ban. Unthrottled, Losant's per-topic limit is the line.
            burst_threshold=cfg.throttle.per_connection if cfg.throttle else 30,
            activity=session.activity,
            is_closing=lambda: self.closing,
            lost_reason=lambda c: c.lost_reason(),  # type: ignore[attr-defined]
            device_id=cfg.device_id,
            credentials=KnownCredentials.digest(cfg.host, str(cfg.port), cfg.device_id, *cfg.credential),
        )
        self.tasks.start(supervisor.run, lambda: self.closing)
        if not cfg.wait_ready:
            return
        ready = self._ready
        try:
            # asyncio.wait, not wait_for: a cancellation landing as the device gets ready is
            # raised here (3.10/3.11's wait_for can drop it), and the device is closed below.
            done, _ = await asyncio.wait({ready}, timeout=cfg.ready_timeout)
        except BaseException:
            await self.aclose(flush=False)
            raise
        error = ready.exception() if done else None
        if not done or error is not None:
            await self.aclose(flush=False)
            if error is not None:
                raise error
            last = f" (last: {self.status.last_problem})" if self.status.last_problem else ""
            raise ConnectionLostError(
                f"device {cfg.device_id} could not connect to {cfg.host}:{cfg.port} within "
                f"{cfg.ready_timeout:g} s{last}"
            )

    @property
    def connected(self) -> bool:
        """True while a connection is up and subscribed."""
        conn = self.session.conn
        return conn is not None and not conn.is_lost

    def check_usable(self) -> None:
        """Raise the fatal error, or ``DeviceClosedError`` when not started or closed."""
        if self.failure is not None:
            raise self.failure
        if self.closing or self.closed:
            raise DeviceClosedError(f"device {self.config.device_id} is closed")
        if not self.entered:
            raise DeviceClosedError(f"device {self.config.device_id} is not started; use 'async with'")

    def fail(self, exc: BaseException) -> None:
        """A fatal error: kept, raised by the next call, and handed to whoever waits."""
        if self.failure is None:
            self.failure = exc
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(exc)
            self._ready.exception()
        outbox = self.session.outbox
        # Senders waiting for room would wait forever.
        for event in (outbox._space, outbox._empty):
            if event is not None:
                event.set()
        self.status.notify()
        self.inbox.fail(exc)

    def _crashed(self, error: BaseException) -> None:
        self.status.emit(ConnectionEvent(ConnectionState.FAILED, f"internal error: {error!r}"))
        self.fail(error)

    def _on_connected(self) -> None:
        self.status.emit(ConnectionEvent(ConnectionState.CONNECTED, "connected"))
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        self.status.notify()

    def _pause_reading(self, paused: bool) -> None:
        self.session.pause_reading(paused)

    async def wait_connected(self) -> None:
        while True:
            self.check_usable()
            if self.connected:
                return
            await self.status.changed()

    async def flush(self) -> None:
        session = self.session
        while True:
            self.check_usable()
            await session.outbox.wait_empty()
            self.check_usable()
            await session.drained()
            if not session.outbox.depth:
                return

    async def aclose(self, *, flush: bool) -> int:
        if not self.entered:
            self.closed = True
            return 0
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close(flush))
        try:
            await asyncio.shield(self._close_task)
        except asyncio.CancelledError:
            # Cancelled while closing: stop flushing, but finish closing (bounded: the DISCONNECT
            # waits 2 s at most) before the cancellation goes on, so no socket or task outlives it.
            flushing = self._flush_task
            if flushing is not None:
                flushing.cancel()
            await settle(self._close_task)
            raise
        return self.unsent_at_close

    async def _close(self, flush: bool) -> None:
        session = self.session
        device_id = self.config.device_id
        if flush and self.failure is None and (session.outbox.depth or session.unacked):
            self._flush_task = asyncio.ensure_future(self.flush())
            try:
                await within(self._flush_task, self.config.close_timeout, asyncio.TimeoutError)
            except (Exception, asyncio.TimeoutError, asyncio.CancelledError) as exc:
                log.info("device %s: closing with messages unflushed: %r", device_id, exc,
                         extra={"device_id": device_id})
        self.closing = True
        try:
            await self.tasks.stop()
            await session.close()
            self._report_unsent(session.outbox)
            await session.outbox.aclose()
        finally:
            self.closed = True
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(DeviceClosedError(f"device {device_id} was closed before it connected"))
                self._ready.exception()
            self.status.emit(ConnectionEvent(ConnectionState.CLOSED, "closed"))
            self.inbox.end()
            self.status.end()
            self.status.notify()

    def _report_unsent(self, outbox: Outbox) -> None:
        unsent = self.unsent_at_close = outbox.depth
        if not unsent:
            return
        device_id = self.config.device_id
        extra = {"device_id": device_id}
        if isinstance(outbox, SQLiteOutbox):
            log.info("device %s: closed with %d messages unsent, kept in its outbox file for the next start",
                     device_id, unsent, extra=extra)
        else:
            log.warning("device %s: closed with %d messages unsent, lost with its memory outbox (not delivered "
                        "within close_timeout=%gs)", device_id, unsent, self.config.close_timeout, extra=extra)

"""The reconnect loop: connect, serve, classify why the connection ended, wait, again.

The policy half (``Backoff``, ``Activity``, ``classify``) is pure and takes an
injected clock and random source, so its schedule is unit-tested without sleeping.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..errors import AuthenticationRefusedError, ConnectionLostError, ValidationError

__all__ = [
    "Activity",
    "Backoff",
    "ConnectionEvent",
    "ConnectionState",
    "DisconnectKind",
    "Supervisor",
    "classify",
]

log = logging.getLogger("losant_async.mqtt")


class ConnectionState(str, enum.Enum):
    """Where a device's connection is."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    CLOSED = "closed"


class DisconnectKind(str, enum.Enum):
    """Why a connection ended, as far as the client can tell; it decides the wait."""

    NETWORK = "network"
    THROTTLE_BAN = "throttle_ban"
    AUTH_REFUSED = "auth_refused"
    CLOSED = "closed"


@dataclass(frozen=True)
class ConnectionEvent:
    """One step in a device's connection life.

    ``reason`` says why in words (no secrets), ``kind`` classifies a disconnect,
    ``attempt`` counts reconnect attempts since the last good connection and
    ``delay`` is how long the device waits before the next attempt.
    """

    state: ConnectionState
    reason: str = ""
    attempt: int = 0
    kind: DisconnectKind | None = None
    delay: float | None = None


@dataclass(frozen=True)
class Backoff:
    """Reconnect waits: exponential with full jitter for network faults, long for bans.

    After the n-th failed attempt in a row the wait is uniform in
    ``[0, min(cap, initial * 2**(n-1))]``. After a suspected throttle ban it is at
    least ``ban_initial`` (Losant refuses for 30 s and reconnecting early extends
    the ban), doubling on repeats up to ``ban_cap``.
    """

    initial: float = 1.0
    cap: float = 60.0
    ban_initial: float = 30.0
    ban_cap: float = 3600.0
    #: A connection that stayed up this long resets the ban count.
    ban_forgiven_after: float = 600.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.cap) or not (0 < self.ban_initial <= self.ban_cap):
            raise ValidationError("Backoff needs 0 < initial <= cap and 0 < ban_initial <= ban_cap")

    def network_delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before attempt ``attempt`` (1-based) after network faults."""
        upper = min(self.cap, self.initial * 2.0 ** min(max(attempt - 1, 0), 62))
        return float((rng or random).uniform(0.0, upper))

    def ban_delay(self, bans: int, rng: random.Random | None = None) -> float:
        """The wait after the ``bans``-th suspected ban in a row (1-based); never below ``ban_initial``."""
        base = min(self.ban_cap, self.ban_initial * 2.0 ** min(max(bans - 1, 0), 62))
        jitter = float((rng or random).random())
        return min(self.ban_cap, base * (1.0 + 0.25 * jitter))


class Activity:
    """Messages published in the current and previous window: enough to tell "busy"."""

    __slots__ = ("_clock", "_count", "_previous", "_start", "window")

    def __init__(self, window: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._start = clock()
        self._count = 0
        self._previous = 0

    def _roll(self) -> None:
        now = self._clock()
        if now - self._start >= self.window:
            self._previous = self._count if now - self._start < 2 * self.window else 0
            self._count = 0
            self._start = now

    def add(self, n: int = 1) -> None:
        self._roll()
        self._count += n

    def recent(self) -> int:
        """Messages in roughly the last one to two windows."""
        self._roll()
        return self._count + self._previous


def classify(
    *,
    closed_by_us: bool,
    ban_detection: bool,
    recent_messages: int,
    burst_threshold: int,
    connected_for: float,
    banned_before: bool,
) -> DisconnectKind:
    """Guess why a connection ended.

    With ban detection on (against Losant), a disconnect right after a burst, or
    one within seconds of connecting when a ban was already suspected, is taken
    as a throttle ban; anything else is a network fault.
    """
    if closed_by_us:
        return DisconnectKind.CLOSED
    if ban_detection and (recent_messages >= burst_threshold or (banned_before and connected_for < 5.0)):
        return DisconnectKind.THROTTLE_BAN
    return DisconnectKind.NETWORK


ConnectFn = Callable[[], Awaitable[object]]
ServeFn = Callable[[object], Awaitable[None]]
EmitFn = Callable[[ConnectionEvent], None]


class Supervisor:
    """Runs ``connect`` / ``serve`` until told to stop or the credentials are refused.

    ``connect()`` returns a connection or raises ``AuthenticationRefusedError`` /
    ``ConnectionLostError``; ``serve(conn)`` returns when that connection ended.
    ``fail(exc)`` is called once with a fatal error. Events go to ``emit``.
    """

    def __init__(
        self,
        *,
        connect: ConnectFn,
        serve: ServeFn,
        emit: EmitFn,
        fail: Callable[[BaseException], None],
        backoff: Backoff,
        ban_detection: bool,
        burst_threshold: int,
        activity: Activity,
        is_closing: Callable[[], bool],
        lost_reason: Callable[[object], str],
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._connect = connect
        self._serve = serve
        self._emit = emit
        self._fail = fail
        self.backoff = backoff
        self.ban_detection = ban_detection
        self.burst_threshold = burst_threshold
        self.activity = activity
        self._is_closing = is_closing
        self._lost_reason = lost_reason
        # None: the module's shared generator. A Random of its own would cost each of a
        # fleet's devices ~2.5 KiB of generator state for a few jittered waits.
        self._rng = rng
        self._clock = clock
        self._sleep = sleep
        #: Successful reconnects after the first connection.
        self.reconnects = 0

    async def run(self) -> None:
        attempt = 0
        bans = 0
        ever_connected = False
        last_kind: DisconnectKind | None = None
        self._emit(ConnectionEvent(ConnectionState.CONNECTING))
        while not self._is_closing():
            try:
                conn = await self._connect()
            except AuthenticationRefusedError as exc:
                if ever_connected and self.ban_detection and last_kind is DisconnectKind.THROTTLE_BAN and bans < 8:
                    # Losant may refuse a banned device's CONNECT until the ban ends.
                    bans += 1
                    delay = self.backoff.ban_delay(bans, self._rng)
                    self._emit(ConnectionEvent(ConnectionState.RECONNECTING, "refused during a suspected throttle ban",
                                               attempt, DisconnectKind.THROTTLE_BAN, delay))
                    await self._sleep(delay)
                    continue
                self._emit(ConnectionEvent(ConnectionState.FAILED, str(exc), attempt, DisconnectKind.AUTH_REFUSED))
                self._fail(exc)
                return
            except ConnectionLostError as exc:
                attempt += 1
                delay = self.backoff.network_delay(attempt, self._rng)
                log.info("connect attempt %d failed (%s); next in %.2f s", attempt, exc, delay)
                self._emit(ConnectionEvent(ConnectionState.RECONNECTING, str(exc), attempt, DisconnectKind.NETWORK, delay))
                await self._sleep(delay)
                continue
            if ever_connected:
                self.reconnects += 1
            ever_connected = True
            attempt = 0
            started = self._clock()
            await self._serve(conn)
            connected_for = self._clock() - started
            closing = self._is_closing()
            if connected_for >= self.backoff.ban_forgiven_after:
                bans = 0
            kind = classify(
                closed_by_us=closing,
                ban_detection=self.ban_detection,
                recent_messages=self.activity.recent(),
                burst_threshold=self.burst_threshold,
                connected_for=connected_for,
                banned_before=bans > 0,
            )
            last_kind = kind
            reason = self._lost_reason(conn)
            if kind is DisconnectKind.CLOSED:
                return
            if kind is DisconnectKind.THROTTLE_BAN:
                bans += 1
                delay = self.backoff.ban_delay(bans, self._rng)
            else:
                attempt = 1
                delay = self.backoff.network_delay(attempt, self._rng)
            log.warning("connection lost (%s, %s); reconnecting in %.1f s", reason, kind.value, delay)
            self._emit(ConnectionEvent(ConnectionState.DISCONNECTED, reason, 0, kind, delay))
            await self._sleep(delay)
            if not self._is_closing():
                self._emit(ConnectionEvent(ConnectionState.RECONNECTING, reason, attempt or 1, kind))

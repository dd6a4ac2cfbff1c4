"""The reconnect loop: connect, serve, classify why the connection ended, wait, again.

The policy half (``Backoff``, ``Activity``, ``classify``) is pure and takes an
injected clock and random source, so its schedule is unit-tested without sleeping.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from ..errors import (
    AuthenticationRefusedError,
    BrokerRefusedError,
    ConnectionLostError,
    TLSHandshakeError,
    TLSVerificationError,
    ValidationError,
)

__all__ = [
    "Activity",
    "Backoff",
    "ConnectionEvent",
    "ConnectionState",
    "DisconnectKind",
    "KnownCredentials",
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
    TLS_REFUSED = "tls_refused"
    CLOSED = "closed"


@dataclass(frozen=True)
class ConnectionEvent:
    """One step in a device's connection life.

    ``reason`` says why in words (no secrets), ``kind`` classifies a disconnect,
    ``attempt`` counts reconnect attempts since the last good connection and
    ``delay`` is how long the device waits before the next attempt.
    ``device_id`` names the device and ``at`` is when it happened (epoch seconds).
    """

    state: ConnectionState
    reason: str = ""
    attempt: int = 0
    kind: DisconnectKind | None = None
    delay: float | None = None
    device_id: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class Backoff:
    """Reconnect waits: exponential with full jitter for network faults, long for bans.

    After the n-th failed attempt in a row the wait is uniform in
    ``[0, min(cap, initial * 2**(n-1))]``. After a suspected throttle ban it is at
    least ``ban_initial`` (Losant refuses for 30 s and reconnecting early extends
    the ban), doubling on repeats up to ``ban_cap``. After any refused CONNECT
    the next attempt waits at least ``refusal_floor`` seconds, whatever else applies.
    """

    initial: float = 1.0
    cap: float = 60.0
    ban_initial: float = 30.0
    ban_cap: float = 3600.0
    #: A connection that stayed up this long resets the ban count.
    ban_forgiven_after: float = 600.0
    #: The least wait after any refused CONNECT (a broker that refuses is never hammered); a
    #: ``ban_initial`` below it (shortened for tests) lowers it too.
    refusal_floor: float = 5.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.cap) or not (0 < self.ban_initial <= self.ban_cap):
            raise ValidationError("Backoff needs 0 < initial <= cap and 0 < ban_initial <= ban_cap")
        if not self.refusal_floor >= 0:
            raise ValidationError("Backoff needs refusal_floor >= 0")

    def refused_delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after a refused CONNECT that is not (yet) taken as a ban: network backoff, floored."""
        return max(self.floor, self.network_delay(attempt, rng))

    @property
    def floor(self) -> float:
        """The least wait after a refused CONNECT: ``refusal_floor``, or ``ban_initial`` if lower."""
        return min(self.refusal_floor, self.ban_initial)

    def network_delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before attempt ``attempt`` (1-based) after network faults."""
        upper = min(self.cap, self.initial * 2.0 ** min(max(attempt - 1, 0), 62))
        return float((rng or random).uniform(0.0, upper))

    def ban_delay(self, bans: int, rng: random.Random | None = None) -> float:
        """The wait after the ``bans``-th suspected ban in a row (1-based); never below ``ban_initial``."""
        base = min(self.ban_cap, self.ban_initial * 2.0 ** min(max(bans - 1, 0), 62))
        jitter = float((rng or random).random())
        return max(self.floor, min(self.ban_cap, base * (1.0 + 0.25 * jitter)))


class Activity:
    """Messages published in the current and previous window: enough to tell "busy"."""

    __slots__ = ("_clock", "_count", "_previous", "_start", "window")

    def __init__(self, window: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window: float = window
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
        """Count ``n`` more events in the current window."""
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


class KnownCredentials:
    """Which credentials this process has connected with (so a later refusal is a ban, not bad credentials).

    Holds digests, never the secrets; bounded so a process cycling through
    millions of identities cannot grow it forever (the oldest is forgotten).
    """

    __slots__ = ("_digests", "_max")

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._digests: dict[bytes, None] = {}
        self._max = max_entries

    @staticmethod
    def digest(*parts: str) -> bytes:
        return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).digest()

    def add(self, digest: bytes) -> None:
        if digest in self._digests:
            return
        if len(self._digests) >= self._max:
            self._digests.pop(next(iter(self._digests)))
        self._digests[digest] = None

    def __contains__(self, digest: object) -> bool:
        return digest in self._digests


#: Credentials accepted by a broker in this process, shared by every device.
KNOWN_CREDENTIALS = KnownCredentials()


class Supervisor:
    """Runs ``connect`` / ``serve`` until told to stop or the credentials are refused.

    ``connect()`` returns a connection or raises ``AuthenticationRefusedError`` /
    ``ConnectionLostError`` / ``TLSVerificationError``; ``serve(conn)`` returns
    when that connection ended. ``fail(exc)`` is called once with a fatal
    error. Events go to ``emit``.

    A refusal of the credentials (CONNACK 4/5) is fatal only when these
    credentials never connected in this process (``credentials`` is their
    digest in ``known``): a broker that accepted them before and refuses them
    now (with 3, 4 or 5, or their MQTT 5 codes) is taken to be banning the
    device for a burst (Losant: 30 s, growing for repeat offenders up to an
    hour; reconnecting early extends it), on any host, so the device waits
    ``Backoff.ban_delay`` and tries again, forever. A "not now" refusal (3)
    of credentials never seen is retried after ``Backoff.refused_delay``
    (never sooner than ``refusal_floor``). A failed certificate check, and a
    TLS handshake failure on the first connect (a plain-TCP port), are fatal
    at once: neither heals.
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
        device_id: str = "",
        credentials: bytes | None = None,
        known: KnownCredentials | None = None,
    ) -> None:
        self._connect = connect
        self._serve = serve
        self._emit_to = emit
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
        self.device_id = device_id
        self._credentials = credentials
        self._known = KNOWN_CREDENTIALS if known is None else known
        #: Successful reconnects after the first connection.
        self.reconnects = 0

    def _emit(self, event: ConnectionEvent) -> None:
        self._emit_to(replace(event, device_id=self.device_id, at=time.time()))

    def _log(self, level: int, message: str, *args: object) -> None:
        log.log(level, "device %s: " + message, self.device_id, *args, extra={"device_id": self.device_id})

    def _known_before(self, ever_connected: bool) -> bool:
        return ever_connected or (self._credentials is not None and self._credentials in self._known)

    async def run(self) -> None:
        attempt = 0
        bans = 0
        ever_connected = False
        self._emit(ConnectionEvent(ConnectionState.CONNECTING))
        while not self._is_closing():
            try:
                conn = await self._connect()
            except (AuthenticationRefusedError, BrokerRefusedError) as exc:
                known = self._known_before(ever_connected)
                if not known and isinstance(exc, BrokerRefusedError):
                    attempt += 1
                    delay = self.backoff.refused_delay(attempt, self._rng)
                    self._log(logging.INFO, "connect attempt %d refused (%s); next in %.2f s", attempt, exc, delay)
                    self._emit(ConnectionEvent(ConnectionState.RECONNECTING, str(exc), attempt,
                                               DisconnectKind.NETWORK, delay))
                    await self._sleep(delay)
                    continue
                if not known:
                    # INFO: the error itself reaches the caller (entering, the next call, events).
                    self._log(logging.INFO, "the broker refused the credentials: %s", exc)
                    self._emit(ConnectionEvent(ConnectionState.FAILED, str(exc), attempt, DisconnectKind.AUTH_REFUSED))
                    self._fail(exc)
                    return
                # These credentials connected before: a refusal now is a ban until proven otherwise.
                bans += 1
                delay = self.backoff.ban_delay(bans, self._rng)
                reason = f"refused after connecting before, taken as a ban ({exc}); next attempt in {delay:.1f} s"
                self._log(logging.WARNING, "%s", reason)
                self._emit(ConnectionEvent(ConnectionState.RECONNECTING, reason, bans, DisconnectKind.THROTTLE_BAN, delay))
                await self._sleep(delay)
                continue
            except TLSVerificationError as exc:
                self._log(logging.INFO, "TLS verification failed: %s", exc)
                self._emit(ConnectionEvent(ConnectionState.FAILED, str(exc), attempt, DisconnectKind.TLS_REFUSED))
                self._fail(exc)
                return
            except TLSHandshakeError as exc:
                if not ever_connected:
                    # The first connect: most likely transport="tls" against a plain-TCP port.
                    self._log(logging.INFO, "%s", exc)
                    self._emit(ConnectionEvent(ConnectionState.FAILED, str(exc), attempt, DisconnectKind.TLS_REFUSED))
                    self._fail(exc)
                    return
                attempt += 1
                delay = self.backoff.network_delay(attempt, self._rng)
                self._log(logging.INFO, "connect attempt %d failed (%s); next in %.2f s", attempt, exc, delay)
                self._emit(ConnectionEvent(ConnectionState.RECONNECTING, str(exc), attempt, DisconnectKind.NETWORK, delay))
                await self._sleep(delay)
                continue
            except ConnectionLostError as exc:
                attempt += 1
                delay = self.backoff.network_delay(attempt, self._rng)
                self._log(logging.INFO, "connect attempt %d failed (%s); next in %.2f s", attempt, exc, delay)
                self._emit(ConnectionEvent(ConnectionState.RECONNECTING, str(exc), attempt, DisconnectKind.NETWORK, delay))
                await self._sleep(delay)
                continue
            if ever_connected:
                self.reconnects += 1
            ever_connected = True
            if self._credentials is not None:
                self._known.add(self._credentials)
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
            reason = self._lost_reason(conn)
            if kind is DisconnectKind.CLOSED:
                return
            if kind is DisconnectKind.THROTTLE_BAN:
                bans += 1
                delay = self.backoff.ban_delay(bans, self._rng)
            else:
                attempt = 1
                delay = self.backoff.network_delay(attempt, self._rng)
            self._log(logging.WARNING, "connection lost (%s, %s); reconnecting in %.1f s", reason, kind.value, delay)
            self._emit(ConnectionEvent(ConnectionState.DISCONNECTED, reason, 0, kind, delay))
            await self._sleep(delay)
            if not self._is_closing():
                self._emit(ConnectionEvent(ConnectionState.RECONNECTING, reason, attempt or 1, kind))

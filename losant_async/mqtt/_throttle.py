"""Token buckets that keep a connection inside Losant's message limits (pure: the clock is injected)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ValidationError

__all__ = ["Clock", "Throttle", "ThrottleConfig", "TokenBucket"]

Clock = Callable[[], float]


@dataclass(frozen=True)
class ThrottleConfig:
    """Losant's limits, and how much of each to spend at once.

    Losant counts messages in any 15 s window. A bucket that holds ``burst``
    tokens and refills ``limit - burst`` per window can never let more than
    ``limit`` through in any window, whatever the timing; ``burst_fraction``
    picks the split between a quick burst and the steady rate.
    """

    per_topic: int = 30
    per_connection: int = 300
    window: float = 15.0
    burst_fraction: float = 0.5
    connections_per_application: int = 300

    def __post_init__(self) -> None:
        for name in ("per_topic", "per_connection", "connections_per_application"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                raise ValidationError(f"ThrottleConfig.{name} must be an int >= 2, not {value!r}")
        if not self.window > 0:
            raise ValidationError("ThrottleConfig.window must be positive")
        if not 0 < self.burst_fraction < 1:
            raise ValidationError("ThrottleConfig.burst_fraction must be between 0 and 1")

    def bucket(self, limit: int, clock: Clock) -> TokenBucket:
        """A bucket that keeps to ``limit`` messages per ``window``."""
        burst = max(1.0, limit * self.burst_fraction)
        return TokenBucket(burst, (limit - burst) / self.window, clock)


class TokenBucket:
    """``capacity`` tokens refilled at ``rate`` per second; a reservation may go into debt.

    ``reserve`` takes a token at once and says how long the caller must wait
    before using it, so waiters queue in call order without a lock.
    """

    __slots__ = ("_clock", "_stamp", "_tokens", "capacity", "rate")

    def __init__(self, capacity: float, rate: float, clock: Clock = time.monotonic) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValidationError("a token bucket needs a positive capacity and rate")
        self.capacity: float = capacity
        self.rate: float = rate
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock()

    def _refill(self) -> float:
        return self._refill_at(self._clock())

    def _refill_at(self, now: float) -> float:
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
            self._stamp = now
        return self._tokens

    def reserve(self) -> float:
        """Take one token; seconds to wait before it may be used (0.0 when available now)."""
        tokens = self._refill() - 1.0
        self._tokens = tokens
        return 0.0 if tokens >= 0 else -tokens / self.rate

    def take(self) -> bool:
        """Take one token if one is free now; False (nothing taken) otherwise."""
        tokens = self._refill()
        if tokens < 1.0:
            return False
        self._tokens = tokens - 1.0
        return True

    def delay(self) -> float:
        """Seconds until a token is free, without taking one."""
        tokens = self._refill()
        return 0.0 if tokens >= 1 else (1.0 - tokens) / self.rate

    @property
    def full(self) -> bool:
        """True when the bucket has refilled completely (it remembers nothing)."""
        return self._refill() >= self.capacity


class Throttle:
    """Per-topic and per-connection buckets of one connection; ``waited`` sums the delays imposed."""

    def __init__(self, config: ThrottleConfig | None = None, clock: Clock = time.monotonic) -> None:
        self.config: ThrottleConfig = config or ThrottleConfig()
        self._clock = clock
        self._connection = self.config.bucket(self.config.per_connection, clock)
        self._topics: dict[str, TokenBucket] = {}
        #: Total seconds of waiting this throttle imposed.
        self.waited: float = 0.0

    def _bucket(self, topic: str) -> TokenBucket:
        bucket = self._topics.get(topic)
        if bucket is None:
            if len(self._topics) >= 1024:
                # Idle buckets are full and carry no memory of the past: forget them.
                self._topics = {t: b for t, b in self._topics.items() if not b.full}
            bucket = self._topics[topic] = self.config.bucket(self.config.per_topic, self._clock)
        return bucket

    def take(self, topic: str) -> bool:
        """Book one message on ``topic`` if both its buckets have a token now; False books nothing.

        The fast path's check: a throttled device publishes at once while it has tokens.
        """
        bucket = self._topics.get(topic) or self._bucket(topic)
        connection = self._connection
        # Runs per message: one clock read for both buckets and the refill written out.
        now = self._clock()
        mine = bucket._tokens
        elapsed = now - bucket._stamp
        if elapsed > 0:
            mine = mine + elapsed * bucket.rate
            if mine > bucket.capacity:
                mine = bucket.capacity
            bucket._tokens = mine
            bucket._stamp = now
        shared = connection._tokens
        elapsed = now - connection._stamp
        if elapsed > 0:
            shared = shared + elapsed * connection.rate
            if shared > connection.capacity:
                shared = connection.capacity
            connection._tokens = shared
            connection._stamp = now
        if mine < 1.0 or shared < 1.0:
            return False
        bucket._tokens = mine - 1.0
        connection._tokens = shared - 1.0
        return True

    def reserve(self, topic: str) -> float:
        """Book one message on ``topic``; seconds the caller must wait before sending it."""
        bucket = self._bucket(topic)
        wait = max(bucket.reserve(), self._connection.reserve())
        self.waited += wait
        return wait

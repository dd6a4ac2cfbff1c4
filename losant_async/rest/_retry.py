"""When to retry a request and how long to wait first: pure decisions, the clock injected."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

__all__ = ["RETRY_STATUSES", "RetryPolicy", "parse_retry_after"]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter.

    Attempt ``n`` (from 0) waits a uniform random time in
    ``[0, min(cap, base * 2**n)]``. The ``Retry-After`` of a 429 or 503
    replaces that wait, unless it is longer than ``max_retry_after``, in which
    case the error is raised at once rather than blocking the caller for that
    long. After a 429 or 503 the wait is never shorter than ``min_retry_after``
    (a zero or negative ``Retry-After`` must not turn into immediate retries).
    """

    base: float = 0.5
    cap: float = 8.0
    max_retry_after: float = 60.0
    min_retry_after: float = 0.5
    rng: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    """Uniform in [0, 1): injectable for tests."""

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        ceiling = min(self.cap, self.base * (1 << min(attempt, 32)))
        return ceiling * self.rng()


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """The ``Retry-After`` header in seconds from ``now`` (epoch seconds), if present and valid.

    It is either a number of seconds or an HTTP date.
    """
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT by definition
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)

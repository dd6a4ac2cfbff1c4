"""Time conversions shared by REST, MQTT and the emulator: Losant's accepted forms to and from epoch ms."""

from __future__ import annotations

import math
import time as _time
from datetime import datetime, timezone
from typing import Any

from .errors import ValidationError

__all__ = ["TimeLike", "from_epoch_ms", "now_ms", "parse_losant_time", "to_epoch_ms", "to_ejson_date"]

TimeLike = datetime | int | float

# Epoch seconds and epoch milliseconds overlap only for dates before 1970-04-27 in ms,
# which Losant would drop as too old anyway; this is the line Losant draws between them.
_SECONDS_LIMIT = 10_000_000_000


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return _time.time_ns() // 1_000_000


def to_epoch_ms(value: TimeLike | None, *, what: str = "time") -> int:
    """An aware datetime or epoch milliseconds as epoch milliseconds; ``None`` means now.

    A naive datetime is an error: guessing its zone would move data by hours.
    """
    if value is None:
        return now_ms()
    if isinstance(value, datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValidationError(f"{what} is a naive datetime; give it a timezone (e.g. timezone.utc)")
        return round(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{what} must be an aware datetime or epoch milliseconds, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{what} must be finite")
    return int(value)


def from_epoch_ms(ms: int | float) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def to_ejson_date(ms: int | float) -> dict[str, str]:
    """Losant's EJSON date form, milliseconds included (its own parsers need them)."""
    dt = from_epoch_ms(ms)
    return {"$date": dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"}


def parse_losant_time(value: Any, *, now: int | None = None) -> int | None:
    """Any time form Losant accepts, as epoch milliseconds; ``None`` when absent or unparseable.

    Accepted: epoch milliseconds, epoch seconds, a negative number (milliseconds
    before now), ``{"$date": <ISO string or ms>}``, an ISO 8601 date string, a datetime.
    """
    current = now_ms() if now is None else now
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        seconds: float = value.timestamp()
        return round(seconds * 1000)
    if isinstance(value, dict):  # EJSON
        if value.get("$undefined") is True:
            return None
        if "$date" in value:
            return parse_losant_time(value["$date"], now=current)
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        if value < 0:
            return current + int(value)
        if value < _SECONDS_LIMIT:
            return int(value * 1000)
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return parse_losant_time(float(text), now=current)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        return parse_losant_time(dt, now=current)
    return None

"""Device state rules shared by MQTT and REST: one validation of state data and times, and distinct stamps."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime

from ._time import now_ms
from .errors import ValidationError

__all__ = [
    "MAX_STRING_CHARS",
    "KeyedStamper",
    "Stamper",
    "check_state_data",
    "check_state_time",
]

#: Losant's cap on one string attribute value (64 KiB).
MAX_STRING_CHARS = 64 * 1024

# ASCII only: re's [0-9a-zA-Z] is already ASCII, and \Z (not $) so a trailing newline fails.
_ATTR_RE = re.compile(r"[0-9a-zA-Z_-]{1,255}\Z")
# Attribute names repeat on every state of a device; remembering the good ones keeps the
# per-message check to a set lookup. Bounded so a caller inventing names cannot grow it forever.
_known_names: set[str] = set()
_KNOWN_NAMES_MAX = 10_000


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_state_data(data: object) -> None:
    """Raise ``ValidationError`` unless ``data`` is what Losant stores as one state's attributes.

    Names match ``^[0-9a-zA-Z_-]{1,255}$``; values are booleans, integers within
    64 bits, finite floats, or strings of at most 64 KiB. Nothing is converted:
    a value that JSON or Losant would change (NaN, a datetime, bytes, a set, a
    huge integer) is refused, so MQTT and REST send exactly what was given.
    """
    if type(data) is not dict and not isinstance(data, Mapping):
        raise ValidationError(
            f"state data must be a mapping of attribute names to values, not {type(data).__name__}"
        )
    if not data:
        raise ValidationError("state data is empty: give at least one attribute")
    known = _known_names
    for name, value in data.items():
        if name not in known:
            if not isinstance(name, str) or not _ATTR_RE.match(name):
                raise ValidationError(
                    f"attribute name {_shown(name)} must match ^[0-9a-zA-Z_-]{{1,255}}$"
                )
            if len(known) < _KNOWN_NAMES_MAX:
                known.add(name)
        tp = type(value)
        # Exact builtin types first (the usual case, one comparison each); subclasses below.
        if tp is float:
            if value - value == 0.0:  # finite: inf - inf and nan - nan are nan
                continue
            raise ValidationError(f"attribute {name!r} is {value!r}; JSON has no NaN or infinity")
        if tp is str and len(value) <= MAX_STRING_CHARS:
            continue
        if tp is bool:
            continue
        if tp is int or (isinstance(value, int) and not isinstance(value, bool)):
            if not -(2**63) <= value < 2**64:
                raise ValidationError(
                    f"attribute {name!r} is an integer beyond 64 bits; send it as a string"
                )
            continue
        if tp is float or isinstance(value, float):
            if not math.isfinite(value):
                raise ValidationError(f"attribute {name!r} is {value!r}; JSON has no NaN or infinity")
            continue
        if tp is str or isinstance(value, str):
            if len(value) > MAX_STRING_CHARS:
                raise ValidationError(
                    f"attribute {name!r} is a string of {len(value)} characters; "
                    f"Losant's limit is {MAX_STRING_CHARS}"
                )
            continue
        raise ValidationError(
            f"attribute {name!r} is a {tp.__name__}; state values are numbers, strings or booleans "
            "(encode structured values as a JSON string)"
        )


def check_state_time(value: object, *, what: str = "time") -> None:
    """Raise ``ValidationError`` unless ``value`` is a usable explicit state time.

    Accepted: an aware ``datetime``, finite epoch milliseconds or seconds (a
    negative number means before now), ``{"$date": "<ISO 8601>"}``, or a
    non-blank date string. ``None`` is not a time: the caller stamps instead.
    A time Losant would read as "now" (NaN, infinity, ``""``) is refused,
    because a retry would then store the state twice.
    """
    if isinstance(value, bool):
        raise ValidationError(f"{what} is a boolean; give an aware datetime or epoch milliseconds")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValidationError(f"{what} is a naive datetime; give it a timezone (e.g. timezone.utc)")
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{what} is {value!r}; give a finite epoch time")
        return
    if isinstance(value, str):
        if not value.strip():
            raise ValidationError(f"{what} is a blank string; omit it to stamp the state now")
        return
    if isinstance(value, Mapping) and set(value) == {"$date"}:
        inner = value["$date"]
        if isinstance(inner, str) and inner.strip():
            return
        if isinstance(inner, (int, float)) and not isinstance(inner, bool) and math.isfinite(inner):
            return
        raise ValidationError(f"{what} {{'$date': ...}} needs an ISO 8601 string or epoch milliseconds")
    raise ValidationError(
        f"{what} is a {type(value).__name__}; give an aware datetime, epoch milliseconds, "
        "or {'$date': '<ISO 8601>'}"
    )


class Stamper:
    """Strictly increasing epoch milliseconds for one device.

    Losant keeps one state per device per millisecond (a same-millisecond state
    overwrites), so stamps never repeat: a call in the same millisecond as the
    last one gets the next millisecond. Past 1,000 calls a second the stamps run
    ahead of the clock and fall back in step once the rate drops.
    """

    __slots__ = ("_clock", "_last")

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self._clock = clock
        self._last = 0

    def __call__(self) -> int:
        now = self._clock()
        last = self._last
        stamp = now if now > last else last + 1
        self._last = stamp
        return stamp

    def seen(self, ms: int) -> None:
        """Note an explicit time the caller sent, so a later stamp does not land on it."""
        if ms > self._last and ms <= self._clock():
            self._last = ms


class KeyedStamper:
    """A ``Stamper`` per key (a gateway's peripherals, a REST client's devices); bounded in size."""

    __slots__ = ("_clock", "_max", "_stampers")

    def __init__(self, clock: Callable[[], int] = now_ms, *, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max = max_keys
        self._stampers: dict[str, Stamper] = {}

    def __call__(self, key: str) -> int:
        stamper = self._stampers.get(key)
        if stamper is None:
            if len(self._stampers) >= self._max:
                # Forget the oldest key: its next stamp is the clock's, which is distinct from
                # its old ones unless this process stamped it >1,000 times a second just before.
                self._stampers.pop(next(iter(self._stampers)))
            stamper = self._stampers[key] = Stamper(self._clock)
        return stamper()

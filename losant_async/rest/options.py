"""Per-client defaults and per-call overrides: timeouts, retries, size caps, extra headers, global query flags."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ValidationError

__all__ = ["RequestOptions", "Timeout", "check_header", "check_max_response_bytes"]

# RFC 9110 field names are tokens; values may hold visible characters, spaces and tabs but no
# control character (CR or LF would split the header: request smuggling, or a crash at call time).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def check_header(name: object, value: object, *, what: str = "header") -> str:
    """``value`` if it can travel as the header ``name``, else ``ValidationError`` (secrets not shown)."""
    if not isinstance(name, str) or _TOKEN.match(name) is None:
        raise ValidationError(f"{what}: {name!r} is not a valid header name")
    if not isinstance(value, str):
        raise ValidationError(f"{what} {name}: the value must be a string, not {type(value).__name__}")
    if _BAD_VALUE.search(value) is not None:
        # The value may be a token: say where, not what.
        raise ValidationError(f"{what} {name}: the value holds a control character (CR, LF, ...)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what} {name}: the value is not valid Unicode") from None
    return value


def check_max_response_bytes(value: object) -> int:
    """``value`` if it is a usable cap on a reply's size (an integer >= 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError("max_response_bytes must be an integer >= 1")
    return value


@dataclass(frozen=True, slots=True)
class Timeout:
    """Timeouts in seconds; ``None`` means no limit for that phase."""

    total: float | None = 30.0
    connect: float | None = 10.0
    read: float | None = None


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """Overrides for one call; a field left ``None`` keeps the client's default.

    ``actions``/``links``/``embedded`` are Losant's global ``_actions``,
    ``_links`` and ``_embedded`` query flags; ``losantdomain`` its domain header;
    ``max_response_bytes`` caps the reply's body (after decompression).
    Headers are checked here, on construction: a control character in a name
    or value is a ``ValidationError``.
    """

    timeout: Timeout | float | None = None
    max_retries: int | None = None
    headers: Mapping[str, str] | None = None
    losantdomain: str | None = None
    actions: bool | None = None
    links: bool | None = None
    embedded: bool | None = None
    max_response_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.headers is not None:
            if not isinstance(self.headers, Mapping):
                raise ValidationError("RequestOptions.headers must be a mapping of names to values")
            for name, value in self.headers.items():
                check_header(name, value, what="RequestOptions.headers")
            object.__setattr__(self, "headers", dict(self.headers))
        if self.losantdomain is not None:
            check_header("losantdomain", self.losantdomain, what="RequestOptions.losantdomain")
        if self.max_retries is not None and (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise ValidationError("RequestOptions.max_retries must be an integer >= 0")
        if self.max_response_bytes is not None:
            check_max_response_bytes(self.max_response_bytes)

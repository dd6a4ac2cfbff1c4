"""Per-client defaults and per-call overrides: timeouts, retries, extra headers, global query flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RequestOptions", "Timeout"]


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
    ``_links`` and ``_embedded`` query flags; ``losantdomain`` its domain header.
    """

    timeout: Timeout | float | None = None
    max_retries: int | None = None
    headers: Mapping[str, str] | None = None
    losantdomain: str | None = None
    actions: bool | None = None
    links: bool | None = None
    embedded: bool | None = None

"""What the console's pages and streams are given: the store, the command sender, the ban lookup, the form token."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..store import Store

__all__ = ["CommandSender", "ConsoleContext"]

CommandSender = Callable[[str, str, Any, "int | None"], Awaitable[None]]
"""(device_id, name, payload, time_ms): records the command and delivers it over MQTT."""


@dataclass(frozen=True, slots=True)
class ConsoleContext:
    store: Store
    send_command: CommandSender
    banned_until: Callable[[str], int | None]
    """When the device's throttle ban ends (epoch ms), or None."""
    csrf: str = field(repr=False)
    """The token every form carries."""

    def csrf_ok(self, given: str) -> bool:
        return hmac.compare_digest(given, self.csrf)

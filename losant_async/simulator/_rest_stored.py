"""Counting stored states through the REST API: how a run against Losant (or a separate emulator) detects loss.

After the run, each device's state history since the run began is read
with ``device.getState`` (pages of 1,000, oldest first) until every device
has what was sent, or the deadline passes; the total stored is the report's
``states stored``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import anyio

from .._time import now_ms

if TYPE_CHECKING:
    from ..rest import LosantClient

__all__ = ["RestStoredStates", "state_time_ms"]

_PAGE = 1000
_POLL = 0.5
_CALLS_IN_FLIGHT = 16


def state_time_ms(value: Any) -> int | None:
    """A stored state's ``time`` (ISO text, epoch ms or a datetime) as epoch ms; None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None
    return None


class RestStoredStates:
    """:class:`~losant_async.simulator.StoredStates` over the REST API: counts states stored since ``since_ms``."""

    def __init__(self, client: LosantClient, application_id: str, since_ms: int) -> None:
        self._client = client
        self._app = application_id
        self._since = since_ms
        self.by_device: dict[str, int] = {}

    async def _count(self, device_id: str) -> int:
        start = self._since
        total = 0
        while True:
            page = await self._client.device.get_state(
                application_id=self._app, device_id=device_id, start=start, end=now_ms() + 60_000,
                limit=_PAGE, sort_direction="asc", raw=True,
            )
            items: list[Any] = page if isinstance(page, list) else []
            total += len(items)
            if len(items) < _PAGE:
                return total
            tail: Any = items[-1]
            last = state_time_ms(cast("dict[str, Any]", tail).get("time") if isinstance(tail, dict) else None)
            if last is None:
                return total
            start = last + 1

    async def wait_stored(self, expected: Mapping[str, int], within: float) -> int:
        """Count each device's stored states until it has ``expected[id]`` or ``within`` seconds pass; the total."""
        pending = {d for d, n in expected.items() if n > 0}
        counts = dict.fromkeys(expected, 0)
        limiter = anyio.CapacityLimiter(_CALLS_IN_FLIGHT)

        async def one(device_id: str) -> None:
            async with limiter:
                counts[device_id] = await self._count(device_id)
            if counts[device_id] >= expected[device_id]:
                pending.discard(device_id)

        with anyio.move_on_after(within):
            while True:
                async with anyio.create_task_group() as tg:
                    for d in sorted(pending):
                        tg.start_soon(one, d)
                if not pending:
                    break
                await anyio.sleep(_POLL)
        self.by_device = counts
        return sum(counts.values())

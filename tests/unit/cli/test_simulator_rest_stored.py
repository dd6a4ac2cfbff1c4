"""Counting stored states through the REST API: pages of 1,000 from the run's start, until each device has its count."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from losant_async.simulator._rest_stored import RestStoredStates, state_time_ms


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class _Device:
    def __init__(self, stored: dict[str, list[int]]) -> None:
        self.stored = stored
        self.calls: list[dict[str, Any]] = []

    async def get_state(self, **kw: Any) -> list[dict[str, Any]]:
        self.calls.append(kw)
        assert kw["sort_direction"] == "asc" and kw["raw"] is True
        times = [t for t in self.stored[kw["device_id"]] if kw["start"] <= t <= kw["end"]]
        return [{"time": _iso(t), "data": {"x": 1}} for t in times[: kw["limit"]]]


class _Client:
    def __init__(self, stored: dict[str, list[int]]) -> None:
        self.device = _Device(stored)


async def test_every_page_is_counted_from_the_runs_start() -> None:
    since = 1_700_000_000_000
    stored = {"a": [since - 5, *range(since, since + 2500)], "b": [since + 1, since + 2]}
    client = _Client(stored)
    counter = RestStoredStates(client, "app", since)  # type: ignore[arg-type]
    total = await counter.wait_stored({"a": 2500, "b": 2}, within=5.0)
    assert total == 2502 and counter.by_device == {"a": 2500, "b": 2}
    # a: three pages (1000, 1000, 500), each starting after the last one's time; b: one.
    starts = [c["start"] for c in client.device.calls if c["device_id"] == "a"]
    assert starts == [since, since + 1000, since + 2000]


async def test_a_device_short_of_its_count_is_asked_again_until_the_deadline() -> None:
    since = 1_700_000_000_000
    client = _Client({"a": [since]})
    counter = RestStoredStates(client, "app", since)  # type: ignore[arg-type]
    total = await counter.wait_stored({"a": 3}, within=1.2)
    assert total == 1  # reported as stored: the shortfall shows as states lost
    assert len(client.device.calls) >= 2


def test_state_times_in_any_form() -> None:
    assert state_time_ms("2023-11-14T22:13:20.000Z") == 1_700_000_000_000
    assert state_time_ms(1_700_000_000_000) == 1_700_000_000_000
    assert state_time_ms("yesterday") is None and state_time_ms(True) is None

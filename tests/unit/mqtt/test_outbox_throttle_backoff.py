"""Outbox policies, SQLite persistence, token buckets with a fake clock, and the reconnect schedule."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from losant_async.errors import DeviceClosedError, OutboxFullError, ValidationError
from losant_async.mqtt import Backoff, MemoryOutbox, SQLiteOutbox, ThrottleConfig
from losant_async.mqtt._supervisor import Activity, DisconnectKind, classify
from losant_async.mqtt._throttle import Throttle, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _fill(box: MemoryOutbox, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await box.put("t", str(i).encode(), 1)


async def test_outbox_hands_out_in_order_and_rewinds_unacked() -> None:
    box = MemoryOutbox(10)
    await _fill(box, 5)
    taken = [box.take() for _ in range(5)]
    assert [t.payload for t in taken if t] == [b"0", b"1", b"2", b"3", b"4"]
    assert box.take() is None
    box.ack(taken[0].seq)  # type: ignore[union-attr]
    box.ack(taken[2].seq)  # type: ignore[union-attr]
    box.rewind()
    again = [box.take() for _ in range(3)]
    assert [t.payload for t in again if t] == [b"1", b"3", b"4"]
    assert box.depth == 3


async def test_outbox_drop_oldest_counts_what_it_drops() -> None:
    box = MemoryOutbox(3, policy="drop_oldest")
    await _fill(box, 5)
    assert box.dropped == 2
    assert [box.take().payload for _ in range(3)] == [b"2", b"3", b"4"]  # type: ignore[union-attr]


async def test_full_outbox_with_wait_policy_raises_when_asked_not_to_wait() -> None:
    box = MemoryOutbox(2)
    await _fill(box, 2)
    with pytest.raises(OutboxFullError):
        await box.put("t", b"x", 0, wait=False)


async def test_full_outbox_with_wait_policy_waits_for_an_ack() -> None:
    box = MemoryOutbox(2)
    await _fill(box, 2)
    waiter = asyncio.ensure_future(box.put("t", b"late", 0))
    await asyncio.sleep(0)
    assert not waiter.done()
    first = box.take()
    assert first is not None
    box.ack(first.seq)
    await asyncio.wait_for(waiter, 5)
    assert box.depth == 2
    assert box.waited >= 0.0


async def test_wait_empty_returns_after_last_ack_and_close_wakes_waiters() -> None:
    box = MemoryOutbox(5)
    await _fill(box, 1)
    waiter = asyncio.ensure_future(box.wait_empty())
    await asyncio.sleep(0)
    assert not waiter.done()
    item = box.take()
    assert item is not None
    box.ack(item.seq)
    await asyncio.wait_for(waiter, 5)
    await _fill(box, 1)
    waiter = asyncio.ensure_future(box.wait_empty())
    await asyncio.sleep(0)
    await box.aclose()
    with pytest.raises(DeviceClosedError):
        await asyncio.wait_for(waiter, 5)


def test_outbox_arguments_are_checked() -> None:
    with pytest.raises(ValidationError):
        MemoryOutbox(0)
    with pytest.raises(ValidationError):
        MemoryOutbox(5, policy="newest")  # type: ignore[arg-type]


async def test_sqlite_outbox_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = SQLiteOutbox(path)
    await box.open()
    await _fill(box, 4)  # type: ignore[arg-type]
    first = box.take()
    assert first is not None
    box.ack(first.seq)
    await box.aclose()

    again = SQLiteOutbox(path)
    await again.open()
    assert again.depth == 3
    assert [again.take().payload for _ in range(3)] == [b"1", b"2", b"3"]  # type: ignore[union-attr]
    await again.put("t", b"4", 1)
    assert again.take().payload == b"4"  # type: ignore[union-attr]
    await again.aclose()


async def test_sqlite_outbox_must_be_open() -> None:
    with pytest.raises(DeviceClosedError):
        await SQLiteOutbox(":memory:").put("t", b"x", 0)


def test_bucket_allows_a_burst_then_makes_callers_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket(3, 1.0, clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(1.0)
    assert bucket.reserve() == pytest.approx(2.0)  # queued behind the previous reservation
    clock.now += 10
    assert bucket.reserve() == 0.0


def test_throttle_never_exceeds_30_per_topic_in_any_15_s_window() -> None:
    clock = FakeClock()
    throttle = Throttle(ThrottleConfig(), clock)
    send_times = []
    t = clock.now
    for _ in range(200):
        clock.now = t
        delay = throttle.reserve("losant/x/state")
        t = clock.now + delay
        send_times.append(t)
    for i, start in enumerate(send_times):
        in_window = [s for s in send_times[i:] if s < start + 15.0]
        assert len(in_window) <= 30
    assert throttle.waited > 0


def test_throttle_counts_the_connection_limit_across_topics() -> None:
    clock = FakeClock()
    config = ThrottleConfig(per_topic=1000, per_connection=10)
    throttle = Throttle(config, clock)
    delays = [throttle.reserve(f"t/{i}") for i in range(10)]
    assert delays[:5] == [0.0] * 5
    assert delays[5] > 0


def test_throttle_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        ThrottleConfig(per_topic=0)
    with pytest.raises(ValidationError):
        ThrottleConfig(burst_fraction=1.5)


def test_network_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    backoff = Backoff(initial=1.0, cap=8.0)
    rng = random.Random(7)
    for attempt, upper in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        samples = [backoff.network_delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= s <= upper for s in samples)
        assert max(samples) > upper * 0.8  # the whole range is used


def test_ban_backoff_waits_at_least_30_s_and_grows() -> None:
    backoff = Backoff()
    rng = random.Random(1)
    first = [backoff.ban_delay(1, rng) for _ in range(50)]
    assert min(first) >= 30.0
    assert min(backoff.ban_delay(3, rng) for _ in range(50)) >= 120.0
    assert backoff.ban_delay(50, rng) == 3600.0


def test_disconnect_classification() -> None:
    base = dict(burst_threshold=30, connected_for=100.0, banned_before=False)
    assert classify(closed_by_us=True, ban_detection=True, recent_messages=500, **base) is DisconnectKind.CLOSED  # type: ignore[arg-type]
    assert classify(closed_by_us=False, ban_detection=True, recent_messages=40, **base) is DisconnectKind.THROTTLE_BAN  # type: ignore[arg-type]
    assert classify(closed_by_us=False, ban_detection=True, recent_messages=3, **base) is DisconnectKind.NETWORK  # type: ignore[arg-type]
    assert classify(closed_by_us=False, ban_detection=False, recent_messages=400, **base) is DisconnectKind.NETWORK  # type: ignore[arg-type]
    assert (
        classify(closed_by_us=False, ban_detection=True, recent_messages=0, burst_threshold=30, connected_for=1.0, banned_before=True)
        is DisconnectKind.THROTTLE_BAN
    )


def test_activity_forgets_old_windows() -> None:
    clock = FakeClock()
    activity = Activity(15.0, clock)
    activity.add(20)
    clock.now += 16
    activity.add(5)
    assert activity.recent() == 25
    clock.now += 40
    assert activity.recent() == 0

"""The in-memory history's bounds and compact form: newest kept, oldest dropped and counted, values round-trip."""

from __future__ import annotations

import tracemalloc

import pytest

from losant_async.emulator.store import DAY_MS, MemorySeries, Store

NOW = 1_800_000_000_000


class _Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def _store(max_states: int = 5, max_commands: int = 3) -> tuple[Store, _Clock]:
    clock = _Clock()
    return Store(clock=clock, series=MemorySeries(max_states=max_states, max_commands=max_commands)), clock


def test_the_bound_keeps_the_newest_states_and_counts_the_dropped() -> None:
    store, clock = _store(max_states=5)
    app = store.add_application("a")
    device = store.add_device(app.id, "d", attributes={"n": "number"})
    for i in range(12):
        clock.now += 1000
        store.record_state(device, {"data": {"n": i}})
    assert [s.data["n"] for s in store.states(device.id, descending=False)] == [7, 8, 9, 10, 11]
    assert store.counters.states_evicted == 7
    assert store.counters.states_accepted == 12
    assert store.accepted_count(device.id) == 12
    assert store.composite_state(device.id)["n"] == (11, clock.now)


def test_a_late_state_older_than_all_kept_is_the_one_dropped() -> None:
    store, _clock = _store(max_states=3)
    app = store.add_application("a")
    device = store.add_device(app.id, "d", attributes={"n": "number"})
    for i in range(3):
        store.record_state(device, {"data": {"n": i}, "time": NOW - 1000 + i})
    store.record_state(device, {"data": {"n": 99}, "time": NOW - 5000})
    assert [s.data["n"] for s in store.states(device.id, descending=False)] == [0, 1, 2]
    assert store.counters.states_evicted == 1


def test_states_past_30_days_go_as_time_moves_on() -> None:
    """Losant keeps 30 days of device state; an older state is dropped, oldest first."""
    store, clock = _store(max_states=100)
    app = store.add_application("a")
    device = store.add_device(app.id, "d", attributes={"n": "number"})
    store.record_state(device, {"data": {"n": 1}, "time": NOW - 29 * DAY_MS})
    store.record_state(device, {"data": {"n": 2}, "time": NOW - 1 * DAY_MS})
    clock.now += 2 * DAY_MS
    store.record_state(device, {"data": {"n": 3}})
    assert [s.data["n"] for s in store.states(device.id, descending=False)] == [2, 3]
    assert store.counters.states_evicted == 1


def test_commands_are_bounded_too() -> None:
    store, clock = _store(max_commands=3)
    app = store.add_application("a")
    device = store.add_device(app.id, "d")
    for i in range(5):
        clock.now += 1
        store.record_command(device.id, f"c{i}", {"i": i})
    assert [c.name for c in store.commands(device.id)] == ["c2", "c3", "c4"]
    assert store.counters.commands_evicted == 2


def test_long_runs_compact_and_keep_order() -> None:
    store, clock = _store(max_states=100)
    app = store.add_application("a")
    device = store.add_device(app.id, "d", attributes={"n": "number"})
    for i in range(5000):
        clock.now += 10
        store.record_state(device, {"data": {"n": i}})
    kept = store.states(device.id, descending=False)
    assert [s.data["n"] for s in kept] == list(range(4900, 5000))
    assert [s.data["n"] for s in store.states(device.id, limit=2)] == [4999, 4998]
    assert store.counters.states_evicted == 4900


def test_values_keep_their_types_through_the_packed_form() -> None:
    store, _ = _store(max_states=10)
    app = store.add_application("a")
    attrs = {"i": "number", "f": "number", "b": "boolean", "s": "string", "g": "gps"}
    device = store.add_device(app.id, "d", attributes=attrs)
    store.record_state(device, {"data": {"i": 3, "f": 3.0, "b": False, "s": "x" * 300, "g": "1.5,2.5"}})
    store.record_state(device, {"data": {"s": ""}, "time": NOW - 1})
    newest, older = store.states(device.id)
    assert newest.data == {"i": 3, "f": 3.0, "b": False, "s": "x" * 300, "g": "1.5,2.5"}
    assert type(newest.data["i"]) is int and type(newest.data["f"]) is float
    assert older.data == {"s": ""}


def test_same_millisecond_merges_in_the_packed_form() -> None:
    store, _ = _store(max_states=10)
    app = store.add_application("a")
    device = store.add_device(app.id, "d", attributes={"a": "number", "b": "number"})
    store.record_state(device, {"data": {"a": 1, "b": 1}, "time": NOW - 10})
    store.record_state(device, {"data": {"a": 2}, "time": NOW})
    store.record_state(device, {"data": {"b": 5}, "time": NOW - 10})
    assert [(s.time, s.data) for s in store.states(device.id)] == [(NOW, {"a": 2}), (NOW - 10, {"a": 1, "b": 5})]


def test_a_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_states"):
        MemorySeries(max_states=0)


def test_a_stored_numeric_state_of_three_attributes_takes_at_most_120_bytes() -> None:
    """The compact form's target (issue 22): was about 300 bytes by tracemalloc, 370 by RSS."""
    store, clock = _store(max_states=10_000)
    app = store.add_application("a")
    attrs = {"temperature": "number", "humidity": "number", "pressure": "number"}
    devices = [store.add_device(app.id, f"d{i}", attributes=attrs) for i in range(20)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for step in range(1000):
            clock.now += 1000
            for n, device in enumerate(devices):
                data = {"temperature": 20 + step / 7, "humidity": 40 + n / 3, "pressure": 1000.5 + step}
                store.store_states(device, [(clock.now, data)])
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used / 20_000 <= 120


def test_the_total_bound_gives_each_device_its_share() -> None:
    clock = _Clock()
    store = Store(clock=clock, series=MemorySeries(max_states=100, max_total_states=10))
    app = store.add_application("a")
    devices = [store.add_device(app.id, f"d{i}", attributes={"n": "number"}) for i in range(2)]
    for i in range(20):
        clock.now += 1000
        for device in devices:
            store.record_state(device, {"data": {"n": i}})
    for device in devices:
        assert [s.data["n"] for s in store.states(device.id, descending=False)] == [15, 16, 17, 18, 19]
    assert store.counters.states_evicted == 30

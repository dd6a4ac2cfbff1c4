"""Time-series aggregation: each statistic per bucket, booleans counted as 1 and 0, one-value buckets on the fast path.

Losant's time series query (docs.losant.com, "Data: Time Series Query") reduces each
resolution bucket with the asked-for aggregation; its aggregation docs count a
boolean true as 1 and false as 0.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

import pytest

from losant_async.emulator._rest.data import _aggregate
from losant_async.emulator.store import DeviceRecord, StateRecord, Store

START = 1_700_000_000_000
RES = 60_000


def _device() -> DeviceRecord:
    store = Store(clock=lambda: START)
    app = store.add_application("a")
    return store.add_device(app.id, "d", attributes={"t": "number", "on": "boolean", "s": "string"})


def _records(device_id: str) -> list[StateRecord]:
    # bucket 0 holds three states, bucket 1 one state, bucket 3 two; bucket 2 none
    rows = [(0, 1.5, True), (10, 2, False), (20, 4.5, True), (RES + 1, 7, False), (3 * RES, 3, True), (3 * RES + 5, 5, True)]
    return [StateRecord(device_id, START + at, {"t": t, "on": on, "s": "x"}) for at, t, on in rows]


@pytest.mark.parametrize(
    ("kind", "reference"),
    [
        ("MEAN", statistics.fmean),
        ("SUM", sum),
        ("MIN", min),
        ("MAX", max),
        ("MEDIAN", statistics.median),
        ("STD_DEV", statistics.pstdev),
    ],
)
def test_each_statistic_per_bucket_with_booleans_as_numbers(kind: str, reference: Callable[[Sequence[float]], float]) -> None:
    device = _device()
    points = _aggregate(_records(device.id), START, RES, kind, None, device, {})
    assert [p["time"][:19] for p in points] == ["2023-11-14T22:13:20", "2023-11-14T22:14:20", "2023-11-14T22:16:20"]
    buckets = [([1.5, 2, 4.5], [1, 0, 1]), ([7], [0]), ([3, 5], [1, 1])]
    for point, (temps, flags) in zip(points, buckets, strict=True):
        assert point["data"]["t"] == pytest.approx(float(reference(temps)))
        assert point["data"]["on"] == pytest.approx(float(reference(flags)))
        assert "s" not in point["data"]  # a string has no mean
        assert isinstance(point["data"]["t"], float)


def test_first_last_count_and_the_attribute_filter() -> None:
    device = _device()
    records = _records(device.id)
    first = _aggregate(records, START, RES, "FIRST", ["t"], device, {})
    last = _aggregate(records, START, RES, "LAST", None, device, {})
    count = _aggregate(records, START, RES, "COUNT", None, device, {})
    assert [p["data"] for p in first] == [{"t": 1.5}, {"t": 7}, {"t": 3}]
    assert [p["data"]["s"] for p in last] == ["x", "x", "x"]
    assert [p["data"]["on"] for p in count] == [3, 1, 2]

"""The scale case's search for the largest sustained fleet: doubling, then bisection to the resolution it states."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from benchmarks import _cases_scale
from benchmarks._context import Context
from benchmarks._harness import Contender


def _search(monkeypatch: pytest.MonkeyPatch, limit: int | None, *, start: int = 1000, cap: int = 32000,
            resolution: int = 250, sizes: list[int] | None = None) -> tuple[Contender, list[int]]:
    tried: list[int] = []

    async def sustained(ctx: Any, c: Any, run: int, n: int, seconds: float, engine: Any) -> tuple[bool, dict[str, Any]]:
        tried.append(n)
        ok = limit is not None and n <= limit
        return ok, {"states_sent": n * 20, "cpu_seconds": {"shards": n / 100, "ray raylet": 1.0}}

    monkeypatch.setattr(_cases_scale, "_sustained", sustained)
    c = Contender("x", "ours", "devices")
    asyncio.run(_cases_scale._largest(cast(Context, None), c, 0, sizes, start, cap, resolution, 20.0, lambda n: []))
    return c, tried


@pytest.mark.parametrize("limit", [1000, 6000, 6100, 8000, 9999, 10_400, 31_900])
def test_the_figure_is_the_largest_sustained_size_within_the_resolution(
    monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    c, tried = _search(monkeypatch, limit)
    (best,) = c.values
    assert best <= limit < best + 250, (best, tried)
    assert best in tried and len(tried) == len(set(tried))
    assert tried[:2] == [1000, 2000]
    first_failed = min(n for n in tried if n > limit)
    assert first_failed - best <= 250 and f"{int(best)} sustained, {first_failed} not" in c.notes[0]


def test_the_same_limit_gives_the_same_sizes_for_every_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    _, a = _search(monkeypatch, 7300)
    _, b = _search(monkeypatch, 7300)
    assert a == b


def test_a_limit_above_the_cap_is_said_and_nothing_below_the_start_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c, tried = _search(monkeypatch, 10**6, cap=5000)
    assert c.values == [5000.0] and tried == [1000, 2000, 4000, 5000]
    assert "the limit is higher" in c.notes[0]
    c, tried = _search(monkeypatch, None)
    assert c.values == [] and tried == [1000] and "not even 1000 devices sustained" in c.notes[0]


def test_cpu_per_thousand_states_is_filed_for_the_largest_sustained_size(monkeypatch: pytest.MonkeyPatch) -> None:
    c, _ = _search(monkeypatch, 6000)
    # 6000 devices: 120,000 states, 60 CPU s of shards and 1 s of raylet.
    assert c.extra["shard_cpu_ms_per_kstate"] == [pytest.approx(500.0)]
    assert c.extra["cpu_ms_per_kstate"] == [pytest.approx(61 * 1000 / 120_000 * 1000)]
    assert c.extra["ray_background_cpu_s"] == [pytest.approx(1.0)]


def test_given_sizes_are_tried_in_order_without_bisection(monkeypatch: pytest.MonkeyPatch) -> None:
    c, tried = _search(monkeypatch, 3000, sizes=[1000, 2500, 4000])
    assert tried == [1000, 2500, 4000] and c.values == [2500.0]


@pytest.mark.parametrize(("argv", "role"), [
    (["/v/bin/python", "-B", "-c", "from multiprocessing.spawn import spawn_main; spawn_main()", "--fork"], "shards"),
    (["ray::ShardActor.run"], "shards"),
    (["/v/ray/core/src/ray/raylet/raylet", "--python_worker_command=default_worker.py", "--gcs_server"], "ray raylet"),
    (["/v/ray/core/src/ray/gcs/gcs_server", "--log_dir=/tmp/ray/raylet"], "ray gcs"),
    (["/v/bin/python", "-u", "/v/ray/_private/log_monitor.py", "--raylet=x"], "ray log monitor"),
    (["/v/bin/python", "/v/ray/_private/workers/default_worker.py", "--raylet=x"], "ray idle workers"),
    (["ray::IDLE"], "other"),
])
def test_a_process_is_named_by_its_program_not_by_the_paths_it_is_given(argv: list[str], role: str) -> None:
    assert _cases_scale._role(argv) == role


def test_one_process_is_its_own_shard_and_has_no_ray_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    async def sustained(ctx: Any, c: Any, run: int, n: int, seconds: float, engine: Any) -> tuple[bool, dict[str, Any]]:
        return n <= 2000, {"states_sent": n * 20, "cpu_seconds": {"driver": n / 100}}

    monkeypatch.setattr(_cases_scale, "_sustained", sustained)
    c = Contender("x", "ours", "devices")
    asyncio.run(_cases_scale._largest(cast(Context, None), c, 0, None, 1000, 32000, 250, 20.0, lambda n: []))
    assert c.values == [2000.0] and c.extra["shard_cpu_ms_per_kstate"] == [pytest.approx(500.0)]
    assert "ray_background_cpu_s" not in c.extra


def test_engines_take_turns_one_size_each_and_each_gets_its_own_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"a": 3000, "b": 6000}
    tried: list[tuple[str, int]] = []

    async def sustained(ctx: Any, c: Any, run: int, n: int, seconds: float, engine: Any) -> tuple[bool, dict[str, Any]]:
        tried.append((c.name, n))
        return n <= limits[c.name], {"states_sent": n * 20, "cpu_seconds": {"driver": 1.0}}

    monkeypatch.setattr(_cases_scale, "_sustained", sustained)
    a, b = Contender("a", "ours", "devices"), Contender("b", "ours", "devices")
    searches = [_cases_scale._Search(c, lambda n: [], None, 1000, 32000, 250) for c in (a, b)]
    asyncio.run(_cases_scale._take_turns(cast(Context, None), 0, searches, 20.0))
    assert a.values == [3000.0] and b.values == [6000.0]
    # Alternating while both search; the one still searching goes on alone after the other ends.
    assert [name for name, _ in tried[:6]] == ["a", "b"] * 3
    names = [name for name, _ in tried]
    last_a = len(names) - 1 - names[::-1].index("a")
    assert all(name == "b" for name in names[last_a + 1:])
    assert len(tried) == len(set(tried))

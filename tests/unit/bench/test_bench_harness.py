"""Smoke tests of the benchmark harness's pure parts: statistics, ratios, targets, table, JSON, wire codec."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks._chart import chart_rows
from benchmarks._context import record
from benchmarks._harness import (
    CaseResult,
    Contender,
    Target,
    format_markdown,
    format_rate,
    format_table,
    paired_ratio,
    percentile,
    results_document,
    results_from_document,
    spread,
)
from benchmarks._payloads import device_page, time_series
from benchmarks.workers._wire import MqttSocket, publish_packet


def test_spread_of_three_runs() -> None:
    s = spread([30.0, 10.0, 20.0])
    assert s is not None
    assert (s.median, s.min, s.max, s.n) == (20.0, 10.0, 30.0, 3)
    assert s.min <= s.q1 <= s.median <= s.q3 <= s.max


def test_spread_ignores_non_finite_and_handles_one_or_none() -> None:
    assert spread([]) is None
    assert spread([math.nan]) is None
    one = spread([5.0, math.inf])
    assert one is not None and one.median == one.q1 == one.q3 == 5.0 and one.n == 1


def test_percentile_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 50) == 50.0
    assert percentile(xs, 99) == 99.0
    assert percentile(xs, 100) == 100.0
    assert math.isnan(percentile([], 50))


def test_paired_ratio_is_median_of_per_run_ratios() -> None:
    # Per-run ratios 2, 3, 10: the median is 3, while the ratio of medians would be 2.5.
    assert paired_ratio([20.0, 30.0, 100.0], [10.0, 10.0, 10.0]) == 3.0
    assert paired_ratio([1.0], [0.0]) is None


def _case() -> CaseResult:
    ours = Contender("ours", "ours", "msgs/s", values=[200.0, 220.0, 180.0])
    base = Contender("base", "baseline", "msgs/s", values=[100.0, 100.0, 100.0])
    gone = Contender("official", "baseline", "msgs/s", skipped="could not be installed: no network")
    return CaseResult(
        case="1-x",
        title="a case",
        params={"messages": 10},
        contenders=[ours, base, gone],
        targets=[
            Target("ours >= 1.5x base", "ours", "base", 1.5),
            Target("ours >= 3x base", "ours", "base", 3.0),
            Target("ours >= official", "ours", "official", 1.0),
        ],
    )


def test_ratios_and_targets() -> None:
    r = _case()
    ratios = {(x.ours, x.other): x.value for x in r.ratios()}
    assert ratios == {("ours", "base"): 2.0}  # the skipped contender has no ratio
    statuses = [o.status for o in r.evaluate()]
    assert statuses == ["met", "missed", "unknown"]
    assert "no network" in r.evaluate()[2].figure


def test_lower_is_better_ratio_is_inverted() -> None:
    ours = Contender("ours", "ours", "s", values=[1.0, 1.0], higher_is_better=False)
    base = Contender("base", "baseline", "s", values=[4.0, 4.0], higher_is_better=False)
    r = CaseResult("x", "t", contenders=[ours, base])
    assert r.ratios()[0].value == 4.0


def test_absolute_bound_targets_use_extra_metrics() -> None:
    ours = Contender("ours", "ours", "states/s", values=[1000.0])
    ours.add_extra("rss_kib_per_device", 20.0)
    r = CaseResult("2-fleet", "t", contenders=[ours], targets=[
        Target("<= 25 KiB", "ours", None, 25.0, metric="rss_kib_per_device", at_most=True),
        Target("<= 10 KiB", "ours", None, 10.0, metric="rss_kib_per_device", at_most=True),
        Target(">= 2000/s", "ours", None, 2000.0),
    ])
    assert [o.status for o in r.evaluate()] == ["met", "missed", "missed"]


def test_table_shows_figures_skips_and_targets() -> None:
    text = format_table([_case()])
    assert "== 1-x: a case (messages=10)" in text
    assert "200 msgs/s" in text
    assert "2.00x" in text
    assert "skipped" in text and "could not be installed: no network" in text
    assert "target [MET] ours >= 1.5x base" in text
    assert "target [MISSED] ours >= 3x base" in text
    assert "targets: 1 of 3 met" in text


def test_results_document_is_json_with_the_documented_shape() -> None:
    doc = results_document([_case()], machine={"cores": 2}, run={"quick": True})
    doc = json.loads(json.dumps(doc))
    assert doc["schema"] == 1 and doc["machine"] == {"cores": 2}
    case = doc["cases"][0]
    assert {"case", "title", "params", "contenders", "ratios", "targets", "notes", "profile"} <= set(case)
    ours = case["contenders"][0]
    assert ours["median"] == 200.0 and ours["min"] == 180.0 and ours["max"] == 220.0
    assert case["contenders"][2]["skipped"].startswith("could not")
    assert case["ratios"] == [{"ours": "ours", "other": "base", "ratio": 2.0}]
    assert [t["status"] for t in case["targets"]] == ["met", "missed", "unknown"]


def test_chart_rows_list_every_measured_ratio() -> None:
    assert chart_rows([_case()]) == [("1-x: vs base", 2.0, "baseline")]


def test_record_keeps_values_notes_errors_and_skips() -> None:
    c = Contender("x", "ours", "req/s")
    record(c, 0, {"done": 1}, 10.0, p99_ms=2.0, missing=None)
    record(c, 1, {"error": "boom"}, None)
    assert c.values == [10.0] and c.extra == {"p99_ms": [2.0]}
    assert c.notes == ["run 2: boom"] and c.skipped is None
    d = Contender("y", "ours", "req/s")
    record(d, 0, {"skipped": "not available: no module"}, None)
    assert d.skipped == "not available: no module"
    e = Contender("z", "ours", "req/s")
    record(e, 0, {"error": "a"}, None)
    record(e, 1, {"error": "b"}, None)
    assert e.skipped is not None and e.skipped.startswith("FAILED")


@pytest.mark.parametrize("value,text", [(123456.7, "123,457"), (12.345, "12.35"), (0.01234, "0.0123")])
def test_format_rate(value: float, text: str) -> None:
    assert format_rate(value) == text


def test_payloads_are_realistic_sizes() -> None:
    page = json.loads(device_page(100))
    assert len(page["items"]) == 100 and page["count"] == 100
    assert 80_000 <= len(device_page(100)) <= 130_000
    first = page["items"][0]
    assert {"id", "tags", "attributes", "connectionInfo", "deviceClass"} <= set(first)
    series = json.loads(time_series(1000))
    (device,) = series["devices"].values()
    assert len(device["points"]) == 1000


def test_wire_codec_frames_publishes() -> None:
    class Parser(MqttSocket):
        def __init__(self) -> None:  # no socket: only the framing is under test
            self.buf = bytearray()

    big = b"x" * 300  # a remaining length that needs two bytes
    p = Parser()
    p.buf += publish_packet("a/b", b"hi") + publish_packet("a/b", big)
    first = p._parse_one(0)
    assert first is not None and first[0] == 0x30
    second = p._parse_one(first[3])
    assert second is not None
    _, start, end, nxt = second
    assert end - start == 2 + 3 + 300 and nxt == len(p.buf)
    assert p._parse_one(nxt) is None
    p.buf += publish_packet("a/b", b"z")[:-1]  # an incomplete packet is not parsed
    assert p._parse_one(nxt) is None


def test_markdown_from_the_json_document() -> None:
    doc = results_document([_case()], machine={"cores": 2, "cpu": "x", "python": "3.11", "broker": "b",
                                                "libraries": {"msgspec": "0.22"}, "official": {}},
                           run={"quick": True, "runs": 3, "seconds": 1.0, "command": "python -m benchmarks"})
    md = format_markdown(json.loads(json.dumps(doc)))
    assert "| ours | ours | 200 msgs/s | 180 .. 220 |  |" in md
    assert "| base | baseline | 100 msgs/s | 100 .. 100 | 2.00x |" in md
    assert "skipped: could not be installed: no network" in md
    assert "- target **missed**: ours >= 3x base" in md


def test_target_against_several_ways_of_a_baseline_takes_the_strongest() -> None:
    ours = Contender("ours", "ours", "cmds/s", values=[300.0])
    loop = Contender("official loop", "baseline", "cmds/s", values=[100.0])
    threads = Contender("official threads", "baseline", "cmds/s", values=[200.0])
    r = CaseResult("3", "t", contenders=[ours, loop, threads], targets=[
        Target(">= official", "ours", "official loop", 2.0, or_best_of=("official threads",)),
    ])
    (outcome,) = r.evaluate()
    assert outcome.status == "missed"  # 3x the loop, but only 1.5x the threaded way
    assert "1.50x official threads" in outcome.figure


def test_results_round_trip_through_json() -> None:
    r = _case()
    r.contenders[0].add_extra("p99_ms", 1.5)
    doc = json.loads(json.dumps(results_document([r], machine={}, run={})))
    (back,) = results_from_document(doc)
    assert format_table([back]) == format_table([r])


def test_the_emulator_fleet_target_fails_on_any_loss_whatever_the_latency() -> None:
    from benchmarks._cases_local import _LOST, _p99_none_lost

    full = {"commands_scheduled": 60, "commands_sent": 60, "commands_received": 60,
            "states_expected": 600, "states_stored": 600}
    assert _p99_none_lost(full, 120.0) == 120.0
    # A fast p99 over the few commands that went out must not pass: unsent, lost, a state missing.
    for key, value in (("commands_sent", 10), ("commands_received", 59), ("states_stored", 599)):
        assert _p99_none_lost({**full, key: value}, 5.0) == _LOST
    assert _p99_none_lost({k: v for k, v in full.items() if k != "commands_scheduled"}, 5.0) == _LOST
    assert _p99_none_lost({**full, "error": "boom"}, 5.0) is None
    result = CaseResult(case="7-emulator-fleet", title="t")
    ours = Contender("10,000 devices", "ours", "ms", higher_is_better=False)
    record(ours, 0, {}, 50.0, p99_none_lost_ms=_p99_none_lost({**full, "commands_sent": 10}, 50.0))
    result.contenders = [ours]
    result.targets = [Target("10,000 devices: command p99 < 1 s with none lost", ours.name, None, 1000.0,
                             metric="p99_none_lost_ms", at_most=True)]
    assert [o.status for o in result.evaluate()] == ["missed"]

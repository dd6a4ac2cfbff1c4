"""Reports: honest command counts, latency histograms, and merging shards' reports exactly."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from losant_async.cli import main
from losant_async.errors import ValidationError
from losant_async.simulator import (
    LatencyHistogram,
    Progress,
    Shard,
    SimulationConfig,
    SimulationReport,
    SimulationStats,
    build_report,
    merge_progress,
    merge_reports,
    report_from_dict,
)


def _hist(values: list[float]) -> LatencyHistogram:
    h = LatencyHistogram()
    for v in values:
        h.record(v)
    return h


def test_histogram_percentiles_are_within_a_bucket_of_the_exact_ones() -> None:
    rng = random.Random(4)
    values = [rng.expovariate(1 / 40) for _ in range(5000)]
    h = _hist(values)
    exact = sorted(values)
    for q in (50, 99):
        got = h.percentile(q)
        assert got is not None
        want = exact[int(len(exact) * q / 100) - 1]
        assert want * 0.99 <= got <= want * 1.1
    assert h.percentile(100) == round(max(values), 1)
    assert LatencyHistogram().percentile(50) is None


def test_merged_histograms_equal_the_histogram_of_all_values() -> None:
    rng = random.Random(5)
    a = [rng.uniform(0, 500) for _ in range(300)]
    b = [rng.uniform(100, 3000) for _ in range(700)]
    merged = _hist(a).merged(_hist(b))
    assert merged == _hist(a + b)
    assert merged.count == 1000
    assert merged.percentile(99) == _hist(a + b).percentile(99)
    assert LatencyHistogram.from_dict(merged.to_dict()) == merged


def _shard_report(shard: Shard, *, sent: int, stored: int | None, cmd_sent: int, cmd_recv: int,
                  latencies: list[float], errors: int = 0, devices: int = 10,
                  cmd_due: int | None = None) -> SimulationReport:
    stats = SimulationStats(states_sent=sent, commands_sent=cmd_sent, commands_received=cmd_recv,
                            commands_scheduled=cmd_sent if cmd_due is None else cmd_due)
    for v in latencies:
        stats.command_latency.record(v)
    for _ in range(errors):
        stats.record_error(TimeoutError("slow"))
    return build_report(
        SimulationConfig(devices=devices, duration=2.0, seed=7, shard=shard), stats, gateways=0,
        run_seconds=2.0, connect_seconds=0.5 + shard.index, states_stored=stored, interrupted=False,
        embedded=True, peak_rss=1000, machine={"cpu_count": 2},
    )


def test_a_lost_command_makes_the_report_fail() -> None:
    ok = _shard_report(Shard(0, 1), sent=20, stored=20, cmd_sent=4, cmd_recv=4, latencies=[5, 6, 7, 8])
    assert ok.ok and ok.commands_lost == 0
    lost = _shard_report(Shard(0, 1), sent=20, stored=20, cmd_sent=4, cmd_recv=3, latencies=[5, 6, 7])
    assert not lost.ok and lost.commands_lost == 1
    data = lost.to_dict()
    assert data["ok"] is False and data["commands_lost"] == 1 and data["states_lost"] == 0
    assert data["command_latency_ms"]["p50"] is not None


def test_a_command_due_but_never_sent_makes_the_report_fail() -> None:
    behind = _shard_report(Shard(0, 1), sent=20, stored=20, cmd_sent=4, cmd_recv=4, latencies=[5, 6, 7, 8],
                           cmd_due=10)
    assert behind.commands_lost == 0 and behind.commands_unsent == 6 and not behind.ok
    data = behind.to_dict()
    assert (data["commands_scheduled"], data["commands_unsent"], data["ok"]) == (10, 6, False)
    assert report_from_dict(json.loads(json.dumps(data))).commands_unsent == 6


def test_merge_is_exact_on_known_reports() -> None:
    a = _shard_report(Shard(0, 2), sent=10, stored=9, cmd_sent=3, cmd_recv=3, latencies=[10, 20, 30])
    b = _shard_report(Shard(1, 2), sent=10, stored=10, cmd_sent=5, cmd_recv=4, latencies=[100, 200, 300, 400],
                      errors=2, cmd_due=7)
    m = merge_reports([b, a])
    assert (m.devices, m.fleet_devices) == (10, 10)
    assert m.states_expected == a.states_expected + b.states_expected == 20
    assert (m.states_sent, m.states_stored, m.states_lost) == (20, 19, 1)
    assert (m.commands_sent, m.commands_received, m.commands_lost) == (8, 7, 1)
    assert (m.commands_scheduled, m.commands_unsent) == (10, 2)
    assert [p["commands_unsent"] for p in m.parts] == [2, 0]
    assert m.errors == 2 and m.errors_by_type == {"TimeoutError": 2}
    assert m.command_latency == _hist([10, 20, 30, 100, 200, 300, 400])
    assert m.command_p50_ms == _hist([10, 20, 30, 100, 200, 300, 400]).percentile(50)
    assert m.connect_seconds == 1.5 and m.peak_rss_bytes == 2000
    assert [s.first for s in m.shards] == [0, 5]
    assert [p["shard"] for p in m.parts] == ["2/2", "1/2"]
    assert sum(p["states_sent"] for p in m.parts) == m.states_sent
    assert not m.ok
    # A merged report merges again, and survives JSON.
    again = report_from_dict(json.loads(json.dumps(m.to_dict())))
    assert again.to_dict() == m.to_dict()


def test_merge_refuses_what_does_not_belong_together() -> None:
    a = _shard_report(Shard(0, 2), sent=10, stored=10, cmd_sent=1, cmd_recv=1, latencies=[1])
    with pytest.raises(ValidationError, match="overlap"):
        merge_reports([a, a])
    other = _shard_report(Shard(1, 2), sent=10, stored=10, cmd_sent=1, cmd_recv=1, latencies=[1], devices=12)
    with pytest.raises(ValidationError, match="fleet_devices"):
        merge_reports([a, other])
    with pytest.raises(ValidationError, match="missing"):
        report_from_dict({"devices": 3})
    m = merge_reports([a])
    assert m.states_stored == 10 and m.states_expected == a.states_expected


def test_unknown_stored_counts_stay_unknown_when_merged() -> None:
    a = _shard_report(Shard(0, 2), sent=10, stored=None, cmd_sent=0, cmd_recv=0, latencies=[])
    b = _shard_report(Shard(1, 2), sent=10, stored=10, cmd_sent=0, cmd_recv=0, latencies=[])
    m = merge_reports([a, b])
    assert m.states_stored is None and m.states_lost is None and m.ok


def test_merged_progress_sums_the_counters_and_waits_for_the_slowest_shard() -> None:
    def p(phase: Any, sent: int) -> Progress:
        return Progress(phase=phase, elapsed=1.0, duration=5.0, devices=5, connections=5, connected=5,
                        states_sent=sent, states_per_second=2.0, commands_sent=3, commands_received=1,
                        reconnects=0, errors=0, last_error=None, commands_scheduled=4)

    m = merge_progress([p("running", 4), p("connecting", 0)])
    assert m.phase == "connecting" and m.states_sent == 4 and m.devices == 10 and m.shards == 2
    assert m.commands_received == 2 and m.commands_sent == 6 and m.commands_scheduled == 8
    assert Progress.from_dict(m.to_dict()) == m


def _write(path: Path, report: SimulationReport) -> str:
    path.write_text(json.dumps(report.to_dict()))
    return str(path)


def test_report_merge_command_exits_non_zero_when_a_command_was_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _shard_report(Shard(0, 2), sent=10, stored=10, cmd_sent=2, cmd_recv=2, latencies=[3, 4])
    b = _shard_report(Shard(1, 2), sent=10, stored=10, cmd_sent=2, cmd_recv=1, latencies=[3])
    good = _shard_report(Shard(1, 2), sent=10, stored=10, cmd_sent=2, cmd_recv=2, latencies=[3, 4])
    out = tmp_path / "merged.json"
    assert main(["report", "merge", _write(tmp_path / "a.json", a), _write(tmp_path / "b.json", b)]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["report", "merge", _write(tmp_path / "a.json", a), _write(tmp_path / "g.json", good),
                 "--json", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert merged["ok"] is True and merged["states_sent"] == 20 and merged["commands_received"] == 4
    assert main(["report", "merge", str(tmp_path / "missing.json")]) == 2
    assert "cannot read report" in capsys.readouterr().err


def test_sections_per_type_fault_and_command_add_up_when_merged_and_survive_json() -> None:
    def part(shard: Shard, buffered: int, burst: int) -> SimulationReport:
        stats = SimulationStats(states_sent=10 - buffered, states_buffered=buffered, states_burst=burst,
                                states_backfilled=100, run_cpu_seconds=0.25)
        stats.types = {"truck": {"devices": 5, "interval": 1.0, "states_expected": 10, "states_sent": 10 - buffered,
                                 "states_buffered": buffered, "states_unchanged": 0, "states_held": 0}}
        stats.faults = {"tunnel": {"devices": 1, "events": 2, "states_delayed": 3, "states_burst": burst}}
        stats.commands_by_name = {"set": {"sent": 2, "received": 2, "reactions": 2, "ignored": 0}}
        return build_report(
            SimulationConfig(devices=10, duration=2.0, seed=7, shard=shard), stats, gateways=0, run_seconds=2.0,
            connect_seconds=0.5, states_stored=10 + burst + 100, interrupted=False, embedded=True, peak_rss=1,
            machine={}, backfill_seconds=1.5,
        )

    a, b = part(Shard(0, 2), 0, 4), part(Shard(1, 2), 2, 0)
    # Buffered states count as what the server should store, not as sent; nothing is lost here.
    assert (b.states_sent, b.states_buffered, b.states_lost) == (8, 2, 0) and b.ok
    m = merge_reports([a, b])
    assert m.types["truck"] == {"devices": 10, "interval": 1.0, "states_expected": 20, "states_sent": 18,
                                "states_buffered": 2, "states_unchanged": 0, "states_held": 0}
    assert m.faults["tunnel"] == {"devices": 2, "events": 4, "states_delayed": 6, "states_burst": 4}
    assert m.commands_by_name["set"]["sent"] == 4
    assert (m.states_backfilled, m.backfill_seconds, m.run_cpu_seconds) == (200, 1.5, 0.5)
    assert m.states_lost == 0 and m.ok
    assert report_from_dict(json.loads(json.dumps(m.to_dict()))).to_dict() == m.to_dict()
    # A device that never connected fails the run.
    unconnected = SimulationStats(states_buffered=10, devices_unconnected=["truck-000"])
    failed = build_report(SimulationConfig(devices=5, duration=2.0), unconnected, gateways=0, run_seconds=2.0,
                          connect_seconds=0.5, states_stored=10, interrupted=False, embedded=True, peak_rss=1,
                          machine={})
    assert not failed.ok and failed.devices_unconnected == ("truck-000",)


def test_a_report_written_before_scenarios_still_reads() -> None:
    old = _shard_report(Shard(0, 1), sent=20, stored=20, cmd_sent=4, cmd_recv=4, latencies=[5]).to_dict()
    for key in ("scenario", "states_buffered", "types", "faults", "states_backfilled", "run_cpu_seconds"):
        old.pop(key)
    again = report_from_dict(old)
    assert again.scenario == "built-in sensors" and again.ok

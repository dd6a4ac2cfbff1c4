"""The simulator engine's pure parts: schedules, gateway planning, sensor values, rates, the report."""

from __future__ import annotations

import random

import pytest

from losant_async.errors import ValidationError
from losant_async.simulator import (
    MAX_PERIPHERALS_PER_GATEWAY,
    GatewayGroup,
    RateMeter,
    SensorModel,
    SimulationConfig,
    SimulationReport,
    SimulationStats,
    Target,
    build_report,
    due_times,
    expected_states,
    peripherals_per_gateway,
    phase_offsets,
    plan_gateways,
)

ID = "a" * 24


def _ids(n: int) -> tuple[str, ...]:
    return tuple(f"{i:024x}" for i in range(n))


def test_due_times_are_one_period_apart_from_the_offset_and_stop_before_the_duration() -> None:
    assert list(due_times(0.25, 2.0, 2.0)) == [0.25, 0.75, 1.25, 1.75]


def test_due_times_do_not_drift_over_a_long_run() -> None:
    times = list(due_times(0.0, 10.0, 1000.0))
    assert len(times) == 10_000
    assert times[-1] == pytest.approx(999.9, abs=1e-9)


def test_command_rounds_are_those_due_before_the_end_of_the_reporting() -> None:
    from losant_async.simulator import command_rounds

    assert command_rounds(1.0, 10.0) == 9  # at 1 .. 9 s; one at 10 s would come after the end
    assert command_rounds(1.0, 10.5) == 10
    assert command_rounds(1 / 3, 10.0) == 29  # 30 * (1/3) lands on the end despite rounding
    assert command_rounds(0.05, 60.0) == 1199
    assert command_rounds(1.0, 10.0, elapsed=4.5) == 4  # stopped early: the rounds due by then
    assert command_rounds(1.0, 10.0, elapsed=40.0) == 9
    assert command_rounds(0.0, 10.0) == 0 and command_rounds(2.0, 1.0) == 0
    config = SimulationConfig(devices=500, duration=10.0, command_interval=0.5)
    assert config.commands_scheduled() == 19 * config.command_batch == 190


def test_phase_offsets_spread_devices_evenly_over_one_period() -> None:
    offsets = phase_offsets(4, 2.0)
    assert offsets == [0.0, 0.125, 0.25, 0.375]
    assert len(set(phase_offsets(1000, 1.0))) == 1000
    assert max(phase_offsets(1000, 1.0)) < 1.0


def test_expected_states_counts_every_schedule() -> None:
    assert expected_states(50, 1.0, 5.0) == 250
    assert expected_states(3, 2.0, 1.0) == 6
    # A fractional duration: devices whose offset falls before the end send one more.
    assert expected_states(4, 1.0, 2.5) == 4 * 2 + 2


def test_unthrottled_gateways_carry_fifty_peripherals() -> None:
    assert peripherals_per_gateway(10.0, throttled=False) == MAX_PERIPHERALS_PER_GATEWAY
    assert plan_gateways(120, 1.0, throttled=False) == [40, 40, 40]
    assert plan_gateways(100, 1.0, throttled=False) == [50, 50]
    assert plan_gateways(7, 1.0, throttled=False) == [7]


def test_throttled_gateways_stay_under_the_connection_limit() -> None:
    # 300 messages / 15 s per connection = 20/s; 90% of it for states.
    assert peripherals_per_gateway(1.0, throttled=True) == 18
    assert peripherals_per_gateway(0.1, throttled=True) == MAX_PERIPHERALS_PER_GATEWAY
    assert peripherals_per_gateway(2.0, throttled=True) == 9
    for rate in (0.2, 0.5, 1.0, 2.0):
        per = peripherals_per_gateway(rate, throttled=True)
        assert per * rate <= 20 * 0.9
        sizes = plan_gateways(1000, rate, throttled=True)
        assert sum(sizes) == 1000
        assert max(sizes) <= per
        assert max(sizes) - min(sizes) <= 1


def test_sensor_model_is_reproducible_and_plausible() -> None:
    a, b = SensorModel(random.Random(7)), SensorModel(random.Random(7))
    readings = [a.next() for _ in range(500)]
    assert readings == [b.next() for _ in range(500)]
    assert set(readings[0]) == {"temperature", "humidity", "battery"}
    assert all(-10 <= r["temperature"] <= 40 and 0 <= r["humidity"] <= 100 for r in readings)
    batteries = [r["battery"] for r in readings]
    assert batteries == sorted(batteries, reverse=True)


def test_rate_meter_measures_over_its_window() -> None:
    meter = RateMeter(window=2.0)
    assert meter.sample(0.0, 0) == 0.0
    assert meter.sample(1.0, 100) == pytest.approx(100.0)
    assert meter.sample(2.0, 300) == pytest.approx(150.0)
    # Nothing in the last 3 s: older samples have left the window.
    assert meter.sample(5.0, 300) == 0.0
    # Measured from the newest sample at least one window old (t=2).
    assert meter.sample(6.0, 400) == pytest.approx(25.0)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"devices": 0}, "devices"),
        ({"devices": 1, "rate": 0}, "rate"),
        ({"devices": 1, "rate": float("nan")}, "rate"),
        ({"devices": 1, "duration": -1}, "duration"),
        ({"devices": 1, "qos": 2}, "QoS 2"),
        ({"devices": 1, "transport": "rest", "gateway": True}, "gateway"),
        ({"devices": 1, "rate": 3, "throttle": True}, "30 per 15 s"),
    ],
)
def test_config_rejects_bad_values_naming_them(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        SimulationConfig(**kwargs)  # type: ignore[arg-type]


def test_target_check_refuses_what_cannot_run() -> None:
    config = SimulationConfig(devices=2)
    with pytest.raises(ValidationError, match="2 were asked"):
        Target(application_id=ID, device_ids=_ids(3), mqtt_host="h", key="k", secret="s").check(config)
    with pytest.raises(ValidationError, match="distinct"):
        Target(application_id=ID, device_ids=(ID, ID), mqtt_host="h", key="k", secret="s").check(config)
    with pytest.raises(ValidationError, match="access secret"):
        Target(application_id=ID, device_ids=_ids(2), mqtt_host="h", key="k").check(config)
    with pytest.raises(ValidationError, match="API token"):
        Target(application_id=ID, device_ids=_ids(2), rest_url="http://x").check(
            SimulationConfig(devices=2, transport="rest")
        )
    gw = SimulationConfig(devices=2, gateway=True)
    with pytest.raises(ValidationError, match="exactly one gateway"):
        Target(application_id=ID, device_ids=_ids(2), mqtt_host="h", key="k", secret="s",
               gateways=(GatewayGroup("f" * 24, _ids(1)),)).check(gw)
    Target(application_id=ID, device_ids=_ids(2), mqtt_host="h", key="k", secret="s",
           gateways=(GatewayGroup("f" * 24, _ids(2)),)).check(gw)


def test_target_repr_hides_secrets() -> None:
    target = Target(application_id=ID, device_ids=_ids(1), key="KEY-123", secret="SECRET-456",
                    api_token="TOKEN-789")
    text = repr(target)
    assert "SECRET-456" not in text and "TOKEN-789" not in text and "KEY-123" not in text


def _report(stats: SimulationStats, stored: int | None, *, interrupted: bool = False,
            config: SimulationConfig | None = None) -> SimulationReport:
    return build_report(
        config or SimulationConfig(devices=2, rate=1.0, duration=3.0),
        stats,
        gateways=0,
        run_seconds=3.0,
        connect_seconds=0.5,
        states_stored=stored,
        interrupted=interrupted,
        embedded=True,
        peak_rss=1234,
        machine={"cpu_count": 2},
    )


def test_report_of_a_clean_run_is_ok() -> None:
    report = _report(SimulationStats(states_sent=6, commands_sent=2, commands_received=2), 6)
    assert report.ok
    data = report.to_dict()
    assert data["states_expected"] == 6 and data["states_stored"] == 6 and data["states_lost"] == 0
    assert data["states_per_second"] == 2.0
    assert data["ok"] is True
    for key in ("devices", "duration", "states_sent", "states_acked", "states_per_second",
                "commands_sent", "commands_received", "reconnects", "errors", "connect_seconds",
                "peak_rss_bytes", "machine"):
        assert key in data


def test_report_fails_on_loss_errors_short_runs_and_interruption() -> None:
    assert not _report(SimulationStats(states_sent=6), 5).ok
    assert _report(SimulationStats(states_sent=6), 5).states_lost == 1
    stats = SimulationStats(states_sent=6)
    stats.record_error(TimeoutError("slow"))
    assert not _report(stats, 6).ok
    assert stats.errors_by_type == {"TimeoutError": 1}
    assert not _report(SimulationStats(states_sent=5), 5).ok  # one state never sent
    assert not _report(SimulationStats(states_sent=6), 6, interrupted=True).ok


def test_report_without_a_stored_count_judges_on_sent_and_errors() -> None:
    report = _report(SimulationStats(states_sent=6), None)
    assert report.states_lost is None and report.ok

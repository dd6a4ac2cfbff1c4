"""Value generators: statistics within tolerance for a fixed seed, and the same values whichever shard runs a device."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from typing import Any

import pytest

from losant_async.simulator import DeviceModel, SimulationConfig, parse_scenario, split_fleet
from losant_async.simulator._generators import MISSING, make_generator
from losant_async.simulator._scenario import (
    AttributeSpec,
    ChoiceGen,
    CounterGen,
    DailyGen,
    GeneratorSpec,
    GpsRouteGen,
    GpsWalkGen,
    NormalGen,
    RampGen,
    RandomWalkGen,
    ReplayGen,
    SineGen,
    UniformGen,
)

T0 = 1_700_000_000.0


def _values(spec: GeneratorSpec, n: int, dt: float = 1.0, seed: int = 1) -> list[Any]:
    gen = make_generator(spec, random.Random(seed))
    return [gen.next(T0 + k * dt) for k in range(n)]


def test_uniform_stays_in_range_with_the_mean_in_the_middle() -> None:
    v = _values(UniformGen(min=10.0, max=20.0), 20_000)
    assert min(v) >= 10.0 and max(v) <= 20.0
    assert statistics.fmean(v) == pytest.approx(15.0, abs=0.1)


def test_normal_has_its_mean_and_spread_and_keeps_to_its_bounds() -> None:
    v = _values(NormalGen(mean=50.0, std=2.0), 20_000)
    assert statistics.fmean(v) == pytest.approx(50.0, abs=0.1)
    assert statistics.pstdev(v) == pytest.approx(2.0, rel=0.05)
    clipped = _values(NormalGen(mean=0.0, std=5.0, min=-1.0, max=1.0), 1000)
    assert min(clipped) == -1.0 and max(clipped) == 1.0


def test_sine_repeats_every_period_between_offset_plus_and_minus_amplitude() -> None:
    v = _values(SineGen(period=60.0, amplitude=3.0, offset=20.0), 600, dt=0.5)
    assert max(v) == pytest.approx(23.0, abs=0.01) and min(v) == pytest.approx(17.0, abs=0.01)
    # 60 s is 120 samples at 0.5 s: the curve repeats exactly.
    assert all(a == pytest.approx(b, abs=1e-9) for a, b in zip(v, v[120:], strict=False))
    spread = [_values(SineGen(period=60.0, amplitude=1.0, phase_spread=1.0), 1, seed=s)[0] for s in range(50)]
    assert len({round(x, 6) for x in spread}) == 50  # devices out of phase with each other


def test_random_walk_keeps_to_its_bounds_and_takes_small_steps() -> None:
    v = _values(RandomWalkGen(step=0.5, start=0.0, min=-2.0, max=2.0), 10_000)
    assert min(v) >= -2.0 and max(v) <= 2.0
    assert max(abs(a - b) for a, b in itertools.pairwise(v)) <= 0.5 + 1e-12
    drained = _values(RandomWalkGen(step=0.005, start=100.0, drift=-0.005, min=0.0), 1000)
    assert drained == sorted(drained, reverse=True) and drained[-1] == pytest.approx(95.0, abs=0.5)


def test_counter_counts_and_wraps() -> None:
    assert _values(CounterGen(start=5.0, step=2.0), 4) == [5.0, 7.0, 9.0, 11.0]
    assert _values(CounterGen(start=0.0, step=1.0, wrap=3.0), 7) == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]


def test_ramp_is_a_sawtooth_over_its_period() -> None:
    v = _values(RampGen(min=0.0, max=10.0, period=10.0), 30)
    assert min(v) >= 0.0 and max(v) < 10.0
    # T0 is a multiple of the period: the ramp rises one step a second, then falls back to min at once.
    assert v[:10] == pytest.approx([float(k) for k in range(10)])
    assert all(a == pytest.approx(b) for a, b in zip(v, v[10:], strict=False))


def test_daily_profile_follows_the_hour_of_day_interpolated() -> None:
    hours = [float(h) for h in range(24)]
    gen = make_generator(DailyGen(hours=hours), random.Random(0))
    midnight = 1_700_006_400.0  # 2023-11-15 00:00 UTC
    assert midnight % 86400 == 0
    assert gen.next(midnight + 3 * 3600) == pytest.approx(3.0)
    assert gen.next(midnight + 3.5 * 3600) == pytest.approx(3.5)
    assert gen.next(midnight + 23.5 * 3600) == pytest.approx(11.5)  # between 23 and midnight's 0
    local = make_generator(DailyGen(hours=hours, utc_offset=-5.0), random.Random(0))
    assert local.next(midnight + 10 * 3600) == pytest.approx(5.0)


def _latlon(text: str) -> tuple[float, float]:
    lat, lon = text.split(",")
    return float(lat), float(lon)


def test_gps_walk_stays_near_its_centre() -> None:
    v = [_latlon(x) for x in _values(GpsWalkGen(lat=45.0, lon=9.0, step_m=50.0, radius_m=500.0), 5000)]
    # 500 m is about 0.0045 degrees of latitude; a step may overshoot by one step before turning back.
    assert max(abs(lat - 45.0) for lat, _ in v) < 0.0055
    assert len(set(v)) > 1000


def test_gps_route_moves_along_the_waypoints_at_its_speed() -> None:
    route = GpsRouteGen(waypoints=[(0.0, 0.0), (0.0, 1.0)], speed_kmh=36.0, loop=False, spread=0.0)
    v = [_latlon(x) for x in _values(route, 101, dt=100.0)]  # 10 m/s, 1 km every 100 s
    assert v[0] == (0.0, 0.0)
    # One degree of longitude at the equator is ~111.2 km: 10 km in 1,000 s is ~0.09 degrees.
    assert v[10][1] == pytest.approx(10_000 / 111_195, rel=0.01)
    assert all(lat == 0.0 for lat, _ in v)
    assert _values(route, 1, dt=1.0)[0] == "0.000000,0.000000"
    end = make_generator(route, random.Random(1))
    assert end.next(T0) and end.next(T0 + 1e6) == "0.000000,1.000000"  # stops at the last waypoint


def test_replay_loops_or_stops() -> None:
    assert _values(ReplayGen(file="f", column="c", values=(1.0, 2.0)), 5) == [1.0, 2.0, 1.0, 2.0, 1.0]
    assert _values(ReplayGen(file="f", column="c", values=(1.0, 2.0), loop=False), 3) == [1.0, 2.0, MISSING]


def test_weighted_choice_follows_its_weights() -> None:
    v = _values(ChoiceGen(values=["a", "b"], weights=[3.0, 1.0]), 20_000)
    assert v.count("a") / len(v) == pytest.approx(0.75, abs=0.02)


def _model(**attr: Any) -> DeviceModel:
    return DeviceModel({"x": AttributeSpec(**attr)}, seed=3)


def test_precision_noise_and_missing_rate_shape_a_number() -> None:
    rounded = [_model(type="number", generator=UniformGen(min=0.0, max=1.0), precision=2).next(T0)["x"]
               for _ in range(3)]
    assert all(round(x, 2) == x for x in rounded)
    noisy = _model(type="number", generator=CounterGen(start=10.0, step=0.0), noise=0.5)
    values = [noisy.next(T0)["x"] for _ in range(2000)]
    assert 9.5 <= min(values) < 9.6 and 10.4 < max(values) <= 10.5
    flaky = _model(type="number", generator=CounterGen(), missing=0.2)
    present = sum(1 for _ in range(10_000) if "x" in flaky.next(T0))
    assert present / 10_000 == pytest.approx(0.8, abs=0.02)
    whole = _model(type="number", generator=UniformGen(min=0.0, max=100.0), precision=0).next(T0)["x"]
    assert isinstance(whole, int)


SCENARIO = parse_scenario("""
name = "mixed"
seed = 11
[[device_types]]
name = "a"
share = 0.5
[device_types.attributes.w]
type = "number"
generator = { kind = "random_walk", start_min = 0.0, start_max = 10.0, step = 1.0 }
[device_types.attributes.s]
type = "number"
generator = { kind = "sine", period = 30.0, amplitude = 1.0, phase_spread = 1.0 }
[[device_types]]
name = "b"
share = 0.5
interval = 2.0
[device_types.attributes.c]
type = "string"
generator = { kind = "choice", values = ["x", "y", "z"] }
""")


def _sequences(config: SimulationConfig) -> dict[int, list[dict[str, Any]]]:
    types = config.types()
    out = {}
    for spec in config.specs():
        model = DeviceModel(types[spec.kind].spec.attributes, spec.seed)
        out[spec.index] = [model.next(T0 + k) for k in range(20)]
    return out


def test_a_device_reports_the_same_values_whichever_shard_runs_it() -> None:
    whole = _sequences(SimulationConfig(devices=23, scenario=SCENARIO))
    assert len(whole) == 23
    for parts in (2, 3, 7):
        seen: dict[int, list[dict[str, Any]]] = {}
        for shard in split_fleet(23, parts):
            seen.update(_sequences(SimulationConfig(devices=23, scenario=SCENARIO, shard=shard)))
        assert seen == whole
    # The scenario's seed decides: another seed, other values; the values never depend on the process.
    reseeded = SimulationConfig(devices=23, scenario=SCENARIO, seed=99)  # --seed yields to the scenario's
    assert _sequences(reseeded) == whole
    assert math.isfinite(whole[0][0]["w"])


EVERY_KIND = """
name = "every kind"
[[device_types]]
name = "all"
count = 1
[device_types.attributes.walk]
type = "number"
precision = 2
generator = { kind = "random_walk", start_min = 1.0, start_max = 9.0, step = 0.5, drift = 0.01, min = 0.0, max = 10.0 }
[device_types.attributes.walk_free]
type = "number"
generator = { kind = "random_walk", start = 5.0, step = 3.0 }
[device_types.attributes.normal]
type = "number"
precision = 1
generator = { kind = "normal", mean = 4.0, std = 2.0, min = 0.0, max = 8.0 }
[device_types.attributes.sine]
type = "number"
precision = 3
generator = { kind = "sine", period = 7.0, amplitude = 2.0, offset = 1.0, phase_spread = 1.0 }
[device_types.attributes.uniform]
type = "number"
precision = 0
generator = { kind = "uniform", min = -3.0, max = 3.0 }
[device_types.attributes.counter]
type = "number"
generator = { kind = "counter", start = 10.0, step = -1.0, wrap = 5.0 }
[device_types.attributes.ramp]
type = "number"
generator = { kind = "ramp", min = 1.0, max = 2.0, period = 3.0, phase_spread = 0.5 }
[device_types.attributes.choice]
type = "string"
generator = { kind = "choice", values = ["a", "b", "c"], weights = [1, 2, 3] }
[device_types.attributes.flag]
type = "boolean"
generator = { kind = "constant", value = true }
[device_types.attributes.noisy]
type = "number"
precision = 1
noise = 0.3
generator = { kind = "uniform", min = 0.0, max = 1.0 }
[device_types.attributes.daily]
type = "number"
generator = { kind = "daily", hours = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0] }
[device_types.attributes.where]
type = "gps"
generator = { kind = "gps_walk", lat = 40.0, lon = -90.0, step_m = 30.0 }
"""


def _twins(seed: int) -> tuple[DeviceModel, DeviceModel]:
    attributes = parse_scenario(EVERY_KIND).device_types[0].attributes
    fast, plain = DeviceModel(attributes, seed), DeviceModel(attributes, seed)
    plain._fast = None  # the generators' own next(): the reference
    return fast, plain


def test_the_generated_model_makes_the_values_of_the_generators_to_the_bit() -> None:
    for seed in range(20):
        fast, plain = _twins(seed)
        assert fast._fast is not None
        for k in range(300):
            t = T0 + k * 0.731
            assert fast.next(t) == plain.next(t), (seed, k)


def test_a_setpoint_moves_a_device_off_the_generated_model_and_its_values_follow_it() -> None:
    fast, plain = _twins(3)
    for k in range(10):
        assert fast.next(T0 + k) == plain.next(T0 + k)
    fast.set_parameter("walk", "max", 2.0)
    plain.set_parameter("walk", "max", 2.0)
    assert fast._fast is None
    later = [fast.next(T0 + k) for k in range(10, 60)]
    assert later == [plain.next(T0 + k) for k in range(10, 60)]
    assert all(v["walk"] <= 2.0 for v in later[1:])  # the walk's new bound holds from the next state

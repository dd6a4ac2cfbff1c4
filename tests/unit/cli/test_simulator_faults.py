"""Faults and phases: who is struck and when (seeded, shard-independent), and what the engine does with them."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from losant_async.errors import ValidationError
from losant_async.simulator import Simulation, SimulationConfig, Target, parse_scenario, split_fleet
from losant_async.simulator._faults import fault_events, spike_extra
from losant_async.simulator._fleet import device_begin

HEAD = """
name = "f"
seed = 4
[[device_types]]
name = "s"
count = COUNT
interval = 0.1
[device_types.attributes.v]
type = "number"
generator = { kind = "constant", value = 1.0 }
"""


def _scenario(count: int, tail: str) -> Any:
    return parse_scenario(HEAD.replace("COUNT", str(count)) + tail, "f.toml")


def test_a_share_of_the_devices_is_struck_the_same_in_every_shard() -> None:
    s = _scenario(2000, '[[faults]]\nname = "x"\ndevice_type = "s"\nkind = "burst"\nshare = 0.1\nat = 1.0\n')
    struck = [i for i in range(2000) if fault_events(s, "s", 4, i, 10.0)]
    assert len(struck) / 2000 == pytest.approx(0.1, abs=0.02)
    assert struck == [i for i in range(2000) if fault_events(s, "s", 4, i, 10.0)]
    assert all(e.at == 1.0 for i in struck for e in fault_events(s, "s", 4, i, 10.0))
    # Too late for the run: no event.
    assert all(not fault_events(s, "s", 4, i, 1.0) for i in struck)


def test_a_rate_strikes_about_that_often() -> None:
    s = _scenario(1, '[[faults]]\nname = "x"\ndevice_type = "s"\nkind = "drop"\nrate = 360.0\nseconds = 1.0\n')
    counts = [len(fault_events(s, "s", 4, i, 100.0)) for i in range(500)]  # 10 per device on average
    assert sum(counts) / 500 == pytest.approx(10.0, rel=0.1)


def test_ramp_up_and_spike_phases() -> None:
    s = _scenario(1, '[[phases]]\nkind = "ramp_up"\nseconds = 10.0\n[[phases]]\nkind = "spike"\nat = 2.0\n'
                     'seconds = 1.0\nfactor = 3\n')
    assert [device_begin(s.phases, r, 4) for r in range(4)] == [0.0, 2.5, 5.0, 7.5]
    assert [spike_extra(s.phases, t) for t in (1.9, 2.0, 2.9, 3.0)] == [0, 2, 2, 0]


@pytest.mark.parametrize(("tail", "message"), [
    ('[[faults]]\nname = "x"\ndevice_type = "s"\nkind = "drop"\n',
     r"f\.toml: faults\[0\]: expected exactly one of at \(seconds after the start\) and rate"),
    ('[[faults]]\nname = "x"\ndevice_type = "t"\nkind = "drop"\nat = 1.0\n',
     r"f\.toml: faults\[0\]\.device_type: expected one of the device types \(s\), got 't'"),
    ('[[faults]]\nname = "x"\ndevice_type = "s"\nkind = "anomaly"\nat = 1.0\nattribute = "w"\n',
     r"f\.toml: faults\[0\]\.attribute: expected one of s's attributes \(v\), got 'w'"),
    ('[[faults]]\nname = "x"\ndevice_type = "s"\nkind = "setpoint"\nat = 1.0\nattribute = "v"\nparameter = "step"\n',
     r"f\.toml: faults\[0\]\.parameter: expected one of value for a constant generator, got 'step'"),
    ('[[phases]]\nkind = "spike"\nseconds = 1.0\nfactor = 1\n',
     r"f\.toml: phases\[0\]\.factor: expected 2 to 100 states per state due, got 1"),
])
def test_a_fault_or_phase_that_cannot_work_is_refused(tail: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _scenario(1, tail)


def _run(count: int, tail: str, duration: float) -> tuple[Simulation, dict[str, list[tuple[int, dict[str, Any]]]]]:
    scenario = _scenario(count, tail)
    ids = tuple(f"{i:024x}" for i in range(count))
    target = Target(application_id="a" * 24, device_ids=ids, mqtt_host="127.0.0.1", key="k", secret="s")
    sim = Simulation(SimulationConfig(devices=count, duration=duration, scenario=scenario), target)
    got: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)

    async def send(device_id: str, data: dict[str, Any], ms: int) -> None:
        got[device_id].append((ms, data))

    return sim, got


async def test_a_drop_holds_states_back_and_sends_them_with_their_times() -> None:
    from losant_async._time import now_ms

    sim, got = _run(2, '[[faults]]\nname = "tunnel"\ndevice_type = "s"\nkind = "drop"\nat = 0.2\nseconds = 0.3\n', 0.8)
    late: dict[str, list[int]] = defaultdict(list)

    async def send(device_id: str, data: dict[str, Any], ms: int) -> None:
        got[device_id].append((ms, data))
        late[device_id].append(now_ms() - ms)

    await sim._report(send, None)
    sim._type_sections()
    expected = sim.config.expected()
    assert sim.stats.states_sent == expected == sum(len(v) for v in got.values())
    assert sim.stats.states_delayed > 0
    assert sim.stats.faults["tunnel"]["states_delayed"] == sim.stats.states_delayed
    for states in got.values():
        times = [ms for ms, _ in states]
        assert len(set(times)) == len(times) and times == sorted(times)
    assert sim.stats.states_delayed == 6  # due at 0.2, 0.3, 0.4 (and 0.25, 0.35, 0.45): held until 0.5
    for lags in late.values():
        # Those the drop held went once it ended (the lane sleeps until then), with the times they were taken at.
        assert max(lags) >= 250


async def test_a_burst_and_an_anomaly_and_a_ramp_up() -> None:
    sim, got = _run(4, """
[[phases]]
kind = "ramp_up"
seconds = 0.4
[[faults]]
name = "chatter"
device_type = "s"
kind = "burst"
at = 0.25
count = 3
[[faults]]
name = "spike"
device_type = "s"
kind = "anomaly"
at = 0.0
seconds = 0.3
attribute = "v"
delta = 10.0
""", 0.8)

    async def send(device_id: str, data: dict[str, Any], ms: int) -> None:
        got[device_id].append((ms, data))

    await sim._report(send, None)
    sim._type_sections()
    stats = sim.stats
    assert stats.states_sent == sim.config.expected()
    assert stats.states_burst == 4 * 3 == stats.faults["chatter"]["states_burst"]
    assert sum(len(v) for v in got.values()) == stats.states_sent + stats.states_burst
    first = got[sim.target.device_ids[0]]
    values = [d["v"] for _, d in sorted(first)]
    assert values[0] == 11.0 and values[-1] == 1.0  # biased during the anomaly, back after it
    # The ramp: device 3 starts 0.3 s in, so it reports fewer states than device 0.
    assert len(got[sim.target.device_ids[3]]) < len(first)


def test_faults_strike_the_same_devices_whichever_shard_runs_them() -> None:
    scenario = _scenario(30, '[[faults]]\nname = "x"\ndevice_type = "s"\nkind = "drop"\nrate = 3600.0\nseconds = 0.5\n')

    def plan(shard: Any) -> dict[int, list[float]]:
        config = SimulationConfig(devices=30, duration=5.0, scenario=scenario, shard=shard)
        return {s.index: [e.at for e in fault_events(scenario, "s", config.seed_of_values, s.index, 5.0)]
                for s in config.specs()}

    whole = plan(split_fleet(30, 1)[0])
    parts: dict[int, list[float]] = {}
    for shard in split_fleet(30, 4):
        parts.update(plan(shard))
    assert parts == whole and any(whole.values())

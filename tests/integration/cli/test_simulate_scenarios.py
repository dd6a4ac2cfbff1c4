"""``simulate --scenario``: the example scenarios end to end, and a scenario against an emulator started apart."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from losant_async.rest import LosantClient
from losant_async.simulator import load_scenario
from losant_async.testing import Application, LocalLosant
from tests.integration.cli._cli import run_cli

pytestmark = pytest.mark.timeout(120)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "scenarios"


def _explain(done: Any) -> str:
    return f"rc={done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"


@dataclass
class Apart:
    """An emulator started apart from the run, with an application: what ``simulate`` is aimed at."""

    losant: LocalLosant
    app: Application
    key: Any
    token: str

    def flags(self) -> list[str]:
        """The flags that aim ``simulate`` at it, as at real Losant (no throttle: it is local)."""
        return ["--url", self.losant.rest_url, "--broker", f"mqtt://{self.losant.mqtt_host}:{self.losant.mqtt_port}",
                "--application", self.app.id, "--key", self.key.key, "--secret", self.key.secret,
                "--token", self.token, "--no-throttle"]

    async def simulate(self, tmp_path: Path, scenario: str | Path, *extra: str,
                       timeout: float = 90.0) -> tuple[Any, dict[str, Any]]:
        """Run ``simulate --scenario`` (a file, or a scenario's text) against it: the process and its report."""
        if isinstance(scenario, str):
            (tmp_path / "scenario.toml").write_text(scenario)
            scenario = tmp_path / "scenario.toml"
        out = tmp_path / "report.json"
        done = await run_cli(["simulate", "--scenario", str(scenario), "--quiet", "--json", str(out), *extra,
                              *self.flags()], timeout=timeout)
        return done, (json.loads(out.read_text()) if out.exists() else {})

    async def devices(self) -> list[Any]:
        async with LosantClient(self.token, url=self.losant.rest_url) as client:
            return [d async for d in client.devices.get(application_id=self.app.id)]


@pytest.fixture
async def apart() -> AsyncIterator[Apart]:
    async with LocalLosant(throttle=False) as losant:
        app = losant.create_application(name="mine")
        key = app.create_access_key()
        yield Apart(losant, app, key, app.create_api_token(scopes=["all.Application"]))


@pytest.mark.parametrize("name", ["cold_chain.toml", "building.toml", "factory.toml"])
async def test_an_example_scenario_runs_on_the_embedded_emulator_and_loses_nothing(tmp_path: Path, name: str) -> None:
    out = tmp_path / "report.json"
    sized = ["--devices", "50"] if name == "building.toml" else []
    done = await run_cli(["simulate", "--scenario", str(EXAMPLES / name), *sized, "--duration", "3", "--quiet",
                          "--json", str(out)])
    assert done.returncode == 0, _explain(done)
    report = json.loads(out.read_text())
    scenario = load_scenario(EXAMPLES / name)
    assert report["ok"] is True and report["scenario"] == scenario.name
    assert report["states_stored"] == (report["states_sent"] + report["states_buffered"] + report["states_replies"]
                                       + report["states_burst"]) > 0
    assert list(report["types"]) == [t.name for t in scenario.device_types]
    for section in report["types"].values():
        assert section["devices"] > 0
        assert section["states_sent"] + section["states_buffered"] + section["states_unchanged"] \
            + section["states_held"] == section["states_expected"] > 0
    assert f"type {scenario.device_types[0].name}" in done.stdout
    # A section per fault: what each one did.
    assert list(report["faults"]) == [f.name for f in scenario.faults]
    assert sum(f["states_burst"] for f in report["faults"].values()) <= report["states_burst"]


async def test_a_scenario_against_an_emulator_started_apart_is_provisioned_and_counted_over_rest(
    tmp_path: Path, apart: Apart,
) -> None:
    losant = apart.losant
    done, report = await apart.simulate(tmp_path, EXAMPLES / "cold_chain.toml", "--duration", "3")
    assert done.returncode == 0, _explain(done)
    # Counted by asking the emulator's REST API, as against Losant: not "n/a".
    assert report["embedded_emulator"] is False
    assert report["states_stored"] == report["states_sent"] + report["states_burst"] > 0
    assert report["states_lost"] == 0
    devices = await apart.devices()
    trucks = {d.name: d for d in devices if re.fullmatch(r"truck-\d{3}", str(d.name))}
    doors = [d for d in devices if str(d.name).endswith("-door")]
    assert len(trucks) == 20 and len(doors) == 20
    truck = trucks["truck-007"]
    assert {(t.key, t.value) for t in truck.tags or []} >= {("fleet", "cold-chain"), ("region", "midwest")}
    assert {(a.name, a.data_type) for a in truck.attributes or []} == {
        ("reefer_temp", "number"), ("location", "gps"), ("fuel", "number")}
    states = losant.states(str(truck.id))
    assert states and all(set(s.data) == {"reefer_temp", "location", "fuel"} for s in states)
    assert all(re.fullmatch(r"-?\d+\.\d{6},-?\d+\.\d{6}", str(s.data["location"])) for s in states)
    door_states = [s for d in doors for s in losant.states(str(d.id))]
    assert door_states and all(isinstance(s.data["door_open"], bool) for s in door_states)


async def test_a_device_that_cannot_connect_fails_the_run_and_is_named(tmp_path: Path, apart: Apart) -> None:
    ids = [apart.app.create_device(name=f"d{i}", device_class="standalone",
                                   attributes={"temperature": "number"}).id for i in range(2)]
    unknown = "0123456789abcdef01234567"  # no such device in this application: the broker refuses it
    listed = tmp_path / "ids.txt"
    listed.write_text("\n".join([*ids, unknown]) + "\n")
    done = await run_cli(["simulate", "--devices", "3", "--duration", "2", "--quiet", "--device-ids", str(listed),
                          *apart.flags()], timeout=60)
    assert done.returncode == 1, _explain(done)
    assert f"1 of 3 devices could not connect (sim-00002 ({unknown}))" in done.stderr, _explain(done)
    assert apart.key.secret not in done.stderr


SETPOINT = """
name = "setpoint"
[[device_types]]
name = "oven"
count = 2
interval = 0.25
[device_types.attributes.temp]
type = "number"
generator = { kind = "constant", value = 10.0 }
[[device_types.reactions]]
command = "set_temp"
action = "setpoint"
attribute = "temp"
parameter = "value"
[[device_types.reactions]]
command = "set_temp"
action = "ack"
attribute = "ack"
[[commands]]
name = "set_temp"
device_type = "oven"
interval = 1.5
devices = 2
payload = { value = 50.0 }
"""


async def test_a_setpoint_command_changes_the_values_reported_after_it(tmp_path: Path, apart: Apart) -> None:
    losant = apart.losant
    done, report = await apart.simulate(tmp_path, SETPOINT, "--duration", "3", "--command-interval", "0")
    assert done.returncode == 0, _explain(done)
    # One round at 1.5 s to both ovens (the next, at 3 s, is the end of the reporting).
    assert report["commands_by_name"]["set_temp"] == {"sent": 2, "received": 2, "reactions": 4, "ignored": 0}
    assert report["states_replies"] == 2 and report["states_stored"] == report["states_sent"] + 2
    devices = await apart.devices()
    assert len(devices) == 2
    for device in devices:
        states = sorted(losant.states(str(device.id)), key=lambda s: s.time)
        acks = [k for k, s in enumerate(states) if "ack" in s.data]
        assert len(acks) == 1, states
        (k,) = acks
        assert json.loads(str(states[k].data["ack"])) == {"value": 50.0}
        (command,) = losant.commands_sent(str(device.id))
        before = [s.data["temp"] for s in states if s.time < command.time]
        after = [s.data["temp"] for s in states[k + 1:]]
        # States before the command carry the generator's value; every one after the device's
        # reply follows the setpoint (in between, the reaction happened first: either value).
        assert before and set(before) == {10.0}
        assert after and set(after) == {50.0}




HISTORY = """
name = "history"
seed = 2
[[device_types]]
name = "meter"
count = 2
interval = 60.0
[device_types.attributes.kwh]
type = "number"
generator = { kind = "counter", start = 0, step = 1 }
"""


async def test_a_backfill_is_stored_with_its_original_times_and_the_values_go_on_live(
    tmp_path: Path, apart: Apart,
) -> None:
    from losant_async._time import now_ms

    losant = apart.losant
    before = now_ms()
    done, report = await apart.simulate(tmp_path, HISTORY, "--backfill", "1h", "--duration", "1",
                                        "--command-interval", "0")
    assert done.returncode == 0, _explain(done)
    assert report["states_backfilled"] == 2 * 60 and report["backfill_seconds"] > 0
    assert report["states_stored"] == 2 * 60 + report["states_sent"] and report["states_lost"] == 0
    assert "states backfilled" in done.stdout
    async with LosantClient(apart.token, url=losant.rest_url) as client:
        for device in [d async for d in client.devices.get(application_id=apart.app.id)]:
            # Queried through the API like any history: a window an hour back returns it at once.
            page = await client.device.get_state(
                application_id=apart.app.id, device_id=str(device.id), start=before - 3_600_000 - 60_000,
                end=before, limit=1000, sort_direction="asc", raw=True)
            times = [int(datetime.fromisoformat(s["time"].replace("Z", "+00:00")).timestamp() * 1000)
                     for s in page]
            values = [s["data"]["kwh"] for s in page]
            assert len(times) == 60
            assert all(b - a == 60_000 for a, b in itertools.pairwise(times))
            assert before - 3_600_000 - 1000 <= times[0] and times[-1] < before + 1000
            assert values == [float(k) for k in range(60)]
            # The live states go on from where the history stopped.
            live = [s.data["kwh"] for s in losant.states(str(device.id)) if s.time >= before]
            assert all(v >= 60 for v in live)

REBOOT = """
name = "reboot"
[[device_types]]
name = "plc"
count = 2
interval = 0.2
[device_types.attributes.x]
type = "number"
generator = { kind = "counter" }
[[device_types.reactions]]
command = "reboot"
action = "reboot"
seconds = 0.5
[[commands]]
name = "reboot"
device_type = "plc"
interval = 1.0
devices = 1
"""


async def test_a_reboot_command_disconnects_the_device_and_it_connects_again(tmp_path: Path, apart: Apart) -> None:
    done, report = await apart.simulate(tmp_path, REBOOT, "--duration", "3.5", "--command-interval", "0")
    # Rounds at 1, 2 and 3 s, one device each in turn: device 0 at 1 s (back by 1.5 s plus its
    # connect), device 1 at 2 s, device 0 at 3 s (it may still be off when the run ends).
    assert report["reboots"] >= 2 and report["reconnects"] >= 1, (report, _explain(done))
    assert report["states_held"] > 0  # reports due while off: not taken
    assert report["states_lost"] == 0
    assert report["states_sent"] + report["states_held"] == report["states_expected"]
    logs = [apart.losant.connection_log(str(d.id)) for d in await apart.devices()]
    # Each device disconnected and connected again: more than one connection in its log.
    assert all(sum(1 for e in log if getattr(e, "connected", None) or "connect" in str(e).lower()) >= 2
               for log in logs), logs

async def test_a_scenario_split_over_two_processes_merges_its_sections(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = await run_cli(["simulate", "--scenario", str(EXAMPLES / "building.toml"), "--devices", "60",
                          "--processes", "2", "--duration", "3", "--quiet", "--json", str(out)])
    assert done.returncode == 0, _explain(done)
    report = json.loads(out.read_text())
    assert len(report["shards"]) == 2 and report["ok"] is True
    # 36 thermostats, 18 occupancy sensors, 6 meters: shares of 60, whichever shard carried them.
    assert {name: s["devices"] for name, s in report["types"].items()} == {
        "thermostat": 36, "occupancy": 18, "meter": 6}
    assert report["states_stored"] == report["states_sent"]


MIXED = """
name = "mixed"
[[device_types]]
name = "sensor"
count = 3
interval = 0.5
transport = "mqtt"
[device_types.attributes.t]
type = "number"
generator = { kind = "counter" }
[[device_types.reactions]]
command = "poke"
action = "ack"
attribute = "ack"
[[device_types]]
name = "meter"
count = 2
interval = 0.5
transport = "rest"
[device_types.attributes.kwh]
type = "number"
generator = { kind = "counter" }
[[commands]]
name = "poke"
device_type = "sensor"
interval = 1.0
devices = 3
"""


async def test_device_types_of_one_scenario_report_over_mqtt_and_rest_and_commands_reach_the_mqtt_ones(
    tmp_path: Path, apart: Apart,
) -> None:
    done, report = await apart.simulate(tmp_path, MIXED, "--duration", "2.5", "--command-interval", "1")
    assert done.returncode == 0, _explain(done)
    assert report["ok"] is True and report["transport"] == "mqtt+rest"
    assert {n: (s["transport"], s["devices"]) for n, s in report["types"].items()} == {
        "sensor": ("mqtt", 3), "meter": ("rest", 2)}
    assert report["states_stored"] == report["states_sent"] + report["states_replies"] and report["states_lost"] == 0
    by_name = {str(d.name): str(d.id) for d in await apart.devices()}
    sensors = [i for n, i in by_name.items() if n.startswith("sensor")]
    meters = [i for n, i in by_name.items() if n.startswith("meter")]
    losant = apart.losant
    # The meters' states came over REST: stored, with no MQTT connection ever made.
    assert all(losant.states(m) and not losant.connection_log(m) for m in meters)
    assert all(losant.states(s) and losant.connection_log(s) for s in sensors)
    # Every command (the built-in rounds and the scenario's) went to the MQTT devices only.
    assert all(not losant.commands_sent(m) for m in meters)
    assert report["commands_sent"] == report["commands_received"] > 0
    assert report["commands_by_name"]["poke"]["received"] == report["commands_by_name"]["poke"]["sent"] > 0


RAMP = """
name = "ramp"
[[device_types]]
name = "unit"
count = 4
interval = 0.25
[device_types.attributes.n]
type = "number"
generator = { kind = "counter" }
[[phases]]
kind = "ramp_up"
seconds = 2.0
"""


async def test_a_ramp_up_connects_each_device_when_it_begins_not_all_at_the_start(
    tmp_path: Path, apart: Apart,
) -> None:
    done, report = await apart.simulate(tmp_path, RAMP, "--duration", "3", "--command-interval", "0")
    assert done.returncode == 0, _explain(done)
    assert report["ok"] is True and report["states_lost"] == 0
    losant = apart.losant
    ids = {str(d.name): str(d.id) for d in await apart.devices()}
    order = [ids[f"unit-{k:05d}"] for k in range(4)]  # rank k begins at 2.0 * k / 4 s
    first_connect = [min(e.time for e in losant.connection_log(d) if e.connected) for d in order]
    first_state = [losant.states(d)[0].time for d in order]
    # The last device's connection was opened only when its turn came (1.5 s in), after the
    # first device had already reported: not with the rest of the fleet at the start.
    assert first_connect[3] > first_state[0]
    # And each device reported only once connected, over its own session.
    assert all(c <= s for c, s in zip(first_connect, first_state, strict=True))

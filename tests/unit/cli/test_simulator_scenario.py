"""Scenario files: decoding into typed device types, and an error naming file, field and expectation for each mistake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from losant_async.errors import ValidationError
from losant_async.simulator import SimulationConfig, default_scenario, load_scenario, parse_scenario
from losant_async.simulator._scenario import RandomWalkGen, SineGen, type_counts

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "scenarios"

BASE = """
name = "t"
[[device_types]]
name = "a"
count = 3
[device_types.attributes.x]
type = "number"
generator = { kind = "uniform", min = 0.0, max = 1.0 }
"""


def _error(text: str) -> str:
    with pytest.raises(ValidationError) as info:
        parse_scenario(text, "fleet.toml")
    return str(info.value)


def test_a_scenario_decodes_into_typed_device_types() -> None:
    s = parse_scenario("""
name = "trucks"
seed = 5
[[device_types]]
name = "truck"
count = 4
name_pattern = "truck-{index:02d}"
tags = { fleet = "x" }
interval = 10.0
jitter = 0.1
qos = 1
[device_types.attributes.temp]
type = "number"
precision = 1
generator = { kind = "sine", period = 60.0, amplitude = 2.0, offset = 4.0 }
""")
    (t,) = s.device_types
    assert (s.name, s.seed, t.count, t.interval, t.jitter, t.qos) == ("trucks", 5, 4, 10.0, 0.1, 1)
    assert isinstance(t.attributes["temp"].generator, SineGen)
    assert t.attributes["temp"].generator.period == 60.0
    config = SimulationConfig(devices=4, scenario=s)
    assert [spec.name for spec in config.specs()] == ["truck-00", "truck-01", "truck-02", "truck-03"]
    assert {spec.period for spec in config.specs()} == {10.0}


def test_the_default_scenario_is_the_built_in_fleet() -> None:
    s = default_scenario()
    (t,) = s.device_types
    assert list(t.attributes) == ["temperature", "humidity", "battery"]
    assert t.share == 1.0 and isinstance(t.attributes["temperature"].generator, RandomWalkGen)
    # The names and the schedule of the built-in fleet are what they always were.
    specs = SimulationConfig(devices=4, rate=2.0).specs()
    assert [s.name for s in specs] == ["sim-00000", "sim-00001", "sim-00002", "sim-00003"]
    assert [s.offset for s in specs] == [0.0, 0.125, 0.25, 0.375]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_scenario_loads(path: Path) -> None:
    s = load_scenario(path)
    assert s.device_types and s.name


def test_shares_split_devices_by_largest_remainder_and_counts_are_added() -> None:
    s = parse_scenario(BASE.replace("count = 3", "share = 0.5") + """
[[device_types]]
name = "b"
share = 0.5
[device_types.attributes.x]
type = "number"
generator = { kind = "constant", value = 1 }
[[device_types]]
name = "c"
count = 2
[device_types.attributes.x]
type = "boolean"
generator = { kind = "constant", value = true }
""")
    assert type_counts(s, 7 + 2) == [4, 3, 2]
    config = SimulationConfig(devices=9, scenario=s)
    assert [t.count for t in config.types()] == [4, 3, 2]
    assert [t.start for t in config.types()] == [0, 4, 7]


ERRORS = [
    ("not toml", "x = = 1", r"fleet\.toml: not valid TOML"),
    ("unknown field", BASE.replace('name = "t"', 'name = "t"\ncolour = 1'),
     r"fleet\.toml: \(top level\): object contains unknown field `colour`"),
    ("wrong type", BASE.replace("count = 3", 'count = "3"'),
     r"fleet\.toml: device_types\[0\]\.count: expected `int \| null`, got `str`"),
    ("unknown generator", BASE.replace('kind = "uniform"', 'kind = "wobble"'),
     r"fleet\.toml: device_types\[0\]\.attributes\.x\.generator\.kind: expected one of constant, .*replay, got .wobble."),
    ("generator field missing", BASE.replace("min = 0.0, ", ""),
     r"device_types\[0\]\.attributes\.x\.generator: object missing required field `min`"),
    ("count and share", BASE.replace("count = 3", "count = 3\nshare = 1.0"),
     r"device_types\[0\]: expected exactly one of count and share"),
    ("shares", BASE.replace("count = 3", "share = 0.4"),
     r"device_types: expected the shares of --devices to add up to 1, got 0\.4"),
    ("duplicate", BASE + BASE.split('name = "t"', 1)[1],
     r"device_types\[1\]\.name: expected a unique name; 'a' is also device_types\[0\]"),
    ("pattern", BASE.replace("count = 3", 'count = 3\nname_pattern = "dev"'),
     r"device_types\[0\]\.name_pattern: expected \{index\} in the pattern"),
    ("pattern field", BASE.replace("count = 3", 'count = 3\nname_pattern = "{serial}"'),
     r"device_types\[0\]\.name_pattern: expected a pattern with \{index\} and \{type\} only"),
    ("heartbeat", BASE.replace("count = 3", "count = 3\nheartbeat = 5.0"),
     r"device_types\[0\]\.heartbeat: expected only with on_change = true"),
    ("interval", BASE.replace("count = 3", "count = 3\ninterval = 0.0"),
     r"device_types\[0\]\.interval: expected a number > 0, got 0\.0"),
    ("jitter", BASE.replace("count = 3", "count = 3\njitter = 2.0"),
     r"device_types\[0\]\.jitter: expected a share from 0 to 1, got 2\.0"),
    ("per gateway", BASE.replace("count = 3", "count = 3\nperipherals_per_gateway = 51"),
     r"device_types\[0\]\.peripherals_per_gateway: expected 1 to 50"),
    ("gateway over rest", BASE.replace("count = 3", 'count = 3\ngateways = true\ntransport = "rest"'),
     r"device_types\[0\]\.transport: expected mqtt: gateways report over MQTT"),
    ("type mismatch", BASE.replace('type = "number"', 'type = "string"'),
     r"device_types\[0\]\.attributes\.x\.type: expected number for a uniform generator, got string"),
    ("constant type", BASE.replace('{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "constant", value = "hot" }'),
     r"attributes\.x\.generator\.value: expected a number for a number attribute, got 'hot'"),
    ("weights", BASE.replace('type = "number"', 'type = "string"').replace(
        '{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "choice", values = ["a", "b"], weights = [1.0] }'),
     r"attributes\.x\.generator\.weights: expected 2 weights \(one per value\), got 1"),
    ("bounds", BASE.replace("min = 0.0, max = 1.0", "min = 2.0, max = 1.0"),
     r"attributes\.x\.generator\.max: expected max >= min \(2\.0\), got 1\.0"),
    ("walk start", BASE.replace('{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "random_walk", step = 1.0 }'),
     r"attributes\.x\.generator: expected start, or start_min and start_max"),
    ("daily", BASE.replace('{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "daily", hours = [1.0, 2.0] }'),
     r"attributes\.x\.generator\.hours: expected 24 values \(one per hour\), got 2"),
    ("gps", BASE.replace('type = "number"', 'type = "gps"').replace(
        '{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "gps_walk", lat = 95.0, lon = 0.0 }'),
     r"attributes\.x\.generator: expected a latitude from -90 to 90, got 95\.0"),
    ("precision on text", BASE.replace('type = "number"', 'type = "string"\nprecision = 2').replace(
        '{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "constant", value = "a" }'),
     r"attributes\.x\.precision: expected only on a number attribute"),
    ("missing rate", BASE.replace('type = "number"', 'type = "number"\nmissing = 1.5'),
     r"attributes\.x\.missing: expected a share from 0 to 1, got 1\.5"),
    ("attribute name", BASE.replace("attributes.x]", 'attributes."a b"]'),
     r"device_types\[0\]\.attributes\.a b: expected a name of letters, digits"),
    ("command to a REST type", BASE.replace("count = 3", 'count = 3\ntransport = "rest"')
     + '[[commands]]\nname = "reset"\ndevice_type = "a"\ninterval = 5.0\n',
     r"commands\[0\]\.device_type: expected a device type reporting over MQTT \(commands reach devices over MQTT "
     r"only\); 'a' reports over REST"),
    ("counter wrap", BASE.replace('{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "counter", start = 5.0, step = 1.0, wrap = 2.0 }'),
     r"attributes\.x\.generator\.wrap: expected a wrap value the counter reaches from start by its step"),
    ("route", BASE.replace('type = "number"', 'type = "gps"').replace(
        '{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "gps_route", speed_kmh = 50.0, waypoints = [[1.0, 2.0]] }'),
     r"attributes\.x\.generator\.waypoints: expected at least 2 waypoints"),
    ("route speed", BASE.replace('type = "number"', 'type = "gps"').replace(
        '{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "gps_route", speed_kmh = 0.0, waypoints = [[1.0, 2.0], [1.0, 3.0]] }'),
     r"attributes\.x\.generator\.speed_kmh: expected a number > 0, got 0\.0"),
    ("utc offset", BASE.replace('{ kind = "uniform", min = 0.0, max = 1.0 }',
                                '{ kind = "daily", hours = [' + ", ".join(["1.0"] * 24) + '], utc_offset = 20.0 }'),
     r"attributes\.x\.generator\.utc_offset: expected -14 to 14 hours, got 20\.0"),
    ("normal std", BASE.replace('{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "normal", mean = 1.0, std = -1.0 }'),
     r"attributes\.x\.generator\.std: expected a number >= 0, got -1\.0"),
    ("ramp period", BASE.replace('{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "ramp", min = 0.0, max = 1.0, period = 0.0 }'),
     r"attributes\.x\.generator\.period: expected a number > 0, got 0\.0"),
    ("sine period", BASE.replace('{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "sine", period = -1.0, amplitude = 1.0 }'),
     r"attributes\.x\.generator\.period: expected a number > 0, got -1\.0"),
    ("empty choice", BASE.replace('{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "choice", values = [] }'),
     r"attributes\.x\.generator\.values: expected at least one value"),
    ("zero weights", BASE.replace('{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "choice", values = [1, 2], weights = [0.0, 0.0] }'),
     r"attributes\.x\.generator\.weights: expected at least one weight above 0"),
    ("gps text", BASE.replace('type = "number"', 'type = "gps"').replace('{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "constant", value = "north" }'),
     r"attributes\.x\.generator\.value: expected a \"lat,lon\" string for a gps attribute, got 'north'"),
    ("gps generator", BASE.replace('type = "number"', 'type = "gps"'),
     r"attributes\.x\.type: expected number for a uniform generator, got gps"),
    ("peripheral direct", BASE.replace("count = 3", 'count = 3\ndevice_class = "peripheral"\ngateways = false'),
     r"device_types\[0\]\.device_class: expected standalone: peripherals report through gateways"),
    ("standalone via gateway", BASE.replace("count = 3", 'count = 3\ndevice_class = "standalone"\ngateways = true'),
     r"device_types\[0\]\.device_class: expected peripheral \(or nothing\) for a type that reports through gateways"),
    ("per gateway without gateways", BASE.replace("count = 3", "count = 3\ngateways = false\nperipherals_per_gateway = 5"),
     r"device_types\[0\]\.peripherals_per_gateway: expected only with gateways = true"),
    ("count range", BASE.replace("count = 3", "count = 0"),
     r"device_types\[0\]\.count: expected a count from 1 to 10000000, got 0"),
    ("noise on text", BASE.replace('type = "number"', 'type = "string"\nnoise = 1.0').replace('{ kind = "uniform", min = 0.0, max = 1.0 }', '{ kind = "constant", value = "a" }'),
     r"attributes\.x\.noise: expected only on a number attribute"),
    ("precision range", BASE.replace('type = "number"', 'type = "number"\nprecision = 20'),
     r"attributes\.x\.precision: expected 0 to 12 decimal places, got 20"),
    ("tag value", BASE.replace("count = 3", "count = 3\ntags = { floor = 3 }"),
     r"device_types\[0\]\.tags\.floor: expected `str`, got `int`"),
    ("no types", 'name = "t"\ndevice_types = []', r"device_types: expected at least one device type"),
    ("no name", BASE.replace('name = "t"', ""), r"\(top level\): object missing required field `name`"),
]


@pytest.mark.parametrize(("case", "text", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_every_mistake_names_the_file_the_field_and_what_was_expected(case: str, text: str, message: str) -> None:
    error = _error(text)
    assert error.startswith("fleet.toml: "), error
    assert re.search(message, error), error


def test_a_replay_column_is_read_once_relative_to_the_scenario_file(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("t,level\n0,1.5\n1,2.5\n")
    scenario = tmp_path / "s.toml"
    scenario.write_text(BASE.replace('{ kind = "uniform", min = 0.0, max = 1.0 }',
                                     '{ kind = "replay", file = "data.csv", column = "level" }'))
    gen = load_scenario(scenario).device_types[0].attributes["x"].generator
    assert getattr(gen, "values", None) == (1.5, 2.5)
    scenario.write_text(BASE.replace('{ kind = "uniform", min = 0.0, max = 1.0 }',
                                     '{ kind = "replay", file = "data.csv", column = "depth" }'))
    with pytest.raises(ValidationError, match=r"s\.toml: device_types\[0\]\.attributes\.x\.generator\.column: "
                       r"expected a column of .*data\.csv.* \(t, level\), got 'depth'"):
        load_scenario(scenario)
    (tmp_path / "data.csv").write_text("t,level\n0,high\n")
    scenario.write_text(BASE.replace('{ kind = "uniform", min = 0.0, max = 1.0 }',
                                     '{ kind = "replay", file = "data.csv", column = "level" }'))
    with pytest.raises(ValidationError, match=r"expected numbers in column 'level'; data\.csv:2 has 'high'"):
        load_scenario(scenario)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"cannot read scenario file .*nope\.toml"):
        load_scenario(tmp_path / "nope.toml")


def test_a_config_rejects_a_fleet_size_the_scenario_cannot_have() -> None:
    s = parse_scenario(BASE)
    with pytest.raises(ValidationError, match=r"has 3 devices by count, not 5"):
        SimulationConfig(devices=5, scenario=s)
    fast = parse_scenario(BASE.replace("count = 3", "count = 3\ninterval = 0.1"))
    with pytest.raises(ValidationError, match=r"device type 'a' reports every 0\.1 s, above Losant's limit"):
        SimulationConfig(devices=3, scenario=fast, throttle=True)


def test_types_of_one_scenario_may_report_over_mqtt_and_rest_but_gateways_only_over_mqtt() -> None:
    two = BASE + BASE.split('name = "t"', 1)[1].replace('name = "a"', 'name = "b"')
    mixed = parse_scenario(two.replace("count = 3", 'count = 3\ntransport = "rest"', 1))
    config = SimulationConfig(devices=6, scenario=mixed)
    assert [(t.name, t.transport) for t in config.types()] == [("a", "rest"), ("b", "mqtt")]
    assert config.transports == {"mqtt", "rest"}
    # Commands reach the MQTT type's 3 devices only; a fleet all over REST has no controller round.
    assert config.commandable_devices == 3 and config.command_batch == 1
    assert SimulationConfig(devices=3, scenario=parse_scenario(BASE), transport="rest").command_batch == 0
    # --transport rest with --gateway is refused by the flags; a type that names REST behind gateways too.
    with pytest.raises(ValidationError, match=r"device type 'a' reports through gateways, which report over MQTT"):
        SimulationConfig(devices=6, scenario=mixed, gateway=True)


def test_the_readme_scenario_is_a_valid_scenario() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```toml\n(.*?)```", readme, re.S)
    s = parse_scenario(block, "README.md")
    assert s.device_types[0].count == 200 and s.faults[0].share == 0.02
    bad = block.replace("step = 0.2", "step = -1.0")
    with pytest.raises(ValidationError) as info:
        parse_scenario(bad, "fleet.toml")
    # The error the README quotes is the one the code gives.
    assert str(info.value) in readme

"""Command reactions on the devices' live models: set, setpoint, interval, ack, and payloads they cannot use."""

from __future__ import annotations

import pytest

from losant_async.errors import ValidationError
from losant_async.simulator import DeviceModel, SimulationConfig, parse_scenario
from losant_async.simulator._reactions import CommandPlan, Reactor

SCENARIO = parse_scenario("""
name = "r"
[[device_types]]
name = "valve"
count = 2
interval = 0.5
[device_types.attributes.flow]
type = "number"
generator = { kind = "sine", period = 10.0, amplitude = 1.0, offset = 5.0 }
[device_types.attributes.open]
type = "number"
generator = { kind = "constant", value = 0 }
[[device_types.reactions]]
command = "open"
action = "set"
attribute = "open"
[[device_types.reactions]]
command = "flow"
action = "setpoint"
attribute = "flow"
parameter = "offset"
payload_key = "target"
[[device_types.reactions]]
command = "slow"
action = "interval"
[[device_types.reactions]]
command = "open"
action = "ack"
attribute = "ack"
[[commands]]
name = "open"
device_type = "valve"
interval = 1.0
devices = 1
payload = { value = 1 }
""")


def _reactor() -> tuple[Reactor, list[str], dict[str, DeviceModel]]:
    config = SimulationConfig(devices=2, scenario=SCENARIO)
    specs = config.specs()
    ids = ["a" * 24, "b" * 24]
    reactor = Reactor(config.types(), ids, specs)
    attrs = config.types()[0].spec.attributes
    models = {d: DeviceModel(attrs, s.seed) for d, s in zip(ids, specs, strict=True)}
    reactor.models.update(models)
    return reactor, ids, models


def test_set_setpoint_and_interval_change_only_the_commanded_device() -> None:
    reactor, (a, b), models = _reactor()
    reactor.on_command(a, "open", {"value": 1})
    assert models[a].next(0.0)["open"] == 1.0 and models[b].next(0.0)["open"] == 0
    reactor.on_command(a, "flow", {"target": 20.0})
    assert 19.0 <= models[a].next(1.0)["flow"] <= 21.0 and models[b].next(1.0)["flow"] <= 6.0
    reactor.on_command(b, "slow", 2.0)  # a bare number is the value; 2 s is every 4th round of 0.5 s
    assert reactor.every == {b: 4}
    assert reactor.applied == {"open": 2, "flow": 1, "slow": 1}


def test_a_payload_a_reaction_cannot_use_is_counted_not_applied() -> None:
    reactor, (a, _), models = _reactor()
    reactor.on_command(a, "flow", {"value": 20.0})  # the reaction reads "target"
    reactor.on_command(a, "slow", "soon")
    assert reactor.ignored == {"flow": 1, "slow": 1} and reactor.every == {}
    assert models[a].next(0.0)["flow"] <= 6.0
    reactor.on_command(a, "unknown", {"value": 1})
    reactor.on_command("c" * 24, "open", {"value": 1})  # not a device of this shard
    assert reactor.applied == {}


def test_replies_wait_in_a_bounded_queue() -> None:
    from losant_async.simulator import _reactions

    reactor, (a, _), _ = _reactor()
    for _ in range(_reactions._REPLY_QUEUE + 3):
        reactor.on_command(a, "open", {"value": 1})
    assert reactor.replies_dropped == 3 and reactor.ignored["open"] == 3


def test_the_plan_schedules_rounds_before_the_end_of_the_reporting() -> None:
    config = SimulationConfig(devices=2, duration=3.0, scenario=SCENARIO)
    plan = CommandPlan(SCENARIO.commands, config.types(), ["a" * 24, "b" * 24], config.specs(), 3.0)
    assert plan.scheduled() == 2  # rounds at 1 s and 2 s, one device each; 3 s is the end
    assert plan.scheduled(1.5) == 1


@pytest.mark.parametrize(("reaction", "message"), [
    ('command = "x"\naction = "setpoint"\nattribute = "flow"\nparameter = "period"',
     r"reactions\[0\]\.parameter: expected one of offset, amplitude for a sine generator, got 'period'"),
    ('command = "x"\naction = "set"\nattribute = "nope"',
     r"reactions\[0\]\.attribute: expected one of this type's attributes \(flow\), got 'nope'"),
    ('command = "x"\naction = "restart"',
     r"reactions\[0\]\.action: expected one of 'set', 'setpoint', 'interval', 'ack', 'reboot', got 'restart'"),
    ('command = "x"\naction = "reboot"\nseconds = 0.0',
     r"reactions\[0\]\.seconds: expected more than 0 and at most 3600 seconds off, got 0\.0"),
])
def test_a_reaction_that_cannot_work_is_refused_with_its_path(reaction: str, message: str) -> None:
    text = """
name = "r"
[[device_types]]
name = "v"
count = 1
[device_types.attributes.flow]
type = "number"
generator = { kind = "sine", period = 10.0, amplitude = 1.0 }
[[device_types.reactions]]
""" + reaction
    with pytest.raises(ValidationError, match=r"s\.toml: device_types\[0\]\." + message):
        parse_scenario(text, "s.toml")


def test_a_command_for_an_unknown_type_is_refused() -> None:
    text = SCENARIO_TEXT_WITH_BAD_COMMAND
    with pytest.raises(ValidationError, match=r"s\.toml: commands\[0\]\.device_type: expected one of the device "
                       r"types \(v\), got 'pump'"):
        parse_scenario(text, "s.toml")


SCENARIO_TEXT_WITH_BAD_COMMAND = """
name = "r"
[[device_types]]
name = "v"
count = 1
[device_types.attributes.flow]
type = "number"
generator = { kind = "constant", value = 1 }
[[commands]]
name = "go"
device_type = "pump"
interval = 1.0
"""

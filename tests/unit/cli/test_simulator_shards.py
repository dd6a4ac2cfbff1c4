"""Shards of a fleet: deterministic slices whose union is the fleet, and the shared connection budget."""

from __future__ import annotations

import pytest

from losant_async.errors import ValidationError
from losant_async.simulator import (
    LOSANT_CONNECTIONS_PER_WINDOW,
    GatewayGroup,
    Shard,
    SimulationConfig,
    Target,
    config_from_dict,
    config_to_dict,
    connection_budget,
    expected_states,
    parse_shard,
    shard_range,
    split_fleet,
    target_from_dict,
    target_to_dict,
)


@pytest.mark.parametrize(("devices", "parts"), [(10, 1), (10, 3), (1000, 7), (7, 7), (10_001, 16)])
def test_the_union_of_the_slices_is_the_fleet_and_no_device_is_in_two(devices: int, parts: int) -> None:
    seen: list[int] = []
    for shard in split_fleet(devices, parts):
        seen.extend(shard_range(devices, shard))
    assert sorted(seen) == list(range(devices))
    assert len(seen) == len(set(seen))
    sizes = [len(shard_range(devices, s)) for s in split_fleet(devices, parts)]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_a_device_is_the_same_whichever_shard_runs_it() -> None:
    whole = {s.index: s for s in SimulationConfig(devices=50, rate=2.0, seed=9).specs()}
    for shard in split_fleet(50, 4):
        for spec in SimulationConfig(devices=50, rate=2.0, seed=9, shard=shard).specs():
            assert spec == whole[spec.index]
    names = [s.name for s in whole.values()]
    assert len(set(names)) == 50 and names[3] == "sim-00003"
    # The seed decides the sensor values; another seed, other values.
    other = SimulationConfig(devices=50, rate=2.0, seed=10).specs()
    assert [s.seed for s in other] != [s.seed for s in whole.values()]
    assert [s.seed for s in SimulationConfig(devices=50, rate=2.0, seed=9).specs()] == [
        s.seed for s in whole.values()
    ]


def test_the_shards_expected_states_add_up_to_the_fleets() -> None:
    total = expected_states(37, 1.0, 2.5)
    parts = [SimulationConfig(devices=37, duration=2.5, shard=s).expected() for s in split_fleet(37, 5)]
    assert sum(parts) == total


def test_split_fleet_never_makes_empty_shards() -> None:
    assert split_fleet(3, 8) == [Shard(0, 3), Shard(1, 3), Shard(2, 3)]
    with pytest.raises(ValidationError, match="empty"):
        SimulationConfig(devices=2, shard=Shard(0, 3))


@pytest.mark.parametrize(("text", "index", "count"), [("1/1", 0, 1), ("2/4", 1, 4), (" 4/4 ", 3, 4)])
def test_parse_shard(text: str, index: int, count: int) -> None:
    assert parse_shard(text) == Shard(index, count)
    assert str(parse_shard(text)) == text.strip()


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "x/2", "2", "", "1/2/3"])
def test_parse_shard_rejects(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_shard(text)


def test_shards_share_the_applications_connection_budget() -> None:
    for n in (1, 2, 3, 7, 150):
        assert n * connection_budget(n) <= LOSANT_CONNECTIONS_PER_WINDOW
        assert connection_budget(n) >= 2
    with pytest.raises(ValidationError, match="150 shards"):
        connection_budget(151)
    cfg = SimulationConfig(devices=100, throttle=True, shard=Shard(1, 4))
    assert cfg.connections_per_window == 75


def test_config_and_target_survive_the_trip_to_another_process() -> None:
    cfg = SimulationConfig(devices=20, rate=0.5, gateway=True, seed=3, command_wait=2.0, shard=Shard(1, 2))
    assert config_from_dict(config_to_dict(cfg)) == cfg
    target = Target(application_id="a" * 24, device_ids=("1" * 24, "2" * 24),
                    gateways=(GatewayGroup("9" * 24, ("1" * 24, "2" * 24)),), key="k", secret="s",
                    mqtt_host="127.0.0.1", mqtt_port=1883, rest_url="http://x", api_token="t")
    assert target_from_dict(target_to_dict(target)) == target

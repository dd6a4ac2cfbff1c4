"""The fleet simulator behind ``losant-async simulate``: fleet model, runners (one process, processes, Ray), report.

- :mod:`._scenario`: scenario files (TOML) decoded into typed device types; the built-in fleet is one.
- :mod:`._generators`: seeded value generators; a device's values are the same in any shard.
- :mod:`._fleet`: what to simulate and where (config, shards, schedules, sensor values, target); pure.
- :mod:`._report`: counters, progress, the report, and merging shards' reports and progress; pure.
- :mod:`._engine`: :class:`Simulation`, one shard in this event loop.
- :mod:`._emulator_host`: the embedded emulator in a process of its own, shared by every shard.
- :mod:`._shard_runner`: what the multi-shard runners share (start-up barrier, stop, merge).
- :mod:`._processes`: N shard processes on this machine, one merged progress and report.
- :mod:`._ray`: shards as Ray actors on a cluster (extra ``losant-async[ray]``).

Nothing here prints or reads the terminal; the CLI renders progress and reports.
"""

from __future__ import annotations

from ._engine import Simulation, StateSender
from ._fleet import (
    COMMAND_NAME,
    LOSANT_CONNECTION_RATE,
    LOSANT_CONNECTIONS_PER_WINDOW,
    LOSANT_TOPIC_RATE,
    MAX_PERIPHERALS_PER_GATEWAY,
    SENSOR_ATTRIBUTES,
    DeviceSpec,
    FleetType,
    GatewayGroup,
    Phase,
    PlannedGateway,
    SensorModel,
    Shard,
    SimulationConfig,
    StoredStates,
    Target,
    Transport,
    command_rounds,
    config_from_dict,
    config_to_dict,
    connection_budget,
    device_name,
    due_times,
    expected_states,
    parse_shard,
    peripherals_per_gateway,
    phase_offsets,
    plan_gateways,
    shard_range,
    split_fleet,
    target_from_dict,
    target_to_dict,
)
from ._generators import device_seed
from ._model import DeviceModel
from ._report import (
    LatencyHistogram,
    Progress,
    RateMeter,
    ShardInfo,
    SimulationReport,
    SimulationStats,
    build_report,
    machine_info,
    merge_progress,
    merge_reports,
    peak_rss_bytes,
    report_from_dict,
)
from ._scenario import (
    AttributeSpec,
    DeviceTypeSpec,
    Scenario,
    default_scenario,
    load_scenario,
    parse_scenario,
)

__all__ = [
    "COMMAND_NAME",
    "LOSANT_CONNECTIONS_PER_WINDOW",
    "LOSANT_CONNECTION_RATE",
    "LOSANT_TOPIC_RATE",
    "MAX_PERIPHERALS_PER_GATEWAY",
    "SENSOR_ATTRIBUTES",
    "AttributeSpec",
    "DeviceModel",
    "DeviceSpec",
    "DeviceTypeSpec",
    "FleetType",
    "GatewayGroup",
    "LatencyHistogram",
    "Phase",
    "PlannedGateway",
    "Progress",
    "RateMeter",
    "Scenario",
    "SensorModel",
    "Shard",
    "ShardInfo",
    "Simulation",
    "SimulationConfig",
    "SimulationReport",
    "SimulationStats",
    "StateSender",
    "StoredStates",
    "Target",
    "Transport",
    "build_report",
    "config_from_dict",
    "config_to_dict",
    "connection_budget",
    "default_scenario",
    "device_seed",
    "device_name",
    "command_rounds",
    "due_times",
    "expected_states",
    "load_scenario",
    "machine_info",
    "merge_progress",
    "merge_reports",
    "parse_scenario",
    "parse_shard",
    "peak_rss_bytes",
    "peripherals_per_gateway",
    "phase_offsets",
    "plan_gateways",
    "report_from_dict",
    "shard_range",
    "split_fleet",
    "target_from_dict",
    "target_to_dict",
]

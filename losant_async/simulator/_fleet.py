"""The fleet model: what to simulate (config, shards of a fleet, schedules, sensor values) and where (the target).

All of it is pure (no I/O): unit tests need no sockets and no clock.
A fleet of ``devices`` is cut into ``N`` contiguous shards; device ``i`` has
the same name, phase offset and sensor seed whichever shard runs it, so the
union of the shards is the fleet and a run is reproducible from its seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol

from ..errors import ValidationError
from ._generators import device_seed
from ._model import DeviceModel
from ._scenario import (
    DeviceTypeSpec,
    PhaseSpec,
    Scenario,
    default_scenario,
    scenario_from_builtins,
    scenario_to_builtins,
    type_counts,
)

__all__ = [
    "COMMAND_NAME",
    "LOSANT_CONNECTIONS_PER_WINDOW",
    "LOSANT_CONNECTION_RATE",
    "LOSANT_TOPIC_RATE",
    "MAX_PERIPHERALS_PER_GATEWAY",
    "SENSOR_ATTRIBUTES",
    "DeviceSpec",
    "FleetType",
    "GatewayGroup",
    "PlannedGateway",
    "Phase",
    "SensorModel",
    "Shard",
    "SimulationConfig",
    "StoredStates",
    "Target",
    "Transport",
    "config_from_dict",
    "command_rounds",
    "device_begin",
    "config_to_dict",
    "connection_budget",
    "device_name",
    "due_times",
    "expected_states",
    "parse_shard",
    "peripherals_per_gateway",
    "phase_offsets",
    "plan_gateways",
    "shard_range",
    "split_fleet",
    "target_from_dict",
    "target_to_dict",
]

LOSANT_TOPIC_RATE = 30 / 15
"""Messages per second Losant allows per topic and direction (30 per 15 s)."""
LOSANT_CONNECTION_RATE = 300 / 15
"""Messages per second Losant allows per MQTT connection (300 per 15 s)."""
LOSANT_CONNECTIONS_PER_WINDOW = 300
"""New MQTT connections Losant allows per application per 15 s; shards share them."""
MAX_PERIPHERALS_PER_GATEWAY = 50
# Commands to peripherals arrive on the gateway's connection too: keep a tenth of
# the connection budget for them so states never push a gateway over the limit.
_GATEWAY_STATE_SHARE = 0.9

SENSOR_ATTRIBUTES: Mapping[str, str] = {"temperature": "number", "humidity": "number", "battery": "number"}
"""The attributes every simulated device reports (name -> Losant data type); provision devices with them."""

COMMAND_NAME = "simulate"

Transport = Literal["mqtt", "rest"]
Phase = Literal["starting", "connecting", "backfilling", "running", "draining", "done"]


# --------------------------------------------------------------------------- schedules


def due_times(offset: float, rate: float, duration: float) -> Iterator[float]:
    """Seconds after the start at which one device reports: ``offset + k / rate`` while before ``duration``.

    Computed by multiplication, not accumulation, so a long run does not drift.
    """
    if rate <= 0:
        return
    period = 1.0 / rate
    k = 0
    while True:
        t = offset + k * period
        if t >= duration:
            return
        yield t
        k += 1


def command_rounds(interval: float, duration: float, elapsed: float | None = None) -> int:
    """How many command rounds are due: round ``k >= 1`` is due at ``k * interval`` and only while before ``duration``.

    With ``elapsed``, only the rounds due by then (a run stopped early, or the
    live line). A round due at the very end of the reporting is not one: the
    reporting ends before it could be sent.
    """
    if interval <= 0 or duration <= 0:
        return 0
    # The tolerance keeps a round landing on the end (10 s / (1/3 s) = 30.000000000000004) out.
    rounds = max(0, math.ceil(duration / interval - 1e-9) - 1)
    if elapsed is not None:
        rounds = min(rounds, max(0, math.floor(elapsed / interval + 1e-9)))
    return rounds


def phase_offsets(count: int, rate: float) -> list[float]:
    """Start offsets that spread ``count`` devices evenly over one reporting period.

    Device ``i`` starts ``i / count`` of a period after the first, so a fleet at
    1 state/s sends a steady stream instead of ``count`` states in the same millisecond.
    """
    if count <= 0 or rate <= 0:
        return []
    period = 1.0 / rate
    return [period * i / count for i in range(count)]


def expected_states(count: int, rate: float, duration: float, indices: range | None = None) -> int:
    """How many states a full run sends: the sum of the schedules of devices ``indices`` (all by default)."""
    offsets = phase_offsets(count, rate)
    chosen = range(count) if indices is None else indices
    return sum(sum(1 for _ in due_times(offsets[i], rate, duration)) for i in chosen)


def peripherals_per_gateway(rate: float, *, throttled: bool) -> int:
    """How many peripherals one gateway can carry at ``rate`` states/s each.

    Losant counts every peripheral's states against its gateway's connection
    (300 messages per 15 s), so with throttling on a gateway carries at most
    ``0.9 * 20 / rate`` peripherals (the rest of the budget is for commands), and never more
    than :data:`MAX_PERIPHERALS_PER_GATEWAY`.
    """
    if not throttled or rate <= 0:
        return MAX_PERIPHERALS_PER_GATEWAY
    fits = math.floor(LOSANT_CONNECTION_RATE * _GATEWAY_STATE_SHARE / rate)
    return max(1, min(MAX_PERIPHERALS_PER_GATEWAY, fits))


def plan_gateways(devices: int, rate: float, *, throttled: bool) -> list[int]:
    """Peripheral counts per gateway: as few gateways as the limits allow, balanced to within one."""
    if devices <= 0:
        return []
    per = peripherals_per_gateway(rate, throttled=throttled)
    gateways = math.ceil(devices / per)
    base, extra = divmod(devices, gateways)
    return [base + 1 if i < extra else base for i in range(gateways)]


# --------------------------------------------------------------------------- shards


@dataclass(frozen=True, slots=True)
class Shard:
    """Slice ``index`` (0-based) of ``count`` slices of a fleet; the CLI writes it ``K/N`` with ``K = index + 1``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"shard {name} must be an int, not {value!r}")
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValidationError(f"shard {self.index + 1}/{self.count} does not exist: K must be 1..N")

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"2/4"`` -> ``Shard(index=1, count=4)``; ``ValidationError`` names a bad value."""
    head, sep, tail = text.strip().partition("/")
    try:
        if not sep:
            raise ValueError
        k, n = int(head), int(tail)
    except ValueError:
        raise ValidationError(f"--shard {text!r} is not K/N (e.g. 1/4)") from None
    return Shard(index=k - 1, count=n)


def shard_range(devices: int, shard: Shard) -> range:
    """The device indices of ``shard``: contiguous, sizes within one of each other, together the whole fleet."""
    start = devices * shard.index // shard.count
    stop = devices * (shard.index + 1) // shard.count
    return range(start, stop)


def split_fleet(devices: int, parts: int) -> list[Shard]:
    """``parts`` shards of a fleet (fewer when the fleet is smaller: no shard is empty)."""
    parts = max(1, min(parts, devices))
    return [Shard(i, parts) for i in range(parts)]


def device_name(index: int) -> str:
    """The name of the fleet's device ``index``, the same in every shard and every run."""
    return f"sim-{index:05d}"


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One device of the fleet: its place in the fleet, its name, when it reports, its sensor seed, its type."""

    index: int
    name: str
    offset: float
    seed: int
    kind: int = 0
    """Index of its device type in the scenario."""
    period: float = 1.0
    """Seconds between two of its states."""
    begin: float = 0.0
    """Seconds after the start before which it reports nothing (a ramp-up)."""


def device_begin(phases: Sequence[PhaseSpec], rank: int, count: int) -> float:
    """When a device starts (connects and reports): a ramp-up spreads a type's devices over its seconds, by rank."""
    for p in phases:
        if p.kind == "ramp_up" and count:
            return p.seconds * rank / count
    return 0.0


@dataclass(frozen=True, slots=True)
class FleetType:
    """A scenario's device type resolved against the run's flags: where its devices are and how they report."""

    index: int
    spec: DeviceTypeSpec
    start: int
    """Fleet index of its first device."""
    count: int
    period: float
    transport: Transport
    qos: Literal[0, 1]
    via_gateway: bool
    peripherals_per_gateway: int | None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def indices(self) -> range:
        return range(self.start, self.start + self.count)

    @property
    def device_class(self) -> str:
        return "peripheral" if self.via_gateway else (self.spec.device_class or "standalone")

    def attribute_types(self) -> dict[str, str]:
        """The attributes to provision (name -> Losant data type): the generated ones and ``ack`` replies' strings."""
        out: dict[str, str] = {name: a.type for name, a in self.spec.attributes.items()}
        for r in self.spec.reactions:
            if r.action == "ack" and r.attribute is not None:
                out.setdefault(r.attribute, "string")
        return out

    def device_name(self, index: int) -> str:
        """The name of fleet device ``index`` (one of this type's)."""
        pattern = self.spec.name_pattern or "{type}-{index:05d}"
        return pattern.format(index=index - self.start, type=self.spec.name)

    def offset(self, index: int) -> float:
        """When fleet device ``index`` first reports: the type's devices spread over one period."""
        return self.period * (index - self.start) / self.count


@dataclass(frozen=True, slots=True)
class PlannedGateway:
    """A gateway of one shard: its name and the fleet indices of its peripherals."""

    name: str
    kind: int
    members: tuple[int, ...]


def connection_budget(shard_count: int) -> int:
    """New connections per 15 s one shard may open so that all shards together stay within Losant's 300."""
    if shard_count > LOSANT_CONNECTIONS_PER_WINDOW // 2:
        raise ValidationError(
            f"{shard_count} shards cannot share Losant's {LOSANT_CONNECTIONS_PER_WINDOW} new connections "
            f"per 15 s (at most {LOSANT_CONNECTIONS_PER_WINDOW // 2} shards, two each)"
        )
    return LOSANT_CONNECTIONS_PER_WINDOW // shard_count


# --------------------------------------------------------------------------- sensor values


class SensorModel:
    """The built-in scenario's readings for one device (temperature, humidity, battery), without a clock.

    Kept for code that drew readings by hand; it is the default scenario's
    :class:`~losant_async.simulator._generators.DeviceModel`, the same code path a run uses.
    """

    __slots__ = ("_model",)

    def __init__(self, rng: random.Random) -> None:
        self._model = DeviceModel(default_scenario().device_types[0].attributes, rng.getrandbits(63))

    def next(self) -> dict[str, float]:
        """The next reading (values rounded as a real sensor would report them)."""
        return self._model.next(0.0)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """What to simulate. Invalid values raise ``ValidationError`` on construction.

    ``devices`` is the whole fleet; ``shard`` says which slice of it this run
    carries (all of it by default).
    """

    devices: int
    rate: float = 1.0
    """States per second per device."""
    duration: float = 10.0
    """Seconds of reporting (connecting and draining come on top)."""
    transport: Transport = "mqtt"
    gateway: bool = False
    """Report through gateways (MQTT only): see :func:`plan_gateways`."""
    qos: Literal[0, 1] = 0
    throttle: bool = False
    """Respect Losant's message limits (on for real Losant, off for the emulator)."""
    connect_concurrency: int = 50
    rest_concurrency: int = 64
    command_interval: float = 1.0
    """Seconds between two command rounds of the controller; 0 disables commands."""
    commands_per_round: int | None = None
    """Devices commanded per round; ``None`` means about 2% of the shard (1 to 50)."""
    drain_timeout: float = 15.0
    """Seconds to wait, after the last send, for flushes and stored states."""
    command_wait: float = 5.0
    """Seconds to wait, after the reporting, for commands still on their way (then they count as lost)."""
    seed: int = 0
    """Seeds every device's sensor values (with the device's index): same seed, same readings."""
    shard: Shard = field(default_factory=Shard)
    scenario: Scenario | None = None
    """The fleet's device types; None is the built-in one (:func:`default_scenario`)."""
    backfill: float = 0.0
    """Seconds of history to send first, with the states' original times (0: none)."""

    def __post_init__(self) -> None:
        if isinstance(self.devices, bool) or not isinstance(self.devices, int) or self.devices < 1:
            raise ValidationError(f"devices must be a positive integer, not {self.devices!r}")
        if not (isinstance(self.rate, (int, float)) and math.isfinite(self.rate) and self.rate > 0):
            raise ValidationError(f"rate must be a positive number of states per second, not {self.rate!r}")
        if not (isinstance(self.duration, (int, float)) and math.isfinite(self.duration) and self.duration > 0):
            raise ValidationError(f"duration must be a positive number of seconds, not {self.duration!r}")
        if self.transport not in ("mqtt", "rest"):
            raise ValidationError(f"transport must be 'mqtt' or 'rest', not {self.transport!r}")
        if self.qos not in (0, 1):
            raise ValidationError(f"qos must be 0 or 1 (Losant has no QoS 2), not {self.qos!r}")
        if self.gateway and self.transport != "mqtt":
            raise ValidationError("gateway mode reports over MQTT; it cannot be combined with --transport rest")
        if self.throttle and self.rate > LOSANT_TOPIC_RATE:
            raise ValidationError(
                f"rate {self.rate:g}/s exceeds Losant's limit of {LOSANT_TOPIC_RATE:g} states/s per device "
                "(30 per 15 s); lower it or simulate against the emulator"
            )
        if self.connect_concurrency < 1 or self.rest_concurrency < 1:
            raise ValidationError("connect_concurrency and rest_concurrency must be at least 1")
        if self.command_interval < 0:
            raise ValidationError("command_interval must be >= 0")
        if self.commands_per_round is not None and self.commands_per_round < 1:
            raise ValidationError("commands_per_round must be at least 1")
        if self.drain_timeout < 0 or self.command_wait < 0:
            raise ValidationError("drain_timeout and command_wait must be >= 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValidationError(f"seed must be an int, not {self.seed!r}")
        if not isinstance(self.shard, Shard):
            raise ValidationError("shard must be a Shard")
        if self.shard.count > self.devices:
            raise ValidationError(f"{self.shard.count} shards of {self.devices} devices would leave some empty")
        if self.throttle:
            connection_budget(self.shard.count)
        if not (isinstance(self.backfill, (int, float)) and 0 <= self.backfill <= 30 * 86400):
            raise ValidationError(f"backfill must be 0 to 30 days (Losant keeps no older states), not {self.backfill!r}")
        if self.scenario is not None and not isinstance(self.scenario, Scenario):
            raise ValidationError("scenario must be a Scenario")
        model = self.model
        if self.devices < model.fixed_devices or (not model.uses_shares and self.devices != model.fixed_devices):
            raise ValidationError(
                f"scenario {model.name!r} has {model.fixed_devices} devices by count"
                + (" plus its shares of --devices" if model.uses_shares else "") + f", not {self.devices}"
            )
        types = self.types()
        for t in types:
            if t.via_gateway and t.transport != "mqtt":
                raise ValidationError(f"device type {t.name!r} reports through gateways, which report over MQTT, "
                                      "not REST")
            if self.throttle and 1.0 / t.period > LOSANT_TOPIC_RATE:
                raise ValidationError(
                    f"device type {t.name!r} reports every {t.period:g} s, above Losant's limit of "
                    f"{LOSANT_TOPIC_RATE:g} states/s per device (30 per 15 s); lower it or simulate against the emulator"
                )

        over = {t.name: t.transport for t in types}
        for c in model.commands:
            if over.get(c.device_type) == "rest":
                raise ValidationError(f"command {c.name!r} goes to device type {c.device_type!r}, which reports over "
                                      "REST: commands reach devices over MQTT only")

    @property
    def transports(self) -> frozenset[Transport]:
        """The transports this run's device types report over (a scenario may mix MQTT and REST)."""
        return frozenset(t.transport for t in self.types() if t.count)

    @property
    def model(self) -> Scenario:
        """The scenario this run simulates (the built-in one unless another was given)."""
        return self.scenario if self.scenario is not None else default_scenario()

    @property
    def seed_of_values(self) -> int:
        """The seed of every device's values: the scenario's, else ``seed``."""
        model = self.model
        return model.seed if model.seed is not None else self.seed

    def types(self) -> list[FleetType]:
        """The scenario's device types, resolved with this run's flags (rate, transport, QoS, gateways)."""
        model = self.model
        counts = type_counts(model, self.devices)
        out, at = [], 0
        for i, (t, n) in enumerate(zip(model.device_types, counts, strict=True)):
            via = t.gateways if t.gateways is not None else (t.peripherals_per_gateway is not None or self.gateway
                                                               or t.device_class == "peripheral")
            out.append(FleetType(
                index=i, spec=t, start=at, count=n,
                period=t.interval if t.interval is not None else 1.0 / self.rate,
                transport=t.transport or self.transport,
                qos=t.qos if t.qos is not None else self.qos,
                via_gateway=bool(via), peripherals_per_gateway=t.peripherals_per_gateway,
            ))
            at += n
        return out

    @property
    def via_gateways(self) -> bool:
        """Whether some devices report through gateways."""
        return any(t.via_gateway and t.count for t in self.types())

    def gateways_of(self, shard: Shard | None = None) -> list[PlannedGateway]:
        """The gateways of ``shard`` (this run's by default), per type: its peripherals in fleet order."""
        shard = shard or self.shard
        mine = shard_range(self.devices, shard)
        out: list[PlannedGateway] = []
        for t in self.types():
            if not t.via_gateway:
                continue
            members = [i for i in t.indices if i in mine]
            if not members:
                continue
            if t.peripherals_per_gateway is not None:
                sizes = [min(t.peripherals_per_gateway, len(members) - k)
                         for k in range(0, len(members), t.peripherals_per_gateway)]
            else:
                sizes = plan_gateways(len(members), 1.0 / t.period, throttled=self.throttle)
            at = 0
            for g, size in enumerate(sizes):
                prefix = "sim" if self.scenario is None else t.name
                out.append(PlannedGateway(name=f"{prefix}-gateway-{shard.index:03d}-{g:04d}", kind=t.index,
                                          members=tuple(members[at:at + size])))
                at += size
        return out

    @property
    def indices(self) -> range:
        """The fleet indices of this run's devices."""
        return shard_range(self.devices, self.shard)

    @property
    def shard_devices(self) -> int:
        """How many devices this run carries."""
        return len(self.indices)

    @property
    def commandable_devices(self) -> int:
        """This run's devices that commands can reach: those of the types that report over MQTT."""
        mine = self.indices
        return sum(max(0, min(t.start + t.count, mine.stop) - max(t.start, mine.start))
                   for t in self.types() if t.transport == "mqtt")

    @property
    def command_batch(self) -> int:
        """Devices commanded per controller round (0 when none can receive commands)."""
        n = self.commandable_devices
        if self.commands_per_round is not None:
            return min(self.commands_per_round, n)
        return max(1, min(50, n // 50)) if n else 0

    def commands_scheduled(self, elapsed: float | None = None) -> int:
        """Commands the controller is due to send in a full run (or in its first ``elapsed`` seconds)."""
        return command_rounds(self.command_interval, self.duration, elapsed) * self.command_batch

    @property
    def connections_per_window(self) -> int:
        """This shard's share of the application's new-connection budget."""
        return connection_budget(self.shard.count)

    def specs(self) -> list[DeviceSpec]:
        """The devices of this run, in fleet order."""
        seed = self.seed_of_values
        mine = self.indices
        phases = self.model.phases
        out = []
        for t in self.types():
            for i in range(max(t.start, mine.start), min(t.start + t.count, mine.stop)):
                out.append(DeviceSpec(index=i, name=t.device_name(i), offset=t.offset(i), seed=device_seed(seed, i),
                                      kind=t.index, period=t.period,
                                      begin=device_begin(phases, i - t.start, t.count)))
        return out

    def expected(self) -> int:
        """States (on-change types: reports due, sent or unchanged) this run makes when it completes."""
        return sum(_due_count(s, self.duration) for s in self.specs())

    def expected_by_type(self) -> dict[str, int]:
        """:meth:`expected` per device type name."""
        names = [t.name for t in self.types()]
        out = dict.fromkeys(names, 0)
        for s in self.specs():
            out[names[s.kind]] += _due_count(s, self.duration)
        return out


def _due_count(spec: DeviceSpec, duration: float) -> int:
    """States a device is due to report in a run: its schedule from its start (after a ramp-up)."""
    return sum(1 for t in due_times(spec.offset, 1.0 / spec.period, duration) if t >= spec.begin)


@dataclass(frozen=True, slots=True)
class GatewayGroup:
    """One gateway and the peripherals that report through it."""

    gateway_id: str
    peripheral_ids: tuple[str, ...]


class StoredStates(Protocol):
    """How the engine learns what the server stored (the CLI implements it over the emulator)."""

    async def wait_stored(self, expected: Mapping[str, int], within: float) -> int:
        """Wait up to ``within`` seconds until each device has ``expected[id]`` states stored; return the total stored."""
        ...


@dataclass(frozen=True, slots=True)
class Target:
    """Where the fleet runs and with which identities; secrets are kept out of the repr.

    ``device_ids`` are this run's devices (its shard), in fleet order.
    """

    application_id: str
    device_ids: tuple[str, ...]
    """The devices that report state (peripherals in gateway mode)."""
    gateways: tuple[GatewayGroup, ...] = ()
    key: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    mqtt_host: str | None = None
    mqtt_port: int | None = None
    mqtt_transport: Literal["tcp", "tls", "websockets", "wss"] = "tcp"
    rest_url: str | None = None
    api_token: str | None = field(default=None, repr=False)
    stored: StoredStates | None = field(default=None, repr=False)
    embedded: bool = False
    """The target is the local emulator started for this run."""

    def check(self, config: SimulationConfig) -> None:
        """Raise ``ValidationError`` when this target cannot run ``config``; nothing is sent before."""
        if len(self.device_ids) != config.shard_devices:
            raise ValidationError(
                f"the target has {len(self.device_ids)} devices but {config.shard_devices} were asked for"
            )
        if len(set(self.device_ids)) != len(self.device_ids):
            raise ValidationError("device ids must be distinct: two connections with one id displace each other")
        transports = config.transports
        if "mqtt" in transports:
            missing = [n for n, v in (("broker host", self.mqtt_host), ("access key", self.key),
                                      ("access secret", self.secret)) if not v]
            if missing:
                raise ValidationError(f"MQTT transport needs {', '.join(missing)}")
        if "rest" in transports and (not self.rest_url or not self.api_token):
            raise ValidationError("REST transport needs a REST URL and an API token")
        if config.via_gateways:
            carried = [p for g in self.gateways for p in g.peripheral_ids]
            specs = config.specs()
            types = config.types()
            wanted = [d for d, s in zip(self.device_ids, specs, strict=True) if types[s.kind].via_gateway]
            if sorted(carried) != sorted(wanted):
                raise ValidationError("gateway mode needs every reporting device assigned to exactly one gateway")
            kind_of = dict(zip(self.device_ids, specs, strict=True))
            for g in self.gateways:
                if not g.peripheral_ids:
                    continue
                rate = 1.0 / kind_of[g.peripheral_ids[0]].period
                limit = peripherals_per_gateway(rate, throttled=config.throttle)
                if len(g.peripheral_ids) > limit:
                    raise ValidationError(
                        f"a gateway carries more than {limit} peripherals at {rate:g} states/s each"
                    )

    @property
    def commands_possible(self) -> bool:
        """Whether a controller can send commands: it needs the REST API."""
        return bool(self.rest_url and self.api_token)

    def shard(self, ids: tuple[str, ...], gateways: tuple[GatewayGroup, ...] = ()) -> Target:
        """The same target with other devices (a shard's slice); never carries ``stored`` across processes."""
        return Target(
            application_id=self.application_id, device_ids=ids, gateways=gateways, key=self.key,
            secret=self.secret, mqtt_host=self.mqtt_host, mqtt_port=self.mqtt_port,
            mqtt_transport=self.mqtt_transport, rest_url=self.rest_url, api_token=self.api_token,
            stored=None, embedded=self.embedded,
        )


# --------------------------------------------------------------------------- plain forms (for other processes)


def config_to_dict(config: SimulationConfig) -> dict[str, Any]:
    """The config as plain values (for a shard process or a Ray actor)."""
    out = {f.name: getattr(config, f.name) for f in fields(config)}
    out["shard"] = {"index": config.shard.index, "count": config.shard.count}
    out["scenario"] = None if config.scenario is None else scenario_to_builtins(config.scenario)
    return out


def config_from_dict(data: Mapping[str, Any]) -> SimulationConfig:
    """Read a SimulationConfig back from its dict form (``config_to_dict``)."""
    kw = dict(data)
    kw["shard"] = Shard(**kw["shard"])
    if kw.get("scenario") is not None:
        kw["scenario"] = scenario_from_builtins(kw["scenario"], "the scenario of a shard")
    return SimulationConfig(**kw)


def target_to_dict(target: Target) -> dict[str, Any]:
    """The target as plain values, without ``stored`` (it stays with the process that owns the emulator)."""
    out = {f.name: getattr(target, f.name) for f in fields(target) if f.name != "stored"}
    out["device_ids"] = list(target.device_ids)
    out["gateways"] = [[g.gateway_id, list(g.peripheral_ids)] for g in target.gateways]
    return out


def target_from_dict(data: Mapping[str, Any]) -> Target:
    """Read a Target back from its dict form."""
    kw = dict(data)
    kw["device_ids"] = tuple(kw["device_ids"])
    kw["gateways"] = tuple(GatewayGroup(g, tuple(p)) for g, p in kw["gateways"])
    return Target(**kw)

"""Scenario files: a fleet described as data (device types, attributes, generators), read from TOML into typed Structs.

``load_scenario(path)`` decodes a TOML file with msgspec into :class:`Scenario`
and checks what types alone cannot say (counts, bounds, name patterns). Every
error is a ``ValidationError`` naming the file, the field's path
(``device_types[1].attributes.temp.generator.step``) and what was expected.
Pure apart from reading the file (and a replay generator's CSV file).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from .. import _toml
from ..errors import ValidationError

__all__ = [
    "DEFAULT_SCENARIO_PATH",
    "MAX_REPLAY_ROWS",
    "AttributeSpec",
    "ChoiceGen",
    "CommandSpec",
    "FaultSpec",
    "ConstantGen",
    "CounterGen",
    "DailyGen",
    "DeviceTypeSpec",
    "GeneratorSpec",
    "GpsRouteGen",
    "GpsWalkGen",
    "NormalGen",
    "RampGen",
    "PhaseSpec",
    "RandomWalkGen",
    "ReactionSpec",
    "ReplayGen",
    "Scenario",
    "SineGen",
    "UniformGen",
    "default_scenario",
    "load_scenario",
    "parse_scenario",
    "scenario_from_builtins",
    "scenario_to_builtins",
]

DEFAULT_SCENARIO_PATH = Path(__file__).with_name("default_scenario.toml")
"""The built-in fleet (temperature, humidity, battery), shipped with the package as a scenario file."""
MAX_REPLAY_ROWS = 1_000_000
"""Rows a replay generator reads from its CSV file at most (the values travel to every shard)."""
MAX_DEVICE_TYPES = 100
MAX_ATTRIBUTES = 256

DataType = Literal["number", "string", "boolean", "gps"]
Scalar = float | int | str | bool

_STRICT: dict[str, Any] = {"frozen": True, "forbid_unknown_fields": True, "tag_field": "kind"}


class _Gen(msgspec.Struct, **_STRICT):
    pass


class ConstantGen(_Gen, tag="constant"):
    value: Scalar


class ChoiceGen(_Gen, tag="choice"):
    values: list[Scalar]
    weights: list[float] | None = None


class UniformGen(_Gen, tag="uniform"):
    min: float
    max: float


class NormalGen(_Gen, tag="normal"):
    mean: float
    std: float
    min: float | None = None
    max: float | None = None


class SineGen(_Gen, tag="sine"):
    period: float
    """Seconds per cycle."""
    amplitude: float
    offset: float = 0.0
    phase_spread: float = 0.0
    """0: every device in phase; 1: each device's phase drawn from the whole cycle."""


class RandomWalkGen(_Gen, tag="random_walk"):
    step: float
    """Largest change per state (a triangular step in ``[-step, step]``)."""
    start: float | None = None
    start_min: float | None = None
    start_max: float | None = None
    min: float | None = None
    max: float | None = None
    drift: float = 0.0
    """Added at every state (a battery drains with a negative drift)."""


class CounterGen(_Gen, tag="counter"):
    start: float = 0.0
    step: float = 1.0
    wrap: float | None = None
    """When reached, the counter starts again from ``start``."""


class RampGen(_Gen, tag="ramp"):
    min: float
    max: float
    period: float
    """Seconds from ``min`` to ``max`` (a sawtooth: then back to ``min`` at once)."""
    phase_spread: float = 0.0


class DailyGen(_Gen, tag="daily"):
    hours: list[float]
    """24 values, one per hour of the day, interpolated linearly between hours."""
    utc_offset: float = 0.0
    """Hours added to UTC to get the local hour of the curve."""


class GpsWalkGen(_Gen, tag="gps_walk"):
    lat: float
    lon: float
    step_m: float = 10.0
    radius_m: float = 1000.0


class GpsRouteGen(_Gen, tag="gps_route"):
    waypoints: list[tuple[float, float]]
    speed_kmh: float
    loop: bool = True
    spread: float = 1.0
    """0: every device at the start of the route; 1: devices spread along the whole route."""


class ReplayGen(_Gen, tag="replay"):
    file: str
    column: str
    loop: bool = True
    """At the end of the file: start again (true) or stop reporting this attribute (false)."""
    values: tuple[float | str, ...] = ()
    """Filled when the scenario is loaded (the file is read once, not by every shard)."""


GeneratorSpec = (
    ConstantGen | ChoiceGen | UniformGen | NormalGen | SineGen | RandomWalkGen | CounterGen | RampGen | DailyGen
    | GpsWalkGen | GpsRouteGen | ReplayGen
)
_ENUMS: dict[str, tuple[object, ...]] = {
    "action": ("set", "setpoint", "interval", "ack", "reboot"), "type": ("number", "string", "boolean", "gps"),
    "device_class": ("standalone", "peripheral"), "transport": ("mqtt", "rest"), "qos": (0, 1),
}
_GENERATOR_KINDS = ("constant", "choice", "uniform", "normal", "sine", "random_walk", "counter", "ramp", "daily",
                    "gps_walk", "gps_route", "replay")


class AttributeSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One attribute of a device type: its Losant data type and the generator of its values."""

    type: DataType
    generator: GeneratorSpec
    precision: int | None = None
    """Decimal places of a number (None: as generated)."""
    noise: float = 0.0
    """Uniform noise in ``[-noise, noise]`` added to a number."""
    missing: float = 0.0
    """Share of states (0..1) that leave this attribute out."""


class ReactionSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a device of a type does when a command of a name reaches it."""

    command: str
    action: Literal["set", "setpoint", "interval", "ack", "reboot"]
    """``set``: report ``attribute`` as the payload's value from now on; ``setpoint``: change ``parameter`` of
    ``attribute``'s generator (e.g. a sine's offset) to it; ``interval``: report every that many seconds
    (a multiple of the type's interval); ``ack``: reply at once with a state whose ``attribute`` holds the
    command's payload as JSON text; ``reboot``: disconnect, stay off ``seconds``, connect again."""
    attribute: str | None = None
    parameter: str | None = None
    payload_key: str = "value"
    """Where the value is in the command's payload (a payload that is a number is the value itself)."""
    seconds: float = 5.0
    """A reboot: how long the device stays off."""


class CommandSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Commands the controller sends during the run: which, to whom, how often."""

    name: str
    device_type: str
    interval: float
    """Seconds between two rounds; the first round is one interval after the start."""
    payload: dict[str, Any] = {}
    devices: int = 1
    """Devices of the type commanded per round (in turn)."""


class PhaseSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A part of the run's timeline: devices starting over a ramp, or a spike of states."""

    kind: Literal["ramp_up", "spike"]
    seconds: float
    """How long the ramp or the spike lasts."""
    at: float = 0.0
    """Seconds after the start (a spike)."""
    factor: int = 2
    """A spike: each state due in it becomes ``factor`` states."""


class FaultSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Something going wrong on some devices of a type, at a time or at random with a rate."""

    name: str
    device_type: str
    kind: Literal["drop", "burst", "anomaly", "setpoint"]
    """``drop``: the device holds its states back for ``seconds`` (a network drop), then sends them with
    their times; ``burst``: ``count`` extra states at once; ``anomaly``: ``attribute`` off by ``delta``
    for ``seconds``; ``setpoint``: ``parameter`` of ``attribute``'s generator becomes ``value`` (a
    battery that drains: a random walk's ``drift``)."""
    share: float = 1.0
    """Share of the type's devices it happens to (chosen from the seed: the same in every shard)."""
    at: float | None = None
    """Seconds after the start; or ``rate``."""
    rate: float | None = None
    """Times per device per hour, at random (a Poisson process from the device's seed)."""
    seconds: float = 10.0
    count: int = 10
    attribute: str | None = None
    delta: float = 0.0
    parameter: str | None = None
    value: float = 0.0


class DeviceTypeSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Devices that look alike: how many, their names, class, tags, attributes and how they report."""

    name: str
    attributes: dict[str, AttributeSpec]
    count: int | None = None
    share: float | None = None
    """Share of ``--devices`` (when no ``count``); shares of all types are split by largest remainder."""
    name_pattern: str | None = None
    """``str.format`` pattern with ``{index}`` (in the type) and ``{type}``; default ``{type}-{index:05d}``."""
    device_class: Literal["standalone", "peripheral"] | None = None
    tags: dict[str, str] = {}
    interval: float | None = None
    """Seconds between two states (default: ``1 / --rate``)."""
    jitter: float = 0.0
    """Share of the interval (0..1) by which a state may come early or late."""
    on_change: bool = False
    """Report only when a value changed (or ``heartbeat`` seconds passed since the last state)."""
    heartbeat: float | None = None
    transport: Literal["mqtt", "rest"] | None = None
    qos: Literal[0, 1] | None = None
    gateways: bool | None = None
    """Report through gateways (MQTT only); default ``--gateway``."""
    peripherals_per_gateway: int | None = None
    reactions: list[ReactionSpec] = []


class Scenario(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A fleet as data: ``load_scenario`` reads it from TOML."""

    name: str
    device_types: list[DeviceTypeSpec]
    description: str = ""
    seed: int | None = None
    """Seeds every device's values with the device's index (default ``--seed``)."""
    commands: list[CommandSpec] = []
    phases: list[PhaseSpec] = []
    faults: list[FaultSpec] = []

    @property
    def uses_shares(self) -> bool:
        return any(t.count is None for t in self.device_types)

    @property
    def fixed_devices(self) -> int:
        return sum(t.count or 0 for t in self.device_types)


# --------------------------------------------------------------------------- reading


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _path_text(raw: str) -> str:
    return raw.lstrip(".") or "(top level)"


def parse_scenario(text: str, source: str = "<scenario>", base: Path | None = None) -> Scenario:
    """Decode and check a scenario from TOML text; ``source`` names it in errors, ``base`` resolves replay files."""
    try:
        data = _toml.loads(text)
    except _toml.TOMLDecodeError as exc:
        raise ValidationError(f"{source}: not valid TOML: {exc}") from None
    return scenario_from_builtins(data, source, base)


def scenario_from_builtins(data: Any, source: str = "<scenario>", base: Path | None = None) -> Scenario:
    """A scenario from plain values (TOML's, or :func:`scenario_to_builtins`'s); errors name ``source``."""
    try:
        scenario = msgspec.convert(data, Scenario, strict=True)
    except msgspec.ValidationError as exc:
        what, path = _split(exc)
        if path is not None and "[...]" in path:
            what, path = _name_the_key(data, what, path)
        if "Invalid value" in what and path is not None and path.endswith(".kind"):
            what = f"expected one of {', '.join(_GENERATOR_KINDS)}, got {what.split('Invalid value', 1)[1].strip()}"
        elif "Invalid enum value" in what and path is not None and path.rpartition(".")[2] in _ENUMS:
            allowed = ", ".join(repr(v) for v in _ENUMS[path.rpartition(".")[2]])
            what = f"expected one of {allowed}, got {what.split('Invalid enum value', 1)[1].strip()}"
        where = _path_text(path) if path is not None else "(top level)"
        raise ValidationError(f"{source}: {where}: {_lower_first(what)}") from None
    _check(scenario, source)
    return _with_replays(scenario, source, base)


def _split(exc: msgspec.ValidationError) -> tuple[str, str | None]:
    m = _AT.match(str(exc))
    assert m is not None
    return m.group("what"), m.group("path")


_TYPE_AT = re.compile(r"^\.device_types\[(\d+)\]\.(attributes|tags)\[\.\.\.\](.*)$")


def _name_the_key(data: Any, what: str, path: str) -> tuple[str, str]:
    """msgspec writes a table's key as ``[...]``: find the attribute (or tag) at fault and name it."""
    m = _TYPE_AT.match(path)
    try:
        table = data["device_types"][int(m.group(1))][m.group(2)] if m else None
    except (KeyError, IndexError, TypeError):
        table = None
    if m is None or not isinstance(table, dict):
        return what, path
    prefix = f".device_types[{m.group(1)}].{m.group(2)}"
    entries: dict[Any, Any] = table
    for key, value in entries.items():
        if m.group(2) == "tags":
            if not isinstance(value, str):
                return what, f"{prefix}.{key}"
            continue
        try:
            msgspec.convert(value, AttributeSpec, strict=True)
        except msgspec.ValidationError as inner:
            inner_what, inner_path = _split(inner)
            return inner_what, f"{prefix}.{key}{inner_path or ''}"
    return what, path


def load_scenario(path: str | Path) -> Scenario:
    """Read and check the scenario file at ``path``; ``ValidationError`` names the file, the field and the problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"cannot read scenario file {str(p)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValidationError(f"{p}: not UTF-8 text") from None
    return parse_scenario(text, str(p), p.parent)


def scenario_to_builtins(scenario: Scenario) -> dict[str, Any]:
    """The scenario as plain values (for a shard process or a Ray actor); replay values included."""
    out: dict[str, Any] = msgspec.to_builtins(scenario)
    return out


def default_scenario() -> Scenario:
    """The built-in fleet, read from the scenario file shipped with the package."""
    return _DEFAULT[0] if _DEFAULT else _load_default()


_DEFAULT: list[Scenario] = []


def _load_default() -> Scenario:
    scenario = load_scenario(DEFAULT_SCENARIO_PATH)
    _DEFAULT.append(scenario)
    return scenario


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text else text


# --------------------------------------------------------------------------- checks


def _fail(source: str, path: str, message: str) -> ValidationError:
    return ValidationError(f"{source}: {path}: {message}")


def _finite(source: str, path: str, value: float | None, *, positive: bool = False, nonneg: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise _fail(source, path, f"expected a finite number, got {value!r}")
    if positive and value <= 0:
        raise _fail(source, path, f"expected a number > 0, got {value!r}")
    if nonneg and value < 0:
        raise _fail(source, path, f"expected a number >= 0, got {value!r}")


def _share(source: str, path: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise _fail(source, path, f"expected a share from 0 to 1, got {value!r}")


def _check(scenario: Scenario, source: str) -> None:
    if not scenario.name.strip():
        raise _fail(source, "name", "expected a non-empty name")
    types = scenario.device_types
    if not types:
        raise _fail(source, "device_types", "expected at least one device type")
    if len(types) > MAX_DEVICE_TYPES:
        raise _fail(source, "device_types", f"expected at most {MAX_DEVICE_TYPES} device types, got {len(types)}")
    seen: dict[str, int] = {}
    for i, t in enumerate(types):
        at = f"device_types[{i}]"
        if not t.name.strip():
            raise _fail(source, f"{at}.name", "expected a non-empty name")
        if t.name in seen:
            raise _fail(source, f"{at}.name", f"expected a unique name; {t.name!r} is also device_types[{seen[t.name]}]")
        seen[t.name] = i
        _check_type(t, source, at)
    for k, c in enumerate(scenario.commands):
        at = f"commands[{k}]"
        if c.device_type not in seen:
            raise _fail(source, f"{at}.device_type", f"expected one of the device types ({', '.join(seen)}), "
                        f"got {c.device_type!r}")
        if types[seen[c.device_type]].transport == "rest":
            raise _fail(source, f"{at}.device_type", f"expected a device type reporting over MQTT (commands reach "
                        f"devices over MQTT only); {c.device_type!r} reports over REST")
        if not c.name.strip() or len(c.name) > 255:
            raise _fail(source, f"{at}.name", "expected a command name of 1 to 255 characters")
        _finite(source, f"{at}.interval", c.interval, positive=True)
        if c.devices < 1:
            raise _fail(source, f"{at}.devices", f"expected at least 1 device per round, got {c.devices}")
    _check_timeline(scenario, source, {t.name: t for t in types})
    shares = [t.share for t in types if t.count is None]
    if shares:
        total = sum(s or 0.0 for s in shares)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise _fail(source, "device_types", f"expected the shares of --devices to add up to 1, got {total:g}")


def _check_type(t: DeviceTypeSpec, source: str, at: str) -> None:
    if (t.count is None) == (t.share is None):
        raise _fail(source, at, "expected exactly one of count and share")
    if t.count is not None and not 1 <= t.count <= 10_000_000:
        raise _fail(source, f"{at}.count", f"expected a count from 1 to 10000000, got {t.count}")
    if t.share is not None:
        _share(source, f"{at}.share", t.share)
    if t.name_pattern is not None:
        try:
            t.name_pattern.format(index=0, type=t.name)
        except (KeyError, IndexError, ValueError) as exc:
            raise _fail(source, f"{at}.name_pattern",
                        f"expected a pattern with {{index}} and {{type}} only, got {t.name_pattern!r} ({exc})") from None
        if t.name_pattern.format(index=0, type=t.name) == t.name_pattern.format(index=1, type=t.name):
            raise _fail(source, f"{at}.name_pattern", "expected {index} in the pattern: every device needs its own name")
    _finite(source, f"{at}.interval", t.interval, positive=True)
    _share(source, f"{at}.jitter", t.jitter)
    _finite(source, f"{at}.heartbeat", t.heartbeat, positive=True)
    if t.heartbeat is not None and not t.on_change:
        raise _fail(source, f"{at}.heartbeat", "expected only with on_change = true")
    if t.peripherals_per_gateway is not None:
        if t.gateways is False:
            raise _fail(source, f"{at}.peripherals_per_gateway", "expected only with gateways = true")
        if not 1 <= t.peripherals_per_gateway <= 50:
            raise _fail(source, f"{at}.peripherals_per_gateway",
                        f"expected 1 to 50 (Losant's limit per gateway), got {t.peripherals_per_gateway}")
    via_gateway = t.gateways or t.peripherals_per_gateway is not None
    if t.device_class == "peripheral" and t.gateways is False:
        raise _fail(source, f"{at}.device_class", "expected standalone: peripherals report through gateways")
    if via_gateway and t.device_class == "standalone":
        raise _fail(source, f"{at}.device_class", "expected peripheral (or nothing) for a type that reports through gateways")
    if via_gateway and t.transport == "rest":
        raise _fail(source, f"{at}.transport", "expected mqtt: gateways report over MQTT")
    for key, value in t.tags.items():
        if not key or len(key) > 255 or len(value) > 255:
            raise _fail(source, f"{at}.tags.{key}", "expected a tag key of 1 to 255 characters and a value up to 255")
    if not t.attributes:
        raise _fail(source, f"{at}.attributes", "expected at least one attribute")
    if len(t.attributes) > MAX_ATTRIBUTES:
        raise _fail(source, f"{at}.attributes", f"expected at most {MAX_ATTRIBUTES} attributes")
    for name, attr in t.attributes.items():
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,255}", name):
            raise _fail(source, f"{at}.attributes.{name}",
                        "expected a name of letters, digits, '_' and '-' (Losant's attribute names)")
        _check_attribute(attr, source, f"{at}.attributes.{name}")
    for k, r in enumerate(t.reactions):
        _check_reaction(t, r, source, f"{at}.reactions[{k}]")


def _check_timeline(scenario: Scenario, source: str, types: Mapping[str, DeviceTypeSpec]) -> None:
    kinds = [p.kind for p in scenario.phases]
    if kinds.count("ramp_up") > 1:
        raise _fail(source, "phases", "expected at most one ramp_up phase")
    for k, p in enumerate(scenario.phases):
        at = f"phases[{k}]"
        _finite(source, f"{at}.seconds", p.seconds, positive=True)
        _finite(source, f"{at}.at", p.at, nonneg=True)
        if p.kind == "spike" and not 2 <= p.factor <= 100:
            raise _fail(source, f"{at}.factor", f"expected 2 to 100 states per state due, got {p.factor}")
    names: set[str] = set()
    for k, f in enumerate(scenario.faults):
        at = f"faults[{k}]"
        if f.name in names or not f.name.strip():
            raise _fail(source, f"{at}.name", f"expected a unique, non-empty name, got {f.name!r}")
        names.add(f.name)
        t = types.get(f.device_type)
        if t is None:
            raise _fail(source, f"{at}.device_type",
                        f"expected one of the device types ({', '.join(types)}), got {f.device_type!r}")
        _share(source, f"{at}.share", f.share)
        if (f.at is None) == (f.rate is None):
            raise _fail(source, at, "expected exactly one of at (seconds after the start) and rate (per device-hour)")
        _finite(source, f"{at}.at", f.at, nonneg=True)
        _finite(source, f"{at}.rate", f.rate, positive=True)
        if f.rate is not None and f.rate > 3600:
            raise _fail(source, f"{at}.rate", f"expected at most 3600 per device-hour, got {f.rate}")
        _finite(source, f"{at}.seconds", f.seconds, positive=True)
        if f.kind == "burst" and not 1 <= f.count <= 1000:
            raise _fail(source, f"{at}.count", f"expected 1 to 1000 extra states, got {f.count}")
        if f.kind in ("anomaly", "setpoint"):
            if f.attribute not in t.attributes:
                raise _fail(source, f"{at}.attribute",
                            f"expected one of {f.device_type}'s attributes ({', '.join(t.attributes)}), got {f.attribute!r}")
            if t.attributes[f.attribute].type != "number":
                raise _fail(source, f"{at}.attribute", f"expected a number attribute, got {f.attribute!r}")
            _finite(source, f"{at}.delta", f.delta)
            _finite(source, f"{at}.value", f.value)
        if f.kind == "setpoint":
            assert f.attribute is not None
            gen_kind = str(t.attributes[f.attribute].generator.__struct_config__.tag)
            if f.parameter not in SETPOINTS.get(gen_kind, ()):
                raise _fail(source, f"{at}.parameter", f"expected one of {', '.join(SETPOINTS.get(gen_kind, ())) or '(none)'} "
                            f"for a {gen_kind} generator, got {f.parameter!r}")


SETPOINTS: dict[str, tuple[str, ...]] = {
    "constant": ("value",), "uniform": ("min", "max"), "normal": ("mean", "std"),
    "sine": ("offset", "amplitude"), "random_walk": ("value", "min", "max", "drift"),
    "counter": ("value", "step"), "ramp": ("min", "max"),
}
"""The generator parameters a ``setpoint`` reaction can change, per generator kind."""


def _check_reaction(t: DeviceTypeSpec, r: ReactionSpec, source: str, at: str) -> None:
    if not r.command.strip():
        raise _fail(source, f"{at}.command", "expected a command name")
    if r.action in ("set", "setpoint", "ack"):
        if r.attribute is None:
            raise _fail(source, f"{at}.attribute", f"expected the attribute a {r.action} reaction changes")
        if r.action != "ack" and r.attribute not in t.attributes:
            raise _fail(source, f"{at}.attribute",
                        f"expected one of this type's attributes ({', '.join(t.attributes)}), got {r.attribute!r}")
        if r.action == "ack" and not re.fullmatch(r"[A-Za-z0-9_\-]{1,255}", r.attribute):
            raise _fail(source, f"{at}.attribute", "expected a name of letters, digits, '_' and '-'")
    if r.action == "reboot" and not (math.isfinite(r.seconds) and 0 < r.seconds <= 3600):
        raise _fail(source, f"{at}.seconds", f"expected more than 0 and at most 3600 seconds off, got {r.seconds}")
    if r.action == "setpoint":
        assert r.attribute is not None
        kind = t.attributes[r.attribute].generator.__struct_config__.tag
        allowed = SETPOINTS.get(str(kind), ())
        if r.parameter not in allowed:
            raise _fail(source, f"{at}.parameter", f"expected one of {', '.join(allowed) or '(none)'} for a {kind} "
                        f"generator, got {r.parameter!r}")
    elif r.parameter is not None:
        raise _fail(source, f"{at}.parameter", "expected only with action = \"setpoint\"")


_NUMERIC = (UniformGen, NormalGen, SineGen, RandomWalkGen, CounterGen, RampGen, DailyGen)
_GPS = (GpsWalkGen, GpsRouteGen)


def _check_attribute(a: AttributeSpec, source: str, at: str) -> None:
    g = a.generator
    gat = f"{at}.generator"
    if isinstance(g, _NUMERIC) and a.type != "number":
        raise _fail(source, f"{at}.type", f"expected number for a {g.__struct_config__.tag} generator, got {a.type}")
    if isinstance(g, _GPS) and a.type != "gps":
        raise _fail(source, f"{at}.type", f"expected gps for a {g.__struct_config__.tag} generator, got {a.type}")
    if a.type == "gps" and not isinstance(g, (*_GPS, ConstantGen, ChoiceGen, ReplayGen)):
        raise _fail(source, f"{gat}.kind", "expected gps_walk, gps_route, constant, choice or replay for a gps attribute")
    if a.precision is not None and not 0 <= a.precision <= 12:
        raise _fail(source, f"{at}.precision", f"expected 0 to 12 decimal places, got {a.precision}")
    _finite(source, f"{at}.noise", a.noise, nonneg=True)
    if a.noise and a.type != "number":
        raise _fail(source, f"{at}.noise", "expected only on a number attribute")
    if a.precision is not None and a.type != "number":
        raise _fail(source, f"{at}.precision", "expected only on a number attribute")
    _share(source, f"{at}.missing", a.missing)
    if isinstance(g, ConstantGen):
        _check_value(g.value, a.type, source, f"{gat}.value")
    elif isinstance(g, ChoiceGen):
        if not g.values:
            raise _fail(source, f"{gat}.values", "expected at least one value")
        for k, v in enumerate(g.values):
            _check_value(v, a.type, source, f"{gat}.values[{k}]")
        if g.weights is not None:
            if len(g.weights) != len(g.values):
                raise _fail(source, f"{gat}.weights", f"expected {len(g.values)} weights (one per value), got {len(g.weights)}")
            for k, w in enumerate(g.weights):
                _finite(source, f"{gat}.weights[{k}]", w, nonneg=True)
            if sum(g.weights) <= 0:
                raise _fail(source, f"{gat}.weights", "expected at least one weight above 0")
    elif isinstance(g, (UniformGen, RampGen)):
        _finite(source, f"{gat}.min", g.min)
        _finite(source, f"{gat}.max", g.max)
        if g.max < g.min:
            raise _fail(source, f"{gat}.max", f"expected max >= min ({g.min}), got {g.max}")
        if isinstance(g, RampGen):
            _finite(source, f"{gat}.period", g.period, positive=True)
            _share(source, f"{gat}.phase_spread", g.phase_spread)
    elif isinstance(g, NormalGen):
        _finite(source, f"{gat}.mean", g.mean)
        _finite(source, f"{gat}.std", g.std, nonneg=True)
        _bounds(g.min, g.max, source, gat)
    elif isinstance(g, SineGen):
        _finite(source, f"{gat}.period", g.period, positive=True)
        _finite(source, f"{gat}.amplitude", g.amplitude)
        _finite(source, f"{gat}.offset", g.offset)
        _share(source, f"{gat}.phase_spread", g.phase_spread)
    elif isinstance(g, RandomWalkGen):
        _finite(source, f"{gat}.step", g.step, nonneg=True)
        _finite(source, f"{gat}.drift", g.drift)
        _bounds(g.min, g.max, source, gat)
        if g.start is None and (g.start_min is None or g.start_max is None):
            raise _fail(source, gat, "expected start, or start_min and start_max")
        if g.start is not None and (g.start_min is not None or g.start_max is not None):
            raise _fail(source, gat, "expected start or start_min/start_max, not both")
        for name in ("start", "start_min", "start_max"):
            _finite(source, f"{gat}.{name}", getattr(g, name))
        if g.start_min is not None and g.start_max is not None and g.start_max < g.start_min:
            raise _fail(source, f"{gat}.start_max", "expected start_max >= start_min")
    elif isinstance(g, CounterGen):
        _finite(source, f"{gat}.start", g.start)
        _finite(source, f"{gat}.step", g.step)
        _finite(source, f"{gat}.wrap", g.wrap)
        if g.wrap is not None and (g.step == 0 or (g.wrap - g.start) / g.step <= 0):
            raise _fail(source, f"{gat}.wrap", "expected a wrap value the counter reaches from start by its step")
    elif isinstance(g, DailyGen):
        if len(g.hours) != 24:
            raise _fail(source, f"{gat}.hours", f"expected 24 values (one per hour), got {len(g.hours)}")
        for k, v in enumerate(g.hours):
            _finite(source, f"{gat}.hours[{k}]", v)
        if not -14 <= g.utc_offset <= 14:
            raise _fail(source, f"{gat}.utc_offset", f"expected -14 to 14 hours, got {g.utc_offset}")
    elif isinstance(g, GpsWalkGen):
        _latlon(g.lat, g.lon, source, gat)
        _finite(source, f"{gat}.step_m", g.step_m, nonneg=True)
        _finite(source, f"{gat}.radius_m", g.radius_m, positive=True)
    elif isinstance(g, GpsRouteGen):
        if len(g.waypoints) < 2:
            raise _fail(source, f"{gat}.waypoints", "expected at least 2 waypoints [lat, lon]")
        for k, (lat, lon) in enumerate(g.waypoints):
            _latlon(lat, lon, source, f"{gat}.waypoints[{k}]")
        _finite(source, f"{gat}.speed_kmh", g.speed_kmh, positive=True)
        _share(source, f"{gat}.spread", g.spread)


def _bounds(lo: float | None, hi: float | None, source: str, gat: str) -> None:
    _finite(source, f"{gat}.min", lo)
    _finite(source, f"{gat}.max", hi)
    if lo is not None and hi is not None and hi < lo:
        raise _fail(source, f"{gat}.max", f"expected max >= min ({lo}), got {hi}")


def _latlon(lat: float, lon: float, source: str, at: str) -> None:
    if not (math.isfinite(lat) and -90 <= lat <= 90):
        raise _fail(source, f"{at}", f"expected a latitude from -90 to 90, got {lat}")
    if not (math.isfinite(lon) and -180 <= lon <= 180):
        raise _fail(source, f"{at}", f"expected a longitude from -180 to 180, got {lon}")


_GPS_TEXT = re.compile(r"^-?\d+(\.\d+)?,\s*-?\d+(\.\d+)?$")


def _check_value(value: Scalar, data_type: str, source: str, at: str) -> None:
    ok = {
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "string": isinstance(value, str),
        "gps": isinstance(value, str) and bool(_GPS_TEXT.match(value)),
    }[data_type]
    if not ok:
        want = {"number": "a number", "boolean": "true or false", "string": "a string",
                "gps": 'a "lat,lon" string'}[data_type]
        raise _fail(source, at, f"expected {want} for a {data_type} attribute, got {value!r}")


# --------------------------------------------------------------------------- replay files


def _with_replays(scenario: Scenario, source: str, base: Path | None) -> Scenario:
    types: list[DeviceTypeSpec] = []
    changed = False
    for i, t in enumerate(scenario.device_types):
        attrs: dict[str, AttributeSpec] = {}
        for name, a in t.attributes.items():
            g = a.generator
            if isinstance(g, ReplayGen) and not g.values:
                values = _read_column(g, a.type, source, f"device_types[{i}].attributes.{name}.generator", base)
                a = msgspec.structs.replace(a, generator=msgspec.structs.replace(g, values=values))
                changed = True
            attrs[name] = a
        types.append(msgspec.structs.replace(t, attributes=attrs))
    return msgspec.structs.replace(scenario, device_types=types) if changed else scenario


def _read_column(g: ReplayGen, data_type: str, source: str, at: str,
                 base: Path | None) -> tuple[float | str, ...]:
    path = Path(g.file)
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or g.column not in reader.fieldnames:
                raise _fail(source, f"{at}.column",
                            f"expected a column of {str(path)!r} ({', '.join(reader.fieldnames or [])}), got {g.column!r}")
            out: list[float | str] = []
            for row_no, row in enumerate(reader, 2):
                if len(out) >= MAX_REPLAY_ROWS:
                    raise _fail(source, f"{at}.file", f"expected at most {MAX_REPLAY_ROWS} rows in {str(path)!r}")
                cell = (row.get(g.column) or "").strip()
                if data_type == "number":
                    try:
                        number = float(cell)
                        if not math.isfinite(number):
                            raise ValueError(cell)
                    except ValueError:
                        raise _fail(source, f"{at}.column",
                                    f"expected numbers in column {g.column!r}; {path.name}:{row_no} has {cell[:30]!r}") from None
                    out.append(number)
                else:
                    out.append(cell)
    except OSError as exc:
        raise _fail(source, f"{at}.file", f"cannot read {str(path)!r}: {exc.strerror}") from None
    if not out:
        raise _fail(source, f"{at}.file", f"expected at least one row in {str(path)!r}")
    return tuple(out)


# --------------------------------------------------------------------------- fleet layout


def type_counts(scenario: Scenario, devices: int) -> list[int]:
    """Devices per type: ``count`` as given; shares of ``devices - fixed`` split by largest remainder."""
    shared = max(0, devices - scenario.fixed_devices)
    share_types = [(i, t.share or 0.0) for i, t in enumerate(scenario.device_types) if t.count is None]
    counts = [t.count or 0 for t in scenario.device_types]
    if share_types:
        exact = [(i, shared * s) for i, s in share_types]
        floors = {i: math.floor(x) for i, x in exact}
        left = shared - sum(floors.values())
        for i, _ in sorted(exact, key=lambda p: (-(p[1] - math.floor(p[1])), p[0]))[:left]:
            floors[i] += 1
        for i, n in floors.items():
            counts[i] = n
    return counts


def fleet_size(scenario: Scenario, devices: int) -> int:
    """The fleet's size for ``--devices``: the fixed counts, plus ``devices`` when some type takes a share."""
    return scenario.fixed_devices + (devices if scenario.uses_shares else 0)


def type_starts(counts: Sequence[int]) -> list[int]:
    """The fleet index of each type's first device (types are laid out in order)."""
    starts: list[int] = []
    at = 0
    for n in counts:
        starts.append(at)
        at += n
    return starts

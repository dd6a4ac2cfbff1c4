"""Faults and the timeline of a run: which devices a fault hits and when (pure, seeded), and its live state per device.

Whether a device is hit, and when a rate-driven fault strikes it, come from
the scenario's seed, the device's fleet index and the fault's position only:
a device has the same faults whichever shard runs it. The engine asks a
:class:`DeviceFaults` at each due state what to do (hold the state back,
add a burst, bias an attribute) and counts what each fault did.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._model import DeviceModel
from ._scenario import FaultSpec, PhaseSpec, Scenario

if TYPE_CHECKING:
    from ._fleet import DeviceSpec, FleetType, SimulationConfig

__all__ = ["DeviceFaults", "FaultEvent", "fault_events", "plan_faults", "spike_extra"]

_MAX_EVENTS = 10_000
"""Rate-driven events per device and fault at most (a bound on what one run plans)."""


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One fault striking one device: seconds after the start, and which fault."""

    at: float
    fault: int


def _hit(seed: int, index: int, fault: int, share: float) -> bool:
    return random.Random(f"{seed}:{index}:{fault}:hit").random() < share


def fault_events(scenario: Scenario, kind_name: str, seed: int, index: int, duration: float) -> list[FaultEvent]:
    """The faults that strike fleet device ``index`` (of type ``kind_name``) during a run, in time order."""
    out: list[FaultEvent] = []
    for k, f in enumerate(scenario.faults):
        if f.device_type != kind_name or not _hit(seed, index, k, f.share):
            continue
        if f.at is not None:
            if f.at < duration:
                out.append(FaultEvent(f.at, k))
            continue
        assert f.rate is not None
        rng = random.Random(f"{seed}:{index}:{k}:times")
        t = 0.0
        per_second = f.rate / 3600.0
        for _ in range(_MAX_EVENTS):
            t += rng.expovariate(per_second)
            if t >= duration:
                break
            out.append(FaultEvent(t, k))
    out.sort(key=lambda e: (e.at, e.fault))
    return out


def spike_extra(phases: Sequence[PhaseSpec], due: float) -> int:
    """Extra states a state due at ``due`` brings (spikes it falls in)."""
    extra = 0
    for p in phases:
        if p.kind == "spike" and p.at <= due < p.at + p.seconds:
            extra += p.factor - 1
    return extra


@dataclass(slots=True)
class DeviceFaults:
    """The faults of one device during the run, applied in time order as its states fall due."""

    events: list[FaultEvent]
    faults: Sequence[FaultSpec]
    counts: dict[str, dict[str, int]]
    """Per fault name: events, states_delayed, states_burst (shared by a shard's devices)."""
    next_at: float = math.inf
    held: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    drop_until: float = -1.0
    drop_name: str = ""
    burst_name: str = ""
    _ends: list[tuple[float, str, float]] = field(default_factory=list)
    _cursor: int = 0

    def __post_init__(self) -> None:
        self._advance()

    def _advance(self) -> None:
        nxt = self.events[self._cursor].at if self._cursor < len(self.events) else math.inf
        end = min((e[0] for e in self._ends), default=math.inf)
        self.next_at = min(nxt, end)

    def fire(self, due: float, model: DeviceModel) -> int:
        """Apply what falls due by ``due``; return extra states (bursts) to send now."""
        extra = 0
        if self._ends:
            for item in [e for e in self._ends if e[0] <= due]:
                self._ends.remove(item)
                _, attribute, delta = item
                model.bias[attribute] = model.bias.get(attribute, 0.0) - delta
                if not model.bias[attribute]:
                    del model.bias[attribute]
        while self._cursor < len(self.events) and self.events[self._cursor].at <= due:
            event = self.events[self._cursor]
            self._cursor += 1
            f = self.faults[event.fault]
            counts = self.counts.setdefault(f.name, {"events": 0, "states_delayed": 0, "states_burst": 0})
            counts["events"] += 1
            if f.kind == "drop":
                self.drop_until = max(self.drop_until, event.at + f.seconds)
                self.drop_name = f.name
            elif f.kind == "burst":
                extra += f.count
                self.burst_name = f.name
            elif f.kind == "anomaly":
                assert f.attribute is not None
                model.bias[f.attribute] = model.bias.get(f.attribute, 0.0) + f.delta
                self._ends.append((event.at + f.seconds, f.attribute, f.delta))
            else:
                assert f.attribute is not None and f.parameter is not None
                model.set_parameter(f.attribute, f.parameter, f.value)
        self._advance()
        return extra

    def burst_sent(self, count: int) -> None:
        """Count the states a burst sent (none while the network is down)."""
        self.counts[self.burst_name]["states_burst"] += count

    def hold(self, ms: int, data: dict[str, Any]) -> None:
        """Keep a state the drop holds back (sent with its time when the drop ends)."""
        self.held.append((ms, data))
        self.counts[self.drop_name]["states_delayed"] += 1

    def release(self) -> list[tuple[int, dict[str, Any]]]:
        """The states held back, oldest first; the drop is over."""
        held, self.held = self.held, []
        return held


def plan_faults(config: SimulationConfig, types: Sequence[FleetType], device_ids: Sequence[str],
                specs: Sequence[DeviceSpec], counts: dict[str, dict[str, int]]) -> dict[str, DeviceFaults]:
    """The devices of a shard that faults strike, each with its events (from the seed: shard-independent).

    ``counts`` receives a zeroed section per fault, with the devices it struck in this shard.
    """
    model = config.model
    if not model.faults:
        return {}
    seed = config.seed_of_values
    for f in model.faults:
        counts[f.name] = {"devices": 0, "events": 0, "states_delayed": 0, "states_burst": 0}
    out: dict[str, DeviceFaults] = {}
    for device_id, spec in zip(device_ids, specs, strict=True):
        events = fault_events(model, types[spec.kind].name, seed, spec.index, config.duration)
        if events:
            out[device_id] = DeviceFaults(events, model.faults, counts)
            for name in {model.faults[e.fault].name for e in events}:
                counts[name]["devices"] += 1
    return out

"""Counters, progress snapshots and the run's report, and how shards' reports and progress merge into one.

Pure (no I/O). Command latencies are kept in a :class:`LatencyHistogram`
with fixed buckets, so the histograms of N shards add up exactly and the
merged percentiles are those of the whole fleet, not an average of averages.
"""

from __future__ import annotations

import itertools
import math
import os
import platform
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar

from .._version import __version__
from ..errors import ValidationError
from ._fleet import Phase, SimulationConfig

__all__ = [
    "LatencyHistogram",
    "Progress",
    "RateMeter",
    "ShardInfo",
    "SimulationReport",
    "SimulationStats",
    "build_report",
    "machine_info",
    "merge_progress",
    "merge_reports",
    "part_of",
    "peak_rss_bytes",
    "report_from_dict",
]

# Bucket b >= 1 holds latencies in (2**((b-1)/8), 2**(b/8)] ms: each bucket is 9 % wide, so a
# percentile read from the histogram is within 9 % of the exact one. Bucket 0 holds <= 1 ms.
_STEPS_PER_DOUBLING = 8


class LatencyHistogram:
    """Latencies in milliseconds, in log-spaced buckets; histograms of shards add exactly."""

    __slots__ = ("buckets", "count", "max_ms")

    def __init__(self, buckets: Mapping[int, int] | None = None, max_ms: float = 0.0) -> None:
        self.buckets: dict[int, int] = {int(b): int(n) for b, n in (buckets or {}).items() if n}
        self.count: int = sum(self.buckets.values())
        self.max_ms: float = round(float(max_ms), 3)

    @staticmethod
    def bucket_of(ms: float) -> int:
        """The bucket that holds a latency of ``ms`` milliseconds."""
        if ms <= 1.0:
            return 0
        return math.ceil(math.log2(ms) * _STEPS_PER_DOUBLING - 1e-9)

    @staticmethod
    def upper_bound(bucket: int) -> float:
        """The largest latency bucket ``bucket`` holds, in ms."""
        return float(2.0 ** (bucket / _STEPS_PER_DOUBLING))

    def record(self, ms: float) -> None:
        """Add one latency, in ms."""
        ms = max(0.0, ms)
        b = self.bucket_of(ms)
        self.buckets[b] = self.buckets.get(b, 0) + 1
        self.count += 1
        # Kept at the JSON report's precision, so a histogram read back equals the one written.
        ms = round(ms, 3)
        if ms > self.max_ms:
            self.max_ms = ms

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) as its bucket's upper bound (never above the max seen); None when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(self.count * q / 100.0))
        seen = 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen >= rank:
                return round(min(self.upper_bound(b), self.max_ms), 1)
        raise AssertionError("unreachable")

    def merged(self, other: LatencyHistogram) -> LatencyHistogram:
        """A new histogram holding this one's latencies and ``other``'s."""
        out = LatencyHistogram(self.buckets, max(self.max_ms, other.max_ms))
        for b, n in other.buckets.items():
            out.buckets[b] = out.buckets.get(b, 0) + n
        out.count = self.count + other.count
        return out

    def to_dict(self) -> dict[str, Any]:
        """The histogram as a JSON-ready dict (for the report)."""
        return {
            "scheme": f"log2, {_STEPS_PER_DOUBLING} buckets per doubling, ms",
            "buckets": {str(b): n for b, n in sorted(self.buckets.items())},
            "max_ms": round(self.max_ms, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyHistogram:
        """Read a histogram back from ``to_dict`` output; ValidationError when malformed."""
        try:
            return cls({int(b): int(n) for b, n in data.get("buckets", {}).items()}, float(data.get("max_ms", 0.0)))
        except (TypeError, ValueError, AttributeError):
            raise ValidationError("a command latency histogram in the report is malformed") from None

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LatencyHistogram) and self.buckets == other.buckets
                and self.max_ms == other.max_ms)

    __hash__: ClassVar[None] = None  # type: ignore[assignment]


class RateMeter:
    """Events per second over a sliding window, from cumulative counts sampled with a clock."""

    def __init__(self, window: float = 2.0) -> None:
        if window <= 0:
            raise ValidationError("window must be positive")
        self._window = window
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, total: int) -> float:
        """Record ``total`` at ``now`` and return the rate over the window (0 until two samples)."""
        samples = self._samples
        samples.append((now, total))
        while len(samples) > 2 and now - samples[1][0] >= self._window:
            samples.popleft()
        t0, n0 = samples[0]
        if now <= t0:
            return 0.0
        return (total - n0) / (now - t0)


@dataclass(slots=True)
class SimulationStats:
    """Running counters; the engine mutates them from one event loop only."""

    states_sent: int = 0
    states_late: int = 0
    """States sent more than one period after their due time (the sender fell behind)."""
    states_acked: int | None = None
    commands_scheduled: int = 0
    """Commands the controller's rounds were due to send by the end of the reporting (sent or not)."""
    commands_sent: int = 0
    commands_received: int = 0
    commands_duplicate: int = 0
    command_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    reconnects: int = 0
    errors: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    connections: int = 0
    """MQTT connections the fleet uses (devices, or gateways); 0 over REST."""
    connected: int = 0
    states_buffered: int = 0
    """States handed to a device that was not connected (held in its outbox, not written)."""
    states_unchanged: int = 0
    """Reports an on-change device skipped: nothing changed and no heartbeat was due."""
    states_held: int = 0
    """Reports skipped because a command made the device report less often."""
    states_replies: int = 0
    """States sent as replies to commands (an ``ack`` reaction), apart from the schedule."""
    commands_by_name: dict[str, dict[str, int]] = field(default_factory=dict)
    unchanged_by_type: dict[str, int] = field(default_factory=dict)
    held_by_type: dict[str, int] = field(default_factory=dict)
    states_burst: int = 0
    """States beyond the schedule: bursts (a fault) and spikes (a phase)."""
    states_delayed: int = 0
    """States a network drop held back (sent later with their times, counted as sent then)."""
    faults: dict[str, dict[str, int]] = field(default_factory=dict)
    states_backfilled: int = 0
    """History states sent before the run with their original times."""
    run_cpu_seconds: float = 0.0
    """This process's CPU time during the reporting (connecting and draining not included)."""
    reboots: int = 0
    """Reboots (a command's reaction) begun: off for a while, then connected again (a reconnect)."""
    types: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The report's section per device type (filled at the end of the run)."""
    devices_unconnected: list[str] = field(default_factory=list)
    """Devices whose every state was only buffered: they never had a connected session."""

    def record_error(self, exc: BaseException) -> None:
        """Count one failure by its type and keep its message (our errors never carry secrets)."""
        self.errors += 1
        name = type(exc).__name__
        self.errors_by_type[name] = self.errors_by_type.get(name, 0) + 1
        self.last_error = f"{name}: {exc}"


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot for a progress line (of one shard, or the sum of several)."""

    phase: Phase
    elapsed: float
    duration: float
    devices: int
    connections: int
    connected: int
    states_sent: int
    states_per_second: float
    commands_sent: int
    commands_received: int
    reconnects: int
    errors: int
    last_error: str | None
    shards: int = 1
    commands_scheduled: int = 0
    """Commands due by now; more than ``commands_sent`` when the controller is behind."""

    def to_dict(self) -> dict[str, Any]:
        """The progress as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Progress:
        """Read a progress back from ``to_dict`` output (unknown keys ignored)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


_PHASE_ORDER: tuple[Phase, ...] = ("starting", "connecting", "backfilling", "running", "draining", "done")


def merge_progress(parts: Sequence[Progress]) -> Progress:
    """One line for many shards: counters summed, the phase of the slowest shard, the longest elapsed."""
    if not parts:
        raise ValidationError("no progress to merge")
    phase = min((p.phase for p in parts), key=_PHASE_ORDER.index)
    last = next((p.last_error for p in parts if p.last_error), None)
    return Progress(
        phase=phase,
        elapsed=max(p.elapsed for p in parts),
        duration=max(p.duration for p in parts),
        devices=sum(p.devices for p in parts),
        connections=sum(p.connections for p in parts),
        connected=sum(p.connected for p in parts),
        states_sent=sum(p.states_sent for p in parts),
        states_per_second=sum(p.states_per_second for p in parts),
        commands_sent=sum(p.commands_sent for p in parts),
        commands_received=sum(p.commands_received for p in parts),
        reconnects=sum(p.reconnects for p in parts),
        errors=sum(p.errors for p in parts),
        last_error=last,
        shards=sum(p.shards for p in parts),
        commands_scheduled=sum(p.commands_scheduled for p in parts),
    )


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """The slice of the fleet a report covers: shard ``index + 1`` of ``count``, devices ``first .. first + devices - 1``."""

    index: int
    count: int
    first: int
    devices: int

    def to_dict(self) -> dict[str, int]:
        """The shard as a JSON-ready dict."""
        return {"index": self.index, "count": self.count, "first": self.first, "devices": self.devices}


@dataclass(frozen=True, slots=True)
class SimulationReport:
    """The result of a run (one shard or several merged); :meth:`to_dict` is the ``--json`` report."""

    fleet_devices: int
    """The whole fleet's size (every shard of it)."""
    devices: int
    """Devices this report covers."""
    gateways: int
    transport: str
    """``mqtt``, ``rest``, or ``mqtt+rest`` when a scenario's device types mix them."""
    qos: int
    rate: float
    seed: int
    shards: tuple[ShardInfo, ...]
    duration: float
    """Seconds spent reporting (shorter than asked when interrupted; the longest shard's when merged)."""
    states_expected: int
    states_sent: int
    states_late: int
    """States sent more than one period late: the fleet was not sustained at its rate."""
    states_acked: int | None
    states_stored: int | None
    states_per_second: float
    commands_scheduled: int
    """Commands the controller was due to send during the reporting; those it never sent are ``commands_unsent``."""
    commands_sent: int
    commands_received: int
    commands_duplicate: int
    command_latency: LatencyHistogram
    command_wait: float
    reconnects: int
    errors: int
    errors_by_type: dict[str, int]
    connect_seconds: float
    peak_rss_bytes: int | None
    """Peak resident memory; merged: the sum of every shard's peak."""
    interrupted: bool
    embedded_emulator: bool
    machine: dict[str, Any]
    parts: tuple[dict[str, Any], ...] = ()
    """Merged reports: each shard's own counters (see :func:`part_of`), so the sum can be checked."""
    scenario: str = "built-in sensors"
    states_buffered: int = 0
    """States handed to devices that were not connected at the time (buffered, not written)."""
    states_unchanged: int = 0
    """On-change devices' reports skipped because nothing changed (part of ``states_expected``)."""
    types: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per device type: devices, states expected, sent, buffered, unchanged."""
    states_held: int = 0
    """Reports skipped because a command set a longer interval (part of ``states_expected``)."""
    states_replies: int = 0
    """Reply states of ``ack`` reactions (not in ``states_expected``; stored like the rest)."""
    commands_by_name: dict[str, dict[str, int]] = field(default_factory=dict)
    """The scenario's commands and the reactions to them: sent, received, reactions applied, ignored."""
    states_burst: int = 0
    """States beyond the schedule: bursts (a fault) and spikes (a phase); not in ``states_expected``."""
    states_delayed: int = 0
    """States a network drop held back and sent later with their original times (within ``states_sent``)."""
    faults: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per fault: devices it struck, events, states delayed, burst states."""
    states_backfilled: int = 0
    """History states sent before the run with their original times (not in ``states_expected``)."""
    backfill_seconds: float = 0.0
    """How long sending the history took (the longest shard's when merged)."""
    run_cpu_seconds: float = 0.0
    """CPU time of the simulator's process(es) during the reporting (summed over shards; the embedded
    emulator, a process of its own, not included): with ``states_sent``, the CPU cost per state."""
    reboots: int = 0
    """Reboots the devices did (a command's reaction); their reconnects are in ``reconnects``."""
    devices_unconnected: tuple[str, ...] = ()
    """Devices that never had a connected session (their states were only buffered): the run failed."""

    @property
    def states_lost(self) -> int | None:
        """States sent or buffered that the server did not store (None when the server's count is unknown)."""
        if self.states_stored is None:
            return None
        return max(0, self.states_sent + self.states_buffered + self.states_replies + self.states_burst
                   + self.states_backfilled - self.states_stored)

    @property
    def commands_unsent(self) -> int:
        """Commands due that were never sent: the controller fell behind, or the server refused the call."""
        return max(0, self.commands_scheduled - self.commands_sent)

    @property
    def commands_lost(self) -> int:
        """Commands the server accepted that no device received within the wait."""
        return max(0, self.commands_sent - self.commands_received)

    @property
    def command_p50_ms(self) -> float | None:
        return self.command_latency.percentile(50)

    @property
    def command_p99_ms(self) -> float | None:
        return self.command_latency.percentile(99)

    @property
    def ok(self) -> bool:
        """Completed, every state sent, no state lost, every command due sent and received, no errors."""
        return (
            not self.interrupted
            and self.errors == 0
            and self.states_sent + self.states_buffered + self.states_unchanged + self.states_held
            == self.states_expected
            and not self.devices_unconnected
            and (self.states_lost is None or self.states_lost == 0)
            and self.commands_unsent == 0
            and self.commands_lost == 0
        )

    def with_stored(self, stored: int | None) -> SimulationReport:
        """The same report once the server's count of stored states is known."""
        return replace(self, states_stored=stored)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the histogram included, so reports can be merged later)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "command_latency":
                out["command_latency_ms"] = {"p50": self.command_p50_ms, "p99": self.command_p99_ms,
                                             "max": round(value.max_ms, 1) if value.count else None}
                out["command_latency_histogram"] = value.to_dict()
            elif f.name == "shards":
                out["shards"] = [s.to_dict() for s in value]
            elif f.name == "errors_by_type" or f.name == "machine":
                out[f.name] = dict(value)
            elif f.name == "parts":
                out[f.name] = [dict(p) for p in value]
            elif f.name in ("types", "commands_by_name", "faults"):
                out[f.name] = {k: dict(v) for k, v in value.items()}
            elif f.name == "devices_unconnected":
                out[f.name] = list(value)
            else:
                out[f.name] = value
        out["states_lost"] = self.states_lost
        out["commands_unsent"] = self.commands_unsent
        out["commands_lost"] = self.commands_lost
        out["ok"] = self.ok
        return out


def report_from_dict(data: Mapping[str, Any]) -> SimulationReport:
    """Read back a ``--json`` report; ``ValidationError`` when it is not one."""
    if not isinstance(data, Mapping):
        raise ValidationError("a simulation report must be a JSON object")
    optional = {"scenario", "states_buffered", "states_unchanged", "types", "devices_unconnected", "states_held",
                "states_replies", "commands_by_name", "states_burst", "states_delayed", "faults",
                "states_backfilled", "backfill_seconds", "run_cpu_seconds", "reboots"}
    names = {f.name for f in fields(SimulationReport)} - {"command_latency", "shards", "parts"} - optional
    missing = sorted(n for n in names if n not in data)
    if missing or "shards" not in data:
        raise ValidationError(f"not a simulation report: missing {', '.join(missing or ['shards'])}")
    try:
        kw: dict[str, Any] = {n: data[n] for n in names}
        kw["shards"] = tuple(ShardInfo(**s) for s in data["shards"])
        kw["command_latency"] = LatencyHistogram.from_dict(data.get("command_latency_histogram") or {})
        kw["errors_by_type"] = dict(kw["errors_by_type"])
        kw["machine"] = dict(kw["machine"])
        kw["parts"] = tuple(dict(p) for p in data.get("parts") or ())
        kw.update({n: data[n] for n in optional if n in data})
        kw["types"] = {str(k): dict(v) for k, v in (kw.get("types") or {}).items()}
        kw["commands_by_name"] = {str(k): dict(v) for k, v in (kw.get("commands_by_name") or {}).items()}
        kw["faults"] = {str(k): dict(v) for k, v in (kw.get("faults") or {}).items()}
        kw["devices_unconnected"] = tuple(str(d) for d in kw.get("devices_unconnected") or ())
    except (TypeError, ValueError):
        raise ValidationError("a simulation report has a malformed field") from None
    return SimulationReport(**kw)


def _sum_optional(values: Iterable[int | None]) -> int | None:
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total


_PART_FIELDS = ("devices", "states_expected", "states_sent", "states_buffered", "states_unchanged", "states_late",
                "states_stored", "commands_scheduled", "commands_sent", "commands_received", "errors")


def part_of(report: SimulationReport) -> list[dict[str, Any]]:
    """A report's per-shard counters: its ``parts`` when merged, else one part of its own."""
    if report.parts:
        return [dict(p) for p in report.parts]
    (shard,) = report.shards
    part: dict[str, Any] = {"shard": f"{shard.index + 1}/{shard.count}"}
    part.update({name: getattr(report, name) for name in _PART_FIELDS})
    part["states_lost"] = report.states_lost
    part["commands_unsent"] = report.commands_unsent
    part["commands_lost"] = report.commands_lost
    return [part]


def merge_reports(reports: Sequence[SimulationReport]) -> SimulationReport:
    """Sum the reports of shards of one fleet into one; ``ValidationError`` when they do not belong together."""
    if not reports:
        raise ValidationError("no reports to merge")
    first = reports[0]
    for r in reports[1:]:
        for name in ("fleet_devices", "transport", "qos", "rate", "seed", "scenario"):
            if getattr(r, name) != getattr(first, name):
                raise ValidationError(
                    f"reports of different fleets cannot be merged: {name} "
                    f"{getattr(first, name)!r} vs {getattr(r, name)!r}"
                )
    shards = sorted((s for r in reports for s in r.shards), key=lambda s: s.first)
    for a, b in itertools.pairwise(shards):
        if b.first < a.first + a.devices:
            raise ValidationError(f"shards {a.index + 1}/{a.count} and {b.index + 1}/{b.count} overlap: "
                                  "a report is given twice, or slices of different splits are mixed")
    latency = LatencyHistogram()
    errors_by_type: dict[str, int] = {}
    types: dict[str, dict[str, Any]] = {}
    by_name: dict[str, dict[str, int]] = {}
    faults: dict[str, dict[str, int]] = {}
    for r in reports:
        for sums, of_report in ((by_name, r.commands_by_name), (faults, r.faults)):
            for name, counts in of_report.items():
                into_c = sums.setdefault(name, {})
                for k, v in counts.items():
                    into_c[k] = into_c.get(k, 0) + v
        for name, section in r.types.items():
            into = types.setdefault(name, {})
            for k, v in section.items():
                # Counts add up; a type's interval and transport are the same in every shard.
                into[k] = v if k in ("interval", "transport") else into.get(k, 0) + v
    for r in reports:
        latency = latency.merged(r.command_latency)
        for k, v in r.errors_by_type.items():
            errors_by_type[k] = errors_by_type.get(k, 0) + v
    duration = max(r.duration for r in reports)
    sent = sum(r.states_sent for r in reports)
    rss = _sum_optional(r.peak_rss_bytes for r in reports)
    return SimulationReport(
        fleet_devices=first.fleet_devices,
        devices=sum(r.devices for r in reports),
        gateways=sum(r.gateways for r in reports),
        transport=first.transport,
        qos=first.qos,
        rate=first.rate,
        seed=first.seed,
        shards=tuple(shards),
        duration=duration,
        states_expected=sum(r.states_expected for r in reports),
        states_sent=sent,
        states_late=sum(r.states_late for r in reports),
        states_acked=_sum_optional(r.states_acked for r in reports),
        states_stored=_sum_optional(r.states_stored for r in reports),
        states_per_second=round(sum(r.states_per_second for r in reports), 2),
        commands_scheduled=sum(r.commands_scheduled for r in reports),
        commands_sent=sum(r.commands_sent for r in reports),
        commands_received=sum(r.commands_received for r in reports),
        commands_duplicate=sum(r.commands_duplicate for r in reports),
        command_latency=latency,
        command_wait=max(r.command_wait for r in reports),
        reconnects=sum(r.reconnects for r in reports),
        errors=sum(r.errors for r in reports),
        errors_by_type=errors_by_type,
        connect_seconds=max(r.connect_seconds for r in reports),
        peak_rss_bytes=rss,
        interrupted=any(r.interrupted for r in reports),
        embedded_emulator=all(r.embedded_emulator for r in reports),
        machine=dict(first.machine),
        parts=tuple(p for r in reports for p in part_of(r)),
        scenario=first.scenario,
        states_buffered=sum(r.states_buffered for r in reports),
        states_unchanged=sum(r.states_unchanged for r in reports),
        types=types,
        devices_unconnected=tuple(d for r in reports for d in r.devices_unconnected),
        states_held=sum(r.states_held for r in reports),
        states_replies=sum(r.states_replies for r in reports),
        commands_by_name=by_name,
        states_burst=sum(r.states_burst for r in reports),
        states_delayed=sum(r.states_delayed for r in reports),
        faults=faults,
        states_backfilled=sum(r.states_backfilled for r in reports),
        backfill_seconds=max(r.backfill_seconds for r in reports),
        run_cpu_seconds=round(sum(r.run_cpu_seconds for r in reports), 3),
        reboots=sum(r.reboots for r in reports),
    )


def peak_rss_bytes() -> int | None:
    """This process's peak resident set size in bytes, or ``None`` where the OS does not say."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def machine_info() -> dict[str, Any]:
    """What a benchmark figure needs next to it: CPU count, platform, Python and library versions."""
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "losant_async": __version__,
    }


def build_report(
    config: SimulationConfig,
    stats: SimulationStats,
    *,
    gateways: int,
    run_seconds: float,
    connect_seconds: float,
    states_stored: int | None,
    interrupted: bool,
    embedded: bool,
    peak_rss: int | None,
    machine: dict[str, Any],
    backfill_seconds: float = 0.0,
) -> SimulationReport:
    """Assemble one shard's report from its counters; pure."""
    indices = config.indices
    return SimulationReport(
        fleet_devices=config.devices,
        devices=len(indices),
        gateways=gateways,
        transport="+".join(sorted(config.transports)) or config.transport,
        qos=config.qos,
        rate=config.rate,
        seed=config.seed,
        shards=(ShardInfo(config.shard.index, config.shard.count, indices.start, len(indices)),),
        duration=round(run_seconds, 3),
        states_expected=config.expected(),
        states_sent=stats.states_sent,
        states_late=stats.states_late,
        states_acked=stats.states_acked,
        states_stored=states_stored,
        states_per_second=round(stats.states_sent / run_seconds, 2) if run_seconds > 0 else 0.0,
        commands_scheduled=stats.commands_scheduled,
        commands_sent=stats.commands_sent,
        commands_received=stats.commands_received,
        commands_duplicate=stats.commands_duplicate,
        command_latency=LatencyHistogram(stats.command_latency.buckets, stats.command_latency.max_ms),
        command_wait=config.command_wait,
        reconnects=stats.reconnects,
        errors=stats.errors,
        errors_by_type=dict(stats.errors_by_type),
        connect_seconds=round(connect_seconds, 3),
        peak_rss_bytes=peak_rss,
        interrupted=interrupted,
        embedded_emulator=embedded,
        machine=machine,
        scenario=config.model.name,
        states_buffered=stats.states_buffered,
        states_unchanged=stats.states_unchanged,
        types={k: dict(v) for k, v in stats.types.items()},
        devices_unconnected=tuple(stats.devices_unconnected),
        states_held=stats.states_held,
        states_replies=stats.states_replies,
        commands_by_name={k: dict(v) for k, v in stats.commands_by_name.items()},
        states_burst=stats.states_burst,
        states_delayed=stats.states_delayed,
        faults={k: dict(v) for k, v in stats.faults.items()},
        states_backfilled=stats.states_backfilled,
        backfill_seconds=round(backfill_seconds, 3),
        run_cpu_seconds=round(stats.run_cpu_seconds, 3),
        reboots=stats.reboots,
    )

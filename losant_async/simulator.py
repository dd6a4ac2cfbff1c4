"""The fleet-simulation engine behind ``losant-async simulate``: schedules, sensor values, counters, report.

It runs a fleet of simulated devices (standalone over MQTT, peripherals behind
gateways, or REST senders) against a :class:`Target` someone else provisioned,
and returns a :class:`SimulationReport`. It never prints, reads the terminal
or writes files: the CLI renders :meth:`Simulation.progress` and the report.
It does not import ``losant_async.testing``; the emulator reaches it through
the :class:`StoredStates` protocol.

Pure parts (no I/O, unit-tested without sockets): :func:`due_times`,
:func:`phase_offsets`, :func:`plan_gateways`, :class:`SensorModel`,
:class:`RateMeter`, :func:`build_report`.
"""

from __future__ import annotations

import math
import os
import platform
import random
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio

from ._time import now_ms
from ._version import __version__
from .errors import (
    AuthenticationRefusedError,
    ForbiddenError,
    LosantError,
    UnauthorizedError,
    ValidationError,
)

if TYPE_CHECKING:
    from .rest import LosantClient

__all__ = [
    "COMMAND_NAME",
    "LOSANT_CONNECTION_RATE",
    "LOSANT_TOPIC_RATE",
    "MAX_PERIPHERALS_PER_GATEWAY",
    "SENSOR_ATTRIBUTES",
    "GatewayGroup",
    "Progress",
    "RateMeter",
    "SensorModel",
    "Simulation",
    "SimulationConfig",
    "SimulationReport",
    "SimulationStats",
    "StoredStates",
    "Target",
    "build_report",
    "due_times",
    "expected_states",
    "machine_info",
    "peak_rss_bytes",
    "peripherals_per_gateway",
    "phase_offsets",
    "plan_gateways",
]

LOSANT_TOPIC_RATE = 30 / 15
"""Messages per second Losant allows per topic and direction (30 per 15 s)."""
LOSANT_CONNECTION_RATE = 300 / 15
"""Messages per second Losant allows per MQTT connection (300 per 15 s)."""
MAX_PERIPHERALS_PER_GATEWAY = 50
# Commands to peripherals arrive on the gateway's connection too: keep a tenth of
# the connection budget for them so states never push a gateway over the limit.
_GATEWAY_STATE_SHARE = 0.9

SENSOR_ATTRIBUTES: Mapping[str, str] = {"temperature": "number", "humidity": "number", "battery": "number"}
"""The attributes every simulated device reports (name -> Losant data type); provision devices with them."""

COMMAND_NAME = "simulate"

Transport = Literal["mqtt", "rest"]
Phase = Literal["starting", "connecting", "running", "draining", "done"]


# --------------------------------------------------------------------------- pure parts


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


def phase_offsets(count: int, rate: float) -> list[float]:
    """Start offsets that spread ``count`` devices evenly over one reporting period.

    Device ``i`` starts ``i / count`` of a period after the first, so a fleet at
    1 state/s sends a steady stream instead of ``count`` states in the same millisecond.
    """
    if count <= 0 or rate <= 0:
        return []
    period = 1.0 / rate
    return [period * i / count for i in range(count)]


def expected_states(count: int, rate: float, duration: float) -> int:
    """How many states a full run sends: the sum of every device's schedule."""
    return sum(sum(1 for _ in due_times(off, rate, duration)) for off in phase_offsets(count, rate))


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


class SensorModel:
    """Plausible sensor readings for one device: temperature and humidity random walks, a draining battery."""

    __slots__ = ("_rng", "battery", "humidity", "temperature")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.temperature = rng.uniform(18.0, 24.0)
        self.humidity = rng.uniform(35.0, 55.0)
        self.battery = 100.0

    def next(self) -> dict[str, float]:
        """The next reading (values rounded as a real sensor would report them)."""
        rng = self._rng
        self.temperature = min(40.0, max(-10.0, self.temperature + rng.gauss(0.0, 0.15)))
        self.humidity = min(100.0, max(0.0, self.humidity + rng.gauss(0.0, 0.4)))
        self.battery = max(0.0, self.battery - rng.uniform(0.0, 0.01))
        return {
            "temperature": round(self.temperature, 2),
            "humidity": round(self.humidity, 1),
            "battery": round(self.battery, 2),
        }


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


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """What to simulate. Invalid values raise ``ValidationError`` on construction."""

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
    """Devices commanded per round; ``None`` means about 2% of the fleet (1 to 50)."""
    drain_timeout: float = 15.0
    """Seconds to wait, after the last send, for flushes, stored states and late commands."""
    seed: int | None = None

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
        if self.drain_timeout < 0:
            raise ValidationError("drain_timeout must be >= 0")

    @property
    def command_batch(self) -> int:
        """Devices commanded per controller round."""
        if self.commands_per_round is not None:
            return min(self.commands_per_round, self.devices)
        return max(1, min(50, self.devices // 50))


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
    """Where the fleet runs and with which identities; secrets are kept out of the repr."""

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
        if len(self.device_ids) != config.devices:
            raise ValidationError(f"the target has {len(self.device_ids)} devices but {config.devices} were asked for")
        if len(set(self.device_ids)) != len(self.device_ids):
            raise ValidationError("device ids must be distinct: two connections with one id displace each other")
        if config.transport == "mqtt":
            missing = [n for n, v in (("broker host", self.mqtt_host), ("access key", self.key),
                                      ("access secret", self.secret)) if not v]
            if missing:
                raise ValidationError(f"MQTT transport needs {', '.join(missing)}")
        else:
            if not self.rest_url or not self.api_token:
                raise ValidationError("REST transport needs a REST URL and an API token")
        if config.gateway:
            carried = [p for g in self.gateways for p in g.peripheral_ids]
            if sorted(carried) != sorted(self.device_ids):
                raise ValidationError("gateway mode needs every reporting device assigned to exactly one gateway")
            limit = peripherals_per_gateway(config.rate, throttled=config.throttle)
            if any(len(g.peripheral_ids) > limit for g in self.gateways):
                raise ValidationError(
                    f"a gateway carries more than {limit} peripherals at {config.rate:g} states/s each"
                )

    @property
    def commands_possible(self) -> bool:
        """Whether a controller can send commands: it needs the REST API."""
        return bool(self.rest_url and self.api_token)


# --------------------------------------------------------------------------- counters and report


@dataclass(slots=True)
class SimulationStats:
    """Running counters; the engine mutates them from one event loop only."""

    states_sent: int = 0
    states_acked: int | None = None
    commands_sent: int = 0
    commands_received: int = 0
    reconnects: int = 0
    errors: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    connections: int = 0
    """MQTT connections the fleet uses (devices, or gateways); 0 over REST."""
    connected: int = 0

    def record_error(self, exc: BaseException) -> None:
        """Count one failure by its type and keep its message (our errors never carry secrets)."""
        self.errors += 1
        name = type(exc).__name__
        self.errors_by_type[name] = self.errors_by_type.get(name, 0) + 1
        self.last_error = f"{name}: {exc}"


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot for a progress line."""

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


@dataclass(frozen=True, slots=True)
class SimulationReport:
    """The result of a run; :meth:`to_dict` is the ``--json`` report."""

    devices: int
    gateways: int
    transport: Transport
    qos: int
    rate: float
    duration: float
    """Seconds spent reporting (shorter than asked when interrupted)."""
    states_expected: int
    states_sent: int
    states_acked: int | None
    states_stored: int | None
    states_lost: int | None
    states_per_second: float
    commands_sent: int
    commands_received: int
    reconnects: int
    errors: int
    errors_by_type: dict[str, int]
    connect_seconds: float
    peak_rss_bytes: int | None
    interrupted: bool
    embedded_emulator: bool
    machine: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Completed, every state sent, none lost where the server's count is known, no errors."""
        return (
            not self.interrupted
            and self.errors == 0
            and self.states_sent == self.states_expected
            and (self.states_lost is None or self.states_lost == 0)
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        out = asdict(self)
        out["ok"] = self.ok
        return out


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
) -> SimulationReport:
    """Assemble the report from the counters; pure."""
    lost = None if states_stored is None else max(0, stats.states_sent - states_stored)
    return SimulationReport(
        devices=config.devices,
        gateways=gateways,
        transport=config.transport,
        qos=config.qos,
        rate=config.rate,
        duration=round(run_seconds, 3),
        states_expected=expected_states(config.devices, config.rate, config.duration),
        states_sent=stats.states_sent,
        states_acked=stats.states_acked,
        states_stored=states_stored,
        states_lost=lost,
        states_per_second=round(stats.states_sent / run_seconds, 2) if run_seconds > 0 else 0.0,
        commands_sent=stats.commands_sent,
        commands_received=stats.commands_received,
        reconnects=stats.reconnects,
        errors=stats.errors,
        errors_by_type=dict(stats.errors_by_type),
        connect_seconds=round(connect_seconds, 3),
        peak_rss_bytes=peak_rss,
        interrupted=interrupted,
        embedded_emulator=embedded,
        machine=machine,
    )


# --------------------------------------------------------------------------- the engine

StateSender = Callable[[str, dict[str, float], int], Awaitable[None]]

# Failures that every further attempt would repeat: they end the run instead of being counted
# a thousand times.
_FATAL = (AuthenticationRefusedError, UnauthorizedError, ForbiddenError)
_COMMAND_CALL_LIMIT = 15.0


class Simulation:
    """One run of a simulated fleet against a :class:`Target`.

    ``await run()`` connects the fleet (bounded concurrency), reports for
    ``config.duration`` seconds while a controller sends commands, drains, and
    returns the report. ``stop()`` (e.g. from a signal handler) ends the
    reporting early; the report then says ``interrupted``.
    """

    def __init__(self, config: SimulationConfig, target: Target) -> None:
        target.check(config)
        self.config = config
        self.target = target
        self.stats = SimulationStats(states_acked=0 if config.qos == 1 and config.transport == "mqtt" else None)
        self._clock = time.monotonic
        self._phase: Phase = "starting"
        # Events are made inside the event loop (anyio needs one); stop() may come before.
        self._stop: anyio.Event | None = None
        self._stop_requested = False
        self._interrupted = False
        self._run_started: float | None = None
        self._run_ended: float | None = None
        self._meter = RateMeter()
        self._sent_by_device: dict[str, int] = dict.fromkeys(target.device_ids, 0)
        self._devices: list[Any] = []  # connected Device/Gateway objects, for their statistics
        self._command_tick: anyio.Event | None = None
        self._used = False

    # -- observation

    @property
    def phase(self) -> Phase:
        return self._phase

    def progress(self) -> Progress:
        """A snapshot of the counters (cheap; call it a few times per second)."""
        now = self._clock()
        self._refresh_device_stats()
        s = self.stats
        elapsed = 0.0
        if self._run_started is not None:
            elapsed = (self._run_ended or now) - self._run_started
        return Progress(
            phase=self._phase,
            elapsed=elapsed,
            duration=self.config.duration,
            devices=self.config.devices,
            connections=s.connections,
            connected=s.connected,
            states_sent=s.states_sent,
            states_per_second=self._meter.sample(now, s.states_sent),
            commands_sent=s.commands_sent,
            commands_received=s.commands_received,
            reconnects=s.reconnects,
            errors=s.errors,
            last_error=s.last_error,
        )

    def stop(self) -> None:
        """End the reporting now (idempotent); ``run()`` still drains and returns a report."""
        if not self._stop_requested:
            self._stop_requested = True
            self._interrupted = self._phase in ("starting", "connecting", "running")
            if self._stop is not None:
                self._stop.set()

    # -- running

    async def run(self) -> SimulationReport:
        """Connect, report, drain; return the report. Fatal setup failures raise ``LosantError``."""
        if self._used:
            raise ValidationError("a Simulation runs once; build a new one")
        self._used = True
        self._events()
        connect_seconds = 0.0
        states_stored: int | None = None
        try:
            if self.config.transport == "mqtt":
                connect_seconds, states_stored = await self._run_mqtt()
            else:
                connect_seconds, states_stored = await self._run_rest()
        finally:
            self._phase = "done"
            if self._run_started is not None and self._run_ended is None:
                self._run_ended = self._clock()
        self._refresh_device_stats()
        run_seconds = 0.0
        if self._run_started is not None and self._run_ended is not None:
            run_seconds = self._run_ended - self._run_started
        return build_report(
            self.config,
            self.stats,
            gateways=len(self.target.gateways) if self.config.gateway else 0,
            run_seconds=run_seconds,
            connect_seconds=connect_seconds,
            states_stored=states_stored,
            interrupted=self._interrupted,
            embedded=self.target.embedded,
            peak_rss=peak_rss_bytes(),
            machine=machine_info(),
        )

    def _events(self) -> tuple[anyio.Event, anyio.Event]:
        if self._stop is None:
            self._stop = anyio.Event()
            if self._stop_requested:
                self._stop.set()
        if self._command_tick is None:
            self._command_tick = anyio.Event()
        return self._stop, self._command_tick

    async def _run_mqtt(self) -> tuple[float, int | None]:
        from .mqtt import Device, Fleet, Gateway

        cfg, tgt = self.config, self.target
        assert tgt.mqtt_host is not None and tgt.key is not None and tgt.secret is not None
        options: dict[str, Any] = {
            "host": tgt.mqtt_host,
            "transport": tgt.mqtt_transport,
            "qos": cfg.qos,
            "throttle": cfg.throttle,
        }
        if tgt.mqtt_port is not None:
            options["port"] = tgt.mqtt_port
        connections: list[Any]
        senders: dict[str, Any] = {}
        if cfg.gateway:
            connections = []
            for group in tgt.gateways:
                gw = Gateway(group.gateway_id, tgt.key, tgt.secret, **options)
                # Registered before connecting: the gateway subscribes their command topics
                # with its own, and is ready only after every SUBACK.
                for pid in group.peripheral_ids:
                    senders[pid] = gw.peripheral(pid)
                connections.append(gw)
        else:
            connections = [Device(d, tgt.key, tgt.secret, **options) for d in tgt.device_ids]
            senders = dict(zip(tgt.device_ids, connections, strict=True))
        for sender in senders.values():
            sender.on_command(self._on_command)

        self._phase = "connecting"
        started = self._clock()
        fleet = Fleet(connections, connect_concurrency=cfg.connect_concurrency, throttle=cfg.throttle)
        self._devices = connections
        self.stats.connections = len(connections)
        async with fleet:
            connect_seconds = self._clock() - started

            async def send(device_id: str, data: dict[str, float], ms: int) -> None:
                await senders[device_id].send_state(data, time=ms)

            if tgt.commands_possible:
                async with self._rest_client() as client:
                    await self._report(send, client)
                    await self._drain_mqtt(connections)
                    await self._wait_commands()
            else:
                await self._report(send, None)
                await self._drain_mqtt(connections)
            stored = await self._stored()
            self._refresh_device_stats()
        return connect_seconds, stored

    async def _run_rest(self) -> tuple[float, int | None]:
        cfg, tgt = self.config, self.target
        limiter = anyio.CapacityLimiter(cfg.rest_concurrency)
        self._phase = "connecting"
        async with self._rest_client() as client:

            async def send(device_id: str, data: dict[str, float], ms: int) -> None:
                async with limiter:
                    await client.device.send_state(
                        application_id=tgt.application_id,
                        device_id=device_id,
                        device_state={"data": data, "time": ms},
                    )

            # Devices sending over REST have no command channel to listen on: no controller.
            await self._report(send, None)
        return 0.0, await self._stored()

    def _rest_client(self) -> LosantClient:
        from .rest import LosantClient

        tgt = self.target
        assert tgt.api_token is not None and tgt.rest_url is not None
        return LosantClient(tgt.api_token, url=tgt.rest_url)

    async def _report(self, send: StateSender, client: LosantClient | None) -> None:
        cfg = self.config
        rng = random.Random(cfg.seed)
        offsets = phase_offsets(cfg.devices, cfg.rate)
        stop, _ = self._events()
        self._phase = "running"
        self._run_started = start = self._clock()
        if stop.is_set():
            self._run_ended = start
            return
        async with anyio.create_task_group() as tg:
            for device_id, offset in zip(self.target.device_ids, offsets, strict=True):
                tg.start_soon(self._device_loop, send, device_id, offset, start, random.Random(rng.random()))
            if client is not None and cfg.command_interval > 0:
                controller = anyio.CancelScope()
                tg.start_soon(self._controller, client, controller)
            else:
                controller = None
            # Device loops end on their own; the controller only when the reporting does.
            with anyio.move_on_after(cfg.duration):
                await stop.wait()
            if controller is not None:
                controller.cancel()
        self._run_ended = self._clock()
        self._phase = "draining"

    async def _device_loop(
        self, send: StateSender, device_id: str, offset: float, start: float, rng: random.Random
    ) -> None:
        model = SensorModel(rng)
        last_ms = 0
        stats = self.stats
        stop, _ = self._events()
        for due in due_times(offset, self.config.rate, self.config.duration):
            delay = start + due - self._clock()
            if delay > 0:
                with anyio.move_on_after(delay):
                    await stop.wait()
            if stop.is_set():
                return
            # Losant merges states with the same millisecond: keep each device's times strictly increasing.
            ms = max(now_ms(), last_ms + 1)
            last_ms = ms
            try:
                await send(device_id, model.next(), ms)
            except _FATAL:
                raise
            except LosantError as exc:
                stats.record_error(exc)
                continue
            stats.states_sent += 1
            self._sent_by_device[device_id] += 1

    async def _controller(self, client: LosantClient, scope: anyio.CancelScope) -> None:
        cfg, tgt = self.config, self.target
        ids = tgt.device_ids
        batch = cfg.command_batch
        cursor = 0
        round_no = 0
        with scope:
            while True:
                await anyio.sleep(cfg.command_interval)
                chosen = [ids[(cursor + i) % len(ids)] for i in range(batch)]
                cursor = (cursor + batch) % len(ids)
                round_no += 1
                # Shielded: a command cut off by the end of the run might still reach the
                # devices, and commands_sent must count exactly what the server took.
                with anyio.move_on_after(_COMMAND_CALL_LIMIT, shield=True) as call:
                    try:
                        await client.devices.send_command(
                            application_id=tgt.application_id,
                            multi_device_command={
                                "name": COMMAND_NAME,
                                "payload": {"round": round_no},
                                "deviceIds": chosen,
                            },
                        )
                    except _FATAL:
                        raise
                    except LosantError as exc:
                        self.stats.record_error(exc)
                        continue
                    self.stats.commands_sent += len(chosen)
                if call.cancelled_caught:
                    self.stats.record_error(TimeoutError(f"a command call took over {_COMMAND_CALL_LIMIT:g} s"))

    def _on_command(self, _command: object) -> None:
        # A plain callback, not a task per device: the device calls it from its network loop.
        self.stats.commands_received += 1
        # Wake the drain, which waits for late commands; a fresh event for the next one.
        tick, self._command_tick = self._command_tick, anyio.Event()
        if tick is not None:
            tick.set()

    async def _wait_commands(self) -> None:
        with anyio.move_on_after(min(self.config.drain_timeout, 5.0)):
            while self.stats.commands_received < self.stats.commands_sent:
                _, tick = self._events()
                await tick.wait()

    async def _drain_mqtt(self, connections: Sequence[Any]) -> None:
        with anyio.move_on_after(self.config.drain_timeout):
            async with anyio.create_task_group() as tg:
                for conn in connections:
                    tg.start_soon(self._flush_one, conn)

    async def _flush_one(self, conn: Any) -> None:
        try:
            await conn.flush()
        except LosantError as exc:
            self.stats.record_error(exc)

    async def _stored(self) -> int | None:
        if self.target.stored is None:
            return None
        return await self.target.stored.wait_stored(dict(self._sent_by_device), self.config.drain_timeout)

    def _refresh_device_stats(self) -> None:
        if not self._devices:
            return
        reconnects = acked = connected = 0
        for conn in self._devices:
            st = conn.stats
            reconnects += st.reconnects
            acked += st.acked
            connected += conn.connected
        self.stats.reconnects = reconnects
        self.stats.connected = connected
        if self.stats.states_acked is not None:
            self.stats.states_acked = acked


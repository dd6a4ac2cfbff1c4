"""The one-process runner: a shard of the fleet in this event loop, with a controller sending commands.

It never prints, reads the terminal or writes files: callers render
:meth:`Simulation.progress` and the report. It does not import
``losant_async.testing``; the emulator reaches it through :class:`StoredStates`.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .._time import now_ms
from ..errors import (
    AuthenticationRefusedError,
    ForbiddenError,
    LosantError,
    MQTTError,
    UnauthorizedError,
    ValidationError,
)
from ._backfill import BatchSender, backfill
from ._faults import DeviceFaults, plan_faults, spike_extra
from ._fleet import (
    COMMAND_NAME,
    DeviceSpec,
    FleetType,
    Phase,
    SimulationConfig,
    Target,
    command_rounds,
)
from ._generators import DeviceModel
from ._reactions import CommandPlan, Reactor
from ._report import (
    Progress,
    RateMeter,
    SimulationReport,
    SimulationStats,
    build_report,
    machine_info,
    peak_rss_bytes,
)

if TYPE_CHECKING:
    from ..rest import LosantClient

__all__ = ["Simulation", "StateSender"]

StateSender = Callable[[str, dict[str, Any], int], Awaitable[bool | None]]
"""Sends one state; returns False when the state was only buffered (the device was not connected)."""

# Failures that every further attempt would repeat: they end the run instead of being counted
# a thousand times.
_FATAL = (AuthenticationRefusedError, UnauthorizedError, ForbiddenError)
_COMMAND_CALL_LIMIT = 15.0
# Command calls in flight at once: a slow call must not push the next rounds off their schedule,
# and a stalled server must not collect an unbounded pile of calls.
_COMMAND_CALLS_IN_FLIGHT = 4
_STATS_PER_PROGRESS = 200
"""Devices whose statistics one progress() call gathers (~10 ms), in turn."""
_LANE_DEVICES = 50
"""Devices whose states one task sends (see ``Simulation._lane``)."""
_EARLY = 0.005
"""Seconds before its due time a state may go, so that one wake-up sends its neighbours' too."""


class Simulation:
    """One run of a shard of a simulated fleet against a :class:`Target`.

    ``await run()`` connects the shard's devices (bounded concurrency), reports
    for ``config.duration`` seconds while a controller sends commands on a
    fixed schedule, waits up to ``config.command_wait`` for commands still on
    their way, drains, and returns the report. ``stop()`` (e.g. from a signal
    handler) ends the reporting early; the report then says ``interrupted``.
    """

    def __init__(self, config: SimulationConfig, target: Target) -> None:
        target.check(config)
        self.config = config
        self.target = target
        self._types = config.types()
        acked = config.transport == "mqtt" and any(t.qos == 1 and t.count for t in self._types)
        self.stats: SimulationStats = SimulationStats(states_acked=0 if acked else None)
        self._specs: list[DeviceSpec] = config.specs()
        self._clock = time.monotonic
        self._phase: Phase = "starting"
        # Events are made inside the event loop (anyio needs one); stop() may come before.
        self._stop: anyio.Event | None = None
        self._stop_requested = False
        self._interrupted = False
        # The device loops' scope: stop() cancels it, so a loop sleeping until its next state
        # wakes at once without each sleep having to watch an event (that cost a cancel scope
        # and a cancellation per state).
        self._loops: anyio.CancelScope | None = None
        self._stats_cursor = 0
        self._stats_seen: list[tuple[int, int]] = []  # per device: (reconnects, acked) last gathered
        self._run_started: float | None = None
        self._run_ended: float | None = None
        self._meter = RateMeter()
        self._sent_by_device: dict[str, int] = dict.fromkeys(target.device_ids, 0)
        """States per device written to a connected session or buffered (what the server should store)."""
        self._buffered_by_device: dict[str, int] = {}
        self._replies_by_device: dict[str, int] = {}
        self._extra_by_device: dict[str, int] = {}
        """Burst and spike states per device (beyond the schedule)."""
        self._carriers: dict[str, Any] = {}
        self._senders: dict[str, Any] = {}
        self._new_device: Callable[[str], Any] | None = None
        self._rebooted: list[Any] = []
        """Devices connected again after a reboot (the fleet closes only those it started)."""
        self._since_ms: int | None = None
        self._fleet_up = False
        self._reactor = Reactor(self._types, target.device_ids, self._specs)
        self._plan = CommandPlan(config.model.commands, self._types, target.device_ids, self._specs,
                                 config.duration)
        self._fault_counts: dict[str, dict[str, int]] = {}
        self._faults = plan_faults(config, self._types, target.device_ids, self._specs, self._fault_counts)
        self._last_ms: dict[str, int] = dict.fromkeys(target.device_ids, 0)
        self._models: dict[str, DeviceModel] = {}
        """Models made before the lanes start (by the backfill): the live values continue its history."""
        self._backfill_seconds = 0.0
        """Each device's last state time: states (and replies) of one device never share a millisecond."""
        self._devices: list[Any] = []  # connected Device/Gateway objects, for their statistics
        # Set by the wait for late commands only; the command callback never creates anything
        # (it runs in the device's network callback, outside any task).
        self._all_commands_in: anyio.Event | None = None
        self._commands_seen: set[tuple[str, int]] = set()
        self._commanding = False  # a controller runs: rounds are due and counted
        self._used = False

    # -- observation

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def sent_by_device(self) -> Mapping[str, int]:
        """States sent so far per device id (what a server should have stored)."""
        return self._sent_by_device

    def progress(self) -> Progress:
        """A snapshot of the counters (cheap; call it a few times per second)."""
        now = self._clock()
        # Every device's statistics cost ~50 us to gather (0.5 s for 10,000 devices, a stall of every
        # state and command): the connected count is cheap and always fresh, the rest a slice per call.
        if self._devices:
            self._refresh_some_device_stats(_STATS_PER_PROGRESS)
            self.stats.connected = sum(1 for conn in self._devices if conn.connected)
        s = self.stats
        elapsed = 0.0
        if self._run_started is not None:
            elapsed = (self._run_ended or now) - self._run_started
        return Progress(
            phase=self._phase,
            elapsed=elapsed,
            duration=self.config.duration,
            devices=self.config.shard_devices,
            connections=s.connections,
            connected=s.connected,
            states_sent=s.states_sent,
            states_per_second=self._meter.sample(now, s.states_sent),
            commands_sent=s.commands_sent,
            commands_received=s.commands_received,
            reconnects=s.reconnects,
            errors=s.errors,
            last_error=s.last_error,
            commands_scheduled=self.config.commands_scheduled(elapsed) if self._commanding else 0,
        )

    def stop(self) -> None:
        """End the reporting now (idempotent); ``run()`` still drains and returns a report."""
        if not self._stop_requested:
            self._stop_requested = True
            self._interrupted = self._phase in ("starting", "connecting", "running")
            if self._stop is not None:
                self._stop.set()
            if self._loops is not None:
                self._loops.cancel()

    # -- running

    async def run(self) -> SimulationReport:
        """Connect, report, drain; return the report. Fatal setup failures raise ``LosantError``."""
        if self._used:
            raise ValidationError("a Simulation runs once; build a new one")
        self._used = True
        self._stop_event()
        connect_seconds = 0.0
        states_stored: int | None = None
        try:
            if self.config.transport == "mqtt":
                connect_seconds, states_stored = await self._run_mqtt()
            else:
                connect_seconds, states_stored = await self._run_rest()
        finally:
            self._phase = "done"
            gc.unfreeze()
            if self._run_started is not None and self._run_ended is None:
                self._run_ended = self._clock()
        self._refresh_device_stats()
        run_seconds = 0.0
        if self._run_started is not None and self._run_ended is not None:
            run_seconds = self._run_ended - self._run_started
        self._type_sections()
        return build_report(
            self.config,
            self.stats,
            gateways=len(self.target.gateways) if self.config.via_gateways else 0,
            run_seconds=run_seconds,
            connect_seconds=connect_seconds,
            states_stored=states_stored,
            interrupted=self._interrupted,
            embedded=self.target.embedded,
            peak_rss=peak_rss_bytes(),
            machine=machine_info(),
            backfill_seconds=self._backfill_seconds,
        )

    async def _send_extra(self, send: StateSender, device_id: str, data: dict[str, Any], ms: int, *,
                          expected: bool) -> None:
        """Send a state off the main path: one held back by a drop (``expected``), or a burst's (not)."""
        try:
            written = await send(device_id, data, ms)
        except _FATAL:
            raise
        except LosantError as exc:
            self.stats.record_error(exc)
            return
        if not expected:
            self.stats.states_burst += 1
            self._extra_by_device[device_id] = self._extra_by_device.get(device_id, 0) + 1
        elif written is False:
            self.stats.states_buffered += 1
            self._buffered_by_device[device_id] = self._buffered_by_device.get(device_id, 0) + 1
        else:
            self.stats.states_sent += 1
        self._sent_by_device[device_id] += 1

    async def _burst(self, send: StateSender, device_id: str, model: DeviceModel, count: int,
                     fault: DeviceFaults | None, of_fault: int) -> None:
        """``count`` states beyond the schedule at once; ``of_fault`` of them are a fault's burst (counted there)."""
        last_ms = self._last_ms
        for _ in range(count):
            ms = max(now_ms(), last_ms[device_id] + 1)
            last_ms[device_id] = ms
            await self._send_extra(send, device_id, model.next(ms / 1000.0), ms, expected=False)
        if fault is not None:
            fault.burst_sent(of_fault)

    async def _release_held(self, send: StateSender, lane: list[tuple[str, DeviceSpec]]) -> None:
        """The lane has ended: states still held back by a drop go now (the device is back)."""
        for device_id, _ in lane:
            f = self._faults.get(device_id)
            if f is not None and f.held:
                for ms, data in f.release():
                    await self._send_extra(send, device_id, data, ms, expected=True)

    def _type_sections(self) -> None:
        """The report's sections: per device type, per scenario command, per fault; and unconnected devices."""
        stats = self.stats
        ledger = (self._sent_by_device, self._buffered_by_device, self._replies_by_device, self._extra_by_device)
        stats.types = _type_sections(self.config, self._types, self.target.device_ids, self._specs, stats, ledger)
        by_name = {n: dict(c) for n, c in self._plan.by_name.items()}
        for name in {*self._reactor.applied, *self._reactor.ignored}:
            entry = by_name.setdefault(name, {"sent": 0, "received": 0})
            entry["reactions"] = self._reactor.applied.get(name, 0)
            entry["ignored"] = self._reactor.ignored.get(name, 0)
        stats.commands_by_name = by_name
        stats.faults = {name: dict(c) for name, c in self._fault_counts.items()}
        # A device whose every state was only buffered never had a connected session: it names the failure.
        names = {d: s.name for d, s in zip(self.target.device_ids, self._specs, strict=True)}
        stats.devices_unconnected = [
            names[d] for d, n in self._sent_by_device.items() if n and self._buffered_by_device.get(d, 0) == n
            and not self._replies_by_device.get(d)
        ]

    def _stop_event(self) -> anyio.Event:
        if self._stop is None:
            self._stop = anyio.Event()
            if self._stop_requested:
                self._stop.set()
        return self._stop

    async def _run_mqtt(self) -> tuple[float, int | None]:
        from ..mqtt import Device, Fleet, Gateway, ThrottleConfig

        cfg, tgt = self.config, self.target
        assert tgt.mqtt_host is not None and tgt.key is not None and tgt.secret is not None
        throttle: ThrottleConfig | bool = False
        if cfg.throttle:
            # The application's budget of new connections is shared by every shard.
            throttle = ThrottleConfig(connections_per_application=cfg.connections_per_window)
        options: dict[str, Any] = {
            "host": tgt.mqtt_host,
            "transport": tgt.mqtt_transport,
            "throttle": throttle,
        }
        if tgt.mqtt_port is not None:
            options["port"] = tgt.mqtt_port
        connections: list[Any] = []
        senders: dict[str, Any] = {}
        # Per device: the connection its states go through (itself, or its gateway).
        carriers: dict[str, Any] = {}
        kind_of = {d: self._types[s.kind] for d, s in zip(tgt.device_ids, self._specs, strict=True)}
        for group in tgt.gateways:
            if not group.peripheral_ids:
                continue
            qos = kind_of[group.peripheral_ids[0]].qos
            gw = Gateway(group.gateway_id, tgt.key, tgt.secret, qos=qos, **options)
            # Registered before connecting: the gateway subscribes their command topics
            # with its own, and is ready only after every SUBACK.
            for pid in group.peripheral_ids:
                senders[pid] = await gw.peripheral(pid)
                carriers[pid] = gw
            connections.append(gw)
        for d in tgt.device_ids:
            if d not in senders:
                dev = Device(d, tgt.key, tgt.secret, qos=kind_of[d].qos, **options)
                senders[d] = carriers[d] = dev
                connections.append(dev)
        self._carriers = carriers
        self._senders = senders
        key, secret = tgt.key, tgt.secret

        def new_device(device_id: str) -> Any:
            return Device(device_id, key, secret, qos=kind_of[device_id].qos, **options)

        self._new_device = new_device
        for sender in senders.values():
            sender.on_command(self._on_command)

        self._phase = "connecting"
        started = self._clock()
        fleet = Fleet(connections, connect_concurrency=cfg.connect_concurrency, throttle=throttle)
        self._devices = connections
        self.stats.connections = len(connections)
        try:
            return await self._run_fleet(fleet, connections, senders, started)
        except LosantError as exc:
            if self._fleet_up:
                raise
            raise _not_connected(self.target, self._specs, connections, exc) from exc
        finally:
            gc.unfreeze()
            await self._close_rebooted()

    async def _run_fleet(self, fleet: Any, connections: list[Any], senders: dict[str, Any],
                         started: float) -> tuple[float, int | None]:
        tgt = self.target
        carriers = self._carriers
        async with fleet:
            self._fleet_up = True
            connect_seconds = self._clock() - started
            # The fleet's objects live for the whole run: out of the collector's sight, a full
            # collection no longer walks every device (0.4 s of CPU per million objects, a pause
            # of every state and command). Undone after the run.
            gc.freeze()

            async def send(device_id: str, data: dict[str, Any], ms: int) -> bool:
                # Written to a connected session, or only buffered: the report tells them apart.
                connected: bool = carriers[device_id].connected
                await senders[device_id].send_state(data, time=ms)
                return connected

            async def send_many(device_id: str, states: list[dict[str, Any]]) -> None:
                # An array of states on the device's state topic (its gateway's connection for a peripheral).
                # QoS 1 whatever the scenario says: the broker's acknowledgements pace the history
                # (at QoS 0 a fast sender outran the emulator and lost a third of a day's history),
                # and a cut connection re-sends what was not acknowledged.
                await carriers[device_id].publish(f"losant/{device_id}/state", states, qos=1)

            async def settle() -> None:
                await self._drain_mqtt(connections)

            await self._backfill(send_many, settle)

            if tgt.commands_possible:
                async with self._rest_client() as client:
                    await self._report(send, client)
                    await self._wait_commands()
                    await self._drain_mqtt(connections)
            else:
                await self._report(send, None)
                await self._drain_mqtt(connections)
            stored = await self._stored()
            self._refresh_device_stats()
        return connect_seconds, stored

    async def _close_rebooted(self) -> None:
        rebooted, self._rebooted = self._rebooted, []
        with anyio.CancelScope(shield=True):
            for dev in rebooted:
                await dev.aclose()

    async def _run_rest(self) -> tuple[float, int | None]:
        cfg, tgt = self.config, self.target
        limiter = anyio.CapacityLimiter(cfg.rest_concurrency)
        self._phase = "connecting"
        async with self._rest_client() as client:

            async def send(device_id: str, data: dict[str, Any], ms: int) -> None:
                async with limiter:
                    await client.device.send_state(
                        application_id=tgt.application_id,
                        device_id=device_id,
                        device_state={"data": data, "time": ms},
                    )

            async def send_many(device_id: str, states: list[dict[str, Any]]) -> None:
                async with limiter:
                    await client.device.send_state(
                        application_id=tgt.application_id, device_id=device_id, device_state=states,
                    )

            await self._backfill(send_many)
            # Devices sending over REST have no command channel to listen on: no controller.
            await self._report(send, None)
        return 0.0, await self._stored()

    def _rest_client(self) -> LosantClient:
        from ..rest import LosantClient

        tgt = self.target
        assert tgt.api_token is not None and tgt.rest_url is not None
        return LosantClient(tgt.api_token, url=tgt.rest_url)

    async def _report(self, send: StateSender, client: LosantClient | None) -> None:
        cfg = self.config
        stop = self._stop_event()
        self._phase = "running"
        if self._since_ms is None:
            self._since_ms = now_ms()
        cpu_start = time.process_time()
        self._run_started = start = self._clock()
        if stop.is_set():
            self._run_ended = start
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._device_loops, send, start)
            if client is not None and cfg.command_interval > 0:
                controller = anyio.CancelScope()
                self._commanding = True
                tg.start_soon(self._controller, client, controller, start)
            else:
                controller = None
            extras = anyio.CancelScope()
            tg.start_soon(self._extras, send, client, start, extras)
            # Device loops end on their own; the controller only when the reporting does.
            with anyio.move_on_after(cfg.duration):
                await stop.wait()
            # The reporting ends here; a command call still in flight is awaited, not timed.
            self._run_ended = self._clock()
            self.stats.run_cpu_seconds = time.process_time() - cpu_start
            self._phase = "draining"
            if controller is not None:
                # Every round due by now counts, sent or not: a controller that fell behind
                # must show as commands unsent, not vanish from the report.
                self.stats.commands_scheduled = cfg.commands_scheduled(self._run_ended - start)
                controller.cancel()
            if client is not None and self._plan.plans:
                self.stats.commands_scheduled += self._plan.scheduled(self._run_ended - start)
            extras.cancel()

    async def _backfill(self, send_many: BatchSender, settle: Callable[[], Awaitable[None]] | None = None) -> None:
        """Send every device's history for ``config.backfill`` seconds before now, in arrays of states."""
        cfg = self.config
        if cfg.backfill <= 0 or self._stop_requested:
            return
        self._phase = "backfilling"
        until = now_ms()
        since = until - int(cfg.backfill * 1000)
        self._since_ms = since
        devices = []
        for device_id, spec in zip(self.target.device_ids, self._specs, strict=True):
            model = DeviceModel(self._types[spec.kind].spec.attributes, spec.seed)
            self._models[device_id] = model
            devices.append((device_id, spec, model))
        stats, sent_by_device = self.stats, self._sent_by_device

        def sent(device_id: str, n: int) -> None:
            stats.states_backfilled += n
            sent_by_device[device_id] += n

        started = self._clock()
        with anyio.CancelScope() as self._loops:
            await backfill(send_many, devices, since, until, sent)
            if settle is not None:
                await settle()  # the time it takes includes the broker's acknowledgements
        self._loops = None
        self._backfill_seconds = self._clock() - started

    async def _extras(self, send: StateSender, client: LosantClient | None, start: float,
                      scope: anyio.CancelScope) -> None:
        """The scenario's commands, and the replies its reactions send, until the reporting ends."""
        with scope:
            async with anyio.create_task_group() as tg:
                if client is not None and self._plan.plans:
                    tg.start_soon(self._plan.run, client, self.target.application_id, start, self.stats)
                tg.start_soon(self._reactor.serve_replies, self._reply(send))
                if self._reactor.reboots_enabled:
                    tg.start_soon(self._reactor.serve_reboots, self._reboot)

    async def _reboot(self, device_id: str, seconds: float) -> None:
        """Off for ``seconds`` (its states not taken), then on again: a direct device disconnects and reconnects."""
        old: Any = self._carriers.get(device_id)
        direct = old is not None and self._senders.get(device_id) is old and self._new_device is not None
        self.stats.reboots += 1
        try:
            if direct:
                with anyio.CancelScope(shield=True):
                    await old.aclose(flush=False)
            await anyio.sleep(seconds)
            if direct:
                assert self._new_device is not None
                new = self._new_device(device_id)
                new.on_command(self._on_command)
                self._rebooted.append(new)
                await new.start()
                self._swap(old, new)
                self.stats.reconnects += 1
        except LosantError as exc:
            self.stats.record_error(exc)
        finally:
            self._reactor.rebooting.discard(device_id)

    def _swap(self, old: Any, new: Any) -> None:
        """``new`` replaces ``old`` (the same device, connected again) for sending and for statistics."""
        device_id = old.device_id
        self._senders[device_id] = self._carriers[device_id] = new
        for i, conn in enumerate(self._devices):
            if conn is old:
                # The totals keep what the old connection counted; the new one counts from zero.
                if i < len(self._stats_seen):
                    self._stats_seen[i] = (0, 0)
                self._devices[i] = new
                break

    def _reply(self, send: StateSender) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
        async def reply(device_id: str, data: dict[str, Any]) -> None:
            ms = max(now_ms(), self._last_ms[device_id] + 1)
            self._last_ms[device_id] = ms
            try:
                await send(device_id, data, ms)
            except _FATAL:
                raise
            except LosantError as exc:
                self.stats.record_error(exc)
                return
            self.stats.states_replies += 1
            self._sent_by_device[device_id] += 1
            self._replies_by_device[device_id] = self._replies_by_device.get(device_id, 0) + 1

        return reply

    async def _device_loops(self, send: StateSender, start: float) -> None:
        with anyio.CancelScope() as self._loops:
            if self._stop_requested:
                self._loops.cancel()
            # Every model made now, then frozen out of the collector's sight with the fleet: a
            # scenario's generators are several objects per device, and a full collection walking
            # them all is a pause of every lane (and CPU that grows with the attributes).
            made = self._models
            for device_id, spec in zip(self.target.device_ids, self._specs, strict=True):
                if device_id not in made:
                    made[device_id] = DeviceModel(self._types[spec.kind].spec.attributes, spec.seed)
            gc.freeze()
            async with anyio.create_task_group() as tg:
                devices = list(zip(self.target.device_ids, self._specs, strict=True))
                # A lane holds devices of one type only: they share a period, so due order is lane order.
                for kind in range(len(self._types)):
                    of_kind = [d for d in devices if d[1].kind == kind]
                    for first in range(0, len(of_kind), _LANE_DEVICES):
                        tg.start_soon(self._lane, send, of_kind[first:first + _LANE_DEVICES], start)
        self._loops = None

    async def _lane(self, send: StateSender, lane: list[tuple[str, DeviceSpec]], start: float) -> None:
        """Send the states of a few neighbouring devices in due order, from one task.

        One task per device cost a task, a timer and a wake-up per state (31 us of
        CPU per state with nothing sent, at 10,000 devices): neighbours are due
        within a few ms of each other, so one wake-up sends every state due within
        ``_EARLY`` seconds. A send that blocks delays only its lane, and the states
        it delays count as late.
        """
        cfg = self.config
        attributes = self._types[lane[0][1].kind].spec.attributes
        made = self._models
        models = [made.get(device_id) or DeviceModel(attributes, spec.seed) for device_id, spec in lane]
        reactor = self._reactor
        if reactor.active:
            for (device_id, _), model in zip(lane, models, strict=True):
                reactor.models[device_id] = model
        spikes = any(p.kind == "spike" for p in cfg.model.phases)
        begins = [spec.begin for _, spec in lane]
        faults = [self._faults.get(device_id) for device_id, _ in lane] if self._faults else []
        try:
            await self._lane_rounds(send, lane, start, models, faults, begins if any(begins) else [], spikes)
        finally:
            if faults and not self._stop_requested:
                with anyio.CancelScope(shield=True), anyio.move_on_after(cfg.drain_timeout):
                    await self._release_held(send, lane)

    async def _lane_rounds(self, send: StateSender, lane: list[tuple[str, DeviceSpec]], start: float,
                           models: list[DeviceModel], faults: list[DeviceFaults | None], begins: list[float],
                           spikes: bool) -> None:
        cfg = self.config
        stats = self.stats
        clock = self._clock
        sent_by_device = self._sent_by_device
        kind = self._types[lane[0][1].kind]
        period = lane[0][1].period
        duration = cfg.duration
        phases = cfg.model.phases
        every = self._reactor.every  # devices a command told to report less often
        rebooting = self._reactor.rebooting
        jitter = kind.spec.jitter * period
        # Jitter from a generator of its own per device: the values stay those of the same seed without it.
        jitters = [random.Random(spec.seed ^ 0x5DEECE66D).random for _, spec in lane] if jitter else []
        on_change = kind.spec.on_change
        heartbeat_ms = (kind.spec.heartbeat or 0.0) * 1000.0
        last_data: list[dict[str, Any] | None] = [None] * len(lane)
        by_type = stats.unchanged_by_type
        held = stats.held_by_type
        last_ms = self._last_ms
        round_no = 0
        while True:
            # Offsets increase along the lane and stay within one period: (round, device) is due order.
            base = round_no * period
            sent_any = False
            for j, (device_id, spec) in enumerate(lane):
                due = spec.offset + base  # the same sum as due_times, so the counts agree
                if due >= duration:
                    break
                sent_any = True
                if begins and due < begins[j]:
                    continue  # not started yet (a ramp-up): not due, not expected
                if jitter:
                    due = max(0.0, due + (jitters[j]() - 0.5) * jitter)
                delay = start + due - clock()
                if delay < -period:
                    # More than a period behind its schedule: this process cannot keep up with the fleet.
                    stats.states_late += 1
                if delay > _EARLY:
                    await anyio.sleep(delay)
                if self._stop_requested:
                    break
                if (every and round_no % every.get(device_id, 1)) or (rebooting and device_id in rebooting):
                    stats.states_held += 1
                    held[kind.name] = held.get(kind.name, 0) + 1
                    continue
                # Losant merges states with the same millisecond: keep each device's times strictly increasing.
                ms = max(now_ms(), last_ms[device_id] + 1)
                fault = faults[j] if faults else None
                burst = 0
                if fault is not None and due >= fault.next_at:
                    burst = fault.fire(due, models[j])
                extra = burst + spike_extra(phases, due) if spikes else burst
                data = models[j].next(ms / 1000.0)
                if fault is not None and due < fault.drop_until:
                    # The network is down: kept, and sent with its time once it is back (no bursts meanwhile).
                    last_ms[device_id] = ms
                    fault.hold(ms, data)
                    stats.states_delayed += 1
                    continue
                if on_change:
                    previous = last_data[j]
                    if previous == data and not (heartbeat_ms and ms - last_ms[device_id] >= heartbeat_ms):
                        stats.states_unchanged += 1
                        by_type[kind.name] = by_type.get(kind.name, 0) + 1
                        if extra:
                            await self._burst(send, device_id, models[j], extra, fault if burst else None, burst)
                        continue
                    last_data[j] = data
                last_ms[device_id] = ms
                if fault is not None and fault.held:
                    for held_ms, held_data in fault.release():
                        await self._send_extra(send, device_id, held_data, held_ms, expected=True)
                try:
                    written = await send(device_id, data, ms)
                except _FATAL:
                    raise
                except LosantError as exc:
                    stats.record_error(exc)
                    continue
                if written is False:
                    stats.states_buffered += 1
                    self._buffered_by_device[device_id] = self._buffered_by_device.get(device_id, 0) + 1
                else:
                    stats.states_sent += 1
                sent_by_device[device_id] += 1
                if extra:
                    await self._burst(send, device_id, models[j], extra, fault if burst else None, burst)
            if not sent_any or self._stop_requested:
                break
            round_no += 1

    async def _controller(self, client: LosantClient, scope: anyio.CancelScope, start: float) -> None:
        cfg = self.config
        ids = self.target.device_ids
        batch = cfg.command_batch
        cursor = 0
        round_no = 0
        last_round = command_rounds(cfg.command_interval, cfg.duration)
        in_flight = anyio.Semaphore(_COMMAND_CALLS_IN_FLIGHT)
        # One call may carry several rounds, but never a device twice (it would count as a duplicate).
        max_rounds_per_call = max(1, len(ids) // batch)
        with scope:
            async with anyio.create_task_group() as calls:
                while round_no < last_round:
                    # Rounds at fixed times from the start, not a sleep after each call: a slow
                    # call does not shift (and so thin out) the rounds after it.
                    delay = start + (round_no + 1) * cfg.command_interval - self._clock()
                    if delay > 0:
                        await anyio.sleep(delay)
                    await in_flight.acquire()
                    # Rounds that fell due while every call was in flight go in this one call:
                    # when calls are slow, fewer and larger calls keep up where one round per
                    # call fell behind for good (at 3,000 devices, 1,550 of 5,950 commands due).
                    due = command_rounds(cfg.command_interval, cfg.duration, self._clock() - start)
                    first = round_no + 1
                    round_no = max(first, min(due, last_round, round_no + max_rounds_per_call))
                    count = (round_no - first + 1) * batch
                    chosen = [ids[(cursor + i) % len(ids)] for i in range(count)]
                    cursor = (cursor + count) % len(ids)
                    calls.start_soon(self._command_call, client, chosen, first, in_flight)

    async def _command_call(
        self, client: LosantClient, chosen: list[str], round_no: int, in_flight: anyio.Semaphore
    ) -> None:
        try:
            # Shielded: a command cut off by the end of the run might still reach the
            # devices, and commands_sent must count exactly what the server took.
            with anyio.move_on_after(_COMMAND_CALL_LIMIT, shield=True) as call:
                try:
                    await client.devices.send_command(
                        application_id=self.target.application_id,
                        multi_device_command={
                            "name": COMMAND_NAME,
                            "payload": {"round": round_no, "sent_ms": now_ms()},
                            "deviceIds": chosen,
                        },
                    )
                except _FATAL:
                    raise
                except LosantError as exc:
                    self.stats.record_error(exc)
                    return
                self.stats.commands_sent += len(chosen)
            if call.cancelled_caught:
                self.stats.record_error(TimeoutError(f"a command call took over {_COMMAND_CALL_LIMIT:g} s"))
        finally:
            in_flight.release()

    def _on_command(self, command: Any) -> None:
        # A plain callback, not a task per device: the device calls it from its network loop,
        # outside any task, so it must not create anyio objects (below anyio 4.7 that needs a task).
        name = getattr(command, "name", None)
        if self._reactor.active:
            self._reactor.on_command(str(getattr(command, "device_id", "")), str(name), getattr(command, "payload", None))
        if name in self._plan.names:
            self._plan.received(str(name))
            self._count_received()
            return
        if name != COMMAND_NAME:
            return
        payload = getattr(command, "payload", None)
        round_no = payload.get("round") if isinstance(payload, dict) else None
        sent_ms = payload.get("sent_ms") if isinstance(payload, dict) else None
        if isinstance(round_no, int):
            key = (str(getattr(command, "device_id", "")), round_no)
            if key in self._commands_seen:
                self.stats.commands_duplicate += 1
                return
            self._commands_seen.add(key)
        if isinstance(sent_ms, (int, float)):
            self.stats.command_latency.record(now_ms() - sent_ms)
        self._count_received()

    def _count_received(self) -> None:
        stats = self.stats
        stats.commands_received += 1
        waiter = self._all_commands_in
        if waiter is not None and stats.commands_received >= stats.commands_sent:
            waiter.set()

    async def _wait_commands(self) -> None:
        """Wait, at most ``config.command_wait`` seconds, for commands sent but not yet received."""
        stats = self.stats
        if stats.commands_received >= stats.commands_sent:
            return
        self._all_commands_in = waiter = anyio.Event()
        try:
            with anyio.move_on_after(self.config.command_wait):
                await waiter.wait()
        finally:
            self._all_commands_in = None

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
        tgt = self.target
        if tgt.stored is not None:
            return await tgt.stored.wait_stored(dict(self._sent_by_device), self.config.drain_timeout)
        if tgt.embedded or not tgt.commands_possible or self._since_ms is None:
            return None
        # Losant, or an emulator started apart: ask its REST API what each device stored.
        from ._rest_stored import RestStoredStates

        async with self._rest_client() as client:
            counter = RestStoredStates(client, tgt.application_id, self._since_ms)
            return await counter.wait_stored(dict(self._sent_by_device), self.config.drain_timeout)

    def _refresh_device_stats(self) -> None:
        """Gather every device's statistics (for the report: exact, once)."""
        if not self._devices:
            return
        self._refresh_some_device_stats(len(self._devices))
        self.stats.connected = sum(1 for conn in self._devices if conn.connected)

    def _refresh_some_device_stats(self, count: int) -> None:
        """Gather the statistics of the next ``count`` devices in turn; the totals move by their change."""
        devices = self._devices
        seen = self._stats_seen
        if len(seen) != len(devices):
            seen[:] = [(0, 0)] * len(devices)
        stats = self.stats
        reconnects = stats.reconnects
        acked = stats.states_acked or 0
        cursor = self._stats_cursor
        for _ in range(min(count, len(devices))):
            st = devices[cursor].stats
            r, a = st.reconnects, st.acked
            old_r, old_a = seen[cursor]
            reconnects += r - old_r
            acked += a - old_a
            seen[cursor] = (r, a)
            cursor = (cursor + 1) % len(devices)
        self._stats_cursor = cursor
        stats.reconnects = reconnects
        if stats.states_acked is not None:
            stats.states_acked = acked


def _not_connected(target: Target, specs: Sequence[DeviceSpec], connections: Sequence[Any],
                   exc: LosantError) -> MQTTError:
    """The fleet could not start: an error naming the devices that could not connect, and why."""
    names = {d: s.name for d, s in zip(target.device_ids, specs, strict=True)}
    peripherals = {g.gateway_id: g.peripheral_ids for g in target.gateways}
    failed: list[str] = []
    for conn in connections:
        # The device layer keeps the error that stopped a device; the fleet raises only the first.
        if getattr(conn, "_failure", None) is None:
            continue
        device_id = conn.device_id
        if device_id in peripherals:
            carried = ", ".join(names[p] for p in peripherals[device_id][:3])
            failed.append(f"gateway {device_id} (carrying {carried})")
        else:
            failed.append(f"{names.get(device_id, '?')} ({device_id})")
    if not failed:
        return MQTTError(f"the fleet could not connect: {type(exc).__name__}: {exc}")
    shown = "; ".join(failed[:5]) + (f"; and {len(failed) - 5} more" if len(failed) > 5 else "")
    return MQTTError(f"{len(failed)} of {len(connections)} devices could not connect ({shown}): "
                     f"{type(exc).__name__}: {exc}")


_Ledger = tuple[Mapping[str, int], Mapping[str, int], Mapping[str, int], Mapping[str, int]]
"""Per device: states sent or buffered (all), buffered, replies, burst states."""


def _type_sections(config: SimulationConfig, types: Sequence[FleetType], device_ids: Sequence[str],
                   specs: Sequence[DeviceSpec], stats: SimulationStats, ledger: _Ledger) -> dict[str, dict[str, Any]]:
    """The report's section per device type: its devices and what they did with their schedule."""
    sent_all, buffered_of, replies_of, extra_of = ledger
    expected = config.expected_by_type()
    sections: dict[str, dict[str, Any]] = {
        t.name: {"devices": 0, "interval": t.period, "states_expected": expected.get(t.name, 0), "states_sent": 0,
                 "states_buffered": 0, "states_unchanged": 0, "states_held": 0}
        for t in types if t.count
    }
    for device_id, spec in zip(device_ids, specs, strict=True):
        sec = sections[types[spec.kind].name]
        sec["devices"] += 1
        buffered = buffered_of.get(device_id, 0)
        beyond = replies_of.get(device_id, 0) + extra_of.get(device_id, 0)
        sec["states_sent"] += sent_all[device_id] - buffered - beyond
        sec["states_buffered"] += buffered
    for name, n in stats.unchanged_by_type.items():
        sections[name]["states_unchanged"] = n
    for name, n in stats.held_by_type.items():
        sections[name]["states_held"] = n
    return sections

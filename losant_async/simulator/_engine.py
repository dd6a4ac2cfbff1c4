"""The one-process runner: a shard of the fleet in this event loop, with a controller sending commands.

It never prints, reads the terminal or writes files: callers render
:meth:`Simulation.progress` and the report. It does not import
``losant_async.testing``; the emulator reaches it through :class:`StoredStates`.
The parts it runs live apart: :class:`Lanes` (the reporting),
:class:`MqttSide` (the connections), :class:`Commander` (the controller) and
:class:`Ledger` (the per-device counts).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .._time import now_ms
from ..errors import ValidationError
from ._backfill import BatchSender, backfill
from ._commander import Commander
from ._faults import plan_faults
from ._fleet import Phase, SimulationConfig, Target
from ._lanes import Lanes
from ._ledger import Ledger, StateSender
from ._model import DeviceModel
from ._mqtt_side import MqttSide
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

_STATS_PER_PROGRESS = 200
"""Connections whose statistics one progress() call gathers (~10 ms), in turn."""


class Simulation:
    """One run of a shard of a simulated fleet against a :class:`Target`.

    ``await run()`` connects the shard's devices (bounded concurrency), reports
    for ``config.duration`` seconds while a controller sends commands on a
    fixed schedule, waits up to ``config.command_wait`` for commands still on
    their way, drains, and returns the report. ``stop()`` (e.g. from a signal
    handler) ends the reporting early; the report then says ``interrupted``.
    Each device type reports over its own transport (MQTT or REST).
    """

    def __init__(self, config: SimulationConfig, target: Target) -> None:
        target.check(config)
        self.config = config
        self.target = target
        self._types = types = config.types()
        specs = self._specs = config.specs()
        ids = target.device_ids
        acked = any(t.transport == "mqtt" and t.qos == 1 and t.count for t in types)
        self.stats = stats = SimulationStats(states_acked=0 if acked else None)
        self._clock = time.monotonic
        self._phase: Phase = "starting"
        # Events are made inside the event loop (anyio needs one); stop() may come before.
        self._stop: anyio.Event | None = None
        self._stop_requested = False
        self._interrupted = False
        self._backfilling: anyio.CancelScope | None = None
        self._run_started: float | None = None
        self._run_ended: float | None = None
        self._meter = RateMeter()
        self._since_ms: int | None = None
        self._backfill_seconds = 0.0
        self._kind_of = {d: s.kind for d, s in zip(ids, specs, strict=True)}
        self._ledger = Ledger(ids, stats)
        self._reactor = Reactor(types, ids, specs)
        self._plan = CommandPlan(config.model.commands, types, ids, specs, config.duration)
        self._fault_counts: dict[str, dict[str, int]] = {}
        faults = plan_faults(config, types, ids, specs, self._fault_counts)
        self._models: dict[str, DeviceModel] = {}
        """Every device's model; the backfill's go on live where their history ended."""
        self._lanes = Lanes(config, types, ids, specs, stats, self._ledger, self._reactor, faults, self._models,
                            self._clock)
        self._mqtt: MqttSide | None = None
        commandable: Sequence[str] = ()
        if any(t.transport == "mqtt" and t.count for t in types):
            self._mqtt = MqttSide(config, target, types, specs, stats, self._on_command)
            commandable = self._mqtt.device_ids
        self._commander = Commander(config, target.application_id, commandable, stats, self._reactor, self._plan,
                                    self._clock)
        self._used = False

    # -- observation

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def sent_by_device(self) -> Mapping[str, int]:
        """States sent so far per device id (what a server should have stored)."""
        return self._ledger.sent

    def progress(self) -> Progress:
        """A snapshot of the counters (cheap; call it a few times per second)."""
        now = self._clock()
        # Every connection's statistics cost ~50 us to gather (0.5 s for 10,000 devices, a stall of every
        # state and command): the connected count is cheap and always fresh, the rest a slice per call.
        if self._mqtt is not None and self._mqtt.connections:
            self._mqtt.refresh(_STATS_PER_PROGRESS)
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
            commands_scheduled=self._commander.scheduled(elapsed) if self._commander.running else 0,
        )

    def stop(self) -> None:
        """End the reporting now (idempotent); ``run()`` still drains and returns a report."""
        if not self._stop_requested:
            self._stop_requested = True
            self._interrupted = self._phase in ("starting", "connecting", "backfilling", "running")
            if self._stop is not None:
                self._stop.set()
            self._lanes.stop()
            if self._backfilling is not None:
                self._backfilling.cancel()

    # -- running

    async def run(self) -> SimulationReport:
        """Connect, report, drain; return the report. Fatal setup failures raise ``LosantError``."""
        if self._used:
            raise ValidationError("a Simulation runs once; build a new one")
        self._used = True
        self._stop_event()
        try:
            connect_seconds, states_stored = await self._run()
        finally:
            self._phase = "done"
            gc.unfreeze()
            if self._run_started is not None and self._run_ended is None:
                self._run_ended = self._clock()
        if self._mqtt is not None:
            self._mqtt.refresh()
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

    async def _run(self) -> tuple[float, int | None]:
        tgt, mqtt = self.target, self._mqtt
        connect_seconds = 0.0
        self._phase = "connecting"
        async with contextlib.AsyncExitStack() as stack:
            client: LosantClient | None = None
            if tgt.commands_possible:
                client = await stack.enter_async_context(self._rest_client())
            rest_send, rest_many = _rest_senders(client, tgt.application_id, self.config.rest_concurrency)
            sends: list[StateSender] = [mqtt.send if mqtt is not None and t.transport == "mqtt" else rest_send
                                        for t in self._types]
            many: list[BatchSender] = [mqtt.send_many if mqtt is not None and t.transport == "mqtt" else rest_many
                                       for t in self._types]
            kind_of = self._kind_of

            async def send_many(device_id: str, states: list[dict[str, Any]]) -> None:
                await many[kind_of[device_id]](device_id, states)

            if mqtt is not None:
                started = self._clock()
                await stack.enter_async_context(mqtt)
                connect_seconds = self._clock() - started
                # The fleet's objects live for the whole run: out of the collector's sight, a full
                # collection no longer walks every device (0.4 s of CPU per million objects, a pause
                # of every state and command). Undone after the run.
                gc.freeze()
            await self._backfill(send_many, mqtt.drain if mqtt is not None else None)
            self._lanes.prepare()  # setup, like connecting: not counted in the reporting's CPU
            # Commands reach devices over MQTT only: a fleet of REST devices has no controller.
            commanding = client if self._commander.batch else None
            await self._report(sends, commanding)
            if commanding is not None:
                await self._commander.wait()
            if mqtt is not None:
                await mqtt.drain()
            stored = await self._stored(client)
            if mqtt is not None:
                mqtt.refresh()
        return connect_seconds, stored

    def _rest_client(self) -> LosantClient:
        from ..rest import LosantClient

        tgt = self.target
        assert tgt.api_token is not None and tgt.rest_url is not None
        return LosantClient(tgt.api_token, url=tgt.rest_url)

    def _stop_event(self) -> anyio.Event:
        if self._stop is None:
            self._stop = anyio.Event()
            if self._stop_requested:
                self._stop.set()
        return self._stop

    async def _report(self, send: StateSender | Sequence[StateSender], client: LosantClient | None) -> None:
        """Report for ``config.duration`` (or until stopped): ``send`` for every device type, or one per type."""
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
        sends = list(send) if isinstance(send, Sequence) else [send] * len(self._types)
        commander = self._commander
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._lanes.run, sends, start)
            controller = None
            if client is not None and cfg.command_interval > 0 and commander.batch:
                controller = anyio.CancelScope()
                commander.running = True
                tg.start_soon(commander.control, client, controller, start)
            extras = anyio.CancelScope()
            tg.start_soon(self._extras, sends, client, start, extras)
            # Device lanes end on their own; the controller only when the reporting does.
            with anyio.move_on_after(cfg.duration):
                await stop.wait()
            # The reporting ends here; a command call still in flight is awaited, not timed.
            self._run_ended = self._clock()
            self.stats.run_cpu_seconds = time.process_time() - cpu_start
            self._phase = "draining"
            if controller is not None:
                # Every round due by now counts, sent or not: a controller that fell behind
                # must show as commands unsent, not vanish from the report.
                self.stats.commands_scheduled = commander.scheduled(self._run_ended - start)
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
        stats, sent_by_device = self.stats, self._ledger.sent

        def sent(device_id: str, n: int) -> None:
            stats.states_backfilled += n
            sent_by_device[device_id] += n

        started = self._clock()
        with anyio.CancelScope() as self._backfilling:
            await backfill(send_many, devices, since, until, sent)
            if settle is not None:
                await settle()  # the time it takes includes the broker's acknowledgements
        self._backfilling = None
        self._backfill_seconds = self._clock() - started

    async def _extras(self, sends: Sequence[StateSender], client: LosantClient | None, start: float,
                      scope: anyio.CancelScope) -> None:
        """Until the reporting ends: the scenario's commands, the replies its reactions send, reboots, ramp-up."""
        kind_of = self._kind_of
        with scope:
            async with anyio.create_task_group() as tg:
                if client is not None and self._plan.plans:
                    tg.start_soon(self._plan.run, client, self.target.application_id, start, self.stats)
                tg.start_soon(self._reactor.serve_replies, self._ledger.replier(lambda d: sends[kind_of[d]]))
                if self._reactor.reboots_enabled:
                    tg.start_soon(self._reactor.serve_reboots, self._reboot)
                if self._mqtt is not None:
                    tg.start_soon(self._mqtt.ramp, start)

    async def _reboot(self, device_id: str, seconds: float) -> None:
        """Off for ``seconds`` (its states not taken), then on again; a direct MQTT device reconnects."""
        self.stats.reboots += 1
        try:
            if self._mqtt is not None and self._types[self._kind_of[device_id]].transport == "mqtt":
                await self._mqtt.reboot(device_id, seconds)
            else:
                await anyio.sleep(seconds)
        finally:
            self._reactor.rebooting.discard(device_id)

    def _on_command(self, command: Any) -> None:
        self._commander.on_command(command)

    def _type_sections(self) -> None:
        """The report's sections: per device type, per scenario command, per fault; and unconnected devices."""
        stats = self.stats
        self._ledger.sections(self.config, self._types, self.target.device_ids, self._specs)
        by_name = {n: dict(c) for n, c in self._plan.by_name.items()}
        for name in {*self._reactor.applied, *self._reactor.ignored}:
            entry = by_name.setdefault(name, {"sent": 0, "received": 0})
            entry["reactions"] = self._reactor.applied.get(name, 0)
            entry["ignored"] = self._reactor.ignored.get(name, 0)
        stats.commands_by_name = by_name
        stats.faults = {name: dict(c) for name, c in self._fault_counts.items()}

    async def _stored(self, client: LosantClient | None) -> int | None:
        tgt = self.target
        if tgt.stored is not None:
            return await tgt.stored.wait_stored(dict(self._ledger.sent), self.config.drain_timeout)
        if tgt.embedded or client is None or self._since_ms is None:
            return None
        # Losant, or an emulator started apart: ask its REST API what each device stored.
        from ._rest_stored import RestStoredStates

        counter = RestStoredStates(client, tgt.application_id, self._since_ms)
        return await counter.wait_stored(dict(self._ledger.sent), self.config.drain_timeout)


def _rest_senders(client: LosantClient | None, application_id: str,
                  concurrency: int) -> tuple[StateSender, BatchSender]:
    """Send one state, or an array of them, for a device over the REST API (at most ``concurrency`` calls at once)."""
    limiter = anyio.CapacityLimiter(concurrency)

    async def send(device_id: str, data: dict[str, Any], ms: int) -> None:
        assert client is not None  # Target.check: a REST device type needs the REST API
        async with limiter:
            await client.device.send_state(
                application_id=application_id, device_id=device_id, device_state={"data": data, "time": ms},
            )

    async def send_many(device_id: str, states: list[dict[str, Any]]) -> None:
        assert client is not None
        async with limiter:
            await client.device.send_state(application_id=application_id, device_id=device_id, device_state=states)

    return send, send_many

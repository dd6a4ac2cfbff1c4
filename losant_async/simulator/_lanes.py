"""The reporting loops: every device's states on its type's schedule, a few neighbouring devices per task."""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio

from .._time import now_ms
from ..errors import LosantError
from ._faults import DeviceFaults, spike_extra
from ._fleet import DeviceSpec, FleetType, SimulationConfig
from ._ledger import FATAL, Ledger, StateSender
from ._model import DeviceModel
from ._reactions import Reactor
from ._report import SimulationStats

__all__ = ["Lanes"]

_LANE_DEVICES = 50
"""Devices whose states one task sends."""
_EARLY = 0.005
"""Seconds before its due time a state may go, so that one wake-up sends its neighbours' too."""


class Lanes:
    """Runs the fleet's reporting: ``await run(send_of_kind, start)`` until the schedule ends or :meth:`stop`.

    One task per device cost a task, a timer and a wake-up per state (31 us of
    CPU per state with nothing sent, at 10,000 devices): a lane is one task for
    up to 50 neighbouring devices of one type, which share a period, so one
    wake-up sends every state due within ``_EARLY`` seconds. A send that blocks
    delays only its lane, and the states it delays count as late.
    """

    def __init__(self, config: SimulationConfig, types: Sequence[FleetType], device_ids: Sequence[str],
                 specs: Sequence[DeviceSpec], stats: SimulationStats, ledger: Ledger, reactor: Reactor,
                 faults: Mapping[str, DeviceFaults], models: dict[str, DeviceModel],
                 clock: Callable[[], float]) -> None:
        self._config = config
        self._types = types
        self._devices = list(zip(device_ids, specs, strict=True))
        self._stats = stats
        self._ledger = ledger
        self._reactor = reactor
        self._faults = faults
        self._models = models
        """Every device's model; those made before (by the backfill) go on where their history ended."""
        self._clock = clock
        self._scope: anyio.CancelScope | None = None
        self.stopped = False

    def stop(self) -> None:
        """End the reporting now: a lane sleeping until its next state wakes at once (its scope is cancelled)."""
        self.stopped = True
        if self._scope is not None:
            self._scope.cancel()

    def prepare(self) -> None:
        """Make every device's model (setup, before the reporting starts: 10,000 models take a quarter second)."""
        made = self._models
        for device_id, spec in self._devices:
            if device_id not in made:
                made[device_id] = DeviceModel(self._types[spec.kind].spec.attributes, spec.seed)
        if self._reactor.active:
            self._reactor.models.update(made)

    async def run(self, send_of_kind: Sequence[StateSender], start: float) -> None:
        """Report from ``start`` (the clock's time) until every device's schedule has ended."""
        with anyio.CancelScope() as self._scope:
            if self.stopped:
                self._scope.cancel()
            # Every model made (if prepare() was not called), then frozen out of the collector's
            # sight with the fleet: a scenario's generators are several objects per device, and a
            # full collection walking them all is a pause of every lane.
            self.prepare()
            gc.freeze()
            async with anyio.create_task_group() as tg:
                # A lane holds devices of one type only: they share a period, so due order is lane order.
                for kind in range(len(self._types)):
                    of_kind = [d for d in self._devices if d[1].kind == kind]
                    for first in range(0, len(of_kind), _LANE_DEVICES):
                        tg.start_soon(self._lane, send_of_kind[kind], of_kind[first:first + _LANE_DEVICES], start)
        self._scope = None

    async def _lane(self, send: StateSender, lane: list[tuple[str, DeviceSpec]], start: float) -> None:
        models = [self._models[device_id] for device_id, _ in lane]
        begins = [spec.begin for _, spec in lane]
        faults = [self._faults.get(device_id) for device_id, _ in lane] if self._faults else []
        try:
            await self._rounds(send, lane, start, models, faults, begins if any(begins) else [])
        finally:
            if faults and not self.stopped:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._config.drain_timeout):
                    await self._release_held(send, lane)

    async def _release_held(self, send: StateSender, lane: list[tuple[str, DeviceSpec]]) -> None:
        """The lane has ended: states still held back by a drop go now (the device is back)."""
        for device_id, _ in lane:
            f = self._faults.get(device_id)
            if f is not None and f.held:
                for ms, data in f.release():
                    await self._ledger.send_extra(send, device_id, data, ms, expected=True)

    async def _rounds(self, send: StateSender, lane: list[tuple[str, DeviceSpec]], start: float,
                      models: list[DeviceModel], faults: list[DeviceFaults | None], begins: list[float]) -> None:
        # This loop runs once per state of the fleet: what it reads is bound to locals first.
        cfg = self._config
        stats = self._stats
        ledger = self._ledger
        clock = self._clock
        sent_by_device = ledger.sent
        last_ms = ledger.last_ms
        kind = self._types[lane[0][1].kind]
        period = lane[0][1].period
        duration = cfg.duration
        phases = cfg.model.phases
        spikes = any(p.kind == "spike" for p in phases)
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
                if self.stopped:
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
                            await ledger.burst(send, device_id, models[j], extra, fault if burst else None, burst)
                        continue
                    last_data[j] = data
                last_ms[device_id] = ms
                if fault is not None and fault.held:
                    for held_ms, held_data in fault.release():
                        await ledger.send_extra(send, device_id, held_data, held_ms, expected=True)
                try:
                    written = await send(device_id, data, ms)
                except FATAL:
                    raise
                except LosantError as exc:
                    stats.record_error(exc)
                    continue
                if written is False:
                    ledger.buffer(device_id)
                else:
                    stats.states_sent += 1
                sent_by_device[device_id] += 1
                if extra:
                    await ledger.burst(send, device_id, models[j], extra, fault if burst else None, burst)
            if not sent_any or self.stopped:
                break
            round_no += 1

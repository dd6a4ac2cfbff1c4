"""Command reactions: what a simulated device does when a command reaches it (set, setpoint, interval, ack).

The engine registers each device's model here and hands every command
received to :meth:`Reactor.on_command` (from the device's network callback:
nothing here awaits or creates tasks). Replies (``ack``) wait in a bounded
queue that :meth:`Reactor.serve_replies` sends from a task of the run;
replies that do not fit are counted as dropped.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import anyio

from ._fleet import DeviceSpec, FleetType, command_rounds
from ._ledger import command_call
from ._model import DeviceModel
from ._report import SimulationStats
from ._scenario import CommandSpec, ReactionSpec

if TYPE_CHECKING:
    from ..rest import LosantClient

__all__ = ["CommandPlan", "Reactor"]


_REPLY_QUEUE = 10_000
"""Replies waiting to be sent at most; more are dropped (and counted)."""

ReplySender = Callable[[str, dict[str, Any]], Awaitable[None]]


def _number(payload: Any, key: str) -> float | None:
    value: Any = cast("Mapping[str, Any]", payload).get(key) if isinstance(payload, Mapping) else payload
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class Reactor:
    """The reactions of a fleet's device types, applied to the devices' live models."""

    def __init__(self, types: Sequence[FleetType], device_ids: Sequence[str], specs: Sequence[DeviceSpec]) -> None:
        self._reactions: dict[tuple[int, str], list[ReactionSpec]] = {}
        for t in types:
            for r in t.spec.reactions:
                self._reactions.setdefault((t.index, r.command), []).append(r)
        self._kind = {d: s.kind for d, s in zip(device_ids, specs, strict=True)}
        self._period = {d: s.period for d, s in zip(device_ids, specs, strict=True)}
        self.models: dict[str, DeviceModel] = {}
        self.every: dict[str, int] = {}
        """Devices told to report less often: report only every that many of their type's rounds."""
        self.applied: dict[str, int] = {}
        """Reactions applied per command name."""
        self.ignored: dict[str, int] = {}
        """Commands whose payload a reaction could not use, per command name."""
        self.replies_dropped = 0
        self._replies: deque[tuple[str, dict[str, Any]]] = deque()
        self._wake: anyio.Event | None = None
        self.rebooting: set[str] = set()
        """Devices off for a reboot now: they report nothing until they are back."""
        self.reboots: deque[tuple[str, float]] = deque()
        self._reboot_wake: anyio.Event | None = None
        self.reboots_enabled = any(r.action == "reboot" for t in types for r in t.spec.reactions)

    @property
    def active(self) -> bool:
        """Whether any device type reacts to any command."""
        return bool(self._reactions)

    def on_command(self, device_id: str, name: str, payload: Any) -> None:
        """Apply every reaction of the device's type to a command ``name``; never blocks."""
        kind = self._kind.get(device_id)
        if kind is None:
            return
        for r in self._reactions.get((kind, name), ()):
            if self._apply(device_id, r, payload):
                self.applied[name] = self.applied.get(name, 0) + 1
            else:
                self.ignored[name] = self.ignored.get(name, 0) + 1

    def _apply(self, device_id: str, r: ReactionSpec, payload: Any) -> bool:
        model = self.models.get(device_id)
        if r.action == "ack":
            assert r.attribute is not None
            if len(self._replies) >= _REPLY_QUEUE:
                self.replies_dropped += 1
                return False
            self._replies.append((device_id, {r.attribute: json.dumps(payload, separators=(",", ":"))}))
            if self._wake is not None:
                self._wake.set()
            return True
        if r.action == "reboot":
            if device_id in self.rebooting:
                return False  # already off: a command cannot reach it, and one reboot at a time
            self.rebooting.add(device_id)
            self.reboots.append((device_id, r.seconds))
            if self._reboot_wake is not None:
                self._reboot_wake.set()
            return True
        value = _number(payload, r.payload_key)
        if value is None or model is None:
            return False
        if r.action == "set":
            assert r.attribute is not None
            model.overrides[r.attribute] = value
        elif r.action == "setpoint":
            assert r.attribute is not None and r.parameter is not None
            model.set_parameter(r.attribute, r.parameter, value)
            model.overrides.pop(r.attribute, None)
        else:
            # Lanes send their devices' states in due order on the type's grid: a new interval is a
            # whole number of the type's intervals (at least one).
            self.every[device_id] = max(1, round(value / self._period[device_id]))
        return True

    async def serve_reboots(self, reboot: Callable[[str, float], Coroutine[Any, Any, None]]) -> None:
        """Run every reboot asked for (each in a task of its own) until cancelled."""
        async with anyio.create_task_group() as tg:
            while True:
                while self.reboots:
                    device_id, seconds = self.reboots.popleft()
                    tg.start_soon(reboot, device_id, seconds)
                self._reboot_wake = anyio.Event()
                if not self.reboots:
                    await self._reboot_wake.wait()

    async def serve_replies(self, send: ReplySender) -> None:
        """Send queued replies until cancelled."""
        while True:
            while self._replies:
                device_id, data = self._replies.popleft()
                await send(device_id, data)
            self._wake = anyio.Event()
            if not self._replies:
                await self._wake.wait()


class CommandPlan:
    """The scenario's commands for one shard: each sent every ``interval`` s to ``devices`` of its type, in turn."""

    def __init__(self, commands: Sequence[CommandSpec], types: Sequence[FleetType], device_ids: Sequence[str],
                 specs: Sequence[DeviceSpec], duration: float) -> None:
        by_type = {t.name: t.index for t in types}
        self.duration = duration
        self.plans: list[tuple[CommandSpec, list[str]]] = []
        for c in commands:
            ids = [d for d, s in zip(device_ids, specs, strict=True) if s.kind == by_type[c.device_type]]
            if ids:
                self.plans.append((c, ids))
        self.names = frozenset(c.name for c, _ in self.plans)
        self.by_name: dict[str, dict[str, int]] = {
            c.name: {"sent": 0, "received": 0} for c, _ in self.plans
        }

    def scheduled(self, elapsed: float | None = None) -> int:
        """Commands due in a full run (or in its first ``elapsed`` seconds)."""
        return sum(command_rounds(c.interval, self.duration, elapsed) * min(c.devices, len(ids))
                   for c, ids in self.plans)

    def received(self, name: str) -> None:
        """Count one scenario command a device received."""
        self.by_name[name]["received"] += 1

    async def run(self, client: LosantClient, application_id: str, start: float, stats: SimulationStats) -> None:
        """Send every command on its schedule until cancelled (the end of the reporting)."""
        async with anyio.create_task_group() as tg:
            for c, ids in self.plans:
                tg.start_soon(self._one, client, application_id, c, ids, start, stats)

    async def _one(self, client: LosantClient, application_id: str, c: CommandSpec, ids: list[str],
                   start: float, stats: SimulationStats) -> None:
        cursor = 0
        count = min(c.devices, len(ids))
        for round_no in range(1, command_rounds(c.interval, self.duration) + 1):
            delay = start + round_no * c.interval - anyio.current_time()
            if delay > 0:
                await anyio.sleep(delay)
            chosen = [ids[(cursor + i) % len(ids)] for i in range(count)]
            cursor = (cursor + count) % len(ids)
            if await command_call(client, application_id, c.name, c.payload, chosen, stats):
                self.by_name[c.name]["sent"] += len(chosen)

"""What each device of a run sent, buffered, replied and burst: the counts behind the report and the stored check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .._time import now_ms
from ..errors import AuthenticationRefusedError, ForbiddenError, LosantError, UnauthorizedError
from ._faults import DeviceFaults
from ._fleet import DeviceSpec, FleetType, SimulationConfig
from ._model import DeviceModel
from ._report import SimulationStats

if TYPE_CHECKING:
    from ..rest import LosantClient

__all__ = ["COMMAND_CALL_LIMIT", "FATAL", "Ledger", "StateSender", "command_call"]

StateSender = Callable[[str, dict[str, Any], int], Awaitable[bool | None]]
"""Sends one state; returns False when the state was only buffered (the device was not connected)."""

FATAL = (AuthenticationRefusedError, UnauthorizedError, ForbiddenError)
"""Failures that every further attempt would repeat: they end the run instead of being counted a thousand times."""
COMMAND_CALL_LIMIT = 15.0
"""Seconds one command call may take."""


async def command_call(client: LosantClient, application_id: str, name: str, payload: Any, device_ids: list[str],
                       stats: SimulationStats) -> bool:
    """One multi-device command call; True when the server took it (``commands_sent`` counts it), else an error counted.

    Shielded: a call cut off by the end of the run might still reach the devices, and
    ``commands_sent`` must count exactly what the server took.
    """
    with anyio.move_on_after(COMMAND_CALL_LIMIT, shield=True) as call:
        try:
            await client.devices.send_command(
                application_id=application_id,
                multi_device_command={"name": name, "payload": payload, "deviceIds": device_ids},
            )
        except FATAL:
            raise
        except LosantError as exc:
            stats.record_error(exc)
            return False
        stats.commands_sent += len(device_ids)
    if call.cancelled_caught:
        stats.record_error(TimeoutError(f"a {name} command call took over {COMMAND_CALL_LIMIT:g} s"))
        return False
    return True


class Ledger:
    """Per device: states sent or buffered (what the server should store), and which of them were extra.

    ``sent`` counts every state handed to a session, buffered ones included;
    the other maps say which of those were buffered, replies to commands, or
    bursts beyond the schedule, so that a type's section counts its schedule
    alone. ``last_ms`` keeps each device's state times strictly increasing
    (Losant merges two states of one device in the same millisecond).
    """

    __slots__ = ("buffered", "extra", "last_ms", "replies", "sent", "stats")

    def __init__(self, device_ids: Sequence[str], stats: SimulationStats) -> None:
        self.stats = stats
        self.sent: dict[str, int] = dict.fromkeys(device_ids, 0)
        self.buffered: dict[str, int] = {}
        self.replies: dict[str, int] = {}
        self.extra: dict[str, int] = {}
        self.last_ms: dict[str, int] = dict.fromkeys(device_ids, 0)

    def stamp(self, device_id: str) -> int:
        """A time for the device's next state: now, or one millisecond after its last."""
        ms = max(now_ms(), self.last_ms[device_id] + 1)
        self.last_ms[device_id] = ms
        return ms

    def buffer(self, device_id: str) -> None:
        """One state was only buffered (its device was not connected)."""
        self.stats.states_buffered += 1
        self.buffered[device_id] = self.buffered.get(device_id, 0) + 1

    async def send_extra(self, send: StateSender, device_id: str, data: dict[str, Any], ms: int, *,
                         expected: bool) -> None:
        """Send a state off the schedule: one a drop held back (``expected``), or a burst's (not)."""
        try:
            written = await send(device_id, data, ms)
        except FATAL:
            raise
        except LosantError as exc:
            self.stats.record_error(exc)
            return
        if not expected:
            self.stats.states_burst += 1
            self.extra[device_id] = self.extra.get(device_id, 0) + 1
        elif written is False:
            self.buffer(device_id)
        else:
            self.stats.states_sent += 1
        self.sent[device_id] += 1

    async def burst(self, send: StateSender, device_id: str, model: DeviceModel, count: int,
                    fault: DeviceFaults | None, of_fault: int) -> None:
        """``count`` states beyond the schedule at once; ``of_fault`` of them are a fault's burst (counted there)."""
        for _ in range(count):
            ms = self.stamp(device_id)
            await self.send_extra(send, device_id, model.next(ms / 1000.0), ms, expected=False)
        if fault is not None:
            fault.burst_sent(of_fault)

    def replier(self, send_of: Callable[[str], StateSender]) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
        """The function a command reaction's reply goes through (a state, counted as a reply)."""

        async def reply(device_id: str, data: dict[str, Any]) -> None:
            ms = self.stamp(device_id)
            try:
                await send_of(device_id)(device_id, data, ms)
            except FATAL:
                raise
            except LosantError as exc:
                self.stats.record_error(exc)
                return
            self.stats.states_replies += 1
            self.sent[device_id] += 1
            self.replies[device_id] = self.replies.get(device_id, 0) + 1

        return reply

    def sections(self, config: SimulationConfig, types: Sequence[FleetType], device_ids: Sequence[str],
                 specs: Sequence[DeviceSpec]) -> None:
        """The report's section per device type, and the devices that never had a connected session."""
        stats = self.stats
        expected = config.expected_by_type()
        sections: dict[str, dict[str, Any]] = {
            t.name: {"devices": 0, "interval": t.period, "transport": t.transport,
                     "states_expected": expected.get(t.name, 0), "states_sent": 0, "states_buffered": 0,
                     "states_unchanged": 0, "states_held": 0}
            for t in types if t.count
        }
        for device_id, spec in zip(device_ids, specs, strict=True):
            sec = sections[types[spec.kind].name]
            sec["devices"] += 1
            buffered = self.buffered.get(device_id, 0)
            beyond = self.replies.get(device_id, 0) + self.extra.get(device_id, 0)
            sec["states_sent"] += self.sent[device_id] - buffered - beyond
            sec["states_buffered"] += buffered
        for name, n in stats.unchanged_by_type.items():
            sections[name]["states_unchanged"] = n
        for name, n in stats.held_by_type.items():
            sections[name]["states_held"] = n
        stats.types = sections
        # A device whose every state was only buffered never had a connected session: it names the failure.
        names = {d: s.name for d, s in zip(device_ids, specs, strict=True)}
        stats.devices_unconnected = [
            names[d] for d, n in self.sent.items()
            if n and self.buffered.get(d, 0) == n and not self.replies.get(d)
        ]

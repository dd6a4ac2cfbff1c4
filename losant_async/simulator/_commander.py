"""The run's controller: command rounds sent over REST on a fixed schedule, and the commands devices received."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .._time import now_ms
from ._fleet import COMMAND_NAME, SimulationConfig, command_rounds
from ._ledger import command_call
from ._reactions import CommandPlan, Reactor
from ._report import SimulationStats

if TYPE_CHECKING:
    from ..rest import LosantClient

__all__ = ["Commander"]

# Command calls in flight at once: a slow call must not push the next rounds off their schedule,
# and a stalled server must not collect an unbounded pile of calls.
_CALLS_IN_FLIGHT = 4


class Commander:
    """Sends the built-in command rounds to ``device_ids`` in turn and counts what the devices received.

    :meth:`on_command` is every device's command callback: it runs in the
    device's network callback, outside any task, so it never creates anything
    (below anyio 4.7 an Event needs a task); only :meth:`wait` does.
    """

    def __init__(self, config: SimulationConfig, application_id: str, device_ids: Sequence[str],
                 stats: SimulationStats, reactor: Reactor, plan: CommandPlan,
                 clock: Callable[[], float]) -> None:
        self._config = config
        self._application_id = application_id
        self._ids = list(device_ids)
        self._stats = stats
        self._reactor = reactor
        self._plan = plan
        self._clock = clock
        self._seen: set[tuple[str, int]] = set()
        self._all_in: anyio.Event | None = None
        self.running = False
        """A controller runs: rounds are due and counted."""

    @property
    def batch(self) -> int:
        """Devices commanded per round (0: no device here can receive commands)."""
        return self._config.command_batch

    def scheduled(self, elapsed: float | None = None) -> int:
        """Built-in commands due in a full run (or in its first ``elapsed`` seconds)."""
        return self._config.commands_scheduled(elapsed)

    async def control(self, client: LosantClient, scope: anyio.CancelScope, start: float) -> None:
        """Send the rounds until cancelled through ``scope`` (the end of the reporting)."""
        cfg = self._config
        ids = self._ids
        batch = self.batch
        cursor = 0
        round_no = 0
        last_round = command_rounds(cfg.command_interval, cfg.duration)
        in_flight = anyio.Semaphore(_CALLS_IN_FLIGHT)
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
                    calls.start_soon(self._call, client, chosen, first, in_flight)

    async def _call(self, client: LosantClient, chosen: list[str], round_no: int, in_flight: anyio.Semaphore) -> None:
        try:
            await command_call(client, self._application_id, COMMAND_NAME, {"round": round_no, "sent_ms": now_ms()},
                               chosen, self._stats)
        finally:
            in_flight.release()

    def on_command(self, command: Any) -> None:
        """Count one command a device received (its reactions first); duplicates of a round are counted apart."""
        name = getattr(command, "name", None)
        if self._reactor.active:
            self._reactor.on_command(str(getattr(command, "device_id", "")), str(name), getattr(command, "payload", None))
        if name in self._plan.names:
            self._plan.received(str(name))
            self._count_received()
            return
        if name != COMMAND_NAME:
            return
        stats = self._stats
        payload = getattr(command, "payload", None)
        round_no = payload.get("round") if isinstance(payload, dict) else None
        sent_ms = payload.get("sent_ms") if isinstance(payload, dict) else None
        if isinstance(round_no, int):
            key = (str(getattr(command, "device_id", "")), round_no)
            if key in self._seen:
                stats.commands_duplicate += 1
                return
            self._seen.add(key)
        if isinstance(sent_ms, (int, float)):
            stats.command_latency.record(now_ms() - sent_ms)
        self._count_received()

    def _count_received(self) -> None:
        stats = self._stats
        stats.commands_received += 1
        waiter = self._all_in
        if waiter is not None and stats.commands_received >= stats.commands_sent:
            waiter.set()

    async def wait(self) -> None:
        """Wait, at most ``config.command_wait`` seconds, for commands sent but not yet received."""
        stats = self._stats
        if stats.commands_received >= stats.commands_sent:
            return
        self._all_in = waiter = anyio.Event()
        try:
            with anyio.move_on_after(self._config.command_wait):
                await waiter.wait()
        finally:
            self._all_in = None

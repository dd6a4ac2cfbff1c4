"""What the processes and Ray runners share: shards started together, progress merged, stopped once, reports merged.

:class:`ShardRunner` is the part of a multi-shard runner that does not depend on
where a shard runs. A subclass starts its shards (:meth:`ShardRunner._start`),
waits for one shard's report (:meth:`ShardRunner._result`), forwards a stop
(:meth:`ShardRunner._stop_shards`) and releases what it started
(:meth:`ShardRunner._close`). The base holds the start-up barrier: no shard
reports before every shard has started (its process or actor up, its
:class:`Simulation` built), so the slowest start-up (a worker importing Ray and
this package, a few CPU seconds) never competes with the first shards'
reporting on a machine whose cores they all share.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

import anyio

from ..errors import LosantError, ValidationError
from ._fleet import Shard, SimulationConfig, StoredStates, Target, config_from_dict, config_to_dict
from ._report import Progress, SimulationReport, merge_progress, merge_reports

__all__ = ["ShardFailedError", "ShardResult", "ShardRunner", "empty_progress", "final_progress", "finish_reports",
           "with_shard"]

ShardResult = tuple[SimulationReport, dict[str, int]]
"""One shard's report and the states it sent per device id."""


class ShardFailedError(LosantError):
    """A shard (process or Ray actor) failed; the others were stopped."""


def with_shard(config: SimulationConfig, shard: Shard) -> SimulationConfig:
    """``config`` for one shard of the fleet."""
    data = config_to_dict(config)
    data["shard"] = {"index": shard.index, "count": shard.count}
    return config_from_dict(data)


def empty_progress(config: SimulationConfig) -> Progress:
    """A shard's progress before it said anything."""
    return Progress(phase="starting", elapsed=0.0, duration=config.duration, devices=config.shard_devices,
                    connections=0, connected=0, states_sent=0, states_per_second=0.0, commands_sent=0,
                    commands_received=0, reconnects=0, errors=0, last_error=None)


def final_progress(last: Progress, report: SimulationReport) -> Progress:
    """A finished shard's progress, from its report (exact) and its last progress (connections)."""
    return Progress(
        phase="done", elapsed=report.duration, duration=last.duration, devices=report.devices,
        connections=last.connections, connected=last.connected, states_sent=report.states_sent,
        states_per_second=0.0, commands_sent=report.commands_sent, commands_received=report.commands_received,
        reconnects=report.reconnects, errors=report.errors, last_error=last.last_error,
        commands_scheduled=report.commands_scheduled,
    )


async def finish_reports(
    reports: Sequence[SimulationReport],
    sent: Sequence[Mapping[str, int]],
    stored: StoredStates | None,
    within: float,
) -> SimulationReport:
    """Count each shard's stored states (one shared deadline) and merge the shards' reports."""
    done: list[SimulationReport] = []
    deadline = anyio.current_time() + within
    for report, by_device in zip(reports, sent, strict=True):
        if stored is not None:
            left = max(0.0, deadline - anyio.current_time())
            report = report.with_stored(await stored.wait_stored(by_device, left))
        done.append(report)
    return merge_reports(done)


class ShardRunner(abc.ABC):
    """``await runner.run()``: shard ``i`` of ``len(targets)`` runs against ``targets[i]``; one merged report.

    ``config`` is the whole fleet's (its ``shard`` is replaced per shard). Same
    interface as :class:`Simulation`: ``progress()``, ``stop()``, ``run()``.
    """

    #: Names the runner in errors ("a process runner needs at least one shard").
    kind = "shard runner"

    def __init__(self, config: SimulationConfig, targets: Sequence[Target], stored: StoredStates | None) -> None:
        if not targets:
            raise ValidationError(f"a {self.kind} needs at least one shard")
        self.config = config
        self._configs = [with_shard(config, Shard(i, len(targets))) for i in range(len(targets))]
        for cfg, tgt in zip(self._configs, targets, strict=True):
            tgt.check(cfg)
        self._targets = list(targets)
        self._stored = stored
        self._progress = [empty_progress(c) for c in self._configs]
        self._ready = [False] * len(targets)
        self._released: anyio.Event | None = None
        self._started = False
        self._stopped = False
        self._used = False

    # -- what a subclass provides

    @abc.abstractmethod
    async def _start(self) -> None:
        """Start every shard (not yet reporting); ``_close`` runs after, even when this raises."""

    @abc.abstractmethod
    async def _result(self, i: int) -> ShardResult:
        """Shard ``i``'s report once it has run; calls ``_shard_ready(i)`` then ``_wait_released()`` before.

        Raises :class:`ShardFailedError` naming the shard when it failed.
        """

    @abc.abstractmethod
    def _stop_shards(self) -> None:
        """Ask every started shard to stop reporting (they still send their reports); never raises."""

    def _release_shards(self) -> None:  # noqa: B027 (a hook: shards that wait for nothing need nothing)
        """Every shard is ready: let them report (a runner whose shards wait for a word sends it here)."""

    async def _follow(self) -> None:  # noqa: B027 (a hook: shards that stream their progress need no polling)
        """Runs while the shards do (cancelled after): keep ``self._progress`` fresh when shards do not stream it."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Release every shard and what was started for them (shielded from cancellation by the caller)."""

    # -- shared

    def progress(self) -> Progress:
        return merge_progress(self._progress)

    def stop(self) -> None:
        """Ask every shard to stop reporting (idempotent); ``run()`` still returns the merged report."""
        if self._stopped:
            return
        self._stopped = True
        if self._released is not None:
            self._released.set()  # a shard waiting for the others goes on, to stop at once
        if self._started:
            self._stop_shards()

    def _shard_ready(self, i: int) -> None:
        """Shard ``i`` has started; the last one to start releases them all."""
        self._ready[i] = True
        if all(self._ready) and self._released is not None and not self._released.is_set():
            self._released.set()
            if not self._stopped:
                self._release_shards()

    async def _wait_released(self) -> None:
        assert self._released is not None
        await self._released.wait()

    async def run(self) -> SimulationReport:
        if self._used:
            raise ValidationError("a runner runs once; build a new one")
        self._used = True
        self._released = anyio.Event()
        if self._stopped:
            self._released.set()
        results: list[ShardResult | None] = [None] * len(self._configs)
        failures: list[str] = []

        async def collect(i: int) -> None:
            try:
                results[i] = result = await self._result(i)
            except ShardFailedError as exc:
                failures.append(str(exc))
                self.stop()
                return
            self._progress[i] = final_progress(self._progress[i], result[0])

        try:
            await self._start()
            self._started = True
            if self._stopped:  # stop() came while the shards were starting: it reaches them now
                self._stop_shards()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._follow)
                async with anyio.create_task_group() as shards:
                    for i in range(len(self._configs)):
                        shards.start_soon(collect, i)
                tg.cancel_scope.cancel()
            if failures:
                raise ShardFailedError("; ".join(failures))
            done = [r for r in results if r is not None]
            return await finish_reports([r for r, _ in done], [s for _, s in done], self._stored,
                                        self.config.drain_timeout)
        finally:
            self.stop()
            with anyio.CancelScope(shield=True):
                await self._close()

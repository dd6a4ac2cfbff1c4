"""The Ray runner: the fleet's shards as Ray async actors, on one machine or a cluster (extra ``losant-async[ray]``).

Each actor runs one :class:`Simulation` in its own event loop; the driver
polls their progress, merges it into one line, and merges their reports. Every
actor is stopped on :meth:`RayRunner.stop` (Ctrl-C), when one of them fails
(the failure is raised, naming the shard) and at the end. With no address a
local Ray is started on 127.0.0.1 only, without dashboard, and shut down after
(unless ``RAY_ADDRESS`` names a cluster, as it does inside a Ray job).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from typing import Any

import anyio

from ..errors import ValidationError
from ._fleet import (
    SimulationConfig,
    StoredStates,
    Target,
    config_from_dict,
    config_to_dict,
    target_to_dict,
)
from ._processes import ShardFailedError, empty_progress, finish_reports
from ._report import Progress, SimulationReport, merge_progress, report_from_dict

__all__ = ["RayRunner", "ShardActor"]

_PROGRESS_EVERY = 0.5
_PROGRESS_CALL_LIMIT = 5.0


class ShardActor:
    """A Ray actor body (wrapped with ``ray.remote`` by the runner): one shard's :class:`Simulation`."""

    def __init__(self, config: dict[str, Any], target: dict[str, Any]) -> None:
        from ._engine import Simulation
        from ._fleet import target_from_dict

        self._sim = Simulation(config_from_dict(config), target_from_dict(target))

    async def run(self) -> tuple[dict[str, Any], dict[str, int]]:
        report = await self._sim.run()
        return report.to_dict(), dict(self._sim.sent_by_device)

    async def progress(self) -> dict[str, Any]:
        return self._sim.progress().to_dict()

    async def stop(self) -> None:
        self._sim.stop()


class RayRunner:
    """``await RayRunner(config, targets, stored, address=None).run()``: one Ray actor per target.

    ``targets[i]`` carries shard ``i`` of ``len(targets)``. Same interface as
    :class:`Simulation`: ``progress()``, ``stop()``, ``run()``.
    """

    def __init__(
        self,
        config: SimulationConfig,
        targets: Sequence[Target],
        stored: StoredStates | None,
        *,
        address: str | None = None,
        cpus_per_actor: float = 1.0,
    ) -> None:
        from ._fleet import Shard
        from ._processes import _with_shard

        if not targets:
            raise ValidationError("a Ray runner needs at least one shard")
        if not cpus_per_actor > 0:
            raise ValidationError("cpus_per_actor must be positive")
        self.config = config
        self._configs = [_with_shard(config, Shard(i, len(targets))) for i in range(len(targets))]
        for cfg, tgt in zip(self._configs, targets, strict=True):
            tgt.check(cfg)
        self._targets = list(targets)
        self._stored = stored
        self._address = address
        self._cpus = cpus_per_actor
        self._progress = [empty_progress(c) for c in self._configs]
        self._actors: list[Any] = []
        self._stopped = False
        self._used = False

    def progress(self) -> Progress:
        return merge_progress(self._progress)

    def stop(self) -> None:
        """Ask every actor to stop reporting (idempotent); ``run()`` still returns the merged report."""
        if self._stopped:
            return
        self._stopped = True
        for actor in self._actors:
            with contextlib.suppress(Exception):
                actor.stop.remote()

    async def run(self) -> SimulationReport:
        import ray

        if self._used:
            raise ValidationError("a runner runs once; build a new one")
        self._used = True
        started_ray = False
        # Inside a Ray job (ray job submit, a KubeRay RayJob) Ray names the cluster in RAY_ADDRESS.
        address = self._address or os.environ.get("RAY_ADDRESS") or None
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "logging_level": "WARNING"}
            try:
                if address:
                    ray.init(address=address, **options)
                else:
                    # A private local Ray: loopback only, enough CPUs for every actor's reservation.
                    cpus = max(2, math.ceil(len(self._targets) * self._cpus))
                    ray.init(num_cpus=cpus, _node_ip_address="127.0.0.1", **options)
            except Exception as exc:
                where = f"join the Ray cluster at {address}" if address else "start a local Ray"
                raise ShardFailedError(f"could not {where}: {type(exc).__name__}: {_first_line(exc)}") from None
            started_ray = True
        remote_cls = ray.remote(ShardActor)
        try:
            for cfg, tgt in zip(self._configs, self._targets, strict=True):
                actor = remote_cls.options(
                    num_cpus=self._cpus, name=None, max_restarts=0, max_task_retries=0,
                ).remote(config_to_dict(cfg), target_to_dict(tgt))
                self._actors.append(actor)
            if self._stopped:
                self._stopped = False
                self.stop()
            results: list[tuple[SimulationReport, dict[str, int]] | None] = [None] * len(self._actors)
            failures: list[str] = []
            done = anyio.Event()

            async def collect(i: int) -> None:
                try:
                    report, sent = await self._actors[i].run.remote()
                    results[i] = (report_from_dict(report), sent)
                except Exception as exc:
                    failures.append(f"shard {self._configs[i].shard} (Ray actor) failed: "
                                    f"{type(exc).__name__}: {_first_line(exc)}")
                    self.stop()

            async def poll() -> None:
                while not done.is_set():
                    for i, actor in enumerate(self._actors):
                        if results[i] is not None:
                            continue
                        with anyio.move_on_after(_PROGRESS_CALL_LIMIT):
                            with contextlib.suppress(Exception):
                                self._progress[i] = Progress.from_dict(await actor.progress.remote())
                    with anyio.move_on_after(_PROGRESS_EVERY):
                        await done.wait()

            async with anyio.create_task_group() as tg:
                tg.start_soon(poll)
                async with anyio.create_task_group() as runs:
                    for i in range(len(self._actors)):
                        runs.start_soon(collect, i)
                done.set()
            if failures:
                raise ShardFailedError("; ".join(failures))
            ready = [r for r in results if r is not None]
            for i, r in enumerate(results):
                if r is not None:
                    self._progress[i] = _final_progress(self._progress[i], r[0])
            return await finish_reports([r for r, _ in ready], [s for _, s in ready], self._stored,
                                        self.config.drain_timeout)
        finally:
            actors, self._actors = self._actors, []
            for actor in actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
            if started_ray:
                ray.shutdown()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:300] if text else ""


def _final_progress(last: Progress, report: SimulationReport) -> Progress:
    return Progress(
        phase="done", elapsed=report.duration, duration=last.duration, devices=report.devices,
        connections=last.connections, connected=last.connected, states_sent=report.states_sent,
        states_per_second=0.0, commands_sent=report.commands_sent, commands_received=report.commands_received,
        reconnects=report.reconnects, errors=report.errors, last_error=last.last_error,
    )

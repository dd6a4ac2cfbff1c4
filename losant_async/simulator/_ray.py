"""The Ray runner: the fleet's shards as Ray async actors, on one machine or a cluster (extra ``losant-async[ray]``).

Each actor runs one :class:`Simulation` in its own event loop; the driver
polls their progress, merges it into one line, and merges their reports. Every
actor is stopped on :meth:`RayRunner.stop` (Ctrl-C), when one of them fails
(the failure is raised, naming the shard) and at the end. With no address a
local Ray is started on 127.0.0.1 only, without dashboard, and shut down after
(unless ``RAY_ADDRESS`` names a cluster, as it does inside a Ray job).

On a small machine Ray's own processes share the cores with the actors, so a
local Ray is started without what a simulator does not use (metrics, task
events, prestarted workers; see :data:`LOCAL_SYSTEM_CONFIG`), the driver asks
each actor for its progress once a second, and no actor reports before every
actor is up (:class:`ShardRunner`'s start-up barrier).
"""

from __future__ import annotations

import contextlib
import logging
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
from ._report import Progress, report_from_dict
from ._shard_runner import ShardFailedError, ShardResult, ShardRunner

__all__ = ["LOCAL_SYSTEM_CONFIG", "RayRunner", "ShardActor"]

# A progress call is one actor task each way: once a second per actor keeps the live line fresh enough.
_PROGRESS_EVERY = 1.0
_PROGRESS_CALL_LIMIT = 5.0

LOCAL_SYSTEM_CONFIG: dict[str, Any] = {
    # No Prometheus metrics: every Ray process would record and export them, and nobody scrapes them.
    "enable_metrics_collection": False,
    # No task events: every progress call would be recorded and sent to the GCS (the state API's data).
    "task_events_report_interval_ms": 0,
    # Workers start for the actors when they are created, not spare ones ahead that sit idle.
    "enable_worker_prestart": False,
    "prestart_worker_first_driver": False,
    # No per-handler event-loop statistics in the raylet and the GCS.
    "event_stats": False,
}
"""The ``_system_config`` a local Ray is started with (a cluster keeps its own)."""


class ShardActor:
    """A Ray actor body (wrapped with ``ray.remote`` by the runner): one shard's :class:`Simulation`."""

    def __init__(self, config: dict[str, Any], target: dict[str, Any]) -> None:
        from ._engine import Simulation
        from ._fleet import target_from_dict

        self._sim = Simulation(config_from_dict(config), target_from_dict(target))

    async def ready(self) -> bool:
        """True once the actor is up (its process started, the simulation built)."""
        return True

    async def run(self) -> tuple[dict[str, Any], dict[str, int]]:
        report = await self._sim.run()
        return report.to_dict(), dict(self._sim.sent_by_device)

    async def progress(self) -> dict[str, Any]:
        return self._sim.progress().to_dict()

    async def stop(self) -> None:
        self._sim.stop()


class RayRunner(ShardRunner):
    """``await RayRunner(config, targets, stored, address=None).run()``: one Ray actor per target.

    ``targets[i]`` carries shard ``i`` of ``len(targets)``. Same interface as
    :class:`Simulation`: ``progress()``, ``stop()``, ``run()``.
    """

    kind = "Ray runner"

    def __init__(
        self,
        config: SimulationConfig,
        targets: Sequence[Target],
        stored: StoredStates | None,
        *,
        address: str | None = None,
        cpus_per_actor: float = 1.0,
    ) -> None:
        if not cpus_per_actor > 0:
            raise ValidationError("cpus_per_actor must be positive")
        super().__init__(config, targets, stored)
        self._address = address
        self._cpus = cpus_per_actor
        self._actors: list[Any] = []
        self._finished = [False] * len(targets)
        self._started_ray = False

    async def _start(self) -> None:
        import ray

        # Inside a Ray job (ray job submit, a KubeRay RayJob) Ray names the cluster in RAY_ADDRESS.
        address = self._address or os.environ.get("RAY_ADDRESS") or None
        if not ray.is_initialized():
            # Starting a local Ray takes seconds (a minute on a loaded machine): in a thread, so
            # that this loop still answers Ctrl-C; Ray then leaves the SIGTERM handler alone.
            try:
                await anyio.to_thread.run_sync(_init_ray, address, max(2, math.ceil(len(self._targets) * self._cpus)))
            except Exception as exc:
                where = f"join the Ray cluster at {address}" if address else "start a local Ray"
                raise ShardFailedError(f"could not {where}: {type(exc).__name__}: {_first_line(exc)}") from None
            self._started_ray = True
        remote_cls = ray.remote(ShardActor)
        for cfg, tgt in zip(self._configs, self._targets, strict=True):
            actor = remote_cls.options(
                num_cpus=self._cpus, name=None, max_restarts=0, max_task_retries=0,
            ).remote(config_to_dict(cfg), target_to_dict(tgt))
            self._actors.append(actor)

    def _stop_shards(self) -> None:
        for actor in self._actors:
            with contextlib.suppress(Exception):
                actor.stop.remote()

    async def _result(self, i: int) -> ShardResult:
        actor = self._actors[i]
        try:
            await actor.ready.remote()
            self._shard_ready(i)
            await self._wait_released()
            report, sent = await actor.run.remote()
        except Exception as exc:
            raise ShardFailedError(f"shard {self._configs[i].shard} (Ray actor) failed: "
                                   f"{type(exc).__name__}: {_first_line(exc)}") from None
        finally:
            self._finished[i] = True
        return report_from_dict(report), sent

    async def _follow(self) -> None:
        while True:
            await anyio.sleep(_PROGRESS_EVERY)
            for i, actor in enumerate(self._actors):
                if self._finished[i] or not self._ready[i]:
                    continue
                with anyio.move_on_after(_PROGRESS_CALL_LIMIT), contextlib.suppress(Exception):
                    progress = Progress.from_dict(await actor.progress.remote())
                    if not self._finished[i]:  # a finished shard's progress is its report's
                        self._progress[i] = progress

    async def _close(self) -> None:
        actors, self._actors = self._actors, []
        if not actors and not self._started_ray:
            return  # nothing started (Ray may not even be installed)
        import ray

        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        if self._started_ray:
            await anyio.to_thread.run_sync(ray.shutdown)


class _NotMainThreadNotice(logging.Filter):
    """Drops Ray's notice that it set no SIGTERM handler: it is called from a thread on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SIGTERM handler is not set")


class _TokenAuthNotice(logging.Filter):
    """Drops Ray's WARNING that it turned token authentication on for the new local cluster.

    That is Ray's default for a cluster ``ray.init()`` starts (the one the CLI starts and stops
    itself), announced on every run unless ``RAY_AUTH_MODE`` is set; setting it ourselves would
    skip Ray's own set-up of the mode. The notice goes, the behaviour stays.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def _init_ray(address: str | None, cpus: int) -> None:
    import ray

    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
    notice = _NotMainThreadNotice()
    worker_log = logging.getLogger("ray._private.worker")
    worker_log.addFilter(notice)
    auth_notice, auth_log = _TokenAuthNotice(), logging.getLogger(TOKEN_AUTH_LOGGER)
    try:
        if address:
            ray.init(address=address, **options)
        else:
            # A private local Ray: loopback only, one CPU reserved per actor, so that the
            # scheduler never puts more actors on this machine than it has cores for them.
            auth_log.addFilter(auth_notice)
            ray.init(num_cpus=cpus, _node_ip_address="127.0.0.1", _system_config=dict(LOCAL_SYSTEM_CONFIG),
                     **options)
    finally:
        worker_log.removeFilter(notice)
        auth_log.removeFilter(auth_notice)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:300] if text else ""

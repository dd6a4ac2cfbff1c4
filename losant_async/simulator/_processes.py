"""The processes runner: N shard processes on this machine against one target, one merged progress and report.

Each shard runs a :class:`Simulation` in a spawned process of its own (its own
core and event loop). The parent only relays: it merges the shards' progress,
forwards ``stop()``, counts what the server stored (through the caller's
:class:`StoredStates`, e.g. the emulator it started) and merges the reports.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

import anyio

from ..errors import LosantError, ValidationError
from ._fleet import (
    Shard,
    SimulationConfig,
    StoredStates,
    Target,
    config_from_dict,
    config_to_dict,
    target_from_dict,
    target_to_dict,
)
from ._pipes import PipeInbox
from ._report import Progress, SimulationReport, merge_progress, merge_reports, report_from_dict

__all__ = ["ProcessRunner", "ShardFailedError", "empty_progress", "finish_reports"]

_PROGRESS_EVERY = 0.5
_JOIN_TIMEOUT = 10.0


class ShardFailedError(LosantError):
    """A shard (process or Ray actor) failed; the others were stopped."""


def empty_progress(config: SimulationConfig) -> Progress:
    """A shard's progress before it said anything."""
    return Progress(phase="starting", elapsed=0.0, duration=config.duration, devices=config.shard_devices,
                    connections=0, connected=0, states_sent=0, states_per_second=0.0, commands_sent=0,
                    commands_received=0, reconnects=0, errors=0, last_error=None)


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


def _shard_main(config: dict[str, Any], target: dict[str, Any], events: Connection, control: Connection) -> None:
    """A shard process: run one :class:`Simulation`, stream progress, send the report."""
    # Ctrl-C reaches the whole process group; only the parent decides when shards stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        anyio.run(_shard_async, config_from_dict(config), target_from_dict(target), events, control)
    except BaseException as exc:  # reported to the parent, which names the shard
        with contextlib.suppress(OSError):
            events.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        events.close()


async def _shard_async(config: SimulationConfig, target: Target, events: Connection, control: Connection) -> None:
    from ._engine import Simulation

    sim = Simulation(config, target)
    inbox = PipeInbox(control, f"shard {config.shard} control")

    async def listen() -> None:
        try:
            while True:
                if await inbox.get() == "stop":
                    sim.stop()
        except EOFError:  # the parent is gone: stop as if asked
            sim.stop()

    async def report_progress() -> None:
        while True:
            events.send(("progress", sim.progress().to_dict()))
            await anyio.sleep(_PROGRESS_EVERY)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        tg.start_soon(report_progress)
        report = await sim.run()
        tg.cancel_scope.cancel()
    events.send(("report", report.to_dict(), dict(sim.sent_by_device)))


class ProcessRunner:
    """``await ProcessRunner(config, targets, stored).run()``: one shard process per target.

    ``targets[i]`` carries shard ``i`` of ``len(targets)``; ``config`` is the
    whole fleet's (its ``shard`` is replaced per process). Same interface as
    :class:`Simulation`: ``progress()``, ``stop()``, ``run()``.
    """

    def __init__(self, config: SimulationConfig, targets: Sequence[Target], stored: StoredStates | None) -> None:
        if not targets:
            raise ValidationError("a process runner needs at least one shard")
        self.config = config
        self._configs = [_with_shard(config, Shard(i, len(targets))) for i in range(len(targets))]
        for cfg, tgt in zip(self._configs, targets, strict=True):
            tgt.check(cfg)
        self._targets = list(targets)
        self._stored = stored
        self._progress = [empty_progress(c) for c in self._configs]
        self._controls: list[Connection] = []
        self._stopped = False
        self._used = False

    def progress(self) -> Progress:
        return merge_progress(self._progress)

    def stop(self) -> None:
        """Ask every shard to stop reporting (idempotent); ``run()`` still returns the merged report."""
        if self._stopped:
            return
        self._stopped = True
        for conn in self._controls:
            with contextlib.suppress(OSError):  # that shard has already ended
                conn.send("stop")

    async def run(self) -> SimulationReport:
        if self._used:
            raise ValidationError("a runner runs once; build a new one")
        self._used = True
        ctx = multiprocessing.get_context("spawn")
        procs: list[Any] = []
        inboxes: list[PipeInbox] = []
        try:
            for cfg, tgt in zip(self._configs, self._targets, strict=True):
                events_r, events_w = ctx.Pipe(duplex=False)
                control_r, control_w = ctx.Pipe(duplex=False)
                proc = ctx.Process(
                    target=_shard_main, name=f"losant-async shard {cfg.shard}",
                    args=(config_to_dict(cfg), target_to_dict(tgt), events_w, control_r), daemon=True,
                )
                proc.start()
                # The child holds its own copies; ours would keep the pipes open after it exits.
                events_w.close()
                control_r.close()
                procs.append(proc)
                self._controls.append(control_w)
                inboxes.append(PipeInbox(events_r, f"shard {cfg.shard} events"))
            if self._stopped:
                self._stopped = False
                self.stop()
            results: list[tuple[SimulationReport, dict[str, int]] | None] = [None] * len(procs)
            failures: list[str] = []

            async def collect(i: int) -> None:
                try:
                    while True:
                        message = await inboxes[i].get()
                        kind = message[0]
                        if kind == "progress":
                            self._progress[i] = Progress.from_dict(message[1])
                        elif kind == "report":
                            results[i] = (report_from_dict(message[1]), message[2])
                            return
                        elif kind == "error":
                            raise ShardFailedError(f"shard {self._configs[i].shard} failed: {message[1]}")
                except EOFError:
                    code = await anyio.to_thread.run_sync(_exit_code, procs[i])
                    raise ShardFailedError(
                        f"shard {self._configs[i].shard} ended without a report (exit code {code})"
                    ) from None
                except ShardFailedError as exc:
                    failures.append(str(exc))
                    self.stop()

            async with anyio.create_task_group() as tg:
                for i in range(len(procs)):
                    tg.start_soon(collect, i)
            if failures:
                raise ShardFailedError("; ".join(failures))
            done = [r for r in results if r is not None]
            return await finish_reports([r for r, _ in done], [s for _, s in done], self._stored,
                                        self.config.drain_timeout)
        finally:
            self.stop()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_reap, procs)
            for conn in self._controls:
                conn.close()


def _with_shard(config: SimulationConfig, shard: Shard) -> SimulationConfig:
    data = config_to_dict(config)
    data["shard"] = {"index": shard.index, "count": shard.count}
    return config_from_dict(data)


def _exit_code(proc: Any) -> int | None:
    proc.join(_JOIN_TIMEOUT)
    code: int | None = proc.exitcode
    return code


def _reap(procs: Sequence[Any]) -> None:
    """Wait for every shard process to end; terminate, then kill, the ones that do not."""
    for proc in procs:
        proc.join(_JOIN_TIMEOUT)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
            proc.join(_JOIN_TIMEOUT)
        if proc.is_alive() and os.name != "nt":
            proc.kill()
            proc.join()


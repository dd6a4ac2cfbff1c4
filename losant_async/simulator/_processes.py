"""The processes runner: N shard processes on this machine against one target, one merged progress and report.

Each shard runs a :class:`Simulation` in a spawned process of its own (its own
core and event loop). The parent only relays: it merges the shards' progress,
forwards ``stop()``, counts what the server stored (through the caller's
:class:`StoredStates`, e.g. the emulator it started) and merges the reports.
What does not depend on processes (the start-up barrier, stop, merge) is
:class:`ShardRunner`'s.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import anyio

from ._fleet import (
    SimulationConfig,
    StoredStates,
    Target,
    config_from_dict,
    config_to_dict,
    target_from_dict,
    target_to_dict,
)
from ._pipes import PipeInbox
from ._report import Progress, report_from_dict
from ._shard_runner import ShardFailedError, ShardResult, ShardRunner

__all__ = ["ProcessRunner"]

_PROGRESS_EVERY = 0.5
_JOIN_TIMEOUT = 10.0


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
    go = anyio.Event()

    async def listen() -> None:
        try:
            while True:
                word = await inbox.get()
                if word == "stop":
                    sim.stop()
                go.set()  # "go", or "stop" before it: run (at once interrupted) and report
        except EOFError:  # the parent is gone: stop as if asked
            sim.stop()
            go.set()

    async def report_progress() -> None:
        while True:
            events.send(("progress", sim.progress().to_dict()))
            await anyio.sleep(_PROGRESS_EVERY)

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        events.send(("ready",))
        await go.wait()
        tg.start_soon(report_progress)
        report = await sim.run()
        tg.cancel_scope.cancel()
    events.send(("report", report.to_dict(), dict(sim.sent_by_device)))


class ProcessRunner(ShardRunner):
    """``await ProcessRunner(config, targets, stored).run()``: one shard process per target.

    ``targets[i]`` carries shard ``i`` of ``len(targets)``; ``config`` is the
    whole fleet's (its ``shard`` is replaced per process). Same interface as
    :class:`Simulation`: ``progress()``, ``stop()``, ``run()``.
    """

    kind = "process runner"

    def __init__(self, config: SimulationConfig, targets: Sequence[Target], stored: StoredStates | None) -> None:
        super().__init__(config, targets, stored)
        self._procs: list[Any] = []
        self._controls: list[Connection] = []
        self._inboxes: list[PipeInbox] = []

    async def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
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
            self._procs.append(proc)
            self._controls.append(control_w)
            self._inboxes.append(PipeInbox(events_r, f"shard {cfg.shard} events"))

    def _send(self, word: str) -> None:
        for conn in self._controls:
            with contextlib.suppress(OSError):  # that shard has already ended
                conn.send(word)

    def _release_shards(self) -> None:
        self._send("go")

    def _stop_shards(self) -> None:
        self._send("stop")

    async def _result(self, i: int) -> ShardResult:
        shard = self._configs[i].shard
        try:
            while True:
                message = await self._inboxes[i].get()
                kind = message[0]
                if kind == "progress":
                    self._progress[i] = Progress.from_dict(message[1])
                elif kind == "ready":
                    self._shard_ready(i)
                elif kind == "report":
                    return report_from_dict(message[1]), message[2]
                elif kind == "error":
                    raise ShardFailedError(f"shard {shard} failed: {message[1]}")
        except EOFError:
            code = await anyio.to_thread.run_sync(_exit_code, self._procs[i])
            raise ShardFailedError(f"shard {shard} ended without a report (exit code {code})") from None

    async def _close(self) -> None:
        await anyio.to_thread.run_sync(_reap, self._procs)
        for conn in self._controls:
            conn.close()


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

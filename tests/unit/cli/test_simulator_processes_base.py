"""The shard-runner base both the processes and Ray runners use: start-up barrier, stop, failures, merge; no processes."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from losant_async.errors import ValidationError
from losant_async.simulator import SimulationConfig, SimulationStats, Target, build_report
from losant_async.simulator._shard_runner import (
    ShardFailedError,
    ShardResult,
    ShardRunner,
    with_shard,
)


def _targets(config: SimulationConfig, count: int) -> list[Target]:
    targets: list[Target] = []
    for i in range(count):
        cfg = with_shard(config, config.shard.__class__(i, count))
        ids = tuple(f"{n + 1:024x}" for n in cfg.indices)
        targets.append(Target(application_id="a" * 24, device_ids=ids, mqtt_host="127.0.0.1", key="k", secret="s"))
    return targets


class FakeRunner(ShardRunner):
    """Shards in this loop: each becomes ready when told, reports ``states`` states unless stopped first."""

    kind = "fake runner"

    def __init__(self, config: SimulationConfig, targets: Sequence[Target], *, fail: int | None = None) -> None:
        super().__init__(config, targets, None)
        self.events: list[str] = []
        self.go = [anyio.Event() for _ in targets]
        self.fail = fail
        self.stops = 0
        self.closed = False

    async def _start(self) -> None:
        self.events.append("start")

    async def _result(self, i: int) -> ShardResult:
        await self.go[i].wait()
        if i == self.fail:
            raise ShardFailedError(f"shard {self._configs[i].shard} failed: boom")
        self._shard_ready(i)
        await self._wait_released()
        self.events.append(f"report {i}")
        cfg = self._configs[i]
        stats = SimulationStats(states_sent=0 if self._stopped else 2 * cfg.shard_devices)
        report = build_report(cfg, stats, gateways=0, run_seconds=1.0, connect_seconds=0.0, states_stored=None,
                              interrupted=self._stopped, embedded=False, peak_rss=None, machine={})
        return report, {}

    def _release_shards(self) -> None:
        self.events.append("release")

    def _stop_shards(self) -> None:
        self.stops += 1
        self.events.append("stop")

    async def _close(self) -> None:
        self.closed = True


async def test_no_shard_reports_before_every_shard_is_ready() -> None:
    config = SimulationConfig(devices=10, duration=1.0)
    runner = FakeRunner(config, _targets(config, 2))
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        runner.go[0].set()
        await anyio.wait_all_tasks_blocked()
        assert runner.events == ["start"]  # shard 0 is ready but waits for shard 1
        runner.go[1].set()
    assert runner.events[:2] == ["start", "release"] and sorted(runner.events[2:4]) == ["report 0", "report 1"]
    assert runner.closed and runner.progress().phase == "done"
    assert runner.progress().states_sent == 20


async def test_the_merged_report_is_the_sum_of_the_shards() -> None:
    config = SimulationConfig(devices=7, duration=1.0)
    runner = FakeRunner(config, _targets(config, 3))
    for ev in runner.go:
        ev.set()
    report = await runner.run()
    assert report.states_sent == 14 and report.devices == 7 and len(report.parts) == 3


async def test_a_stop_before_the_start_reaches_every_shard_and_releases_the_waiting_ones() -> None:
    config = SimulationConfig(devices=4, duration=1.0)
    runner = FakeRunner(config, _targets(config, 2))
    runner.stop()
    runner.go[0].set()
    runner.go[1].set()
    report = await runner.run()
    assert "release" not in runner.events and runner.events[1] == "stop"
    assert report.interrupted and report.states_sent == 0 and runner.closed


async def test_a_failing_shard_stops_the_others_and_is_raised_by_name() -> None:
    config = SimulationConfig(devices=4, duration=1.0)
    runner = FakeRunner(config, _targets(config, 2), fail=1)
    runner.go[1].set()  # shard 1 fails while shard 0 has not started yet
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            with pytest.raises(ShardFailedError, match=r"shard 2/2 failed: boom"):
                await runner.run()

        tg.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        assert runner.stops == 1  # shard 0 was told to stop at once
        runner.go[0].set()  # and it is not left waiting for a release that cannot come
    assert runner.closed and "release" not in runner.events


async def test_a_runner_needs_shards_and_runs_once() -> None:
    config = SimulationConfig(devices=2, duration=1.0)
    with pytest.raises(ValidationError, match="a fake runner needs at least one shard"):
        FakeRunner(config, [])
    with pytest.raises(ValidationError, match="the target has 1 devices but 2 were asked for"):
        FakeRunner(config, _targets(SimulationConfig(devices=2), 2)[:1])
    runner = FakeRunner(config, _targets(config, 1))
    runner.go[0].set()
    await runner.run()
    with pytest.raises(ValidationError, match="runs once"):
        await runner.run()


def test_a_finished_shards_progress_carries_the_commands_due_from_its_report() -> None:
    from losant_async.simulator._shard_runner import empty_progress, final_progress

    config = SimulationConfig(devices=4, duration=3.0, command_interval=1.0)
    stats = SimulationStats(states_sent=12, commands_sent=2, commands_received=2, commands_scheduled=3)
    report = build_report(config, stats, gateways=0, run_seconds=3.0, connect_seconds=0.0, states_stored=None,
                          interrupted=False, embedded=False, peak_rss=None, machine={})
    done = final_progress(empty_progress(config), report)
    assert (done.phase, done.states_sent, done.commands_sent) == ("done", 12, 2)
    assert done.commands_scheduled == report.commands_scheduled == 3

"""``simulate`` at scale against the embedded emulator: commands counted honestly under load, shards, processes, Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli._cli import run_cli

pytestmark = pytest.mark.timeout(240)


def _report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _explain(done: Any) -> str:
    return f"rc={done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"


async def _loaded_run(tmp_path: Path, *extra: str) -> tuple[Any, dict[str, Any]]:
    # A few hundred devices at a raised rate: enough state traffic that commands used to stall
    # behind it (received only while draining, or never) while the run still said OK.
    out = tmp_path / "load.json"
    done = await run_cli(["simulate", "--devices", "300", "--rate", "3", "--duration", "6",
                          "--command-interval", "0.5", "--json", str(out), *extra], timeout=200)
    return done, _report(out)


async def test_every_command_sent_to_a_fleet_busy_reporting_state_is_counted(tmp_path: Path) -> None:
    done, report = await _loaded_run(tmp_path, "--command-wait", "20")
    assert report["states_sent"] == report["states_stored"] == report["states_expected"] == 5400
    assert report["commands_sent"] > 0
    assert report["commands_received"] == report["commands_sent"], _explain(done)
    assert report["commands_lost"] == 0 and report["ok"] is True
    assert report["command_latency_ms"]["p99"] is not None
    assert done.returncode == 0, _explain(done)


async def test_commands_reach_a_busy_fleet_while_it_reports(tmp_path: Path) -> None:
    done, report = await _loaded_run(tmp_path)
    # The live line shows commands as they arrive: some before the reporting ends.
    running = [ln for ln in done.stdout.splitlines() if ln.startswith("running")]
    assert any("commands received 0/" not in ln for ln in running[1:]), _explain(done)
    assert report["commands_lost"] == 0 and report["ok"] is True, _explain(done)


async def test_two_processes_store_every_state_sent_and_the_report_is_the_sum(tmp_path: Path) -> None:
    out = tmp_path / "two.json"
    done = await run_cli(["simulate", "--devices", "80", "--duration", "4", "--processes", "2", "--quiet",
                          "--json", str(out)], timeout=200)
    assert done.returncode == 0, _explain(done)
    report = _report(out)
    assert [s["count"] for s in report["shards"]] == [2, 2] and len(report["parts"]) == 2
    assert report["states_sent"] == report["states_stored"] == report["states_expected"] == 320
    for key in ("devices", "states_expected", "states_sent", "states_stored", "commands_sent",
                "commands_received"):
        assert report[key] == sum(p[key] for p in report["parts"]), key
    assert all(p["states_sent"] > 0 for p in report["parts"])
    assert report["commands_received"] == report["commands_sent"] > 0 and report["ok"] is True
    assert "2 shard processes" in done.stdout


async def test_shards_run_apart_merge_into_the_fleets_report(tmp_path: Path) -> None:
    paths = []
    for k in (1, 2):
        path = tmp_path / f"shard{k}.json"
        done = await run_cli(["simulate", "--devices", "30", "--duration", "2", "--shard", f"{k}/2", "--quiet",
                              "--seed", "5", "--json", str(path)], timeout=150)
        assert done.returncode == 0, _explain(done)
        one = _report(path)
        assert one["devices"] == 15 and one["shards"] == [
            {"index": k - 1, "count": 2, "first": 15 * (k - 1), "devices": 15}]
        paths.append(str(path))
    merged_path = tmp_path / "merged.json"
    done = await run_cli(["report", "merge", *paths, "--json", str(merged_path)])
    assert done.returncode == 0, _explain(done)
    merged = _report(merged_path)
    parts = [_report(Path(p)) for p in paths]
    assert merged["devices"] == merged["fleet_devices"] == 30
    for key in ("states_sent", "states_stored", "states_expected", "commands_sent", "commands_received"):
        assert merged[key] == sum(p[key] for p in parts), key
    assert merged["states_expected"] == 60 and merged["ok"] is True
    assert "Simulation summary" in done.stdout


async def test_ctrl_c_stops_every_shard_process_and_reports_what_they_did(tmp_path: Path) -> None:
    import asyncio
    import signal
    import sys

    from tests.integration.cli._cli import cli_env

    psutil = pytest.importorskip("psutil", reason="psutil (bench extra) lists the child processes")
    out = tmp_path / "int.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "losant_async.cli", "simulate", "--devices", "20", "--duration", "120",
        "--processes", "2", "--json", str(out), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )
    try:
        assert proc.stdout is not None

        async def until_running() -> None:
            while True:
                line = await proc.stdout.readline()  # type: ignore[union-attr]
                assert line, "the simulator exited before running"
                if line.startswith(b"running") and b"sent 0 " not in line:
                    return

        await asyncio.wait_for(until_running(), 120)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # the emulator and two shards
        proc.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130, err.decode()
    assert "Simulation summary" in rest.decode() and "Traceback" not in err.decode()
    report = _report(out)
    assert report["interrupted"] is True and report["ok"] is False
    assert 0 < report["states_sent"] < report["states_expected"]
    assert report["states_stored"] == report["states_sent"]
    assert len(report["parts"]) == 2
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, alive

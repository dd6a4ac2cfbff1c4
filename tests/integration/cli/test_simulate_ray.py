"""``simulate --ray`` end to end: a local Ray (127.0.0.1, 2 CPUs, no dashboard) runs 2 shard actors."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli._cli import cli_env, run_cli

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                       reason="the ray extra is not installed (pip install 'losant-async[ray]')"),
]


async def test_a_local_ray_runs_two_actors_and_merges_their_reports(tmp_path: Path) -> None:
    out = tmp_path / "ray.json"
    done = await run_cli(["simulate", "--ray", "--devices", "40", "--devices-per-actor", "20",
                          "--duration", "3", "--json", str(out)], timeout=280)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    report = json.loads(out.read_text())
    assert [(s["index"], s["count"], s["devices"]) for s in report["shards"]] == [(0, 2, 20), (1, 2, 20)]
    assert report["states_sent"] == report["states_stored"] == report["states_expected"] == 120
    assert sum(p["states_sent"] for p in report["parts"]) == 120
    assert all(p["states_sent"] == 60 for p in report["parts"])
    assert report["commands_received"] == report["commands_sent"] > 0 and report["ok"] is True
    assert "2 shards as actors on a local Ray" in done.stdout
    assert "Traceback" not in done.stderr
    # Ray's notice that it turned token auth on for the new cluster is not printed on every run.
    assert "Token authentication is enabled" not in done.stdout + done.stderr


async def test_a_failing_actor_is_reported_and_every_actor_stopped(tmp_path: Path) -> None:
    from losant_async.testing import LocalLosant

    async with LocalLosant(throttle=False) as losant:
        app = losant.create_application(name="ray failure")
        key = app.create_access_key()
        ids = [app.create_device(name=f"d{i}", attributes={"temperature": "number"}).id for i in range(4)]
        ids_file = tmp_path / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        done = await run_cli([
            "simulate", "--ray", "--devices", "4", "--devices-per-actor", "2", "--duration", "30", "--quiet",
            "--broker", f"mqtt://{losant.mqtt_host}:{losant.mqtt_port}", "--url", losant.rest_url,
            "--application", app.id, "--key", key.key, "--secret", "not-the-secret",
            "--device-ids", str(ids_file), "--no-throttle",
        ], timeout=280)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "(Ray actor) failed" in done.stderr and "AuthenticationRefusedError" in done.stderr
    assert "not-the-secret" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("when", ["starting", "running"])
async def test_ctrl_c_stops_every_actor_and_ray_itself(tmp_path: Path, when: str) -> None:
    # "starting": Ctrl-C while the local Ray is still coming up (the driver's loop must still answer);
    # "running": while the actors report. Either way the run ends interrupted and no Ray process stays.
    psutil = pytest.importorskip("psutil", reason="psutil (bench extra) lists the child processes")
    out = tmp_path / "int.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "losant_async.cli", "simulate", "--ray", "--devices", "20", "--devices-per-actor",
        "10", "--duration", "120", "--json", str(out), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )
    seen: dict[int, Any] = {}

    async def watch_children() -> None:
        # Ray's processes (GCS, raylet, agents, actors) come and go while Ray starts: each one seen is kept.
        root = psutil.Process(proc.pid)
        while True:
            with contextlib.suppress(psutil.Error):
                for child in root.children(recursive=True):
                    seen.setdefault(child.pid, child)
            await asyncio.sleep(0.1)  # sampling the process table; there is no event to wait on

    watcher = asyncio.create_task(watch_children())
    try:
        assert proc.stdout is not None
        # The first live line comes once the driver handles Ctrl-C itself and has begun starting Ray.
        marker = b"starting" if when == "starting" else b"running"

        async def until_marker() -> None:
            while True:
                line = await proc.stdout.readline()  # type: ignore[union-attr]
                assert line, f"the simulator exited before {marker!r}"
                if line.startswith(marker) and (when == "starting" or b"sent 0 " not in line):
                    return

        await asyncio.wait_for(until_marker(), 240)
        proc.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(proc.communicate(), 180)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130, err.decode()
    assert "Traceback" not in err.decode() and "SIGTERM handler" not in err.decode()
    assert "Simulation summary" in rest.decode()
    report = json.loads(out.read_text())
    assert report["interrupted"] is True and report["ok"] is False
    assert report["states_sent"] < report["states_expected"]
    assert report["states_stored"] == report["states_sent"]
    if when == "running":
        assert report["states_sent"] > 0 and len(report["parts"]) == 2
    assert len(seen) >= 2, seen  # the emulator and Ray's processes at least
    _gone, alive = psutil.wait_procs(list(seen.values()), timeout=60)
    assert not alive, [p.pid for p in alive]

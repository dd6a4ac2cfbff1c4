"""``simulate --ray`` end to end: a local Ray (127.0.0.1, 2 CPUs, no dashboard) runs 2 shard actors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.integration.cli._cli import run_cli

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

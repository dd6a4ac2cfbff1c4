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

"""``losant-async emulator --data-dir/--seed`` and ``emulator export`` as real processes: a restart keeps the world,
a second emulator on the directory refuses, /health answers, export writes what --seed reads."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from losant_async.rest import LosantClient
from tests.integration.cli._cli import cli_env, run_cli

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]


@asynccontextmanager
async def _emulator(*args: str) -> AsyncIterator[tuple[str, list[str]]]:
    """A running ``losant-async emulator``: its REST URL and the lines it printed; SIGTERM at the end."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "losant_async.cli", "emulator", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )
    assert proc.stdout is not None
    lines: list[str] = []

    async def until_ready() -> None:
        while True:
            raw = await proc.stdout.readline()  # type: ignore[union-attr]
            if not raw:
                raise AssertionError("the emulator exited early:\n" + "".join(lines))
            lines.append(raw.decode())
            if lines[-1].startswith(("Demo application", "Seed ", "Restored ")):
                return

    try:
        await asyncio.wait_for(until_ready(), 30)
        rest_url = next(line.split()[-1] for line in lines if "REST API:" in line)
        yield rest_url, lines
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert "Emulator stopped." in out.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_seed_restart_health_export_and_the_lock(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({
        "applications": [{
            "name": "factory",
            "devices": [{"name": "gw", "deviceClass": "gateway"},
                        {"name": "p1", "deviceClass": "peripheral", "parent": "gw", "attributes": {"t": "number"}}],
            "keys": [{"name": "k"}],
            "tokens": [{"name": "ci", "token": "ci-token-0123456789abcdef"}],
        }],
    }))
    async with _emulator("--data-dir", str(data), "--seed", str(seed)) as (rest_url, lines):
        text = "".join(lines)
        assert f"Data:       {data}" in text and "Health:" in text
        filled = json.loads(seed.read_text())  # the generated ids and secrets were written back
        app = filled["applications"][0]
        assert len(app["id"]) == 24 and app["keys"][0]["secret"]
        async with LosantClient("ci-token-0123456789abcdef", url=rest_url, max_retries=0) as client:
            p1 = next(d for d in app["devices"] if d["name"] == "p1")
            await client.device.send_state(application_id=app["id"], device_id=p1["id"], device_state={"data": {"t": 21.5}})
        async with aiohttp.ClientSession() as session, session.get(f"{rest_url}/health") as response:
            health = await response.json()
        assert health["status"] == "ok" and health["devices"] == 2 and health["dataDir"] == str(data)
        assert "ci-token" not in json.dumps(health)
        second = await run_cli(["emulator", "--data-dir", str(data)], timeout=60)
        assert second.returncode != 0
        assert "in use by another emulator" in second.stderr and "Traceback" not in second.stderr

    async with _emulator("--data-dir", str(data)) as (rest_url, lines):
        assert any(line.startswith("Restored 1 application(s) and 2 device(s)") for line in lines)
        assert not any("Demo application" in line for line in lines)
        async with LosantClient("ci-token-0123456789abcdef", url=rest_url, max_retries=0) as client:
            states = await client.device.get_state(application_id=app["id"], device_id=p1["id"], raw=True)
            assert [s["data"] for s in states] == [{"t": 21.5}]
        exported = await run_cli(["emulator", "export", str(tmp_path / "out.json"), "--data-dir", str(data)])
        assert exported.returncode == 0, exported.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    (out_app,) = out["applications"]
    assert out_app["id"] == app["id"]
    assert {d["id"] for d in out_app["devices"]} == {d["id"] for d in app["devices"]}
    assert out_app["keys"][0]["key"] == app["keys"][0]["key"] and out_app["keys"][0]["secret"] == app["keys"][0]["secret"]
    assert [t["token"] for t in out_app["tokens"]] == ["ci-token-0123456789abcdef"]


async def test_a_bad_seed_fails_before_anything_listens(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"applications": [{"name": "a", "devices": [{"name": "d", "deviceClass": "toaster"}]}]}))
    done = await run_cli(["emulator", "--seed", str(seed)], timeout=60)
    assert done.returncode == 2 and "REST API" not in done.stdout
    assert "applications[0].devices[0]: device class must be one of" in done.stderr

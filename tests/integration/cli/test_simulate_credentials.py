"""``simulate`` with explicit credentials (the real-Losant path), pointed at an emulator on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from losant_async.testing import LocalLosant
from tests.integration.cli._cli import run_cli

pytestmark = pytest.mark.timeout(90)


async def test_devices_created_over_rest_report_and_receive_commands(tmp_path: Path) -> None:
    async with LocalLosant(throttle=False) as losant:
        app = losant.create_application(name="mine")
        key = app.create_access_key()
        token = app.create_api_token(scopes=["all.Application"])
        out = tmp_path / "real.json"
        done = await run_cli([
            "simulate", "--devices", "4", "--duration", "3", "--quiet", "--json", str(out),
            "--url", losant.rest_url, "--broker", f"mqtt://{losant.mqtt_host}:{losant.mqtt_port}",
            "--application", app.id, "--key", key.key, "--secret", key.secret, "--token", token,
            "--no-throttle",
        ])
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(out.read_text())
        # Not the embedded emulator, yet nothing goes unchecked: stored states are counted over REST.
        assert report["embedded_emulator"] is False and report["states_stored"] == 12
        assert report["states_sent"] == 12 and report["states_lost"] == 0
        assert report["commands_received"] == report["commands_sent"] > 0
        assert key.secret not in done.stdout + done.stderr and token not in done.stdout + done.stderr
        devices = [d async for d in _devices(losant, app.id, token)]
        assert len(devices) == 4
        stored = sum(len(losant.states(d)) for d in devices)
        assert stored == 12


async def _devices(losant: LocalLosant, application_id: str, token: str) -> AsyncIterator[str]:
    from losant_async.rest import LosantClient

    async with LosantClient(token, url=losant.rest_url) as client:
        async for d in client.devices.get(application_id=application_id):
            assert isinstance(d.id, str)
            yield d.id


async def test_wrong_secret_is_one_clear_line(tmp_path: Path) -> None:
    async with LocalLosant(throttle=False) as losant:
        app = losant.create_application(name="mine")
        key = app.create_access_key()
        dev = app.create_device(name="d", device_class="standalone", attributes={"temperature": "number"})
        ids = tmp_path / "ids.txt"
        ids.write_text(dev.id + "\n")
        done = await run_cli([
            "simulate", "--devices", "1", "--duration", "1", "--quiet",
            "--broker", f"mqtt://{losant.mqtt_host}:{losant.mqtt_port}", "--url", losant.rest_url,
            "--application", app.id, "--key", key.key, "--secret", "not-the-secret",
            "--device-ids", str(ids), "--no-throttle",
        ], timeout=60)
        assert done.returncode == 1, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("losant-async: error: "), done.stderr
        assert "not-the-secret" not in done.stderr


async def test_gateway_mode_creates_a_gateway_and_peripherals_over_rest_and_throttles(tmp_path: Path) -> None:
    async with LocalLosant(throttle=False) as losant:
        app = losant.create_application(name="mine")
        key = app.create_access_key()
        token = app.create_api_token(scopes=["all.Application"])
        out = tmp_path / "gw.json"
        # No --no-throttle: the real-Losant path keeps to Losant's limits (0.5 states/s is within them).
        done = await run_cli([
            "simulate", "--gateway", "--devices", "3", "--rate", "0.5", "--duration", "4", "--quiet",
            "--json", str(out), "--url", losant.rest_url,
            "--broker", f"mqtt://{losant.mqtt_host}:{losant.mqtt_port}",
            "--application", app.id, "--key", key.key, "--secret", key.secret, "--token", token,
        ])
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(out.read_text())
        assert report["gateways"] == 1 and report["states_sent"] == 6
        from losant_async.rest import LosantClient

        async with LosantClient(token, url=losant.rest_url) as client:
            classes = sorted([str(d.device_class) async for d in client.devices.get(application_id=app.id)])
        assert classes == ["gateway", "peripheral", "peripheral", "peripheral"]

"""``losant-async certificates DIR`` then ``emulator --mqtt-tls DIR``: a device connects with the certificate made."""

from __future__ import annotations

import asyncio
import signal
import ssl
import stat
import sys
from pathlib import Path

import pytest

from losant_async import Device
from tests.integration.cli._cli import cli_env, run_cli

pytestmark = pytest.mark.timeout(90)


async def test_the_test_certificates_connect_a_demo_device_over_tls(tmp_path: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("POSIX signals")
    made = await run_cli(["certificates", str(tmp_path), "--name", "sensor-1"])
    assert made.returncode == 0, made.stderr
    for name in ("ca.pem", "server.pem", "device.pem"):
        assert (tmp_path / name).read_text().startswith("-----BEGIN CERTIFICATE-----")
    for name in ("ca.key", "server.key", "device.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600  # keys: the owner only

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "losant_async.cli", "emulator", "--mqtt-tls", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not any("Device(<device id>" in line for line in lines):
            raw = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert raw, "the emulator exited early:\n" + "".join(lines)
            lines.append(raw.decode())
        mqtt = next(line.split()[-1] for line in lines if "MQTT:" in line)
        assert mqtt.startswith("mqtts://127.0.0.1:")
        port = int(mqtt.rsplit(":", 1)[1])
        sensor = next(line.split()[1] for line in lines if line.strip().startswith("sensor-1 "))
        tls = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        device = Device(sensor, certificate=(tmp_path / "device.pem", tmp_path / "device.key"),
                        host="127.0.0.1", port=port, tls_context=tls)
        async with device:
            await device.send_state({"temperature": 20.5})
            await device.flush()
            assert device.connected
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

"""``losant-async emulator``: starts, prints its URLs and demo credentials, stops cleanly on a signal."""

from __future__ import annotations

import asyncio
import signal
import sys
from urllib.parse import urlsplit

import pytest

from tests.integration.cli._cli import cli_env

pytestmark = pytest.mark.timeout(60)


async def _read_until(stream: asyncio.StreamReader, marker: str, timeout: float) -> list[str]:
    lines: list[str] = []

    async def read() -> None:
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError("the emulator exited early:\n" + "".join(lines))
            lines.append(raw.decode())
            if marker in lines[-1]:
                return

    await asyncio.wait_for(read(), timeout)
    return lines


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_emulator_prints_urls_and_stops_on_a_signal(sig: signal.Signals) -> None:
    if sys.platform == "win32":
        pytest.skip("POSIX signals")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "losant_async.cli", "emulator",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        lines = await _read_until(proc.stdout, "losant-async simulate", timeout=30)
        text = "".join(lines)
        rest_url = next(line.split()[-1] for line in lines if "REST API:" in line)
        mqtt_url = next(line.split()[-1] for line in lines if "MQTT:" in line)
        assert urlsplit(rest_url).hostname == "127.0.0.1"
        assert urlsplit(mqtt_url).hostname == "127.0.0.1"
        assert "access secret:" in text and "API token:" in text and "sensor-1" in text
        # The export lines carry everything the README's REST and MQTT snippets read.
        exported = dict(
            pair.split("=", 1) for line in lines if line.strip().startswith("export ") for pair in line.split()[1:]
        )
        for name in ("LOSANT_URL", "LOSANT_APPLICATION_ID", "LOSANT_API_TOKEN", "LOSANT_ACCESS_KEY",
                     "LOSANT_ACCESS_SECRET", "LOSANT_DEVICE_ID"):
            assert exported.get(name), name
        sensor_id = next(line.split()[1] for line in lines if line.strip().startswith("sensor-1 "))
        assert exported["LOSANT_DEVICE_ID"] == sensor_id
        # The REST port answers while it runs.
        port = urlsplit(rest_url).port
        assert port
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        writer.close()
        await writer.wait_closed()

        proc.send_signal(sig)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert "Emulator stopped." in out.decode()
        assert "Traceback" not in err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

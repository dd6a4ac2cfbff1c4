"""Helpers: run ``python -m losant_async.cli`` as a real subprocess, with no Losant credentials in its environment."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

LOSANT_ENV = ("LOSANT_URL", "LOSANT_BROKER", "LOSANT_APPLICATION_ID", "LOSANT_ACCESS_KEY",
              "LOSANT_ACCESS_SECRET", "LOSANT_API_TOKEN", "LOSANT_MQTT_HOST", "LOSANT_MQTT_PORT",
              "LOSANT_MQTT_TRANSPORT", "LOSANT_DEVICE_ID", "LOSANT_LOG")


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LOSANT_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(args: Sequence[str], *, timeout: float = 90.0) -> Completed:
    """Run the CLI to completion (asyncio subprocess: the test's event loop stays free for an emulator)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "losant_async.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Completed(proc.returncode, out.decode(), err.decode())


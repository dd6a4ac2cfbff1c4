"""``losant-async simulate`` end to end, as a subprocess against the embedded emulator."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli._cli import cli_env, run_cli

pytestmark = pytest.mark.timeout(120)


def _report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _explain(done: Any) -> str:
    return f"rc={done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"


async def test_fifty_devices_over_mqtt_store_every_state_sent(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    done = await run_cli(["simulate", "--devices", "50", "--duration", "5", "--json", str(out)])
    assert done.returncode == 0, _explain(done)
    report = _report(out)
    assert report["states_sent"] == report["states_stored"] == report["states_expected"] == 250
    assert report["states_lost"] == 0 and report["errors"] == 0 and report["ok"] is True
    assert report["devices"] == 50 and report["embedded_emulator"] is True
    assert report["commands_sent"] > 0
    assert report["commands_received"] == report["commands_sent"]
    assert report["peak_rss_bytes"] > 0 and report["machine"]["cpu_count"] >= 1
    assert "embedded Losant emulator" in done.stdout
    assert "Simulation summary" in done.stdout
    # Not a terminal: plain progress lines, no escape codes.
    assert "states/s | sent" in done.stdout and "\x1b[" not in done.stdout
    assert "Traceback" not in done.stderr


async def test_rest_transport_stores_every_state(tmp_path: Path) -> None:
    out = tmp_path / "rest.json"
    done = await run_cli(["simulate", "--transport", "rest", "--devices", "5", "--rate", "2",
                          "--duration", "2", "--quiet", "--json", str(out)])
    assert done.returncode == 0, _explain(done)
    report = _report(out)
    assert report["transport"] == "rest"
    assert report["states_sent"] == report["states_stored"] == 20


async def test_gateways_carry_their_peripherals_states_and_commands(tmp_path: Path) -> None:
    out = tmp_path / "gw.json"
    done = await run_cli(["simulate", "--gateway", "--devices", "60", "--duration", "3", "--quiet",
                          "--json", str(out)])
    assert done.returncode == 0, _explain(done)
    report = _report(out)
    assert report["gateways"] == 2
    assert report["states_sent"] == report["states_stored"] == 180
    assert report["commands_sent"] > 0
    assert report["commands_received"] == report["commands_sent"]


async def test_qos1_counts_acknowledged_states(tmp_path: Path) -> None:
    out = tmp_path / "qos1.json"
    done = await run_cli(["simulate", "--qos", "1", "--devices", "5", "--duration", "2", "--quiet",
                          "--json", str(out)])
    assert done.returncode == 0, _explain(done)
    report = _report(out)
    assert report["states_sent"] == report["states_stored"] == report["states_acked"] == 10


async def test_ctrl_c_stops_the_run_and_prints_the_summary_so_far(tmp_path: Path) -> None:
    out = tmp_path / "int.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "losant_async.cli", "simulate", "--devices", "10", "--duration", "60",
        "--json", str(out), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(),
    )
    try:
        assert proc.stdout is not None

        async def until_running() -> None:
            while True:
                line = await proc.stdout.readline()  # type: ignore[union-attr]
                assert line, "the simulator exited before running"
                if line.startswith(b"running"):
                    return

        await asyncio.wait_for(until_running(), 30)
        proc.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(proc.communicate(), 30)
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

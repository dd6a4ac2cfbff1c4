"""The simulator example against the emulator: every state sent is stored, commands reach their device."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from examples._support import load_example, run_script

sim = load_example("simulator/simulator.py")


def fleet(losant: Any, n: int) -> tuple[list[str], Any]:
    app = losant.create_application(name="simulator test")
    ids = [app.create_device(name=f"sim-{i}", attributes=sim.ATTRIBUTES).id for i in range(n)]
    key = app.create_access_key()
    broker = sim.Broker(host=losant.mqtt_host, port=losant.mqtt_port, transport="tcp", key=key.key, secret=key.secret)
    return ids, broker


async def check_stored(losant: Any, report: Any) -> None:
    for device_id, sent in report.sent.items():
        await losant.wait_for_states(device_id, sent, timeout=10)
        assert losant.store.accepted_count(device_id) == sent
        assert len(losant.states(device_id)) == sent  # distinct timestamps: nothing merged


@pytest.mark.parametrize("qos", [0, 1])
async def test_every_state_sent_is_stored(losant_emulator: Any, qos: int) -> None:
    ids, broker = fleet(losant_emulator, 6)

    report = await sim.simulate(ids, broker, duration=1.0, rate=20, ramp_up=0.2, qos=qos)

    assert not report.errors
    # Sines and walks report on every tick (bursts only now and then).
    assert all(report.sent[d] > 0 for i, d in enumerate(ids) if i % 3 != 2), report.sent
    assert set(report.by_profile) == {"sine", "walk", "bursts"}
    assert report.total == sum(report.by_profile.values())
    await check_stored(losant_emulator, report)


async def test_commands_reach_their_device_handler(losant_emulator: Any) -> None:
    ids, broker = fleet(losant_emulator, 6)  # profiles in turn: sine, walk, bursts, sine, walk, bursts
    sine, walk, bursty, other = ids[0], ids[1], ids[2], ids[3]
    stop = asyncio.Event()

    async def operator() -> None:
        await losant_emulator.wait_for_states(ids[4], 1, timeout=10)  # the last walk: everyone has started
        await losant_emulator.send_command(bursty, "burst")
        await losant_emulator.send_command(sine, "set_rate", {"per_second": 50})
        await losant_emulator.send_command(walk, "pause")
        await losant_emulator.send_command(other, "self_destruct")  # unknown: ignored
        # The burst is the last command to take effect in a visible way: wait for it, then stop.
        await losant_emulator.wait_for_states(bursty, losant_emulator.store.accepted_count(bursty) + 3, timeout=10)
        stop.set()

    task = asyncio.ensure_future(operator())
    report = await asyncio.wait_for(
        sim.simulate(ids, broker, duration=60, rate=5, ramp_up=0.1, stop=stop), 30
    )
    await task

    assert report.commands == {bursty: ["burst"], sine: ["set_rate"], walk: ["pause"]}
    await check_stored(losant_emulator, report)
    events = [s.data["events"] for s in losant_emulator.states(bursty)]
    assert events == [float(n) for n in range(1, len(events) + 1)]  # counted without a gap


async def test_runs_standalone_on_an_embedded_emulator(tmp_path: Path) -> None:
    result = await run_script(
        "simulator/simulator.py", "--devices", "6", "--duration", "1", "--rate", "5", "--ramp-up", "0.2", cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    stored = re.search(r"stored (\d+) of (\d+) states", result.stdout)
    assert stored and stored.group(1) == stored.group(2) and int(stored.group(1)) > 0, result.stdout
    assert "states/s" in result.stdout

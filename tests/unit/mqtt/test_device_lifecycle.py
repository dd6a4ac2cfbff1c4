"""The facade's lifecycle without a broker: one task group, a failure surfaced at once, nothing left running."""

from __future__ import annotations

import asyncio

import pytest

from losant_async.errors import DeviceClosedError
from losant_async.mqtt import ConnectionState, Device
from losant_async.mqtt._session import Session


async def test_a_bug_in_the_supervisor_surfaces_at_once_on_the_next_call_and_in_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    device = Device("0123456789abcdef01234567", "k", "s", host="127.0.0.1", transport="tcp", wait_ready=False)

    async def broken_connect(self: Session) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(Session, "connect", broken_connect)
    events = device.events()
    async with device:
        failed = await events.get(10)
        while failed.state is not ConnectionState.FAILED:
            failed = await events.get(10)
        assert "boom" in failed.reason and failed.device_id == device.device_id
        with pytest.raises(RuntimeError, match="boom"):
            await device.send_state({"n": 1})
        with pytest.raises(RuntimeError, match="boom"):
            await device.wait_connected(10)
        late = device.events()  # a listener that arrives later still learns why
        assert (await late.get(1)).state is ConnectionState.FAILED
    assert device._life.tasks.task is not None and device._life.tasks.task.done()


async def test_side_tasks_run_in_the_task_group_and_stop_with_the_device() -> None:
    device = Device("0123456789abcdef01234567", "k", "s", host="127.0.0.1", port=1, transport="tcp",
                    wait_ready=False)
    started = asyncio.Event()
    stopped = asyncio.Event()

    async def side() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    events = device.events()
    async with device:
        # CONNECTING is emitted by the supervisor, inside the task group: the group is up.
        assert (await events.get(10)).state is ConnectionState.CONNECTING
        assert device._life.tasks.tg is not None
        device._spawn(side(), "test-side")
        await asyncio.wait_for(started.wait(), 10)
    assert stopped.is_set()  # cancelled by closing, not orphaned
    with pytest.raises(DeviceClosedError):
        await device.send_state({"n": 1})
    leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and "losant" in t.get_name()]
    assert leftovers == []

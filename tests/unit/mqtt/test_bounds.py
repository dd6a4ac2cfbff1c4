"""Bounds of the device layer (issue 19): async command callbacks, incoming packet size, LOSANT_LOG on import."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable
from typing import Any

import msgspec
import pytest

from losant_async.mqtt import Command
from losant_async.mqtt._connection.wire import PacketTooLarge, ReadBuffered
from losant_async.mqtt._inbox import MAX_RUNNING_CALLBACKS, Inbox, _worth_logging

DEV = "0123456789abcdef01234567"
TOPIC = f"losant/{DEV}/command"
COMMAND = msgspec.json.encode({"name": "go", "payload": None})


class Group:
    """Stands in for the device's task group: runs what the inbox spawns as tasks."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, awaitable: Awaitable[Any], name: str) -> None:
        async def run() -> None:
            await awaitable

        task = asyncio.ensure_future(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


@pytest.mark.parametrize("flood", [5_000, 100_000])
async def test_a_flood_into_an_async_callback_runs_a_bounded_number_and_counts_the_dropped(flood: int) -> None:
    group, release, started = Group(), asyncio.Event(), []

    async def slow(command: Command) -> None:
        started.append(command)
        await release.wait()

    inbox = Inbox(DEV, stream_size=500, overflow="drop_oldest", spawn=group.spawn)
    inbox.add_callback(DEV, slow)
    for _ in range(flood):
        inbox.on_message(TOPIC, COMMAND)
    await asyncio.sleep(0)
    assert len(group.tasks) == MAX_RUNNING_CALLBACKS == len(started)
    assert inbox.callbacks_dropped == flood - MAX_RUNNING_CALLBACKS - 500 and inbox.commands == flood
    release.set()
    while group.tasks:
        await asyncio.wait(set(group.tasks))
    assert len(started) == MAX_RUNNING_CALLBACKS + 500  # every queued one ran, no more tasks at once


async def test_with_overflow_wait_a_full_callback_queue_pauses_reading_until_half_drained() -> None:
    group, release, pauses = Group(), asyncio.Event(), []

    async def slow(command: Command) -> None:
        await release.wait()

    inbox = Inbox(DEV, stream_size=10, overflow="wait", spawn=group.spawn, pause=pauses.append)
    inbox.add_callback(DEV, slow)
    for _ in range(MAX_RUNNING_CALLBACKS + 10):
        inbox.on_message(TOPIC, COMMAND)
    assert pauses == [True] and inbox.callbacks_dropped == 0
    release.set()
    while group.tasks:
        await asyncio.wait(set(group.tasks))
    assert pauses == [True, False]


async def test_callbacks_waiting_when_the_device_closes_never_start() -> None:
    group, started = Group(), []

    async def slow(command: Command) -> None:
        started.append(command)
        await asyncio.sleep(3600)

    inbox = Inbox(DEV, stream_size=10, overflow="drop_oldest", spawn=group.spawn)
    inbox.add_callback(DEV, slow)
    for _ in range(MAX_RUNNING_CALLBACKS + 10):
        inbox.on_message(TOPIC, COMMAND)
    await asyncio.sleep(0)
    inbox.end()
    for task in group.tasks:
        task.cancel()
    await asyncio.wait(set(group.tasks))
    assert len(started) == MAX_RUNNING_CALLBACKS


def test_drops_are_logged_at_powers_of_ten_not_per_message() -> None:
    assert [n for n in range(1, 20_001) if _worth_logging(n)] == [1, 10, 100, 1000, 10_000]


def test_an_incoming_packet_over_the_cap_is_refused_before_it_is_buffered() -> None:
    a, b = socket.socketpair()
    try:
        reader = ReadBuffered(a, max_packet=1024)
        b.sendall(b"\x00" * 10)
        assert reader.recv(1) == b"\x00" and reader.recv(1024) == b"\x00" * 9  # at the cap: fine
        with pytest.raises(PacketTooLarge) as info:
            reader.recv(200 * 1024 * 1024)  # what paho asks for after a header declaring 200 MB
        assert (info.value.size, info.value.limit) == (200 * 1024 * 1024, 1024)
        assert not isinstance(info.value, OSError)  # paho would take an OSError as a plain hang-up
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("entry", ["import losant_async.mqtt", "from losant_async import Device"])
def test_losant_log_configures_logging_on_import_without_a_client(entry: str) -> None:
    code = f"{entry}\nimport logging\nlogging.getLogger('losant_async.mqtt').info('device layer speaking')"
    env = {**os.environ, "LOSANT_LOG": "info"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "INFO losant_async.mqtt: device layer speaking" in out.stderr


def test_a_bad_losant_log_warns_on_import_and_is_an_error_on_the_first_device() -> None:
    code = (
        "import warnings\nwarnings.simplefilter('always')\nimport losant_async\n"
        "from losant_async import Device, ValidationError\n"
        "try:\n    Device('0123456789abcdef01234567', 'k', 's')\nexcept ValidationError as e:\n    print('raised', e)\n"
    )
    env = {**os.environ, "LOSANT_LOG": "loud"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "LOSANT_LOG='loud'" in out.stderr and out.stdout.startswith("raised LOSANT_LOG='loud'")


def test_the_cap_also_guards_paho_s_websocket_reads() -> None:
    from losant_async.mqtt._connection.wire import Capped

    class Wrapper:  # stands in for paho's _WebsocketWrapper
        def recv(self, length: int) -> bytes:
            return b"y" * min(length, 4)

        def fileno(self) -> int:
            return 42

    capped = Capped(Wrapper(), max_packet=1024)
    assert capped.recv(1024) == b"yyyy" and capped.fileno() == 42
    with pytest.raises(PacketTooLarge):
        capped.recv(1025)

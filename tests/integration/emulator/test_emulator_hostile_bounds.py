"""Hostile peers against the emulator's bounds: nothing a peer sends or leaves unread grows it without limit.

Findings of issue 20, each a test that failed before: a CONNECT (and a SUBSCRIBE)
announcing 268 MB buffered in full, a CONNECT dripped a byte at a time kept for
ever and, under a low descriptor limit, blocking every device and REST call, a
subscriber that never reads growing the broker by all that is published to it.
Memory is the emulator's resident set, measured in this process (it runs the
emulator); descriptors are counted in the subprocess's /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from losant_async.emulator import Device, LocalLosant
from losant_async.emulator._limits import Limits
from tests.integration.emulator.emulator_support import WAIT, RawMqtt, remaining_length

ROOT = Path(__file__).resolve().parents[3]
MB = 1024 * 1024

linux_only = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")


def rss() -> int:
    """This process's resident set, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Fleet:
    def __init__(self, losant: LocalLosant) -> None:
        self.losant = losant
        app = losant.create_application(name="bounds")
        self.app = app
        self.devices: list[Device] = [app.create_device(name=f"d{i}", attributes={"t": "number"}) for i in range(3)]
        self.key = app.create_access_key()
        self.token = app.create_api_token()

    async def connected(self, index: int = 0) -> RawMqtt:
        client = await RawMqtt.open(self.losant.mqtt_port)
        assert await client.connect(self.devices[index].id, self.key.key, self.key.secret) == 0
        return client


def limits(**changes: float) -> Limits:
    return Limits().replace(**changes)


Start = Callable[..., Awaitable[Fleet]]


@pytest_asyncio.fixture
async def start() -> AsyncIterator[Start]:
    """``await start(**limits)``: an emulator with these limits changed, stopped after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def run(**changes: float) -> Fleet:
            losant = await stack.enter_async_context(LocalLosant(ws_port=None, limits=limits(**changes)))
            return Fleet(losant)

        yield run


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait for a condition the server reaches on its own (a reaper round, a closed socket)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def flood(writer: asyncio.StreamWriter, total: int) -> int:
    """Write up to ``total`` bytes; how many the peer let through before it closed."""
    chunk = bytes(MB)
    sent = 0
    try:
        while sent < total:
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), WAIT)
            sent += len(chunk)
    except (ConnectionError, OSError):
        pass
    return sent


async def closed(reader: asyncio.StreamReader) -> None:
    """Read until EOF or reset: the emulator closed the connection."""
    try:
        while await asyncio.wait_for(reader.read(65536), WAIT):
            pass
    except (ConnectionError, OSError):
        pass


@linux_only
async def test_a_268_mb_connect_is_refused_from_its_fixed_header(start: Start) -> None:
    """Before: the whole CONNECT was buffered (+200 MB resident for 200 MB sent)."""
    fleet = await start()
    before = rss()
    reader, writer = await asyncio.open_connection("127.0.0.1", fleet.losant.mqtt_port)
    writer.write(b"\x10" + remaining_length(268_435_455))
    sent = await flood(writer, 200 * MB)
    await closed(reader)
    writer.close()
    grown = rss() - before
    print(f"268 MB CONNECT: {sent // MB} MB accepted before the close, resident set +{grown / MB:.1f} MB")
    assert sent < 200 * MB
    assert grown < 32 * MB
    assert fleet.losant.counters.mqtt_oversize_closed == 1


async def test_a_connect_over_its_cap_is_refused_before_authentication(start: Start) -> None:
    fleet = await start()
    reader, writer = await asyncio.open_connection("127.0.0.1", fleet.losant.mqtt_port)
    writer.write(b"\x10" + remaining_length(Limits().max_connect_bytes + 1))
    await writer.drain()
    await closed(reader)
    writer.close()
    assert fleet.losant.counters.mqtt_oversize_closed == 1
    assert fleet.losant.counters.mqtt_connects_refused == 0  # never got as far as its credentials


async def test_a_268_mb_subscribe_closes_the_session(start: Start) -> None:
    """Before: only PUBLISH had a length check; a SUBSCRIBE of 268 MB was buffered in full."""
    fleet = await start()
    client = await fleet.connected()
    try:
        client.writer.write(b"\x82" + remaining_length(268_435_455) + struct.pack("!H", 1))
        await client.writer.drain()
        await client.wait_closed()
        assert fleet.losant.counters.mqtt_oversize_closed == 1
    finally:
        await client.close()

async def test_the_connect_deadline_is_absolute_however_slowly_it_drips(start: Start) -> None:
    """Before: each byte restarted the 10 s deadline, so one byte a second kept a socket for ever."""
    fleet = await start(connect_deadline_s=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", fleet.losant.mqtt_port)
    connect = b"\x10\x20" + b"\x00\x04MQTT\x04\x02\x00\x0f"
    done = asyncio.ensure_future(closed(reader))
    for byte in connect:  # traffic, not synchronisation: a byte every 0.1 s, far quicker than the deadline
        if done.done():
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(0.1)
    await asyncio.wait_for(done, WAIT)
    writer.close()
    assert fleet.losant.counters.mqtt_connect_timeouts == 1

async def test_silent_sockets_make_room_for_a_device_instead_of_locking_it_out(start: Start) -> None:
    fleet = await start(max_pending_per_address=4)
    silent = [await asyncio.open_connection("127.0.0.1", fleet.losant.mqtt_port) for _ in range(6)]
    await until(lambda: fleet.losant.counters.mqtt_pending_evicted == 2)
    device = await fleet.connected()  # a seventh: the oldest silent one makes room
    try:
        await device.ping()
        assert fleet.losant.counters.mqtt_pending_evicted == 3
        assert fleet.losant.counters.mqtt_connections_refused == 0
    finally:
        await device.close()
        for _reader, writer in silent:
            writer.close()

async def test_over_the_total_cap_of_accepted_sessions_a_connection_gets_connack_3(start: Start) -> None:
    fleet = await start(max_mqtt_connections=2)
    first, second = await fleet.connected(0), await fleet.connected(1)
    third = await RawMqtt.open(fleet.losant.mqtt_port)
    try:
        packet = await third.expect(2)  # CONNACK unasked: the refusal, before any CONNECT
        assert packet.body[1] == 3
        await third.wait_closed()
        assert fleet.losant.counters.mqtt_connections_refused == 1
        await first.ping()
        await second.ping()
    finally:
        for client in (first, second, third):
            await client.close()


@linux_only
async def test_a_subscriber_that_never_reads_loses_qos0_messages_then_its_session(start: Start) -> None:
    """Before: the broker grew by what was published to it (+188 MB for 200 MB) and kept it for ever."""
    fleet = await start(output_soft_bytes=256 * 1024, output_hard_bytes=1024 * 1024, output_stall_s=0.5)
    losant = fleet.losant
    sink = await RawMqtt.open(losant.mqtt_port)
    assert await sink.connect(fleet.devices[0].id, fleet.key.key, fleet.key.secret) == 0
    assert await sink.subscribe("feed") == 0
    sink._reader_task.cancel()  # from now on nothing is read from its socket
    sink.writer.transport.pause_reading()
    publisher = await fleet.connected(1)
    before = rss()
    ended = asyncio.get_running_loop().create_future()

    def on_connection(entry: object) -> None:
        mine = getattr(entry, "device_id", None) == fleet.devices[0].id
        if mine and not getattr(entry, "connected", True) and not ended.done():
            ended.set_result(getattr(entry, "reason", None))

    off = losant.store.on_connection(on_connection)
    try:
        payload = bytes(200 * 1024)
        for _ in range(250):  # 50 MB towards a reader that takes none of it
            await publisher.publish("feed", payload)
        await publisher.ping()
        grown = rss() - before
        dropped = losant.counters.mqtt_slow_consumer_dropped
        print(f"non-reading subscriber: 50 MB published, {dropped} messages dropped, resident set +{grown / MB:.1f} MB")
        assert dropped > 200
        assert grown < 32 * MB
        reason = await asyncio.wait_for(ended, WAIT)  # the reaper ends a session stalled over the limit
        assert reason is not None and reason.startswith("slow consumer")
        assert losant.counters.mqtt_slow_consumer_closed == 1
    finally:
        off()
        await publisher.close()
        await sink.close()


_CHILD = """
import asyncio, json, os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
from losant_async.emulator import LocalLosant

async def main():
    async with LocalLosant(ws_port=None) as losant:
        app = losant.create_application(name="drip")
        device = app.create_device(name="d", attributes={"t": "number"})
        key = app.create_access_key()
        print(json.dumps({"mqtt": losant.mqtt_port, "rest": losant.rest_url, "device": device.id, "app": app.id,
                          "key": key.key, "secret": key.secret, "token": app.create_api_token()}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        print(json.dumps(losant.counters.as_dict()), flush=True)

asyncio.run(main())
"""


@linux_only
async def test_a_drip_flood_under_a_low_descriptor_limit_blocks_neither_mqtt_nor_rest() -> None:
    """Before: 1,100 dripping sockets under 1,024 descriptors left devices without CONNACK and REST timing out."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    drips: list[asyncio.StreamWriter] = []
    try:
        assert child.stdout is not None and child.stdin is not None
        world = json.loads(await asyncio.wait_for(child.stdout.readline(), 30))
        for _ in range(400):  # more sockets than the emulator has descriptors
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", world["mqtt"])
            except OSError:
                continue
            writer.write(b"\x10")  # the first byte of a CONNECT, and no more
            drips.append(writer)
        descriptors = len(os.listdir(f"/proc/{child.pid}/fd"))
        device = await RawMqtt.open(world["mqtt"])
        try:
            assert await device.connect(world["device"], world["key"], world["secret"]) == 0
        finally:
            await device.close()
        url = f"{world['rest']}/applications/{world['app']}"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as http,
            http.get(url, headers={"Authorization": f"Bearer {world['token']}"}) as response,
        ):
            assert response.status == 200
        child.stdin.write(b"done\n")
        counters = json.loads(await asyncio.wait_for(child.stdout.readline(), WAIT))
        print(f"drip flood: 400 sockets, emulator at {descriptors} of 256 descriptors, "
              f"{counters['mqtt_pending_evicted']} silent connections evicted")
        assert descriptors < 256
        assert counters["mqtt_pending_evicted"] > 0
    finally:
        for writer in drips:
            writer.close()
        if child.returncode is None:
            child.kill()
        await child.wait()


async def test_the_caps_hold_for_mqtt_over_websockets_too() -> None:
    chosen = limits(max_mqtt_connections=2, rest_header_deadline_s=0.3)
    async with contextlib.AsyncExitStack() as stack:
        losant = await stack.enter_async_context(LocalLosant(limits=chosen))  # with its WebSocket listener
        fleet = Fleet(losant)
        for index in (0, 1):
            device = await fleet.connected(index)
            stack.push_async_callback(device.close)
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)))
        ws = await stack.enter_async_context(http.ws_connect(f"http://127.0.0.1:{losant.ws_port}/mqtt", protocols=("mqtt",)))
        message = await ws.receive(timeout=WAIT)  # CONNACK 3 unasked: every connection is an accepted session
        assert message.type == aiohttp.WSMsgType.BINARY and message.data == b"\x20\x02\x00\x03"
        assert losant.counters.mqtt_connections_refused == 1
        # a request head that never completes on the WebSocket port is closed at its deadline too
        reader, writer = await asyncio.open_connection("127.0.0.1", losant.ws_port)
        writer.write(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n")
        await closed(reader)
        writer.close()
        assert losant.counters.rest_timeouts == 1


async def test_a_qos1_message_over_the_output_limit_ends_the_session(start: Start) -> None:
    """QoS 1 cannot be dropped silently: a subscriber too slow for it is disconnected, and that is counted."""
    fleet = await start(output_soft_bytes=64 * 1024, output_hard_bytes=1024 * 1024)
    sink = await fleet.connected(0)
    publisher = await fleet.connected(1)
    try:
        assert await sink.subscribe("feed", qos=1) == 1
        sink._reader_task.cancel()
        sink.writer.transport.pause_reading()
        payload = bytes(200 * 1024)
        for _ in range(50):  # 10 MB at QoS 1 towards a reader that takes none of it
            await publisher.publish("feed", payload, qos=1)
            if fleet.losant.counters.mqtt_slow_consumer_closed:
                break
        await publisher.ping()
        assert fleet.losant.counters.mqtt_slow_consumer_closed == 1
        assert fleet.losant.counters.mqtt_slow_consumer_dropped == 0
        assert not fleet.losant.is_connected(fleet.devices[0].id)
    finally:
        await publisher.close()
        await sink.close()

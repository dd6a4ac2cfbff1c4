"""Promises kept off the happy path: hostile peers, floods, a close while disconnected, TLS on a plain port.

Hostile peers are tiny asyncio servers on loopback written for the purpose (a broker that
sends a huge PUBLISH, or garbage after CONNACK); the rest runs against mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiomqtt
import msgspec
import pytest

from losant_async.errors import TLSHandshakeError
from losant_async.mqtt import Command, ConnectionEvent, ConnectionState, Device, MemoryOutbox
from tests.support.brokers import Broker, free_port
from tests.support.proxy import CuttableProxy

from .conftest import FAST, device_kwargs

DEV = "0123456789abcdef0123f019"

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    remaining, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        remaining |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first >> 4, await reader.readexactly(remaining) if remaining else b""


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


@contextlib.asynccontextmanager
async def hostile_broker(after_subscribe: Behaviour) -> AsyncIterator[tuple[int, list[str]]]:
    """Accepts CONNECT and SUBSCRIBE like a broker, then runs ``after_subscribe``; yields its port and a log."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            kind, _ = await _read_packet(reader)
            assert kind == 1
            writer.write(b"\x20\x02\x00\x00")  # CONNACK accepted
            kind, body = await _read_packet(reader)
            assert kind == 8
            writer.write(b"\x90\x03" + body[:2] + b"\x00")  # SUBACK, QoS 0 granted
            await writer.drain()
            await after_subscribe(reader, writer)
            seen.append("closed by the client" if not await reader.read(1 << 16) else "still open")
        except (asyncio.IncompleteReadError, ConnectionError):
            seen.append("closed by the client")
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()


async def first(events: Any, state: ConnectionState, timeout: float = 10.0) -> ConnectionEvent:
    """The next event in ``state``, within ``timeout`` in all (other events keep coming meanwhile)."""

    async def scan() -> ConnectionEvent:
        while True:
            event: ConnectionEvent = await events.get()
            if event.state is state:
                return event

    return await asyncio.wait_for(scan(), timeout)


class ErrorRecords(logging.Handler):
    """ERROR records from any logger (the library's own, aiomqtt's, paho's, asyncio's)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def quiet_check() -> Any:
    handler = ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    loop = asyncio.get_running_loop()
    unhandled: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(str(context.get("message"))))
    try:
        yield handler.records, unhandled
    finally:
        gc.collect()
        loop.set_exception_handler(previous)
        root.removeHandler(handler)


async def test_a_publish_declaring_200_mb_drops_the_connection_with_a_clear_error() -> None:
    sent = 0

    async def huge_publish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        topic = f"losant/{DEV}/command".encode()
        writer.write(b"\x30" + _remaining_length(200 * 1024 * 1024) + len(topic).to_bytes(2, "big") + topic)
        chunk = b"x" * 65536
        with contextlib.suppress(ConnectionError):
            for _ in range(160):  # 10 MiB of the 200 announced, unless the client hangs up first
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)

    async with hostile_broker(huge_publish) as (port, seen):
        with quiet_check() as (errors, unhandled):
            async with Device(DEV, "key", "secret", host="127.0.0.1", port=port, transport="tcp", backoff=FAST,
                              connect_timeout=5.0) as device:
                events = device.events()
                lost = await first(events, ConnectionState.DISCONNECTED)
                events.close()
        assert "over the limit" in lost.reason and "209715200 bytes" in lost.reason
        assert seen and seen[0] == "closed by the client"
        assert sent < 10 * 1024 * 1024  # the client hung up before the peer could send it all
        assert errors == [] and unhandled == []


async def test_garbage_after_connack_is_a_lost_connection_without_noise() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\xff\xff\xff\xff\xff\x00garbage")
        await writer.drain()

    async with hostile_broker(garbage) as (port, seen):
        with quiet_check() as (errors, unhandled):
            async with Device(DEV, "key", "secret", host="127.0.0.1", port=port, transport="tcp", backoff=FAST,
                              connect_timeout=5.0) as device:
                events = device.events()
                await first(events, ConnectionState.DISCONNECTED)
                await first(events, ConnectionState.CONNECTED)  # and it came back
                events.close()
        assert seen[0] == "closed by the client"
        assert [r.getMessage() for r in errors] == [] and unhandled == []


async def test_closing_a_disconnected_device_reconnects_and_flushes_within_close_timeout(broker: Broker) -> None:
    n = 10_000
    async with CuttableProxy(broker.port) as proxy, aiomqtt.Client(broker.host, broker.port) as watcher:
        await watcher.subscribe(f"losant/{DEV}/state", 1)
        device = Device(DEV, "key", "secret", **device_kwargs(broker, port=proxy.port, qos=1, close_timeout=60))
        await device.start()
        events = device.events()
        live_port, proxy.target_port = proxy.target_port, free_port()  # reconnects fail for now
        proxy.cut()
        await first(events, ConnectionState.DISCONNECTED)
        for i in range(n):
            await device.send_state({"i": i}, time=1_700_000_000_000 + i)
        assert device.stats.outbox_depth == n
        proxy.target_port = live_port  # the broker is back: the close reconnects and flushes
        unsent = await device.aclose()
        received: set[int] = set()
        async with asyncio.timeout(30) if hasattr(asyncio, "timeout") else contextlib.nullcontext():
            async for message in watcher.messages:
                received.add(msgspec.json.decode(bytes(message.payload))["data"]["i"])
                if len(received) == n:
                    break
        assert unsent == 0 and device.stats.unsent_at_close == 0
        assert len(received) == n


async def test_what_a_close_cannot_deliver_is_reported_with_the_device_and_count(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    async with CuttableProxy(broker.port) as proxy:
        device = Device(DEV, "key", "secret", **device_kwargs(broker, port=proxy.port, qos=1, close_timeout=0.5,
                                                              outbox=MemoryOutbox()))
        await device.start()
        events = device.events()
        proxy.target_port = free_port()  # gone for good
        proxy.cut()
        await first(events, ConnectionState.DISCONNECTED)
        for i in range(25):
            await device.send_state({"i": i})
        with caplog.at_level(logging.WARNING, logger="losant_async"):
            unsent = await device.aclose()
    assert unsent == 25 and device.stats.unsent_at_close == 25
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unsent" in r.getMessage()]
    assert len(warnings) == 1
    assert DEV in warnings[0].getMessage() and "25 messages" in warnings[0].getMessage()
    assert getattr(warnings[0], "device_id", None) == DEV


async def test_a_flood_into_an_async_callback_keeps_tasks_and_memory_bounded(broker: Broker) -> None:
    n, stream_size = 20_000, 1000
    release = asyncio.Event()
    started = 0

    async def slow(command: Command) -> None:
        nonlocal started
        started += 1
        await release.wait()

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    async with Device(DEV, "key", "secret", **device_kwargs(broker, stream_size=stream_size)) as device:
        device.on_command(slow)
        before_rss, before_tasks = rss(), len(asyncio.all_tasks())
        payload = msgspec.json.encode({"name": "go", "payload": {"pad": "x" * 200}})
        async with aiomqtt.Client(broker.host, broker.port) as sender:
            for _ in range(n):
                await sender.publish(f"losant/{DEV}/command", payload, 0)
        waited = 0
        while device.stats.commands_received < n and waited < 300:
            await asyncio.sleep(0.1)  # polling a counter the broker's delivery moves; bounded
            waited += 1
        stats = device.stats
        assert stats.commands_received == n
        assert len([t for t in asyncio.all_tasks() if t.get_name().startswith("losant-mqtt-command")]) == 100
        assert len(asyncio.all_tasks()) - before_tasks <= 100 + 5  # the callbacks', a few of aiomqtt's
        assert started == 100
        assert stats.commands_dropped == n - 100 - stream_size
        assert rss() - before_rss < 64 * 1024 * 1024
        release.set()
        while started < 100 + stream_size and waited < 600:
            await asyncio.sleep(0.05)
            waited += 1
        assert started == 100 + stream_size  # the queued ones ran, in the end


@pytest.mark.mosquitto
async def test_tls_against_a_plain_tcp_port_fails_at_once_saying_to_use_tcp(broker: Broker) -> None:
    with pytest.raises(TLSHandshakeError, match='transport="tcp"'):
        async with Device(DEV, "key", "secret", host=broker.host, port=broker.port, transport="tls",
                          connect_timeout=2.0, backoff=FAST):
            pass


async def test_tls_against_a_silent_port_fails_within_the_connect_timeout() -> None:
    peers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)  # never answers the ClientHello

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        with pytest.raises(TLSHandshakeError, match="may be plain MQTT over TCP"):
            # ready_timeout far beyond connect_timeout: only the handshake's own bound can end this
            async with Device(DEV, "key", "secret", host="127.0.0.1", port=server.sockets[0].getsockname()[1],
                              transport="tls", connect_timeout=1.0, ready_timeout=120, backoff=FAST):
                pass
    finally:
        for writer in peers:
            writer.close()
        server.close()


async def test_what_a_close_cannot_deliver_stays_in_a_sqlite_outbox_and_is_counted(
    broker: Broker, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    from losant_async.mqtt import SQLiteOutbox

    path = tmp_path / "outbox.db"
    async with CuttableProxy(broker.port) as proxy:
        device = Device(DEV, "key", "secret", **device_kwargs(broker, port=proxy.port, qos=1, close_timeout=0.5,
                                                              outbox=SQLiteOutbox(path)))
        await device.start()
        events = device.events()
        proxy.target_port = free_port()
        proxy.cut()
        await first(events, ConnectionState.DISCONNECTED)
        for i in range(7):
            await device.send_state({"i": i})
        with caplog.at_level(logging.INFO, logger="losant_async"):
            unsent = await device.aclose()
    assert unsent == 7 and device.stats.unsent_at_close == 7
    kept = [r for r in caplog.records if "kept in its outbox file" in r.getMessage()]
    assert len(kept) == 1 and kept[0].levelno == logging.INFO and DEV in kept[0].getMessage()
    again = SQLiteOutbox(path)
    await again.open()
    try:
        assert again.depth == 7
    finally:
        await again.aclose()

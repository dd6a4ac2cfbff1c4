"""Faults for real: refused credentials, TLS, a cut connection, a restarted broker, a full outbox."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import pytest

from losant_async._time import now_ms
from losant_async.errors import AuthenticationRefusedError, ConnectionLostError, OutboxFullError
from losant_async.mqtt import (
    ConnectionEvent,
    ConnectionState,
    Device,
    Fleet,
    MemoryOutbox,
    SQLiteOutbox,
    Stream,
)
from tests.support.brokers import Broker, MosquittoBroker, free_port, running_broker
from tests.support.proxy import CuttableProxy

from .conftest import FAST, device_kwargs, needs_mosquitto, peer

DEV = "0123456789abcdef01234567"
DEV2 = "0123456789abcdef01234568"

pytestmark = pytest.mark.timeout(90)


@needs_mosquitto
async def test_bad_credentials_raise_and_do_not_retry() -> None:
    async with running_broker(users={"good-key": "good-secret"}) as b:
        device = Device(DEV, "good-key", "wrong-secret", **device_kwargs(b))
        events = device.events()
        with pytest.raises(AuthenticationRefusedError) as info:
            async with device:
                pass
        assert info.value.return_code in (4, 5)
        assert "wrong-secret" not in str(info.value) and "wrong-secret" not in repr(device)
        assert device._task is not None and device._task.done()  # the supervisor stopped
        kinds = [e.state async for e in events]
        assert ConnectionState.FAILED in kinds and ConnectionState.RECONNECTING not in kinds

        offline_start = Device(DEV, "good-key", "bad", **device_kwargs(b, wait_ready=False))
        async with offline_start:
            with pytest.raises(AuthenticationRefusedError):
                await offline_start.wait_connected(timeout=10)
            with pytest.raises(AuthenticationRefusedError):
                await offline_start.send_state({"a": 1})

        async with Device(DEV, "good-key", "good-secret", **device_kwargs(b)) as ok:
            assert ok.connected


@needs_mosquitto
async def test_tls_with_a_test_ca() -> None:
    async with running_broker(tls=True) as b:
        assert b.tls is not None and b.tls_port is not None
        async with peer(b, "losant/#") as watcher, Device(
            DEV, "k", "s", host="127.0.0.1", port=b.tls_port, transport="tls", tls_context=b.tls.client_context
        ) as device:
            await device.send_state({"secure": True}, time=1700000000000)
            await device.flush()
            await watcher.wait_for(lambda r: len(r) >= 1)
        assert watcher.states(f"losant/{DEV}/state") == [{"data": {"secure": True}, "time": 1700000000000}]


@needs_mosquitto
async def test_secure_websockets_transport() -> None:
    async with running_broker(tls=True, websockets=True) as b:
        assert b.tls is not None and b.wss_port is not None
        async with peer(b, "losant/#") as watcher, Device(
            DEV, "k", "s", host="127.0.0.1", port=b.wss_port, transport="wss", tls_context=b.tls.client_context,
            websocket_path="/",
        ) as device:
            await device.send_state({"wss": 1}, time=1700000000000)
            await device.flush()
            await watcher.wait_for(lambda r: len(r) >= 1)
        assert watcher.states(f"losant/{DEV}/state") == [{"data": {"wss": 1}, "time": 1700000000000}]


@needs_mosquitto
async def test_tls_refuses_an_unknown_ca() -> None:
    async with running_broker(tls=True) as b:
        assert b.tls_port is not None
        # The default context trusts the system CAs only, not the test CA.
        with pytest.raises(Exception) as info:
            async with Device(DEV, "k", "s", host="127.0.0.1", port=b.tls_port, transport="tls", connect_timeout=1.0,
                              backoff=FAST, ready_timeout=1.0):
                pass
        assert isinstance(info.value, ConnectionLostError)
        assert "certificate" in str(info.value).lower()


class Sent:
    """What the test sent: per index, the window of time its state was stamped in."""

    def __init__(self, milestones: tuple[int, ...] = ()) -> None:
        self.windows: list[tuple[int, int]] = []
        self.reached = {m: asyncio.Event() for m in milestones}

    async def send(self, device: Device, n: int) -> None:
        for i in range(n):
            before = now_ms()
            await device.send_state({"i": i})
            self.windows.append((before, now_ms()))
            if i in self.reached:
                self.reached[i].set()
            if i % 50 == 0:
                await asyncio.sleep(0)  # let the connection breathe, as a real producer would


def check_all_arrived_in_order_with_original_time(states: list[dict[str, Any]], sent: Sent) -> None:
    firsts: list[int] = []
    times: dict[int, int] = {}
    for state in states:
        i = state["data"]["i"]
        assert sent.windows[i][0] <= state["time"] <= sent.windows[i][1], "re-sent with a new timestamp"
        if i in times:
            assert times[i] == state["time"]
            continue
        times[i] = state["time"]
        firsts.append(i)
    assert firsts == list(range(len(sent.windows))), "a state was lost or overtaken"


async def test_connection_cut_mid_stream_loses_nothing_at_qos1(broker: Broker) -> None:
    n = 3000
    async with CuttableProxy(broker.port) as proxy, peer(broker, f"losant/{DEV}/state") as watcher:
        async with Device(DEV, "k", "s", **device_kwargs(broker, port=proxy.port, qos=1)) as device:
            milestones = (n // 4, n // 2, 3 * n // 4)
            sent = Sent(milestones)
            events = device.events()
            sending = asyncio.ensure_future(sent.send(device, n))
            for milestone in milestones:
                await asyncio.wait_for(sent.reached[milestone].wait(), 20)
                proxy.cut()
                await _wait_for_state(events, ConnectionState.DISCONNECTED)
                await _wait_for_state(events, ConnectionState.CONNECTED)
            await sending
            await device.flush(timeout=30)
            assert device.stats.reconnects >= 1
            assert device.stats.reconnects >= 3
        await watcher.wait_for(lambda r: len({msgspec.json.decode(p)["data"]["i"] for _, p in r}) >= n, timeout=30)
    check_all_arrived_in_order_with_original_time(watcher.states(f"losant/{DEV}/state"), sent)


@contextlib.asynccontextmanager
async def persistent_peer(broker: Broker, topic: str) -> AsyncIterator[tuple[list[bytes], asyncio.Event]]:
    """A subscriber with a persistent session that reconnects after a broker restart."""
    received: list[bytes] = []
    arrived = asyncio.Event()
    stop = asyncio.Event()
    subscribed = asyncio.Event()

    async def run() -> None:
        while not stop.is_set():
            try:
                async with aiomqtt.Client(broker.host, broker.port, identifier="watcher-1", clean_session=False) as c:
                    await c.subscribe(topic, 1)
                    subscribed.set()
                    async for m in c.messages:
                        received.append(bytes(m.payload))
                        arrived.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    task = asyncio.ensure_future(run())
    await asyncio.wait_for(subscribed.wait(), 10)
    try:
        yield received, arrived
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


@needs_mosquitto
async def test_broker_restarted_mid_stream_loses_nothing_at_qos1() -> None:
    # Not pytest's tmp_path: mosquitto may run as its own user and must reach the directory.
    b = MosquittoBroker(kind="mosquitto")
    b_conf = b._config

    def with_persistence() -> str:  # the watcher's queued messages must survive the restart
        return b_conf() + f"persistence true\npersistence_location {b.directory}/\nautosave_interval 0\n"

    b._config = with_persistence  # type: ignore[method-assign]
    await b.start()
    try:
        n = 2000
        async with persistent_peer(b, f"losant/{DEV}/state") as (received, arrived):
            async with Device(DEV, "k", "s", **device_kwargs(b, qos=1)) as device:
                sent = Sent((n // 3,))
                sending = asyncio.ensure_future(sent.send(device, n))
                await asyncio.wait_for(sent.reached[n // 3].wait(), 20)
                await b.restart()
                await sending
                await device.flush(timeout=30)
                assert device.stats.reconnects >= 1

            async def all_arrived() -> None:
                while len({msgspec.json.decode(p)["data"]["i"] for p in received}) < n:
                    arrived.clear()
                    await arrived.wait()

            await asyncio.wait_for(all_arrived(), 30)
            check_all_arrived_in_order_with_original_time([msgspec.json.decode(p) for p in received], sent)
    finally:
        await b.stop()
        shutil.rmtree(b.directory, ignore_errors=True)


async def test_while_disconnected_drop_oldest_keeps_the_newest(broker: Broker) -> None:
    async with CuttableProxy(broker.port) as proxy, peer(broker, f"losant/{DEV}/state") as watcher:
        outbox = MemoryOutbox(capacity=5, policy="drop_oldest")
        async with Device(DEV, "k", "s", **device_kwargs(broker, port=proxy.port, qos=1, outbox=outbox)) as device:
            # Point the proxy at a dead port so reconnects fail while we send.
            live_port = proxy.target_port
            proxy.target_port = free_port()
            events = device.events()
            proxy.cut()
            await _wait_disconnected(device, events)
            for i in range(10):
                await device.send_state({"i": i})
            assert device.stats.dropped == 5 and device.stats.outbox_depth == 5
            proxy.target_port = live_port
            await device.flush(timeout=20)
        await watcher.wait_for(lambda r: len(r) >= 5)
        assert [s["data"]["i"] for s in watcher.states(f"losant/{DEV}/state")] == [5, 6, 7, 8, 9]


async def test_while_disconnected_a_full_waiting_outbox_refuses_a_non_waiting_send(broker: Broker) -> None:
    async with CuttableProxy(broker.port) as proxy:
        outbox = MemoryOutbox(capacity=3, policy="wait")
        async with Device(DEV, "k", "s", **device_kwargs(broker, port=proxy.port, outbox=outbox)) as device:
            live_port = proxy.target_port
            proxy.target_port = free_port()
            events = device.events()
            proxy.cut()
            await _wait_disconnected(device, events)
            for i in range(3):
                await device.send_state({"i": i})
            with pytest.raises(OutboxFullError):
                await device.send_state({"i": 3}, wait=False)
            blocked = asyncio.ensure_future(device.send_state({"i": 4}))
            await asyncio.sleep(0)
            assert not blocked.done()
            proxy.target_port = live_port
            await asyncio.wait_for(blocked, 20)
            await device.flush(timeout=20)
            assert device.stats.outbox_depth == 0
            assert device.stats.outbox_waited > 0


async def _wait_for_state(events: Stream[ConnectionEvent], state: ConnectionState) -> None:
    async def _wait() -> None:
        async for event in events:
            if event.state is state:
                return

    await asyncio.wait_for(_wait(), 10)


async def _wait_disconnected(device: Device, events: Stream[ConnectionEvent]) -> None:
    await _wait_for_state(events, ConnectionState.DISCONNECTED)
    assert not device.connected


async def test_sqlite_outbox_survives_a_restart_of_the_device(broker: Broker, tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    dead = free_port()
    offline = Device(DEV, "k", "s", host="127.0.0.1", port=dead, transport="tcp", qos=1, backoff=FAST,
                     outbox=SQLiteOutbox(db), wait_ready=False, close_timeout=0.1)
    async with offline:
        for i in range(20):
            await offline.send_state({"i": i}, time=1700000000000 + i)
        assert offline.stats.outbox_depth == 20
    async with peer(broker, f"losant/{DEV}/state") as watcher:
        async with Device(DEV, "k", "s", **device_kwargs(broker, qos=1, outbox=SQLiteOutbox(db))) as device:
            await device.flush(timeout=20)
        await watcher.wait_for(lambda r: len(r) >= 20)
    states = watcher.states(f"losant/{DEV}/state")
    assert [(s["data"]["i"], s["time"]) for s in states] == [(i, 1700000000000 + i) for i in range(20)]
    again = SQLiteOutbox(db)
    await again.open()
    assert again.depth == 0
    await again.aclose()


async def test_fleet_starts_and_stops_many_devices(broker: Broker) -> None:
    ids = [f"{i:024x}" for i in range(1, 41)]
    devices = [Device(d, "k", "s", **device_kwargs(broker)) for d in ids]
    async with peer(broker, "losant/+/state") as watcher:
        async with Fleet(devices, connect_concurrency=8) as fleet:
            assert fleet.connected == 40
            await asyncio.gather(*(d.send_state({"up": 1}, time=1700000000000) for d in fleet))
            await asyncio.gather(*(d.flush() for d in fleet))
            await watcher.wait_for(lambda r: len(r) >= 40)
        assert fleet.connected == 0
    assert {t for t, _ in watcher.received} == {f"losant/{d}/state" for d in ids}




class SilentBroker:
    """Accepts TCP connections and reads, but never answers (or hangs up at once when ``hang_up``)."""

    def __init__(self, hang_up: bool = False) -> None:
        self.hang_up = hang_up
        self.accepted = asyncio.Event()
        self.client_left = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> SilentBroker:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.set()
        if self.hang_up:
            await reader.read(1)
            writer.close()
            return
        while await reader.read(1024):
            pass
        self.client_left.set()
        writer.close()


async def test_cancelling_while_waiting_for_connack_leaves_no_socket_or_task() -> None:
    async with SilentBroker() as silent:
        device = Device(DEV, "k", "s", host="127.0.0.1", port=silent.port, transport="tcp", connect_timeout=30)
        entering = asyncio.ensure_future(device.start())
        await asyncio.wait_for(silent.accepted.wait(), 10)
        entering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await entering
        await asyncio.wait_for(silent.client_left.wait(), 10)  # our side closed the socket
        assert device._task is not None and device._task.done()
        assert not device.connected


async def test_a_broker_hanging_up_before_connack_is_retried_not_waited_out() -> None:
    async with SilentBroker(hang_up=True) as rude:
        device = Device(DEV, "k", "s", host="127.0.0.1", port=rude.port, transport="tcp", connect_timeout=30,
                        backoff=FAST, wait_ready=False)
        events = device.events()
        async with device:
            # Two failed attempts well inside one 30 s CONNACK timeout: each ended at the hang-up.
            retries = 0
            async for event in events:
                if event.state is ConnectionState.RECONNECTING:
                    retries += 1
                    assert "before CONNACK" in event.reason
                    if retries == 2:
                        break


async def test_after_a_cut_the_device_resubscribes_commands_and_custom_topics(broker: Broker) -> None:
    async with CuttableProxy(broker.port) as proxy, peer(broker) as sender:
        async with Device(DEV, "k", "s", **device_kwargs(broker, port=proxy.port)) as device:
            events = device.events()
            async with device.commands() as commands, device.subscribe("plant/#") as messages:
                proxy.cut()
                await _wait_for_state(events, ConnectionState.DISCONNECTED)
                await _wait_for_state(events, ConnectionState.CONNECTED)
                await sender.client.publish(f"losant/{DEV}/command", b'{"name":"after-cut"}', 1)
                await sender.client.publish("plant/7", b"hi", 1)
                assert (await commands.get(10)).name == "after-cut"
                assert (await messages.get(10)).payload == b"hi"
        assert proxy.connections == 2

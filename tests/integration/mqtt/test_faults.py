"""Faults for real: refused credentials, TLS, a cut connection, a restarted broker, a full outbox.

Most run twice, on a plain broker and on the Losant emulator (the ``world`` fixture);
TLS tests stay broker-only: the emulator has no TLS listener.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest

from losant_async._time import now_ms
from losant_async.errors import (
    AuthenticationRefusedError,
    OutboxFullError,
    TLSVerificationError,
)
from losant_async.mqtt import (
    ConnectionEvent,
    ConnectionState,
    Device,
    DisconnectKind,
    Fleet,
    MemoryOutbox,
    SQLiteOutbox,
    Stream,
)
from losant_async.testing import ConnectionLogEntry
from tests.support.brokers import free_port, running_broker
from tests.support.proxy import CuttableProxy

from .conftest import (
    FAST,
    KINDS_BROKER_NEEDS_MOSQUITTO,
    EmulatorWorld,
    World,
    make_world,
    needs_mosquitto,
    peer,
)

DEV = "0123456789abcdef01234567"

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("kind", KINDS_BROKER_NEEDS_MOSQUITTO)
async def test_bad_credentials_raise_and_do_not_retry(kind: str) -> None:
    # A plain broker needs a password file for this (mosquitto); the emulator checks keys itself.
    async with make_world(kind, users={"key": "secret"}) as world:
        dev = world.device()
        device = Device(dev.id, dev.key, "wrong-secret", **world.kwargs())
        events = device.events()
        with pytest.raises(AuthenticationRefusedError) as info:
            async with device:
                pass
        assert info.value.return_code in (4, 5)
        assert "wrong-secret" not in str(info.value) and "wrong-secret" not in repr(device)
        assert device._life.tasks.task is not None and device._life.tasks.task.done()  # the supervisor stopped
        kinds = [e.state async for e in events]
        assert ConnectionState.FAILED in kinds and ConnectionState.RECONNECTING not in kinds

        offline_start = Device(dev.id, dev.key, "bad", **world.kwargs(wait_ready=False))
        async with offline_start:
            with pytest.raises(AuthenticationRefusedError):
                await offline_start.wait_connected(timeout=10)
            with pytest.raises(AuthenticationRefusedError):
                await offline_start.send_state({"a": 1})

        async with Device(dev.id, dev.key, dev.secret, **world.kwargs()) as ok:
            assert ok.connected
        if isinstance(world, EmulatorWorld):  # the far side saw exactly one attempt per refused device
            assert world.losant.counters.mqtt_connects_refused == 2


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
async def test_tls_qos0_burst_on_the_fast_path_arrives_whole_and_in_order_with_qos1_between() -> None:
    # Coalesced QoS 0 writes over TLS, some larger than a TLS record, with QoS 1 messages (paho's
    # queue) in between: every byte arrives, state order is kept.
    async with running_broker(tls=True) as b:
        assert b.tls is not None and b.tls_port is not None
        blob = "x" * 30_000
        n = 400
        async with peer(b, "losant/#", "custom/#") as watcher, Device(
            DEV, "k", "s", host="127.0.0.1", port=b.tls_port, transport="tls", tls_context=b.tls.client_context
        ) as device:
            for i in range(n):
                await device.send_state({"i": i, "blob": blob if i % 7 == 0 else ""}, time=1700000000000 + i)
                if i % 50 == 0:
                    await device.publish("custom/q1", {"i": i}, qos=1)
            await device.flush()
            await watcher.wait_for(lambda r: len(r) >= n + n // 50, timeout=60)
        states = watcher.states(f"losant/{DEV}/state")
        assert [s["data"]["i"] for s in states] == list(range(n))
        assert all(s["data"]["blob"] == (blob if s["data"]["i"] % 7 == 0 else "") for s in states)
        assert [m["i"] for m in watcher.states("custom/q1")] == list(range(0, n, 50))


async def test_a_throttled_device_with_tokens_sends_at_once_and_queues_only_beyond_them(world: World) -> None:
    from losant_async.mqtt import ThrottleConfig

    dev = world.device()
    config = ThrottleConfig(per_topic=10, per_connection=300)  # a burst of 5 on the state topic
    async with world.watch() as watcher, Device(dev.id, dev.key, dev.secret, **world.kwargs(throttle=config)) as device:
        base = now_ms() - 60_000
        for i in range(5):
            await device.send_state({"i": i}, time=base + i)
            assert device.stats.outbox_depth == 0  # handed to the connection, not queued
        await device.send_state({"i": 5}, time=base + 5)
        assert device.stats.outbox_depth == 1  # out of tokens: it waits its turn in the outbox
        await device.flush(timeout=30)
        states = await watcher.wait_states(dev.id, 6, timeout=30)
    assert [s["data"]["i"] for s in states] == list(range(6))


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
        assert isinstance(info.value, TLSVerificationError)
        assert "certificate" in str(info.value).lower()


@needs_mosquitto
async def test_tls_with_a_wrong_ca_fails_at_once_without_retrying_even_when_not_waiting_ready() -> None:
    import trustme

    async with running_broker(tls=True) as b:
        assert b.tls_port is not None
        wrong = ssl.create_default_context()
        trustme.CA().configure_trust(wrong)  # a CA, but not the one that signed the broker's certificate
        device = Device(DEV, "k", "s", host="127.0.0.1", port=b.tls_port, transport="tls", tls_context=wrong,
                        backoff=FAST, wait_ready=False)
        async with device:
            events = device.events()
            with pytest.raises(TLSVerificationError):
                await device.wait_connected(timeout=30)
            with pytest.raises(TLSVerificationError):
                await device.send_state({"n": 1})
            failed = await events.get(timeout=30)
            while failed.state is not ConnectionState.FAILED:
                failed = await events.get(timeout=30)
            assert failed.kind is DisconnectKind.TLS_REFUSED and failed.device_id == DEV
        assert device.stats.reconnects == 0


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
        # Stamps are distinct, so past 1,000 calls a second they run ahead of the clock (by at
        # most one millisecond per call); a re-sent state keeps its stamp (checked below).
        assert sent.windows[i][0] <= state["time"] <= sent.windows[i][1] + i + 1, "re-sent with a new timestamp"
        if i in times:
            assert times[i] == state["time"]
            continue
        times[i] = state["time"]
        firsts.append(i)
    assert firsts == list(range(len(sent.windows))), "a state was lost or overtaken"


async def test_connection_cut_mid_stream_loses_nothing_at_qos1(world: World) -> None:
    dev = world.device()
    n = 3000
    async with CuttableProxy(world.port) as proxy, world.watch() as watcher, Device(
        dev.id, dev.key, dev.secret, **world.kwargs(port=proxy.port, qos=1)
    ) as device:
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
        assert device.stats.reconnects >= 3
        await watcher.wait_distinct(dev.id, n, timeout=30)
    check_all_arrived_in_order_with_original_time(watcher.states(dev.id), sent)


async def test_a_qos1_state_acknowledged_right_before_leaving_is_stored() -> None:
    async with make_world("emulator") as world:
        assert isinstance(world, EmulatorWorld)
        dev = world.device()
        left = asyncio.Event()

        def on_connection(entry: ConnectionLogEntry) -> None:
            if entry.device_id == dev.id and not entry.connected:
                left.set()

        unlisten = world.losant.store.on_connection(on_connection)
        try:
            async with Device(dev.id, dev.key, dev.secret, **world.kwargs(qos=1)) as device:
                for i in range(200):
                    await device.send_state({"i": i})
                await device.flush(timeout=20)
                assert device.stats.acked == 200
            await asyncio.wait_for(left.wait(), 10)  # the emulator has torn the session down
        finally:
            unlisten()
        assert world.losant.store.accepted_count(dev.id) == 200


@needs_mosquitto
async def test_broker_restarted_mid_stream_loses_nothing_at_qos1() -> None:
    # Broker only: LocalLosant has no way to restart its broker while keeping its store (on
    # the emulator the cut test above stands in). The plain broker must persist the watcher's
    # session to hand it what it queued during the restart: mosquitto persistence.
    async with make_world("broker", persistence=True) as world:
        dev = world.device()
        n = 2000
        async with world.watch(survive_restart=True) as watcher, Device(
            dev.id, dev.key, dev.secret, **world.kwargs(qos=1)
        ) as device:
            sent = Sent((n // 3,))
            sending = asyncio.ensure_future(sent.send(device, n))
            await asyncio.wait_for(sent.reached[n // 3].wait(), 20)
            await world.restart()
            await sending
            await device.flush(timeout=30)
            assert device.stats.reconnects >= 1
            await watcher.wait_distinct(dev.id, n, timeout=30)  # connected: as in the cut test
        check_all_arrived_in_order_with_original_time(watcher.states(dev.id), sent)


async def test_while_disconnected_drop_oldest_keeps_the_newest(world: World) -> None:
    dev = world.device()
    async with CuttableProxy(world.port) as proxy, world.watch() as watcher:
        outbox = MemoryOutbox(capacity=5, policy="drop_oldest")
        async with Device(
            dev.id, dev.key, dev.secret, **world.kwargs(port=proxy.port, qos=1, outbox=outbox)
        ) as device:
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
        states = await watcher.wait_states(dev.id, 5)
        assert [s["data"]["i"] for s in states] == [5, 6, 7, 8, 9]


async def test_while_disconnected_a_full_waiting_outbox_refuses_a_non_waiting_send(world: World) -> None:
    dev = world.device()
    async with CuttableProxy(world.port) as proxy:
        outbox = MemoryOutbox(capacity=3, policy="wait")
        async with Device(dev.id, dev.key, dev.secret, **world.kwargs(port=proxy.port, outbox=outbox)) as device:
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


async def test_sqlite_outbox_survives_a_restart_of_the_device(world: World, tmp_path: Path) -> None:
    dev = world.device()
    db = tmp_path / "outbox.db"
    dead = free_port()
    t0 = (now_ms() // 1000 - 3600) * 1000  # inside Losant's window (30 days back)
    offline = Device(dev.id, dev.key, dev.secret, host="127.0.0.1", port=dead, transport="tcp", qos=1, backoff=FAST,
                     outbox=SQLiteOutbox(db), wait_ready=False, close_timeout=0.1)
    async with offline:
        for i in range(20):
            await offline.send_state({"i": i}, time=t0 + i)
        assert offline.stats.outbox_depth == 20
    again_online = Device(dev.id, dev.key, dev.secret, **world.kwargs(qos=1, outbox=SQLiteOutbox(db)))
    async with world.watch() as watcher, again_online:
        await again_online.flush(timeout=20)
        states = await watcher.wait_states(dev.id, 20)  # connected: as in the cut test
    assert [(s["data"]["i"], s["time"]) for s in states] == [(i, t0 + i) for i in range(20)]
    again = SQLiteOutbox(db)
    await again.open()
    assert again.depth == 0
    await again.aclose()


async def test_fleet_starts_and_stops_many_devices(world: World) -> None:
    creds = [world.device() for _ in range(40)]
    t = (now_ms() // 1000) * 1000
    devices = [Device(c.id, c.key, c.secret, **world.kwargs()) for c in creds]
    async with world.watch() as watcher:
        async with Fleet(devices, connect_concurrency=8) as fleet:
            assert fleet.connected == 40
            await asyncio.gather(*(d.send_state({"up": 1}, time=t) for d in fleet))
            await asyncio.gather(*(d.flush() for d in fleet))
            await watcher.wait_for(lambda: len(watcher.entries) >= 40)
        assert fleet.connected == 0
    assert watcher.device_ids() == {c.id for c in creds}


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
        assert device._life.tasks.task is not None and device._life.tasks.task.done()
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


async def test_after_a_cut_the_device_resubscribes_commands_and_custom_topics(world: World) -> None:
    dev = world.device()
    async with CuttableProxy(world.port) as proxy, world.peer() as sender:
        async with Device(dev.id, dev.key, dev.secret, **world.kwargs(port=proxy.port)) as device:
            events = device.events()
            async with device.commands() as commands, device.subscribe("plant/#") as messages:
                proxy.cut()
                await _wait_for_state(events, ConnectionState.DISCONNECTED)
                await _wait_for_state(events, ConnectionState.CONNECTED)
                await world.send_command(dev.id, "after-cut")
                await sender.client.publish("plant/7", b"hi", 1)
                assert (await commands.get(10)).name == "after-cut"
                assert (await messages.get(10)).payload == b"hi"
        assert proxy.connections == 2

"""A Device against a real broker, seen by an independent client."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import pytest

from losant_async.errors import DeviceClosedError, TopicNotAllowedError, ValidationError
from losant_async.mqtt import Command, ConnectionState, Device, Gateway
from tests.support.brokers import Broker

from .conftest import device_kwargs, peer

DEV = "0123456789abcdef01234567"
P1 = "aaaaaaaaaaaaaaaaaaaaaaa1"
P2 = "aaaaaaaaaaaaaaaaaaaaaaa2"

pytestmark = pytest.mark.timeout(60)


async def test_state_arrives_with_exact_topic_and_payload(broker: Broker) -> None:
    when = datetime(2024, 6, 1, 8, 30, tzinfo=timezone.utc)
    async with peer(broker, "losant/#") as watcher, Device(DEV, "key", "secret", **device_kwargs(broker)) as device:
        assert device.connected
        await device.send_state({"temperature": 21.5, "door": "open", "ok": True}, time=when)
        await device.send_state({"n": 1}, time=1700000000000, flow_version="v1")
        await device.flush()
        await watcher.wait_for(lambda r: len(r) >= 2)
    assert watcher.received == [
        (f"losant/{DEV}/state", b'{"data":{"temperature":21.5,"door":"open","ok":true},"time":1717230600000}'),
        (f"losant/{DEV}/state", b'{"data":{"n":1},"time":1700000000000,"flowVersion":"v1"}'),
    ]
    assert device.stats.sent == 2


async def test_qos1_states_are_acknowledged(broker: Broker) -> None:
    async with peer(broker, "losant/#") as watcher, Device(DEV, "k", "s", **device_kwargs(broker, qos=1)) as device:
        for i in range(300):
            await device.send_state({"i": i})
        await device.flush()
        assert device.stats.acked == 300
        assert device.stats.outbox_depth == 0
        await watcher.wait_for(lambda r: len(r) >= 300)
    assert [s["data"]["i"] for s in watcher.states(f"losant/{DEV}/state")] == list(range(300))


async def test_commands_reach_iterator_and_callback_and_malformed_ones_are_skipped(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    seen_by_callback: list[Command] = []
    got_two = asyncio.Event()

    def on_command(command: Command) -> None:
        seen_by_callback.append(command)
        if len(seen_by_callback) == 2:
            got_two.set()

    async with peer(broker) as sender, Device(DEV, "k", "s", **device_kwargs(broker)) as device:
        device.on_command(on_command)
        async with device.commands() as commands:
            topic = f"losant/{DEV}/command"
            await sender.client.publish(topic, b'{"name":"reboot","payload":{"delay":3},"time":{"$date":"2024-01-02T03:04:05.678Z"}}', 1)
            with caplog.at_level(logging.WARNING, "losant_async.mqtt"):
                await sender.client.publish(topic, b'{"payload":"secret-ish","no":"name"}', 1)
            await sender.client.publish(topic, b'{"name":"blink","payload":null}', 1)
            first = await commands.get(10)
            second = await commands.get(10)
        await asyncio.wait_for(got_two.wait(), 10)
    assert first.name == "reboot" and first.payload == {"delay": 3}
    assert first.time == datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    assert second.name == "blink" and second.time is None
    assert [c.name for c in seen_by_callback] == ["reboot", "blink"]
    assert device.stats.malformed_commands == 1
    assert device.stats.commands_received == 2
    assert "secret-ish" not in caplog.text


async def test_async_command_callback_runs(broker: Broker) -> None:
    done = asyncio.Event()

    async def handler(command: Command) -> None:
        await asyncio.sleep(0)
        done.set()

    async with peer(broker) as sender, Device(DEV, "k", "s", **device_kwargs(broker)) as device:
        device.on_command(handler)
        await sender.client.publish(f"losant/{DEV}/command", b'{"name":"x"}', 1)
        await asyncio.wait_for(done.wait(), 10)


async def test_gateway_peripherals_added_while_connected_and_removed(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from losant_async.mqtt._connection import Connection

    unsubscribed: list[str] = []
    original = Connection.unsubscribe

    async def spy(self: Connection, filters: list[str], timeout: float | None = None) -> None:
        await original(self, filters, timeout)
        unsubscribed.extend(filters)

    monkeypatch.setattr(Connection, "unsubscribe", spy)
    async with peer(broker, "losant/#") as watcher, Gateway(DEV, "k", "s", **device_kwargs(broker)) as gw:
        p1 = await gw.add_peripheral(P1)
        async with p1.commands() as commands:
            await watcher.client.publish(f"losant/{P1}/command", b'{"name":"on"}', 1)
            command = await commands.get(10)
        assert command.name == "on" and command.device_id == P1

        # A handle from peripheral() is subscribed in the background: wait for it through traffic.
        p2 = gw.peripheral(P2)
        p2_commands = p2.commands()
        got = asyncio.ensure_future(p2_commands.get(10))
        while not got.done():
            await watcher.client.publish(f"losant/{P2}/command", b'{"name":"hello"}', 1)
            await asyncio.wait({got}, timeout=0.2)
        assert got.result().device_id == P2

        await p1.send_state({"level": 3}, time=1700000000000)
        await gw.send_state({"uptime": 1}, time=1700000000001)
        await gw.flush()
        await watcher.wait_for(lambda r: any(t == f"losant/{P1}/state" for t, _ in r))
        assert watcher.states(f"losant/{P1}/state") == [{"data": {"level": 3}, "time": 1700000000000}]

        gw.remove_peripheral(P1)
        assert P1 not in gw.peripherals
        with pytest.raises(DeviceClosedError):
            await p1.send_state({"level": 4})
        # Removed: a command for P1 no longer reaches a fresh stream, while P2's still does.
        fresh_p1 = gw._command_stream(P1)
        p2_stream = p2.commands()
        await asyncio.sleep(0)
        await watcher.client.publish(f"losant/{P1}/command", b'{"name":"late"}', 1)
        await watcher.client.publish(f"losant/{P2}/command", b'{"name":"marker"}', 1)
        marker = await p2_stream.get(10)
        assert marker.name == "marker"
        assert len(fresh_p1) == 0
        await asyncio.gather(*gw._side_tasks)
        assert unsubscribed == [f"losant/{P1}/command"]  # UNSUBACK received


async def test_custom_topics_publish_and_subscribe(broker: Broker) -> None:
    async with peer(broker, "factory/#") as watcher, Device(DEV, "k", "s", **device_kwargs(broker)) as device:
        async with device.subscribe("plant/+/cmd") as messages:
            await device.publish("factory/line1", {"speed": 3})
            await device.publish("factory/raw", b"\x01\x02", qos=1)
            await watcher.client.publish("plant/a/cmd", b'{"go":true}', 1)
            message = await messages.get(10)
        assert message.topic == "plant/a/cmd" and message.json() == {"go": True}
        await device.flush()
        await watcher.wait_for(lambda r: len(r) >= 2)
    assert watcher.received == [("factory/line1", b'{"speed":3}'), ("factory/raw", b"\x01\x02")]


async def test_publishing_to_a_foreign_losant_topic_is_refused_before_sending(broker: Broker) -> None:
    async with Device(DEV, "k", "s", **device_kwargs(broker)) as device:
        with pytest.raises(TopicNotAllowedError):
            await device.publish(f"losant/{P1}/state", {"data": {}})
        with pytest.raises(ValidationError):
            await device.publish("custom", b"x", retain=True)
        with pytest.raises(ValidationError):
            await device.publish("custom", b"x", qos=2)
        with pytest.raises(ValidationError):
            await device.send_state({"bad name": 1})
        assert device.stats.sent == 0


async def test_events_report_connected_and_closed(broker: Broker) -> None:
    device = Device(DEV, "k", "s", **device_kwargs(broker))
    events = device.events()
    async with device:
        await device.wait_connected(timeout=5)
    states = []
    async for event in events:
        states.append(event.state)
    assert states[0] is ConnectionState.CONNECTING
    assert ConnectionState.CONNECTED in states
    assert states[-1] is ConnectionState.CLOSED
    with pytest.raises(DeviceClosedError):
        await device.send_state({"a": 1})


async def test_websockets_transport() -> None:
    from tests.support.brokers import running_broker

    async with running_broker(websockets=True) as b:
        assert b.ws_port is not None
        async with peer(b, "losant/#") as watcher, Device(
            DEV, "k", "s", host=b.host, port=b.ws_port, transport="websockets", websocket_path="/"
        ) as device:
            await device.send_state({"ws": 1}, time=1700000000000)
            await device.flush()
            await watcher.wait_for(lambda r: len(r) >= 1)
    assert watcher.states(f"losant/{DEV}/state") == [{"data": {"ws": 1}, "time": 1700000000000}]


async def test_a_device_never_closed_warns(broker: Broker) -> None:
    import gc

    leaked = Device("fedcba9876543210fedcba98", "k", "s", **device_kwargs(broker))
    await leaked.start()
    await leaked.aclose()  # release the socket and tasks, then forget that it was closed
    leaked._closed = False
    with pytest.warns(ResourceWarning, match="never closed"):
        del leaked
        gc.collect()


async def test_throttled_device_holds_back_a_burst_and_delivers_it_in_order(broker: Broker) -> None:
    from losant_async.mqtt import ThrottleConfig

    fast_limits = ThrottleConfig(per_topic=4, per_connection=100, window=0.2)
    async with peer(broker, "losant/#") as watcher, Device(
        DEV, "k", "s", **device_kwargs(broker, throttle=fast_limits)
    ) as device:
        for i in range(10):
            await device.send_state({"i": i})
        await device.flush(timeout=20)
        assert device.stats.throttle_waited > 0
        await watcher.wait_for(lambda r: len(r) >= 10)
    assert [s["data"]["i"] for s in watcher.states(f"losant/{DEV}/state")] == list(range(10))


async def test_leaving_sends_disconnect_instead_of_dropping_the_socket(broker: Broker) -> None:
    async with Device(DEV, "k", "s", **device_kwargs(broker)) as device:
        await device.send_state({"a": 1})
        conn = device._conn
        assert conn is not None
    assert conn.closed_cleanly


async def test_qos1_device_receives_qos1_commands_once_each(broker: Broker) -> None:
    device = Device(DEV, "k", "s", **device_kwargs(broker, qos=1))
    async with peer(broker) as sender, device, device.commands() as commands, device.subscribe(
        "plant/#", qos=1
    ) as messages:
        for i in range(50):
            await sender.client.publish(f"losant/{DEV}/command", f'{{"name":"c{i}","payload":{i}}}'.encode(), 1)
        await sender.client.publish("plant/x", "ünïcode".encode(), 1)
        got = [await commands.get(10) for _ in range(50)]
        message = await messages.get(10)
        # A marker sent last: anything re-delivered for want of a PUBACK would come before it.
        await sender.client.publish(f"losant/{DEV}/command", b'{"name":"marker"}', 1)
        assert (await commands.get(10)).name == "marker"
    assert [(c.name, c.payload) for c in got] == [(f"c{i}", i) for i in range(50)]
    assert message.topic == "plant/x" and message.payload.decode() == "ünïcode"

"""A Device against a real broker and against the Losant emulator, seen by an independent observer."""

from __future__ import annotations

import asyncio
import logging

import pytest

from losant_async._time import from_epoch_ms, now_ms
from losant_async.errors import DeviceClosedError, TopicNotAllowedError, ValidationError
from losant_async.mqtt import Command, ConnectionState, Device, Gateway
from tests.support.brokers import Broker

from .conftest import EmulatorWorld, World, device_kwargs, peer

DEV = "0123456789abcdef01234567"
OTHER = "aaaaaaaaaaaaaaaaaaaaaaa1"

pytestmark = pytest.mark.timeout(60)


def recent_ms() -> int:
    """A whole second an hour ago: inside Losant's window (30 days back, a day ahead)."""
    return (now_ms() // 1000 - 3600) * 1000


async def test_state_arrives_with_exact_topic_and_payload(world: World) -> None:
    dev = world.device()
    when_ms = recent_ms()
    when = from_epoch_ms(when_ms)
    async with world.watch() as watcher, Device(dev.id, dev.key, dev.secret, **world.kwargs()) as device:
        assert device.connected
        await device.send_state({"temperature": 21.5, "door": "open", "ok": True}, time=when)
        await device.send_state({"n": 1}, time=when_ms + 1, flow_version="v1")
        await device.flush()
        states = await watcher.wait_states(dev.id, 2)
    assert [(s["data"], s["time"]) for s in states] == [
        ({"temperature": 21.5, "door": "open", "ok": True}, when_ms),
        ({"n": 1}, when_ms + 1),
    ]
    if world.kind == "broker":  # only a plain broker hands the bytes on untouched
        assert watcher.raw == [
            (f"losant/{dev.id}/state",
             b'{"data":{"temperature":21.5,"door":"open","ok":true},"time":%d}' % when_ms),
            (f"losant/{dev.id}/state", b'{"data":{"n":1},"time":%d,"flowVersion":"v1"}' % (when_ms + 1)),
        ]
    assert device.stats.sent == 2


async def test_qos0_burst_larger_than_the_socket_buffer_arrives_whole_and_in_order(world: World) -> None:
    # ~18 MB written without a pause: the socket takes part of a packet at some point and
    # the rest must follow before anything newer, byte for byte.
    dev = world.device()
    start = recent_ms()
    blob = "x" * 60_000
    n = 300
    async with world.watch() as watcher, Device(dev.id, dev.key, dev.secret, **world.kwargs()) as device:
        for i in range(n):
            await device.send_state({"i": i, "blob": blob}, time=start + i)
        await device.flush()
        states = await watcher.wait_states(dev.id, n, timeout=30)
    assert [s["data"]["i"] for s in states] == list(range(n))
    assert all(s["data"]["blob"] == blob and s["time"] == start + s["data"]["i"] for s in states)


async def test_qos1_states_are_acknowledged(world: World) -> None:
    dev = world.device()
    async with world.watch() as watcher, Device(dev.id, dev.key, dev.secret, **world.kwargs(qos=1)) as device:
        for i in range(300):
            await device.send_state({"i": i})
        await device.flush()
        assert device.stats.acked == 300
        assert device.stats.outbox_depth == 0
        states = await watcher.wait_states(dev.id, 300)
    assert [s["data"]["i"] for s in states] == list(range(300))


async def test_commands_reach_iterator_and_callback(world: World) -> None:
    dev = world.device()
    seen_by_callback: list[Command] = []
    got_two = asyncio.Event()

    def on_command(command: Command) -> None:
        seen_by_callback.append(command)
        if len(seen_by_callback) == 2:
            got_two.set()

    sent_at = recent_ms() + 678
    async with Device(dev.id, dev.key, dev.secret, **world.kwargs()) as device:
        device.on_command(on_command)
        async with device.commands() as commands:
            await world.send_command(dev.id, "reboot", {"delay": 3}, time=sent_at)
            await world.send_command(dev.id, "blink")
            first = await commands.get(10)
            second = await commands.get(10)
        await asyncio.wait_for(got_two.wait(), 10)
    assert first.name == "reboot" and first.payload == {"delay": 3}
    assert first.time == from_epoch_ms(sent_at)
    assert second.name == "blink" and second.payload is None
    if isinstance(world, EmulatorWorld):  # Losant stamps every command it sends
        assert second.time == from_epoch_ms(world.losant.commands_sent(dev.id)[1].time)
    else:
        assert second.time is None
    assert [c.name for c in seen_by_callback] == ["reboot", "blink"]
    assert device.stats.commands_received == 2
    assert device.stats.malformed_commands == 0


async def test_malformed_commands_are_skipped_without_logging_their_payload(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    # Broker only: the emulator sends well-formed commands only, and its broker (as Losant's)
    # refuses a client's publish on a command topic, so nothing malformed can be injected.
    caplog.set_level(logging.WARNING, "losant_async.mqtt")
    device = Device(DEV, "k", "s", **device_kwargs(broker))
    async with peer(broker) as sender, device, device.commands() as commands:
        topic = f"losant/{DEV}/command"
        await sender.client.publish(topic, b'{"payload":"secret-ish","no":"name"}', 1)
        await sender.client.publish(topic, b'not json at all', 1)
        await sender.client.publish(topic, b'{"name":"blink","payload":null}', 1)
        only = await commands.get(10)
    assert only.name == "blink" and only.time is None
    assert device.stats.malformed_commands == 2
    assert device.stats.commands_received == 1
    assert caplog.text.count("ignored a malformed command") == 2
    assert "secret-ish" not in caplog.text


async def test_async_command_callback_runs(world: World) -> None:
    dev = world.device()
    done = asyncio.Event()

    async def handler(command: Command) -> None:
        await asyncio.sleep(0)
        done.set()

    async with Device(dev.id, dev.key, dev.secret, **world.kwargs()) as device:
        device.on_command(handler)
        await world.send_command(dev.id, "x")
        await asyncio.wait_for(done.wait(), 10)


async def test_gateway_peripherals_added_while_connected_and_removed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from losant_async.mqtt._connection import Connection

    unsubscribed: list[str] = []
    original = Connection.unsubscribe

    async def spy(self: Connection, filters: list[str], timeout: float | None = None) -> None:
        await original(self, filters, timeout)
        unsubscribed.extend(filters)

    monkeypatch.setattr(Connection, "unsubscribe", spy)
    gw_creds = world.device(device_class="gateway")
    p1_id = world.device(device_class="peripheral", parent_id=gw_creds.id).id
    p2_id = world.device(device_class="peripheral", parent_id=gw_creds.id).id
    t = recent_ms()
    async with world.watch() as watcher, Gateway(gw_creds.id, gw_creds.key, gw_creds.secret, **world.kwargs()) as gw:
        p1 = await gw.add_peripheral(p1_id)
        async with p1.commands() as commands:
            await world.send_command(p1_id, "on")
            command = await commands.get(10)
        assert command.name == "on" and command.device_id == p1_id

        # peripheral() returns once subscribed (issue 19): one command sent right after arrives.
        p2 = await gw.peripheral(p2_id)
        async with p2.commands() as p2_commands:
            await world.send_command(p2_id, "hello")
            assert (await p2_commands.get(10)).device_id == p2_id

        await p1.send_state({"level": 3}, time=t)
        await gw.send_state({"uptime": 1}, time=t + 1)
        await gw.flush()
        assert await watcher.wait_states(p1_id, 1) == [{"data": {"level": 3}, "time": t}]
        assert await watcher.wait_states(gw_creds.id, 1) == [{"data": {"uptime": 1}, "time": t + 1}]

        gw.remove_peripheral(p1_id)
        assert p1_id not in gw.peripherals
        with pytest.raises(DeviceClosedError):
            await p1.send_state({"level": 4})
        # Removed: a command for P1 no longer reaches a fresh stream, while P2's still does.
        fresh_p1 = gw._inbox.command_stream(p1_id)
        p2_stream = p2.commands()
        await gw._life.tasks.side_tasks_done()  # the UNSUBSCRIBE for P1 was answered
        await world.send_command(p1_id, "late")
        await world.send_command(p2_id, "marker")
        marker = await p2_stream.get(10)
        assert marker.name == "marker"
        assert len(fresh_p1) == 0
        assert unsubscribed == [f"losant/{p1_id}/command"]  # UNSUBACK received


async def test_custom_topics_publish_and_subscribe(world: World) -> None:
    dev = world.device()
    async with world.peer("factory/#") as watcher, Device(dev.id, dev.key, dev.secret, **world.kwargs()) as device:
        async with device.subscribe("plant/+/cmd") as messages:
            await device.publish("factory/line1", {"speed": 3})
            await device.publish("factory/raw", b"\x01\x02", qos=1)
            await watcher.client.publish("plant/a/cmd", b'{"go":true}', 1)
            message = await messages.get(10)
        assert message.topic == "plant/a/cmd" and message.json() == {"go": True}
        await device.flush()
        await watcher.wait_for(lambda r: len(r) >= 2)
    assert watcher.received == [("factory/line1", b'{"speed":3}'), ("factory/raw", b"\x01\x02")]


async def test_publishing_to_a_foreign_losant_topic_is_refused_before_sending(world: World) -> None:
    dev = world.device()
    async with Device(dev.id, dev.key, dev.secret, **world.kwargs()) as device:
        with pytest.raises(TopicNotAllowedError):
            await device.publish(f"losant/{OTHER}/state", {"data": {}})
        with pytest.raises(ValidationError):
            await device.publish("custom", b"x", retain=True)
        with pytest.raises(ValidationError):
            await device.publish("custom", b"x", qos=2)
        with pytest.raises(ValidationError):
            await device.send_state({"bad name": 1})
        assert device.stats.sent == 0


async def test_events_report_connected_and_closed(world: World) -> None:
    dev = world.device()
    device = Device(dev.id, dev.key, dev.secret, **world.kwargs())
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


async def test_websockets_transport(ws_world: World) -> None:
    world = ws_world
    assert world.ws_port is not None
    dev = world.device()
    t = recent_ms()
    async with world.watch() as watcher, Device(
        dev.id, dev.key, dev.secret, host=world.host, port=world.ws_port, transport="websockets", websocket_path="/"
    ) as device:
        await device.send_state({"ws": 1}, time=t)
        await device.flush()
        assert await watcher.wait_states(dev.id, 1) == [{"data": {"ws": 1}, "time": t}]


async def test_a_device_never_closed_warns(world: World) -> None:
    import gc

    dev = world.device()
    leaked = Device(dev.id, dev.key, dev.secret, **world.kwargs())
    await leaked.start()
    await leaked.aclose()  # release the socket and tasks, then forget that it was closed
    leaked._life.closed = False
    with pytest.warns(ResourceWarning, match="never closed"):
        del leaked
        gc.collect()


async def test_throttled_device_holds_back_a_burst_and_delivers_it_in_order(world: World) -> None:
    from losant_async.mqtt import ThrottleConfig

    dev = world.device()
    fast_limits = ThrottleConfig(per_topic=4, per_connection=100, window=0.2)
    async with world.watch() as watcher, Device(
        dev.id, dev.key, dev.secret, **world.kwargs(throttle=fast_limits)
    ) as device:
        for i in range(10):
            await device.send_state({"i": i})
        await device.flush(timeout=20)
        assert device.stats.throttle_waited > 0
        states = await watcher.wait_states(dev.id, 10)
    assert [s["data"]["i"] for s in states] == list(range(10))


async def test_leaving_sends_disconnect_instead_of_dropping_the_socket(world: World) -> None:
    dev = world.device()
    async with Device(dev.id, dev.key, dev.secret, **world.kwargs()) as device:
        await device.send_state({"a": 1})
        conn = device._session.conn
        assert conn is not None
    assert conn.closed_cleanly


async def test_qos1_device_receives_every_command_once(world: World) -> None:
    # On a plain broker the commands come at QoS 1 and must each be acknowledged; the
    # emulator sends them at QoS 0 as Losant does, and they must still arrive once, in order.
    dev = world.device()
    device = Device(dev.id, dev.key, dev.secret, **world.kwargs(qos=1))
    async with world.peer() as sender, device, device.commands() as commands, device.subscribe(
        "plant/#", qos=1
    ) as messages:
        for i in range(50):
            await world.send_command(dev.id, f"c{i}", i)
        await sender.client.publish("plant/x", "ünïcode".encode(), 1)
        got = [await commands.get(10) for _ in range(50)]
        message = await messages.get(10)
        # A marker sent last: anything re-delivered for want of a PUBACK would come before it.
        await world.send_command(dev.id, "marker")
        assert (await commands.get(10)).name == "marker"
    assert [(c.name, c.payload) for c in got] == [(f"c{i}", i) for i in range(50)]
    assert message.topic == "plant/x" and message.payload.decode() == "ünïcode"



async def test_peripheral_returns_once_subscribed_and_a_refused_one_is_not_kept() -> None:
    """Issue 19: ``await gateway.peripheral(id)`` hands out the handle after the SUBACK, so one
    command sent right after arrives; the emulator refuses a gateway the command topic of a
    device that is not its peripheral (Losant: a gateway speaks for its own peripherals only)."""
    from .conftest import make_world

    async with make_world("emulator") as world:
        gw = world.device(device_class="gateway")
        stranger = world.device().id
        children = [world.device(device_class="peripheral", parent_id=gw.id).id for _ in range(5)]
        async with Gateway(gw.id, gw.key, gw.secret, **world.kwargs()) as gateway:
            for child in children:
                handle = await gateway.peripheral(child)
                async with handle.commands() as commands:
                    await world.send_command(child, "now")  # at once: no retry, no wait
                    assert (await commands.get(10)).device_id == child
            with pytest.raises(TopicNotAllowedError):
                await gateway.peripheral(stranger)
            assert stranger not in gateway.peripherals
            # Concurrent first calls for one peripheral share its one SUBSCRIBE and get one handle.
            late = world.device(device_class="peripheral", parent_id=gw.id).id
            a, b = await asyncio.gather(gateway.peripheral(late), gateway.add_peripheral(late))
            assert a is b

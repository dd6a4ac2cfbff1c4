"""Losant's broker rules as the emulator enforces them, seen by a raw MQTT 3.1.1 client."""

from __future__ import annotations

import contextlib
import json

import pytest

from tests.integration.emulator.emulator_support import World, remaining_length

ACCEPTED = 0
REFUSED_NOT_AUTHORIZED = 5
REFUSED_SERVER_UNAVAILABLE = 3
SUBACK_FAILURE = 0x80


def state_topic(device_id: str) -> str:
    return f"losant/{device_id}/state"


def command_topic(device_id: str) -> str:
    return f"losant/{device_id}/command"


async def connected(world: World, mqtt, device_id: str | None = None):
    client = await mqtt()
    rc = await client.connect(device_id or world.device.id, world.key.key, world.key.secret)
    assert rc == ACCEPTED
    return client


async def test_when_the_secret_is_wrong_connack_5(world: World, mqtt) -> None:
    client = await mqtt()
    assert await client.connect(world.device.id, world.key.key, "not-the-secret") == REFUSED_NOT_AUTHORIZED
    await client.wait_closed()
    assert not world.losant.is_connected(world.device.id)
    assert world.losant.counters.mqtt_connects_refused == 1


async def test_when_the_client_id_is_not_a_device_connack_5(world: World, mqtt) -> None:
    client = await mqtt()
    assert await client.connect("0" * 24, world.key.key, world.key.secret) == REFUSED_NOT_AUTHORIZED


async def test_when_the_key_is_of_another_application_connack_5(world: World, mqtt) -> None:
    other_app = world.losant.create_application(name="other")
    foreign_key = other_app.create_access_key()
    client = await mqtt()
    assert await client.connect(world.device.id, foreign_key.key, foreign_key.secret) == REFUSED_NOT_AUTHORIZED


async def test_when_the_key_is_limited_to_other_devices_connack_5(world: World, mqtt) -> None:
    limited = world.app.create_access_key(device_ids=[world.other.id])
    client = await mqtt()
    assert await client.connect(world.device.id, limited.key, limited.secret) == REFUSED_NOT_AUTHORIZED
    client2 = await mqtt()
    assert await client2.connect(world.other.id, limited.key, limited.secret) == ACCEPTED


async def test_when_clean_session_is_false_connack_5(world: World, mqtt) -> None:
    client = await mqtt()
    assert await client.connect(world.device.id, world.key.key, world.key.secret, clean=False) == REFUSED_NOT_AUTHORIZED


async def test_a_peripheral_cannot_connect_itself(world: World, mqtt) -> None:
    client = await mqtt()
    assert await client.connect(world.peripheral.id, world.key.key, world.key.secret) == REFUSED_NOT_AUTHORIZED


async def test_own_state_is_stored_and_connection_logged(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    assert world.losant.is_connected(world.device.id)
    await client.publish(state_topic(world.device.id), {"data": {"temperature": 21.5, "on": True}})
    states = await world.losant.wait_for_states(world.device.id, 1)
    assert states[0].data == {"temperature": 21.5, "on": True}
    assert states[0].time == world.clock.now
    log = world.losant.connection_log(world.device.id)
    assert [entry.connected for entry in log] == [True]


async def test_qos1_states_are_acknowledged_and_stored_in_order(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    for i in range(5):
        await client.publish(state_topic(world.device.id), {"data": {"temperature": i}, "time": world.clock.now - 10 + i}, qos=1)
        await client.expect(4)  # PUBACK
    states = await world.losant.wait_for_states(world.device.id, 5)
    assert [s.data["temperature"] for s in states] == [0, 1, 2, 3, 4]


async def test_publishing_another_devices_state_is_dropped(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    await client.publish(state_topic(world.other.id), {"data": {"temperature": 1}})
    await client.publish(state_topic(world.device.id), {"data": {"temperature": 2}})
    await world.losant.wait_for_states(world.device.id, 1)
    assert world.losant.states(world.other.id) == []
    assert world.losant.counters.mqtt_publishes_denied == 1
    # the connection stays up, as on Losant
    await client.ping()


async def test_foreign_state_is_not_delivered_to_a_subscriber(world: World, mqtt) -> None:
    listener = await connected(world, mqtt, world.other.id)
    # nobody may subscribe to a state topic, nor cover it with a wildcard
    assert await listener.subscribe(state_topic(world.other.id)) == SUBACK_FAILURE
    assert await listener.subscribe("#") == SUBACK_FAILURE
    assert await listener.subscribe("custom/#") == ACCEPTED
    sender = await connected(world, mqtt)
    await sender.publish(state_topic(world.other.id), {"data": {"temperature": 1}})
    await sender.publish("custom/marker", b"after")
    topic, payload = await listener.next_publish()
    assert (topic, payload) == ("custom/marker", b"after")
    assert world.losant.states(world.other.id) == []


async def test_subscribing_another_devices_command_topic_is_refused(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    assert await client.subscribe(command_topic(world.device.id)) == ACCEPTED
    assert await client.subscribe(command_topic(world.other.id)) == SUBACK_FAILURE
    assert await client.subscribe("+/+/command") == SUBACK_FAILURE
    assert await client.subscribe("losant/+/command") == SUBACK_FAILURE
    assert await client.subscribe("my/own/topic") == ACCEPTED
    assert world.losant.counters.mqtt_subscribes_denied == 3


async def test_commands_arrive_on_the_command_topic_in_losants_form(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    assert await client.subscribe(command_topic(world.device.id)) == ACCEPTED
    await world.losant.send_command(world.device.id, "reboot", {"delay": 5}, time=1_800_000_000_123)
    topic, payload = await client.next_publish()
    assert topic == command_topic(world.device.id)
    assert json.loads(payload) == {
        "name": "reboot",
        "payload": {"delay": 5},
        "time": {"$date": "2027-01-15T08:00:00.123Z"},
    }
    assert [c.name for c in world.losant.commands_sent(world.device.id)] == ["reboot"]


async def test_a_gateway_reports_and_listens_for_its_peripheral(world: World, mqtt) -> None:
    client = await connected(world, mqtt, world.gateway.id)
    assert await client.subscribe(command_topic(world.peripheral.id)) == ACCEPTED
    assert await client.subscribe(command_topic(world.device.id)) == SUBACK_FAILURE
    await client.publish(state_topic(world.peripheral.id), {"data": {"temperature": 7}})
    await client.publish(state_topic(world.device.id), {"data": {"temperature": 8}})
    await world.losant.wait_for_states(world.peripheral.id, 1)
    await world.losant.send_command(world.peripheral.id, "blink", None)
    topic, _ = await client.next_publish()
    assert topic == command_topic(world.peripheral.id)
    assert world.losant.states(world.device.id) == []


async def test_qos2_publish_closes_the_connection_and_is_not_stored(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    await client.publish(state_topic(world.device.id), {"data": {"temperature": 1}}, qos=2)
    # closed at the fixed header: no PUBREC, the message never reaches amqtt
    assert await client.next_packet() is None
    assert world.losant.states(world.device.id) == []
    assert world.losant.counters.mqtt_qos2_closed == 1


async def test_retained_publishes_are_delivered_but_not_retained(world: World, mqtt) -> None:
    sender = await connected(world, mqtt)
    await sender.publish("custom/retained", b"kept?", retain=True)
    await sender.publish(state_topic(world.device.id), {"data": {"temperature": 3}}, retain=True)
    await world.losant.wait_for_states(world.device.id, 1)
    late = await connected(world, mqtt, world.other.id)
    assert await late.subscribe("custom/#") == ACCEPTED
    await sender.publish("custom/marker", b"live")
    # a retained copy would arrive right after SUBACK, before the live marker
    assert await late.next_publish() == ("custom/marker", b"live")
    assert world.losant.counters.mqtt_retain_stripped == 2


async def test_a_message_over_256_kb_is_dropped_and_the_connection_closed(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    big = {"data": {"label": "x" * (256 * 1024)}}
    await client.publish(state_topic(world.device.id), big)
    await client.wait_closed()
    assert world.losant.states(world.device.id) == []
    assert world.losant.counters.mqtt_oversize_closed == 1


async def test_a_huge_message_is_refused_before_its_payload_is_read(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    with contextlib.suppress(ConnectionError):  # the broker may close while the client still writes
        await client.publish("custom/huge", b"x" * (2 * 1024 * 1024))
    await client.wait_closed()
    assert world.losant.counters.mqtt_oversize_closed == 1


async def test_a_message_just_under_the_cap_passes(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    await client.publish("custom/big", b"x" * (256 * 1024))
    await client.ping()
    assert world.losant.counters.mqtt_oversize_closed == 0


async def test_a_second_connection_displaces_the_first(world: World, mqtt) -> None:
    first = await connected(world, mqtt)
    assert await first.subscribe(command_topic(world.device.id)) == ACCEPTED
    second = await connected(world, mqtt)
    await first.wait_closed()
    assert await second.subscribe(command_topic(world.device.id)) == ACCEPTED
    await world.losant.send_command(world.device.id, "hello", 1)
    topic, _ = await second.next_publish()
    assert topic == command_topic(world.device.id)
    assert world.losant.is_connected(world.device.id)
    assert world.losant.counters.mqtt_displaced == 1
    log = [entry.connected for entry in world.losant.connection_log(world.device.id)]
    assert log == [True, False, True]


async def test_a_refused_reconnect_leaves_the_live_connection_alone(world: World, mqtt) -> None:
    live = await connected(world, mqtt)
    assert await live.subscribe(command_topic(world.device.id)) == ACCEPTED
    intruder = await mqtt()
    assert await intruder.connect(world.device.id, world.key.key, "wrong") == REFUSED_NOT_AUTHORIZED
    await intruder.wait_closed()
    # only an accepted CONNECT displaces: the live device keeps its subscription
    await world.losant.send_command(world.device.id, "still-there", None)
    topic, _ = await live.next_publish()
    assert topic == command_topic(world.device.id)
    assert world.losant.is_connected(world.device.id)


async def test_undefined_attributes_are_ignored_and_wrong_types_dropped(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    await client.publish(state_topic(world.device.id), {"data": {"temperature": "hot"}})
    await client.publish(state_topic(world.device.id), b"{not json")
    await client.publish(state_topic(world.device.id), {"data": {"temperature": 5, "humidity": 50}})
    states = await world.losant.wait_for_states(world.device.id, 1)
    assert [s.data for s in states] == [{"temperature": 5}]
    assert world.losant.counters.states_invalid == 2
    assert world.losant.counters.attributes_ignored == 1


async def test_old_and_future_states_are_dropped(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    day = 86_400_000
    now = world.clock.now
    await client.publish(state_topic(world.device.id), {"data": {"temperature": 1}, "time": now - 31 * day})
    await client.publish(state_topic(world.device.id), {"data": {"temperature": 2}, "time": now + 2 * day})
    await client.publish(state_topic(world.device.id), {"data": {"temperature": 3}, "time": now - 29 * day})
    states = await world.losant.wait_for_states(world.device.id, 1)
    assert [(s.time, s.data) for s in states] == [(now - 29 * day, {"temperature": 3})]
    assert world.losant.counters.states_too_old == 1
    assert world.losant.counters.states_too_new == 1


async def test_a_same_millisecond_state_overwrites_what_it_carries(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    stamp = {"$date": "2027-01-15T08:00:00.000Z"}
    await client.publish(state_topic(world.device.id), {"data": {"temperature": 1, "on": True}, "time": stamp})
    await client.publish(state_topic(world.device.id), {"data": {"temperature": 2}, "time": stamp})
    await world.losant.wait_for_states(world.device.id, 2)
    states = world.losant.states(world.device.id)
    assert [s.data for s in states] == [{"temperature": 2, "on": True}]
    assert world.losant.composite_state(world.device.id) == {"temperature": 2, "on": True}


async def test_a_silent_client_is_reaped_after_one_and_a_half_keepalives(world: World, mqtt) -> None:
    client = await mqtt()
    assert await client.connect(world.device.id, world.key.key, world.key.secret, keepalive=1) == ACCEPTED
    await client.wait_closed(timeout=6)
    assert world.losant.counters.mqtt_reaped == 1
    assert not world.losant.is_connected(world.device.id)


class TestThrottle:
    @pytest.fixture
    def throttle(self) -> bool:
        return True

    async def test_31st_message_in_15_s_disconnects_and_bans_for_30_s(self, world: World, mqtt) -> None:
        client = await connected(world, mqtt)
        for i in range(31):
            await client.publish(state_topic(world.device.id), {"data": {"temperature": i}, "time": world.clock.now - i})
        await client.wait_closed()
        assert len(world.losant.states(world.device.id)) == 30
        assert world.losant.counters.mqtt_throttled == 1

        world.clock.advance(29_999)
        during = await mqtt()
        assert await during.connect(world.device.id, world.key.key, world.key.secret) == REFUSED_SERVER_UNAVAILABLE
        # that attempt extended the ban by 30 s from its own time
        world.clock.advance(29_999)
        again = await mqtt()
        assert await again.connect(world.device.id, world.key.key, world.key.secret) == REFUSED_SERVER_UNAVAILABLE
        world.clock.advance(30_001)
        after = await mqtt()
        assert await after.connect(world.device.id, world.key.key, world.key.secret) == ACCEPTED

    async def test_the_window_slides(self, world: World, mqtt) -> None:
        client = await connected(world, mqtt)
        for i in range(30):
            await client.publish(state_topic(world.device.id), {"data": {"temperature": i}, "time": world.clock.now + i})
        await world.losant.wait_for_states(world.device.id, 30)
        world.clock.advance(15_000)
        await client.publish(state_topic(world.device.id), {"data": {"temperature": 99}})
        await world.losant.wait_for_states(world.device.id, 31)
        await client.ping()

    async def test_other_topics_have_their_own_budget(self, world: World, mqtt) -> None:
        client = await connected(world, mqtt)
        for i in range(30):
            await client.publish("custom/a", str(i))
        for i in range(5):
            await client.publish(state_topic(world.device.id), {"data": {"temperature": i}, "time": world.clock.now + i})
        await world.losant.wait_for_states(world.device.id, 5)
        await client.ping()


    async def test_300_messages_in_15_s_per_connection_whatever_the_topics(self, world: World, mqtt) -> None:
        client = await connected(world, mqtt)
        for i in range(300):
            await client.publish(f"custom/{i % 20}", b"x")
        await client.ping()  # all 300 allowed
        await client.publish("custom/another", b"x")
        await client.wait_closed()
        assert world.losant.counters.mqtt_throttled == 1


async def test_websocket_listener_accepts_mqtt(world: World) -> None:
    import aiohttp

    port = world.losant.ws_port
    assert port
    body = (
        b"\x00\x04MQTT\x04\xc2\x00\x0f"
        + len(world.device.id).to_bytes(2, "big") + world.device.id.encode()
        + len(world.key.key).to_bytes(2, "big") + world.key.key.encode()
        + len(world.key.secret).to_bytes(2, "big") + world.key.secret.encode()
    )
    async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://127.0.0.1:{port}/mqtt", protocols=["mqtt"]) as ws:
        assert ws.protocol == "mqtt"
        await ws.send_bytes(b"\x10" + remaining_length(len(body)) + body)
        connack = await ws.receive(timeout=5)
        assert connack.data == b"\x20\x02\x00\x00"
        assert world.losant.is_connected(world.device.id)
        # subscribe and get a command over the same WebSocket
        topic = f"losant/{world.device.id}/command".encode()
        await ws.send_bytes(b"\x82" + remaining_length(5 + len(topic)) + b"\x00\x01" + len(topic).to_bytes(2, "big") + topic + b"\x00")
        suback = await ws.receive(timeout=5)
        assert suback.data == b"\x90\x03\x00\x01\x00"
        await world.losant.send_command(world.device.id, "over-ws", None)
        publish = await ws.receive(timeout=5)
        assert publish.data[0] == 0x30 and topic in publish.data


async def test_an_mqtt5_connect_over_websocket_gets_connack_1_and_is_closed(world: World) -> None:
    import aiohttp

    body = b"\x00\x04MQTT\x05\x02\x00\x0f\x00\x00\x02id"
    async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://127.0.0.1:{world.losant.ws_port}/") as ws:
        await ws.send_bytes(b"\x10" + remaining_length(len(body)) + body)
        connack = await ws.receive(timeout=5)
        assert connack.data == b"\x20\x02\x00\x01"
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)

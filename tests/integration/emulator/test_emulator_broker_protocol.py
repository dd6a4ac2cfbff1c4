"""The emulator's broker against raw MQTT packets: protocol versions, sessions, malformed input, QoS grants.

Each test names the Losant rule it checks (docs/emulator.md, "MQTT broker").
"""

from __future__ import annotations

import struct

from tests.integration.emulator.emulator_support import World, remaining_length

ACCEPTED = 0
UNACCEPTABLE_PROTOCOL = 1
NOT_AUTHORIZED = 5
SUBACK_FAILURE = 0x80


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + remaining_length(len(body)) + body


def connect_body(world: World, *, name: str = "MQTT", level: int = 4, properties: bytes = b"") -> bytes:
    flags = 0x02 | 0x80 | 0x40
    return (
        _string(name) + bytes([level, flags]) + struct.pack("!H", 15) + properties
        + _string(world.device.id) + _string(world.key.key) + _string(world.key.secret)
    )


async def connected(world: World, mqtt, device_id: str | None = None):
    client = await mqtt()
    assert await client.connect(device_id or world.device.id, world.key.key, world.key.secret) == ACCEPTED
    return client


# -- CONNECT ---------------------------------------------------------------------------------


async def test_an_mqtt5_connect_gets_connack_1_and_is_closed(world: World, mqtt) -> None:
    client = await mqtt()
    # MQTT 5: level 5 and a (here empty) properties block after the keepalive
    client.writer.write(packet(0x10, connect_body(world, level=5, properties=b"\x00")))
    connack = await client.expect(2)
    assert connack.body == b"\x00\x01"
    await client.wait_closed()
    assert not world.losant.is_connected(world.device.id)


async def test_an_mqtt31_connect_gets_connack_1_and_is_closed(world: World, mqtt) -> None:
    client = await mqtt()
    client.writer.write(packet(0x10, connect_body(world, name="MQIsdp", level=3)))
    connack = await client.expect(2)
    assert connack.body == b"\x00\x01"
    await client.wait_closed()


async def test_clean_session_0_is_refused_even_after_a_clean_connect(world: World, mqtt) -> None:
    first = await connected(world, mqtt)
    await first.close()
    client = await mqtt()
    assert await client.connect(world.device.id, world.key.key, world.key.secret, clean=False) == NOT_AUTHORIZED
    await client.wait_closed()


async def test_a_connack_never_claims_a_session(world: World, mqtt) -> None:
    for _ in range(2):
        client = await mqtt()
        client.writer.write(packet(0x10, connect_body(world)))
        connack = await client.expect(2)
        assert connack.body == b"\x00\x00"  # session present 0, accepted
        await client.close()


async def test_missing_credentials_get_connack_5_never_a_bare_close(world: World, mqtt) -> None:
    no_user = await mqtt()
    assert await no_user.connect(world.device.id, None, None) == NOT_AUTHORIZED
    await no_user.wait_closed()
    wrong_key = await mqtt()
    assert await wrong_key.connect(world.device.id, "not-a-key", world.key.secret) == NOT_AUTHORIZED
    empty_id = await mqtt()
    assert await empty_id.connect("", world.key.key, world.key.secret) == NOT_AUTHORIZED


async def test_a_packet_before_connect_closes_the_connection(world: World, mqtt) -> None:
    client = await mqtt()
    client.writer.write(b"\xc0\x00")  # PINGREQ
    assert await client.next_packet() is None


# -- PUBLISH ---------------------------------------------------------------------------------


async def test_a_publish_to_a_wildcard_topic_closes_the_connection(world: World, mqtt) -> None:
    listener = await connected(world, mqtt, world.other.id)
    assert await listener.subscribe("custom/#") == ACCEPTED
    client = await connected(world, mqtt)
    await client.publish("custom/+/x", b"wild", qos=1)
    # no PUBACK: the connection is closed, the message delivered to nobody
    assert await client.next_packet() is None
    await listener.ping()
    assert listener.inbox.empty()
    assert not world.losant.is_connected(world.device.id)


async def test_a_malformed_publish_closes_the_connection(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    # the topic length says 200 bytes; the packet carries 3
    client.writer.write(packet(0x30, b"\x00\xc8abc"))
    assert await client.next_packet() is None
    assert not world.losant.is_connected(world.device.id)


async def test_a_publish_with_invalid_utf8_topic_closes_the_connection(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    client.writer.write(packet(0x30, _string(b"custom/\xff") + b"x"))
    assert await client.next_packet() is None


async def test_a_publish_to_sys_is_dropped(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    await client.publish("$SYS/broker/uptime", b"0")
    await client.ping()
    assert world.losant.counters.mqtt_publishes_denied == 1


# -- SUBSCRIBE -------------------------------------------------------------------------------


async def test_suback_grants_at_most_qos_1(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    assert await client.subscribe("custom/two", qos=2) == 1
    assert await client.subscribe("custom/one", qos=1) == 1
    assert await client.subscribe("custom/zero", qos=0) == 0
    assert await client.subscribe("losant/" + world.device.id + "/command", qos=2) == 1


async def test_a_qos0_message_reaches_a_qos1_subscriber_at_qos_0(world: World, mqtt) -> None:
    listener = await connected(world, mqtt, world.other.id)
    assert await listener.subscribe("custom/q", qos=1) == 1
    sender = await connected(world, mqtt)
    await sender.publish("custom/q", b"zero", qos=0)
    await sender.publish("custom/q", b"one", qos=1)
    first = await listener.expect(3)
    second = await listener.expect(3)
    assert (first.flags >> 1) & 3 == 0
    assert (second.flags >> 1) & 3 == 1


async def test_sys_subscriptions_are_refused(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    assert await client.subscribe("$SYS/#") == SUBACK_FAILURE
    assert await client.subscribe("$SYS/broker/clients/connected") == SUBACK_FAILURE
    await client.ping()  # the connection stays up


async def test_an_invalid_filter_is_refused_in_the_suback(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    assert await client.subscribe("custom/a#") == SUBACK_FAILURE
    assert await client.subscribe("custom/#/more") == SUBACK_FAILURE
    assert await client.subscribe("custom/+x") == SUBACK_FAILURE
    assert await client.subscribe("custom/+/x") == ACCEPTED


async def test_a_subscribe_for_qos_3_closes_the_connection(world: World, mqtt) -> None:
    client = await connected(world, mqtt)
    client.writer.write(packet(0x82, b"\x00\x01" + _string("custom/x") + b"\x03"))
    assert await client.next_packet() is None


async def test_unsubscribe_stops_delivery(world: World, mqtt) -> None:
    listener = await connected(world, mqtt, world.other.id)
    assert await listener.subscribe("custom/a") == ACCEPTED
    assert await listener.subscribe("custom/b") == ACCEPTED
    listener.writer.write(packet(0xA2, b"\x00\x09" + _string("custom/a")))
    unsuback = await listener.expect(11)
    assert unsuback.body == b"\x00\x09"
    sender = await connected(world, mqtt)
    await sender.publish("custom/a", b"gone")
    await sender.publish("custom/b", b"kept")
    assert await listener.next_publish() == ("custom/b", b"kept")


# -- custom topics and applications ---------------------------------------------------------


async def test_custom_topics_are_scoped_to_the_application(world: World, mqtt) -> None:
    other_app = world.losant.create_application(name="elsewhere")
    stranger = other_app.create_device(name="s1")
    stranger_key = other_app.create_access_key()
    foreign = await mqtt()
    assert await foreign.connect(stranger.id, stranger_key.key, stranger_key.secret) == ACCEPTED
    assert await foreign.subscribe("shared/x") == ACCEPTED
    assert await foreign.subscribe("shared/#") == ACCEPTED
    local = await connected(world, mqtt, world.other.id)
    assert await local.subscribe("shared/x") == ACCEPTED
    sender = await connected(world, mqtt)
    await sender.publish("shared/x", b"app 1 only")
    assert await local.next_publish() == ("shared/x", b"app 1 only")
    # the other application's device gets nothing; its own application's message arrives first
    own = await mqtt()
    other_device = other_app.create_device(name="s2")
    assert await own.connect(other_device.id, stranger_key.key, stranger_key.secret) == ACCEPTED
    await own.publish("shared/x", b"app 2")
    assert await foreign.next_publish() == ("shared/x", b"app 2")


async def test_a_will_is_published_when_the_connection_dies(world: World, mqtt) -> None:
    listener = await connected(world, mqtt, world.other.id)
    assert await listener.subscribe("custom/status") == ACCEPTED
    client = await mqtt()
    flags = 0x02 | 0x04 | 0x80 | 0x40
    body = (
        _string("MQTT") + bytes([4, flags]) + struct.pack("!H", 15) + _string(world.device.id)
        + _string("custom/status") + _string(b"offline") + _string(world.key.key) + _string(world.key.secret)
    )
    client.writer.write(packet(0x10, body))
    assert (await client.expect(2)).body == b"\x00\x00"
    await client.close()  # no DISCONNECT: abnormal
    assert await listener.next_publish() == ("custom/status", b"offline")


async def test_a_disconnect_packet_sends_no_will(world: World, mqtt) -> None:
    listener = await connected(world, mqtt, world.other.id)
    assert await listener.subscribe("custom/status") == ACCEPTED
    client = await mqtt()
    flags = 0x02 | 0x04 | 0x80 | 0x40
    body = (
        _string("MQTT") + bytes([4, flags]) + struct.pack("!H", 15) + _string(world.device.id)
        + _string("custom/status") + _string(b"offline") + _string(world.key.key) + _string(world.key.secret)
    )
    client.writer.write(packet(0x10, body))
    assert (await client.expect(2)).body == b"\x00\x00"
    client.writer.write(b"\xe0\x00")
    await client.wait_closed()
    sender = await connected(world, mqtt, world.gateway.id)
    await sender.publish("custom/status", b"marker")
    assert await listener.next_publish() == ("custom/status", b"marker")


# -- the REST side's hooks ------------------------------------------------------------------


async def test_broker_publish_and_on_message(world: World, mqtt) -> None:
    broker = world.losant._require()
    seen: list[tuple[str, str, bytes]] = []
    remove = broker.on_message(lambda client_id, topic, payload: seen.append((client_id, topic, payload)))
    listener = await connected(world, mqtt, world.other.id)
    assert await listener.subscribe("custom/+") == ACCEPTED
    await broker.publish("custom/from-platform", b"hello", 1)
    topic, payload = await listener.next_publish()
    assert (topic, payload) == ("custom/from-platform", b"hello")
    sender = await connected(world, mqtt)
    await sender.publish("custom/up", b"up")
    await sender.publish("losant/" + world.device.id + "/state", b'{"data": {"temperature": 1}}')
    await sender.publish("losant/" + world.other.id + "/state", b'{"data": {"temperature": 1}}')  # denied
    await sender.ping()
    assert seen == [
        (world.device.id, "custom/up", b"up"),
        (world.device.id, "losant/" + world.device.id + "/state", b'{"data": {"temperature": 1}}'),
    ]
    remove()
    await sender.publish("custom/up", b"after")
    await sender.ping()
    assert len(seen) == 2


# -- TLS --------------------------------------------------------------------------------------


async def test_tls_listeners_when_given_an_ssl_context() -> None:
    import asyncio
    import ssl

    import aiohttp
    import trustme

    from losant_async.testing import LocalLosant

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with LocalLosant(mqtt_ssl=server_ctx) as losant:
        app = losant.create_application(name="tls")
        device = app.create_device(name="d")
        key = app.create_access_key()
        body = (
            _string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 15)
            + _string(device.id) + _string(key.key) + _string(key.secret)
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", losant.mqtt_port, ssl=client_ctx)
        try:
            writer.write(packet(0x10, body))
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x20\x02\x00\x00"
        finally:
            writer.close()
        # plain TCP to the TLS port gets no CONNACK
        plain_reader, plain_writer = await asyncio.open_connection("127.0.0.1", losant.mqtt_port)
        plain_writer.write(packet(0x10, body))
        assert await asyncio.wait_for(plain_reader.read(4), 5) != b"\x20\x02\x00\x00"
        plain_writer.close()
        async with aiohttp.ClientSession() as http, http.ws_connect(
            f"wss://127.0.0.1:{losant.ws_port}/mqtt", protocols=["mqtt"], ssl=client_ctx
        ) as ws:
            await ws.send_bytes(packet(0x10, body))
            connack = await ws.receive(timeout=5)
            assert connack.data == b"\x20\x02\x00\x00"

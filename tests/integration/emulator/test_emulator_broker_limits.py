"""The emulator broker's limits: throttle bans that lengthen, connection rates, and what access keys allow."""

from __future__ import annotations

import pytest

from losant_async.emulator._rules import BAN_FIRST_MS, BAN_MAX_MS, CONNECTION_RATE_LIMIT
from tests.integration.emulator.emulator_support import World

ACCEPTED = 0
SERVER_UNAVAILABLE = 3
NOT_AUTHORIZED = 5
SUBACK_FAILURE = 0x80


def state_topic(device_id: str) -> str:
    return f"losant/{device_id}/state"


async def connect(world: World, mqtt, device_id: str | None = None, key=None) -> tuple[object, int]:
    key = key or world.key
    client = await mqtt()
    return client, await client.connect(device_id or world.device.id, key.key, key.secret)


async def offend(world: World, mqtt) -> None:
    """Connect and publish 31 messages on one topic: the 31st closes the connection and bans."""
    client, rc = await connect(world, mqtt)
    assert rc == ACCEPTED
    for i in range(31):
        await client.publish("custom/flood", str(i))
    await client.wait_closed()
    await client.close()


class TestThrottle:
    @pytest.fixture
    def throttle(self) -> bool:
        return True

    async def test_bans_double_for_repeat_offenders_up_to_an_hour(self, world: World, mqtt) -> None:
        rules = world.losant._require().rules
        lengths = []
        for _ in range(9):
            await offend(world, mqtt)
            until = rules.banned_until(world.device.id)
            assert until is not None
            lengths.append(until - world.clock.now)
            # one ms before the end: still refused (and that attempt extends the ban by 30 s)
            world.clock.advance(lengths[-1] - 1)
            client, rc = await connect(world, mqtt)
            assert rc == SERVER_UNAVAILABLE
            await client.wait_closed()
            world.clock.advance(BAN_FIRST_MS + 1)
        assert lengths == [30_000, 60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000]
        assert lengths[-1] == BAN_MAX_MS
        assert world.losant.counters.mqtt_throttled == 9

    async def test_an_hour_without_offence_makes_the_next_ban_a_first_one(self, world: World, mqtt) -> None:
        rules = world.losant._require().rules
        await offend(world, mqtt)
        world.clock.advance(BAN_FIRST_MS)
        await offend(world, mqtt)
        assert rules.banned_until(world.device.id) == world.clock.now + 2 * BAN_FIRST_MS
        world.clock.advance(BAN_MAX_MS + 2 * BAN_FIRST_MS + 1)
        await offend(world, mqtt)
        assert rules.banned_until(world.device.id) == world.clock.now + BAN_FIRST_MS

    async def test_a_ban_concerns_only_the_offender(self, world: World, mqtt) -> None:
        await offend(world, mqtt)
        _client, rc = await connect(world, mqtt, world.other.id)
        assert rc == ACCEPTED

    async def test_receiving_31_messages_on_one_topic_disconnects_the_receiver(self, world: World, mqtt) -> None:
        receiver, rc = await connect(world, mqtt, world.other.id)
        assert rc == ACCEPTED
        assert await receiver.subscribe("custom/fan-in") == ACCEPTED
        # two senders stay within their own budgets; the receiver's inbound topic is over
        senders = []
        for device_id in (world.device.id, world.gateway.id):
            sender, rc = await connect(world, mqtt, device_id)
            assert rc == ACCEPTED
            senders.append(sender)
        for i in range(16):
            for sender in senders:
                await sender.publish("custom/fan-in", str(i))
        got = 0
        while await receiver.next_packet() is not None:
            got += 1
        assert got == 30
        for sender in senders:
            await sender.ping()  # the senders are untouched
        assert world.losant.counters.mqtt_throttled == 1

    async def test_300_new_connections_per_15_s_per_application(self, world: World, mqtt) -> None:
        for i in range(CONNECTION_RATE_LIMIT):
            client, rc = await connect(world, mqtt)
            assert rc == ACCEPTED, f"connection {i + 1}"
            await client.close()
        client, rc = await connect(world, mqtt)
        assert rc == SERVER_UNAVAILABLE
        await client.wait_closed()
        # another application has its own budget
        other_app = world.losant.create_application(name="other")
        device = other_app.create_device(name="o1")
        key = other_app.create_access_key()
        client, rc = await connect(world, mqtt, device.id, key)
        assert rc == ACCEPTED
        world.clock.advance(15_000)
        client, rc = await connect(world, mqtt)
        assert rc == ACCEPTED


async def test_without_throttle_nothing_is_limited(world: World, mqtt) -> None:
    client, rc = await connect(world, mqtt)
    assert rc == ACCEPTED
    for i in range(400):
        await client.publish("custom/flood", str(i))
    await client.ping()
    assert world.losant.counters.mqtt_throttled == 0


# -- access keys ------------------------------------------------------------------------------


async def test_a_key_limited_by_tag_admits_only_tagged_devices(world: World, mqtt) -> None:
    key = world.app.create_access_key(device_tags={"floor": "3"})
    _, rc = await connect(world, mqtt, world.device.id, key)
    assert rc == ACCEPTED
    _, rc = await connect(world, mqtt, world.other.id, key)  # floor 4
    assert rc == NOT_AUTHORIZED


async def test_a_key_with_filter_none_allows_only_losant_topics(world: World, mqtt) -> None:
    key = world.app.create_access_key(filter_type="none")
    client, rc = await connect(world, mqtt, key=key)
    assert rc == ACCEPTED
    assert await client.subscribe("custom/x") == SUBACK_FAILURE
    assert await client.subscribe(f"losant/{world.device.id}/command") == ACCEPTED
    listener, _ = await connect(world, mqtt, world.other.id)
    assert await listener.subscribe("custom/x") == ACCEPTED
    await client.publish("custom/x", b"denied")
    await client.publish(state_topic(world.device.id), {"data": {"temperature": 1}})
    await world.losant.wait_for_states(world.device.id, 1)
    await listener.ping()
    assert listener.inbox.empty()
    assert world.losant.counters.mqtt_publishes_denied == 1


async def test_a_whitelist_key_publishes_and_subscribes_only_its_topics(world: World, mqtt) -> None:
    key = world.app.create_access_key(
        filter_type="whitelist", pub_topics=["out/+/data"], sub_topics=["in/#", "exact/topic"]
    )
    client, rc = await connect(world, mqtt, key=key)
    assert rc == ACCEPTED
    assert await client.subscribe("in/a/b") == ACCEPTED
    assert await client.subscribe("in/#") == ACCEPTED
    assert await client.subscribe("exact/topic") == ACCEPTED
    assert await client.subscribe("exact/#") == SUBACK_FAILURE  # wider than allowed
    assert await client.subscribe("out/x/data") == SUBACK_FAILURE  # publish-only
    listener, _ = await connect(world, mqtt, world.other.id)
    assert await listener.subscribe("out/#") == ACCEPTED
    await client.publish("out/x/data", b"allowed")
    await client.publish("out/x/other", b"denied")
    await client.publish("out/x/data", b"again")
    assert await listener.next_publish() == ("out/x/data", b"allowed")
    assert await listener.next_publish() == ("out/x/data", b"again")


async def test_a_blacklist_key_is_refused_its_topics_even_through_wildcards(world: World, mqtt) -> None:
    key = world.app.create_access_key(filter_type="blacklist", pub_topics=["secret/#"], sub_topics=["secret/#"])
    client, rc = await connect(world, mqtt, key=key)
    assert rc == ACCEPTED
    assert await client.subscribe("secret/a") == SUBACK_FAILURE
    assert await client.subscribe("public/#") == ACCEPTED
    # "+/..." cannot be granted (it would cover losant/), so a wildcard reaching a denied
    # topic is tried through a key whose deny list is narrower than the filter
    narrow = world.app.create_access_key(filter_type="blacklist", sub_topics=["public/secret"])
    watcher, rc = await connect(world, mqtt, world.other.id, narrow)
    assert rc == ACCEPTED
    assert await watcher.subscribe("public/#") == SUBACK_FAILURE  # overlaps a denied topic
    assert await watcher.subscribe("public/open") == ACCEPTED
    sender, _ = await connect(world, mqtt, world.gateway.id)
    await client.publish("secret/a", b"denied")
    await sender.publish("secret/a", b"from an unrestricted key")
    await sender.publish("public/open", b"ok")
    assert await watcher.next_publish() == ("public/open", b"ok")
    assert world.losant.counters.mqtt_publishes_denied == 1

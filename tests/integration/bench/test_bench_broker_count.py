"""The scale case's count of what arrived: mosquitto's own $SYS count, read once settled, against a real broker."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks._infra import find_mosquitto, start_broker
from benchmarks.workers._wire import MqttSocket, publish_packet
from benchmarks.workers.broker_count import settled_count

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(find_mosquitto() is None, reason="needs the mosquitto binary (its $SYS tree)"),
]


def _publish(port: int, count: int) -> None:
    conn = MqttSocket("127.0.0.1", port, "bench-count-publisher")
    try:
        conn.send(b"".join(publish_packet(f"losant/{i:024x}/state", b"{}") for i in range(count)))
    finally:
        conn.close()


async def test_the_difference_of_two_settled_counts_is_what_was_published() -> None:
    async with start_broker("mosquitto") as broker:
        before = await asyncio.to_thread(settled_count, broker.port, 2.5, 60.0, None)
        assert before["settled"] is True
        await asyncio.to_thread(_publish, broker.port, 250)
        # As the scale case asks after a run: returns once the count reaches what was sent.
        reached = await asyncio.to_thread(settled_count, broker.port, 10.0, 60.0, before["received"] + 250)
        assert reached == {"received": before["received"] + 250, "settled": True}
        # Asked for more than arrived: the count is final only once it stops changing, and it says so honestly.
        short = await asyncio.to_thread(settled_count, broker.port, 2.5, 60.0, before["received"] + 251)
        assert short == {"received": before["received"] + 250, "settled": True}

"""Issue 11's MQTT findings through a real Device and a real broker: what a user would see."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from losant_async._time import now_ms
from losant_async.errors import TopicNotAllowedError
from losant_async.mqtt import Device
from losant_async.mqtt._outbox import OutboxItem, SQLiteOutbox, _PutTicket
from tests.support.brokers import Broker, free_port

from .conftest import FAST, device_kwargs, peer

DEV = "0123456789abcdef0123abcd"
WAIT = 30.0

pytestmark = pytest.mark.timeout(90)


class HeldOutbox(SQLiteOutbox):
    """Holds its next row write in the worker thread once it has committed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def _insert(self, item: OutboxItem, ticket: _PutTicket) -> int | None:
        armed, self.armed = self.armed, False
        seq = super()._insert(item, ticket)
        if armed:
            self.entered.set()
            assert self.release.wait(WAIT)
        return seq


async def test_finding_01_cancelled_send_state_is_never_published_and_the_device_keeps_sending(
    broker: Broker, tmp_path: Path
) -> None:
    path = tmp_path / "device.db"
    when = (now_ms() // 1000 - 3600) * 1000
    # Offline (nothing listens on the port): every state goes through the SQLite outbox.
    outbox = HeldOutbox(path)
    offline = Device(DEV, "k", "s", host="127.0.0.1", port=free_port(), transport="tcp", qos=1, backoff=FAST,
                     wait_ready=False, outbox=outbox)
    async with offline:
        await offline.send_state({"n": 1}, time=when)
        outbox.armed = True
        cancelled = asyncio.ensure_future(offline.send_state({"n": 2}, time=when + 1))
        assert await asyncio.to_thread(outbox.entered.wait, WAIT)
        cancelled.cancel()
        await asyncio.sleep(0)
        outbox.release.set()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        # The next calls work (no IntegrityError, no LosantError): the device is not broken.
        await asyncio.wait_for(offline.send_state({"n": 3}, time=when + 2), WAIT)
        await asyncio.wait_for(offline.send_state({"n": 4}, time=when + 3), WAIT)
        assert offline.stats.outbox_depth == 3
    # The next start publishes what was stored, and not the state its caller saw cancelled.
    async with peer(broker, f"losant/{DEV}/state") as watcher, Device(
        DEV, "k", "s", **device_kwargs(broker, qos=1, outbox=SQLiteOutbox(path))
    ) as online:
        await online.flush(WAIT)
        await watcher.wait_for(lambda r: len(r) >= 3, WAIT)
        await online.send_state({"n": 5}, time=when + 4)
        await online.flush(WAIT)
        await watcher.wait_for(lambda r: len(r) >= 4, WAIT)
    assert [s["data"]["n"] for s in watcher.states(f"losant/{DEV}/state")] == [1, 3, 4, 5]


async def test_finding_06_deep_command_is_counted_malformed_without_an_error_log(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "losant_async")
    topic = f"losant/{DEV}/command"
    async with peer(broker) as sender, Device(DEV, "k", "s", **device_kwargs(broker)) as device, \
            device.commands() as commands:
        for opener, closer in ((b"[", b"]"), (b'{"a":', b"}")):
            deep = b'{"name":"deep","payload":' + opener * 5000 + b"1" + closer * 5000 + b"}"
            await sender.client.publish(topic, deep, 1)
        await sender.client.publish(topic, b'{"name":"after","payload":[[[1]]]}', 1)
        after = await commands.get(WAIT)
    assert after.name == "after" and after.payload == [[[1]]]
    assert device.stats.malformed_commands == 2
    assert device.stats.commands_received == 1
    assert "RecursionError" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert caplog.text.count("deeper than 64") == 2


async def test_finding_09_refused_topics_send_nothing(broker: Broker) -> None:
    async with peer(broker, "#") as watcher, Device(DEV, "k", "s", **device_kwargs(broker)) as device:
        for topic in (f"losant/{DEV}/command", "$SYS/x", "a/+/b"):
            with pytest.raises(TopicNotAllowedError):
                await device.publish(topic, b"x")
        for topic_filter in ("#", "+/+/command", "$SYS/#"):
            with pytest.raises(TopicNotAllowedError):
                device.subscribe(topic_filter)
        await device.publish("custom/marker", b"end")
        await watcher.wait_for(lambda r: any(t == "custom/marker" for t, _ in r), WAIT)
    assert [t for t, _ in watcher.received] == ["custom/marker"]

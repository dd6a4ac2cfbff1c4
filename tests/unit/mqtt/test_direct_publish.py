"""The QoS 0 direct-write path builds exactly the PUBLISH packet paho would."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import paho.mqtt.client as paho
import pytest

from losant_async.mqtt._connection.flusher import Flusher
from losant_async.mqtt._connection.wire import named_topic, qos0_packet, qos0_publish, qos1_publish


class _Capture:
    """A stand-in socket for paho: records what it is asked to send."""

    def __init__(self) -> None:
        self.data = bytearray()

    def send(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def fileno(self) -> int:
        return -1


def _paho_bytes(topic: str, payload: bytes, qos: int = 0, mid: int = 1) -> bytes:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    capture = _Capture()
    client._sock = capture  # type: ignore[assignment]
    client._send_publish(mid, topic.encode(), payload, qos, False, False, paho.MQTTMessageInfo(mid))
    client._packet_write()
    client._sock = None  # nothing real to close
    return bytes(capture.data)


@pytest.mark.parametrize("size", [0, 1, 100, 127, 128, 16_383, 16_384, 200_000, 2_097_152])
def test_packet_matches_paho_for_every_length_encoding(size: int) -> None:
    topic = "losant/575ecf887ae143cd83dc4aa2/state"
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert qos0_publish(topic.encode(), payload) == _paho_bytes(topic, payload)


@pytest.mark.parametrize("size", [0, 1, 123, 124, 16_380, 200_000])
@pytest.mark.parametrize("mid", [1, 258, 65535])
def test_qos1_packet_matches_paho(size: int, mid: int) -> None:
    topic = "losant/575ecf887ae143cd83dc4aa2/state"
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert qos1_publish(topic.encode(), payload, mid) == _paho_bytes(topic, payload, 1, mid)


# Each edge of the one- and two-byte remaining-length shortcuts, and past them.
@pytest.mark.parametrize("remaining", [126, 127, 128, 129, 16_383, 16_384, 200_000])
@pytest.mark.parametrize("topic", ["a", "losant/575ecf887ae143cd83dc4aa2/state", "caf\u00e9/\u2603"])
def test_the_named_topic_shortcut_builds_the_same_packet(remaining: int, topic: str) -> None:
    named = named_topic(topic)
    size = remaining - len(named)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert qos0_packet(named, payload) == _paho_bytes(topic, payload)


class _FakeConn:
    """What the flusher calls on a connection: ``_flush_pending``, and ``_fail`` when that raises."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.flushed = 0
        self.failed: BaseException | None = None

    def _flush_pending(self) -> None:
        if self.broken:
            raise ValueError("a broken socket")
        self.flushed += 1

    def _fail(self, exc: BaseException) -> None:
        self.failed = exc


async def test_one_callback_per_turn_flushes_every_connection_and_a_fault_stays_with_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    scheduled: list[object] = []
    real_call_soon = loop.call_soon

    def counting_call_soon(callback: Any, *args: Any, **kwargs: Any) -> asyncio.Handle:
        if getattr(callback, "__self__", None) is flusher:  # not the test task's own steps
            scheduled.append(callback)
        return real_call_soon(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon", counting_call_soon)
    flusher = Flusher(loop)
    conns = [_FakeConn(), _FakeConn(broken=True), _FakeConn()]
    for conn in conns:
        flusher.add(cast(Any, conn))
    assert len(scheduled) == 1  # one callback for all three
    await asyncio.sleep(0)  # the end of this turn: the flusher runs
    assert [c.flushed for c in conns] == [1, 0, 1]  # the one after the broken one was written too
    assert isinstance(conns[1].failed, ValueError) and conns[0].failed is None and conns[2].failed is None
    flusher.add(cast(Any, conns[0]))  # a later turn schedules afresh
    assert len(scheduled) == 2
    await asyncio.sleep(0)
    assert conns[0].flushed == 2

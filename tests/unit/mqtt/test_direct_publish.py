"""The QoS 0 direct-write path builds exactly the PUBLISH packet paho would."""

from __future__ import annotations

import paho.mqtt.client as paho
import pytest

from losant_async.mqtt._connection import _qos0_publish, _qos1_publish


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
    assert _qos0_publish(topic.encode(), payload) == _paho_bytes(topic, payload)




@pytest.mark.parametrize("size", [0, 1, 123, 124, 16_380, 200_000])
@pytest.mark.parametrize("mid", [1, 258, 65535])
def test_qos1_packet_matches_paho(size: int, mid: int) -> None:
    topic = "losant/575ecf887ae143cd83dc4aa2/state"
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert _qos1_publish(topic.encode(), payload, mid) == _paho_bytes(topic, payload, 1, mid)

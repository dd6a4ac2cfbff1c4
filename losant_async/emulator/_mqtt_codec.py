"""MQTT 3.1.1 packets for the emulator's broker: an incremental reader, the decoders and encoders it needs."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

__all__ = [
    "CONNECT",
    "DISCONNECT",
    "PINGREQ",
    "PUBACK",
    "PUBLISH",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "Connect",
    "OversizeError",
    "PacketReader",
    "ProtocolError",
    "Publish",
    "encode_connack",
    "encode_pingresp",
    "encode_puback",
    "encode_publish",
    "encode_suback",
    "encode_unsuback",
    "parse_connect",
    "parse_publish",
    "parse_subscribe",
    "parse_unsubscribe",
    "valid_filter",
    "valid_topic",
]

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

_MAX_REMAINING = 268_435_455
_PINGRESP = b"\xd0\x00"


class ProtocolError(Exception):
    """The peer broke MQTT 3.1.1 framing or a packet's rules: the connection must close."""


class OversizeError(ProtocolError):
    """A packet announced a remaining length over the reader's limit (its body is never read)."""

    def __init__(self, kind: int, length: int, limit: int) -> None:
        super().__init__(f"packet type {kind} of {length} bytes over its limit of {limit}")
        self.kind = kind
        self.length = length
        self.limit = limit


class PacketReader:
    """Splits a byte stream into (type, flags, body) packets; a body over its type's limit raises early.

    ``max_remaining`` bounds a PUBLISH, ``per_type`` any packet type (a CONNECT
    before authentication, say): the check is made on the fixed header, so an
    oversized packet is refused before its body is buffered.
    """

    __slots__ = ("_buffer", "_caps", "_need", "max_remaining")

    def __init__(self, max_remaining: int = _MAX_REMAINING, *, per_type: Mapping[int, int] | None = None) -> None:
        self._buffer = bytearray()
        self._need = 0
        self.max_remaining = max_remaining
        caps = [_MAX_REMAINING] * 16
        caps[PUBLISH] = max_remaining
        for kind, cap in (per_type or {}).items():
            caps[kind] = cap
        self._caps = tuple(caps)

    def feed(self, data: bytes) -> Iterator[tuple[int, int, bytes]]:
        """Yield every packet completed by ``data``; a partial one is kept for the next call."""
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return  # a large packet still arriving: no re-scan, no copy
            data = bytes(buffer)
            buffer.clear()
        self._need = 0
        start = 0
        end = len(data)
        while end - start >= 2:
            first = data[start]
            length = 0
            shift = 0
            pos = start + 1
            complete = False
            while pos < end:
                byte = data[pos]
                pos += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    complete = True
                    break
                shift += 7
                if shift > 21:
                    raise ProtocolError("remaining length longer than 4 bytes")
            if not complete:
                break
            if length > self._caps[first >> 4]:
                raise OversizeError(first >> 4, length, self._caps[first >> 4])
            if end - pos < length:
                self._need = pos - start + length
                break
            body = data[pos:pos + length]
            start = pos + length
            yield first >> 4, first & 0x0F, body
        if start < end:
            buffer += data[start:] if start else data


def _string(body: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 2 > len(body):
        raise ProtocolError("truncated string")
    (length,) = struct.unpack_from("!H", body, pos)
    pos += 2
    if pos + length > len(body):
        raise ProtocolError("truncated string")
    return body[pos:pos + length], pos + length


def _text(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("string is not UTF-8") from None
    if "\x00" in text:
        raise ProtocolError("string contains U+0000")
    return text


@dataclass(slots=True)
class Connect:
    protocol_name: str
    level: int
    clean_session: bool
    keepalive: int
    client_id: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    will_topic: str | None = None
    will_payload: bytes = b""
    will_qos: int = 0
    will_retain: bool = False

    @property
    def is_311(self) -> bool:
        return self.protocol_name == "MQTT" and self.level == 4


def parse_connect(body: bytes) -> Connect:
    """Decode a CONNECT; for a protocol other than 3.1.1 only name and level are decoded."""
    raw_name, pos = _string(body, 0)
    if pos + 4 > len(body):
        raise ProtocolError("truncated CONNECT")
    name = raw_name.decode("utf-8", "replace")
    level, flags = body[pos], body[pos + 1]
    (keepalive,) = struct.unpack_from("!H", body, pos + 2)
    pos += 4
    connect = Connect(name, level, bool(flags & 0x02), keepalive)
    if not connect.is_311:
        return connect  # answered with CONNACK 1; MQTT 5 carries properties we need not read
    if flags & 0x01:
        raise ProtocolError("CONNECT reserved flag set")
    raw_id, pos = _string(body, pos)
    connect.client_id = _text(raw_id)
    if flags & 0x04:
        raw_topic, pos = _string(body, pos)
        connect.will_topic = _text(raw_topic)
        connect.will_payload, pos = _string(body, pos)
        connect.will_qos = (flags >> 3) & 3
        connect.will_retain = bool(flags & 0x20)
    elif flags & 0x38:
        raise ProtocolError("will QoS or retain without a will")
    if flags & 0x80:
        raw_user, pos = _string(body, pos)
        connect.username = _text(raw_user)
    if flags & 0x40:
        if not flags & 0x80:
            raise ProtocolError("password without a user name")
        raw_password, pos = _string(body, pos)
        connect.password = raw_password.decode("utf-8", "replace")
    if pos != len(body):
        raise ProtocolError("trailing bytes after CONNECT payload")
    return connect


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    packet_id: int = 0


def parse_publish(flags: int, body: bytes) -> Publish:
    """Decode a PUBLISH; a topic that is not a valid topic name (wildcards, empty) is a ProtocolError."""
    qos = (flags >> 1) & 3
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    raw_topic, pos = _string(body, 0)
    topic = _text(raw_topic)
    if not valid_topic(topic):
        raise ProtocolError("PUBLISH topic is not a valid topic name")
    packet_id = 0
    if qos:
        if pos + 2 > len(body):
            raise ProtocolError("PUBLISH without a packet id")
        (packet_id,) = struct.unpack_from("!H", body, pos)
        pos += 2
        if packet_id == 0:
            raise ProtocolError("PUBLISH with packet id 0")
    return Publish(topic, body[pos:], qos, bool(flags & 1), packet_id)


def parse_subscribe(flags: int, body: bytes) -> tuple[int, list[tuple[str, int]]]:
    """Packet id and (filter, requested QoS) pairs; a requested QoS above 2 is a ProtocolError."""
    if flags != 0x02:
        raise ProtocolError("SUBSCRIBE flags must be 0010")
    if len(body) < 2:
        raise ProtocolError("SUBSCRIBE without a packet id")
    (packet_id,) = struct.unpack_from("!H", body, 0)
    pos = 2
    out: list[tuple[str, int]] = []
    while pos < len(body):
        raw, pos = _string(body, pos)
        if pos >= len(body):
            raise ProtocolError("SUBSCRIBE filter without a QoS byte")
        qos = body[pos]
        pos += 1
        if qos > 2:
            raise ProtocolError("SUBSCRIBE with a requested QoS above 2")
        out.append((_text(raw), qos))
    if not out:
        raise ProtocolError("SUBSCRIBE without a filter")
    return packet_id, out


def parse_unsubscribe(flags: int, body: bytes) -> tuple[int, list[str]]:
    if flags != 0x02:
        raise ProtocolError("UNSUBSCRIBE flags must be 0010")
    if len(body) < 2:
        raise ProtocolError("UNSUBSCRIBE without a packet id")
    (packet_id,) = struct.unpack_from("!H", body, 0)
    pos = 2
    out: list[str] = []
    while pos < len(body):
        raw, pos = _string(body, pos)
        out.append(_text(raw))
    if not out:
        raise ProtocolError("UNSUBSCRIBE without a filter")
    return packet_id, out


def valid_topic(topic: str) -> bool:
    """A topic name one may publish to: non-empty, no wildcards."""
    return bool(topic) and "+" not in topic and "#" not in topic


def valid_filter(topic_filter: str) -> bool:
    """A subscription filter: ``+`` alone in its level, ``#`` alone and last."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "+" in level and level != "+":
            return False
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
    return True


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def encode_connack(return_code: int, session_present: bool = False) -> bytes:
    return bytes((0x20, 2, 1 if session_present else 0, return_code))


def encode_puback(packet_id: int) -> bytes:
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


def encode_suback(packet_id: int, codes: list[int]) -> bytes:
    return bytes((0x90,)) + _length(2 + len(codes)) + packet_id.to_bytes(2, "big") + bytes(codes)


def encode_unsuback(packet_id: int) -> bytes:
    return b"\xb0\x02" + packet_id.to_bytes(2, "big")


def encode_pingresp() -> bytes:
    return _PINGRESP


def encode_publish(topic: bytes, payload: bytes, qos: int = 0, packet_id: int = 0) -> bytes:
    """A PUBLISH (never retained) to ``topic`` (already UTF-8)."""
    head = len(topic).to_bytes(2, "big") + topic
    if qos:
        head += packet_id.to_bytes(2, "big")
    return bytes((0x30 | (qos << 1),)) + _length(len(head) + len(payload)) + head + payload

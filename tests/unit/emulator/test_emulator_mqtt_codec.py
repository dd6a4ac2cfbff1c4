"""The emulator broker's MQTT codec and topic rules, without sockets."""

from __future__ import annotations

import struct

import pytest

from losant_async.emulator._mqtt_codec import (
    OversizeError,
    PacketReader,
    ProtocolError,
    encode_publish,
    encode_suback,
    parse_connect,
    parse_publish,
    parse_subscribe,
    valid_filter,
)
from losant_async.emulator._rules import _overlaps, covers, matches


def _s(text: str) -> bytes:
    return struct.pack("!H", len(text.encode())) + text.encode()


def test_the_reader_splits_packets_across_any_chunking() -> None:
    stream = encode_publish(b"a/b", b"x" * 300) + b"\xc0\x00" + encode_publish(b"c", b"")
    for size in (1, 2, 3, 7, 100, len(stream)):
        reader = PacketReader()
        out = []
        for i in range(0, len(stream), size):
            out += list(reader.feed(stream[i:i + size]))
        assert [(k, len(b)) for k, _f, b in out] == [(3, 305), (12, 0), (3, 3)], size


def test_the_reader_refuses_an_oversized_publish_from_its_header() -> None:
    reader = PacketReader(max_remaining=1000)
    with pytest.raises(OversizeError):
        list(reader.feed(b"\x30\xe9\x07"))  # 1001 announced, nothing more sent


def test_the_reader_refuses_a_five_byte_remaining_length() -> None:
    with pytest.raises(ProtocolError):
        list(PacketReader().feed(b"\x30\xff\xff\xff\xff\x01"))


def test_connect_versions() -> None:
    v311 = parse_connect(_s("MQTT") + b"\x04\xc2\x00\x0f" + _s("id") + _s("user") + _s("pw"))
    assert v311.is_311 and v311.clean_session and (v311.client_id, v311.username, v311.password) == ("id", "user", "pw")
    assert not parse_connect(_s("MQTT") + b"\x05\x02\x00\x0f\x00" + _s("id")).is_311
    assert not parse_connect(_s("MQIsdp") + b"\x03\x02\x00\x0f" + _s("id")).is_311
    with pytest.raises(ProtocolError):  # password without user name
        parse_connect(_s("MQTT") + b"\x04\x42\x00\x0f" + _s("id") + _s("pw"))
    with pytest.raises(ProtocolError):
        parse_connect(_s("MQTT") + b"\x04\x02\x00\x0f" + _s("id") + b"junk")


def test_publish_topics_must_be_names() -> None:
    assert parse_publish(0x02, _s("a/b") + b"\x00\x07hi").packet_id == 7
    for topic in ("a/+", "#", ""):
        with pytest.raises(ProtocolError):
            parse_publish(0, _s(topic) + b"x")
    with pytest.raises(ProtocolError):
        parse_publish(0x02, _s("a") + b"\x00\x00")  # packet id 0


def test_subscribe_and_filters() -> None:
    assert parse_subscribe(0x02, b"\x00\x05" + _s("a/#") + b"\x01" + _s("b") + b"\x02") == (5, [("a/#", 1), ("b", 2)])
    with pytest.raises(ProtocolError):
        parse_subscribe(0x02, b"\x00\x05" + _s("a") + b"\x03")
    assert encode_suback(5, [1, 0x80]) == b"\x90\x04\x00\x05\x01\x80"
    assert [valid_filter(f) for f in ("a/+/b", "#", "a/#", "a#", "a/#/b", "a/b+", "")] == [
        True, True, True, False, False, False, False]


def test_topic_matching_covering_and_overlap() -> None:
    assert matches("a/+/c", "a/b/c") and matches("a/#", "a") and matches("a/#", "a/b/c")
    assert not matches("a/+", "a/b/c") and not matches("+/x", "$SYS/x") and not matches("#", "$SYS")
    assert covers("in/#", "in/a/+") and covers("a/+", "a/b") and not covers("a/+", "a/#")
    assert not covers("exact/topic", "exact/#")
    assert _overlaps("public/#", "public/secret") and _overlaps("a/+/c", "a/b/#")
    assert not _overlaps("a/b", "a/c") and not _overlaps("a/b", "a/b/c")

"""Topic rules, state encoding, limits and command decoding: pure functions, no broker."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from losant_async.errors import (
    DecodeError,
    InvalidIdError,
    PayloadTooLargeMQTTError,
    RetainNotAllowedError,
    TopicNotAllowedError,
    UnsupportedQoSError,
    ValidationError,
)
from losant_async.mqtt._payloads import (
    MAX_PAYLOAD_BYTES,
    check_qos,
    check_retain,
    decode_command,
    encode_payload,
    encode_state,
)
from losant_async.mqtt._topics import (
    check_publish_topic,
    check_subscribe_filter,
    command_topic,
    state_topic,
    topic_matches,
    validate_device_id,
)

DEV = "5f0c0a1b2c3d4e5f6a7b8c9d"
OTHER = "aaaaaaaaaaaaaaaaaaaaaaaa"


def test_topic_names() -> None:
    assert state_topic(DEV) == f"losant/{DEV}/state"
    assert command_topic(DEV) == f"losant/{DEV}/command"


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "x#", None, 12, "a b"])
def test_device_id_that_would_break_a_topic_is_refused(bad: object) -> None:
    with pytest.raises(InvalidIdError):
        validate_device_id(bad)


def test_device_publishes_to_own_and_custom_topics() -> None:
    own = {DEV}
    assert check_publish_topic(f"losant/{DEV}/state", own, gateway=False)
    assert check_publish_topic("factory/line1/temp", own, gateway=False)


def test_device_may_not_publish_to_another_devices_losant_topic() -> None:
    with pytest.raises(TopicNotAllowedError, match="only a gateway"):
        check_publish_topic(f"losant/{OTHER}/state", {DEV}, gateway=False)


def test_gateway_may_publish_for_other_devices() -> None:
    assert check_publish_topic(f"losant/{OTHER}/state", {DEV}, gateway=True)


@pytest.mark.parametrize("topic", ["a/#", "a/+/b", ""])
def test_publish_to_wildcard_or_empty_topic_is_refused(topic: str) -> None:
    with pytest.raises(ValidationError):
        check_publish_topic(topic, {DEV}, gateway=False)


def test_subscribe_filters_are_checked() -> None:
    assert check_subscribe_filter("custom/#", {DEV}, gateway=False)
    assert check_subscribe_filter("a/+/c", {DEV}, gateway=False)
    with pytest.raises(ValidationError):
        check_subscribe_filter("a/#/c", {DEV}, gateway=False)
    with pytest.raises(ValidationError):
        check_subscribe_filter("a/b+/c", {DEV}, gateway=False)
    with pytest.raises(TopicNotAllowedError):
        check_subscribe_filter(f"losant/{OTHER}/command", {DEV}, gateway=False)


@pytest.mark.parametrize(
    ("flt", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a/b/c", True),
        ("a/#", "a", True),
        ("#", "$SYS/x", False),
        ("+/b", "a/c", False),
    ],
)
def test_topic_matching(flt: str, topic: str, expected: bool) -> None:
    assert topic_matches(flt, topic) is expected


def test_state_is_encoded_with_time_in_epoch_ms() -> None:
    when = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
    body = msgspec.json.decode(encode_state({"temperature": 21.5, "on": True, "name": "x"}, when))
    assert body == {"data": {"temperature": 21.5, "on": True, "name": "x"}, "time": 1714564800123}


def test_state_without_time_is_stamped_with_the_call_time() -> None:
    before = int(datetime.now(timezone.utc).timestamp() * 1000)
    body = msgspec.json.decode(encode_state({"a": 1}))
    after = int(datetime.now(timezone.utc).timestamp() * 1000)
    assert before <= body["time"] <= after


def test_state_with_flow_version_and_epoch_ms() -> None:
    body = msgspec.json.decode(encode_state({"a": 1}, 1700000000000, flow_version="v2"))
    assert body == {"data": {"a": 1}, "time": 1700000000000, "flowVersion": "v2"}


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValidationError, match="naive"):
        encode_state({"a": 1}, datetime(2024, 1, 1))


@pytest.mark.parametrize(
    "data",
    [
        {"bad name": 1},
        {"": 1},
        {"a" * 256: 1},
        {"obj": object()},
        {"nested": {"x": 1}},
        {"nan": float("nan")},
        {},
    ],
)
def test_bad_state_data_is_refused_before_sending(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        encode_state(data)


def test_state_over_256_kb_is_refused() -> None:
    data = {f"s{i}": "x" * 60_000 for i in range(5)}
    with pytest.raises(PayloadTooLargeMQTTError):
        encode_state(data)


def test_custom_payload_forms_and_limit() -> None:
    assert encode_payload(b"\x00\x01") == b"\x00\x01"
    assert encode_payload("hé") == "hé".encode()
    assert encode_payload({"a": [1, 2]}) == b'{"a":[1,2]}'
    assert len(encode_payload(b"x" * MAX_PAYLOAD_BYTES)) == MAX_PAYLOAD_BYTES
    with pytest.raises(PayloadTooLargeMQTTError):
        encode_payload(b"x" * (MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(ValidationError):
        encode_payload({"a": object()})


def test_qos_2_and_retain_are_refused() -> None:
    assert check_qos(0) == 0 and check_qos(1) == 1
    for bad in (2, -1, True, "1"):
        with pytest.raises(UnsupportedQoSError):
            check_qos(bad)
    check_retain(False)
    with pytest.raises(RetainNotAllowedError):
        check_retain(True)


def test_command_with_ejson_date() -> None:
    cmd = decode_command(b'{"name":"reboot","payload":{"delay":5},"time":{"$date":"2024-03-04T05:06:07.890Z"}}', DEV)
    assert cmd.name == "reboot"
    assert cmd.payload == {"delay": 5}
    assert cmd.time == datetime(2024, 3, 4, 5, 6, 7, 890000, tzinfo=timezone.utc)
    assert cmd.device_id == DEV


@pytest.mark.parametrize(
    ("time_json", "expected"),
    [
        ("1709528767890", datetime(2024, 3, 4, 5, 6, 7, 890000, tzinfo=timezone.utc)),
        ('"2024-03-04T05:06:07Z"', datetime(2024, 3, 4, 5, 6, 7, tzinfo=timezone.utc)),
        ('{"$undefined":true}', None),
        ("null", None),
        ('"not a date"', None),
    ],
)
def test_command_time_forms(time_json: str, expected: datetime | None) -> None:
    cmd = decode_command(f'{{"name":"n","time":{time_json}}}'.encode())
    assert cmd.time == expected


def test_command_undefined_payload_means_absent() -> None:
    assert decode_command(b'{"name":"n","payload":{"$undefined":true}}').payload is None


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"payload":1}', b'{"name":5}'])
def test_malformed_command_is_a_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_command(raw)


def test_command_time_is_aware() -> None:
    cmd = decode_command(b'{"name":"n","time":1700000000000}')
    assert cmd.time is not None and cmd.time.utcoffset() == timedelta(0)

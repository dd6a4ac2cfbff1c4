"""Property tests of the MQTT path: generated states, ids, topics and commands give a typed error
before anything is sent, or a message that round-trips.

The pure functions (encode_state, validate_device_id, the topic checks, decode_command) are
checked against independent oracles written from Losant's rules; ``Device.send_state`` and
``Device.publish`` are driven against a loopback mosquitto (skipped without it), where a
marker message after each example proves what did, and did not, go out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import string
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from losant_async._state import MAX_STRING_CHARS
from losant_async.errors import DecodeError, InvalidIdError, LosantError, ValidationError
from losant_async.mqtt._payloads import (
    MAX_COMMAND_DEPTH,
    MAX_PAYLOAD_BYTES,
    decode_command,
    encode_state,
)
from losant_async.mqtt._topics import (
    check_publish_topic,
    check_subscribe_filter,
    topic_matches,
    validate_device_id,
)

OWN = "5f0c0a1b2c3d4e5f6a7b8c9d"
OTHER = "aaaaaaaaaaaaaaaaaaaaaaaa"
FIXED_NOW = 1_700_000_000_000

# Example counts (reported in the closing note): the pure properties are cheap, so they run more.
PURE = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIVE = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- strategies ---------------------------------------------------------------------------------

_ascii_name_chars = string.ascii_letters + string.digits + "_-"
good_names = st.text(_ascii_name_chars, min_size=1, max_size=40)
any_names = st.one_of(
    good_names,
    st.text(min_size=0, max_size=12),  # any Unicode, blanks, newlines
    good_names.map(lambda n: n + "\n"),
    st.sampled_from(["\u0661", "\uff11", "\u0967", "\u212a", "a.b", "a b", "x" * 256]),
)
good_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
)
any_values = st.one_of(
    good_values,
    st.integers(),  # beyond 64 bits too
    st.floats(),  # NaN and infinities too
    st.none(),
    st.binary(max_size=8),
    st.sets(st.integers(), max_size=3),
    st.lists(st.integers(), max_size=3),
    st.datetimes(),
    st.just("x" * (MAX_STRING_CHARS + 1)),
)
any_state = st.dictionaries(any_names, any_values, max_size=6)
good_state = st.dictionaries(good_names, good_values, min_size=1, max_size=6)
any_time = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=4_000_000_000_000),
    st.datetimes(timezones=st.just(timezone.utc), min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
)


def valid_name(name: object) -> bool:
    return isinstance(name, str) and 1 <= len(name) <= 255 and all(c in _ascii_name_chars for c in name)


def valid_value(value: object) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= MAX_STRING_CHARS
    return False


def expected_ms(time: datetime | int | None) -> float:
    if time is None:
        return FIXED_NOW
    if isinstance(time, datetime):
        return (time - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(milliseconds=1)
    return time


# -- encode_state -------------------------------------------------------------------------------


@PURE
@given(any_state, any_time)
@example({"t\n": 1}, None)
@example({"t": math.nan}, None)
@example({"t": 2**64}, None)
def test_encode_state_refuses_or_round_trips(data: dict[Any, Any], time: datetime | int | None) -> None:
    ok = bool(data) and all(valid_name(k) and valid_value(v) for k, v in data.items())
    try:
        payload = encode_state(data, time, now=FIXED_NOW)
    except ValidationError:
        assert not ok or len(json.dumps({"data": data})) > MAX_PAYLOAD_BYTES - 100
        return
    assert ok, f"accepted a state Losant would change or refuse: {data!r}"
    assert len(payload) <= MAX_PAYLOAD_BYTES
    body = msgspec.json.decode(payload)
    assert set(body) == {"data", "time"}
    assert isinstance(body["time"], int)
    assert abs(body["time"] - expected_ms(time)) <= 0.5  # a datetime is rounded to its millisecond
    assert body["data"] == data
    # Types survive: a float stays a float (1.0 is not sent as 1), a bool stays a bool.
    assert [type(v) for v in body["data"].values()] == [type(v) for v in data.values()]


# -- validate_device_id -------------------------------------------------------------------------


ids = st.one_of(
    st.text(min_size=0, max_size=30),
    st.text("0123456789abcdefABCDEF", min_size=22, max_size=26),
    st.text("0123456789abcdef", min_size=24, max_size=24).map(lambda s: s + "\n"),
    st.text("\u0660\u0661\uff10\u0966abcdef", min_size=24, max_size=24),
)


@PURE
@given(ids)
def test_device_id_is_24_ascii_hex_or_refused(candidate: str) -> None:
    ok = len(candidate) == 24 and all(c in string.hexdigits for c in candidate)
    if ok:
        assert validate_device_id(candidate) == candidate
    else:
        with pytest.raises(InvalidIdError):
            validate_device_id(candidate)


# -- topics -------------------------------------------------------------------------------------

levels = st.one_of(
    st.sampled_from(["losant", OWN, OTHER, "state", "command", "+", "#", "", "$SYS", "$x", "custom", "a"]),
    st.text(min_size=0, max_size=5),
)
topics = st.lists(levels, min_size=1, max_size=5).map("/".join)
probe_ids = st.one_of(st.just(OTHER), st.text("0123456789abcdef", min_size=24, max_size=24))


@PURE
@given(topics, st.booleans())
@example("losant/+/command", True)
@example("+/+/command", False)
def test_publish_topic_refused_or_allowed_by_losants_rules(topic: str, gateway: bool) -> None:
    try:
        checked = check_publish_topic(topic, {OWN}, gateway=gateway)
    except ValidationError:
        return
    assert checked == topic
    assert "+" not in topic and "#" not in topic and "\x00" not in topic
    assert not topic.startswith("$")
    if topic.startswith("losant/") or topic == "losant":
        parts = topic.split("/")
        assert len(parts) == 3 and parts[2] == "state"
        assert re.fullmatch("[0-9a-fA-F]{24}", parts[1])
        assert gateway or parts[1] == OWN


@PURE
@given(topics, st.booleans(), probe_ids)
@example("#", False, OTHER)
@example("$SYS/#", False, OTHER)
def test_subscribe_filter_never_reaches_other_devices_or_sys(topic_filter: str, gateway: bool, other: str) -> None:
    assume(other != OWN)
    try:
        checked = check_subscribe_filter(topic_filter, {OWN}, gateway=gateway)
    except ValidationError:
        return
    assert checked == topic_filter
    assert not topic_filter.startswith("$")
    for kind in ("state", "command", "x"):
        # No accepted filter could deliver another device's losant/ traffic (a gateway names
        # its peripheral exactly, never through a wildcard).
        target = f"losant/{other}/{kind}"
        assert not topic_matches(topic_filter, target) or (gateway and topic_filter == target == f"losant/{other}/command")
    assert not topic_matches(topic_filter, f"losant/{OWN}/state")


# -- decode_command -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=20,
)


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@st.composite
def nested(draw: st.DrawFn) -> object:
    value: object = draw(json_values)
    for _ in range(draw(st.integers(min_value=0, max_value=200))):
        value = [value] if draw(st.booleans()) else {draw(st.text(max_size=3)): value}
    return value


@PURE
@given(st.text(min_size=1, max_size=20), nested())
def test_command_decodes_round_trip_or_is_a_decode_error(name: str, payload: object) -> None:
    raw = json.dumps({"name": name, "payload": payload}).encode()
    if 1 + depth_of(payload) > MAX_COMMAND_DEPTH:
        with pytest.raises(DecodeError):
            decode_command(raw, OWN)
        return
    command = decode_command(raw, OWN)
    assert command.name == name and command.device_id == OWN
    undefined = isinstance(payload, dict) and payload == {"$undefined": True}
    assert command.payload == (None if undefined else payload)


@PURE
@given(st.binary(max_size=300) | st.text(max_size=100).map(str.encode) | st.builds(lambda n: b"[" * n, st.integers(0, 3000)))
def test_any_bytes_decode_or_raise_decode_error_only(raw: bytes) -> None:
    try:
        command = decode_command(raw, OWN)
    except DecodeError as exc:
        assert exc.raw is None or len(exc.raw) <= max(len(raw), 200)
        return
    assert isinstance(command.name, str)


# -- Device.send_state / publish against a loopback mosquitto ------------------------------------


class Watcher:
    """An independent aiomqtt subscriber to everything: what the broker really delivered."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.received: list[tuple[str, bytes]] = []
        self._arrived = asyncio.Event()

    async def run(self) -> None:
        async for message in self.client.messages:
            self.received.append((message.topic.value, bytes(message.payload)))
            self._arrived.set()

    async def wait_for_topic(self, topic: str, timeout: float) -> None:
        async def _wait() -> None:
            while not any(t == topic for t, _ in self.received):
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(_wait(), timeout)


class Live:
    """One device and one independent watcher on a mosquitto shared by the live examples."""

    def __init__(self, device: Any, watcher: Watcher) -> None:
        self.device = device
        self.watcher = watcher
        self.n = 0

    async def sent_since_last_marker(self) -> list[tuple[str, bytes]]:
        """Send a marker, wait for it, and return what arrived before it since the previous one."""
        self.n += 1
        marker = f"fuzz/marker/{self.n}"
        await self.device.publish(marker, b"")
        await self.watcher.wait_for_topic(marker, 15.0)
        got = list(self.watcher.received)
        self.watcher.received.clear()
        return [(t, p) for t, p in got[: next(i for i, (t, _) in enumerate(got) if t == marker)]
                if not t.startswith("fuzz/marker/")]


async def _cancelled(task: asyncio.Future[None]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live() -> AsyncIterator[Live]:
    import aiomqtt

    from losant_async.mqtt import Backoff, Device
    from tests.support.brokers import MOSQUITTO, running_broker

    if MOSQUITTO is None:
        pytest.skip("needs the mosquitto binary")
    async with contextlib.AsyncExitStack() as stack:
        broker = await stack.enter_async_context(running_broker(prefer="mosquitto"))
        client = await stack.enter_async_context(aiomqtt.Client(broker.host, broker.port))
        await client.subscribe("#", 1)
        watcher = Watcher(client)
        pump = asyncio.ensure_future(watcher.run())
        stack.push_async_callback(_cancelled, pump)
        device = await stack.enter_async_context(
            Device(OWN, "k", "s", host=broker.host, port=broker.port, transport="tcp",
                   backoff=Backoff(initial=0.05, cap=0.3), connect_timeout=10.0)
        )
        yield Live(device, watcher)


@pytest.mark.mosquitto
@pytest.mark.asyncio(loop_scope="module")
@LIVE
@given(any_state)
async def test_device_send_state_refuses_before_sending_or_delivers_it_whole(live: Live, data: dict[Any, Any]) -> None:
    ok = bool(data) and all(valid_name(k) and valid_value(v) for k, v in data.items())
    try:
        await live.device.send_state(data)
    except LosantError as exc:
        assert isinstance(exc, ValidationError)
        assert not ok
        assert await live.sent_since_last_marker() == []
        return
    assert ok
    arrived = await live.sent_since_last_marker()
    assert len(arrived) == 1 and arrived[0][0] == f"losant/{OWN}/state"
    body = msgspec.json.decode(arrived[0][1])
    assert body["data"] == data and isinstance(body["time"], int)


@pytest.mark.mosquitto
@pytest.mark.asyncio(loop_scope="module")
@LIVE
@given(topics, st.one_of(st.binary(max_size=20), st.text(max_size=20)))
async def test_device_publish_refuses_before_sending_or_delivers_exactly(live: Live, topic: str, payload: bytes | str) -> None:
    assume(not topic.startswith("fuzz/marker/"))
    try:
        await live.device.publish(topic, payload)
    except LosantError as exc:
        assert isinstance(exc, ValidationError)
        assert await live.sent_since_last_marker() == []
        return
    expected = payload.encode() if isinstance(payload, str) else payload
    assert await live.sent_since_last_marker() == [(topic, expected)]

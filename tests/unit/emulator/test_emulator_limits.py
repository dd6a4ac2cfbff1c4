"""The emulator's limits as plain functions: JSON depth, times, keepalive bounds, per-type packet caps, header names."""

from __future__ import annotations

import pytest

from losant_async.emulator import _limits
from losant_async.emulator._limits import Limits, decode_json, default_limits, json_depth
from losant_async.emulator._mqtt_codec import CONNECT, SUBSCRIBE, OversizeError, PacketReader
from losant_async.emulator._rest._common import KEEPALIVE_MAX_S, KEEPALIVE_MIN_S, keepalive_interval
from losant_async.emulator._rest.files import content_disposition, safe_content_type
from losant_async.emulator.store import check_time
from losant_async.errors import ValidationError


def test_json_depth_counts_arrays_and_objects_and_stops_early() -> None:
    assert json_depth(1, 64) == 0
    assert json_depth({"a": [1, {"b": []}]}, 64) == 4
    assert json_depth([[[[[]]]]], 2) == 3  # stops one past the limit


def test_decode_json_refuses_deep_nesting_whatever_the_depth() -> None:
    assert decode_json(b'{"a": [[1]]}', 3) == {"a": [[1]]}
    for depth in (5, 1000, 100_000):  # the deepest ones are msgspec's own RecursionError
        with pytest.raises(ValueError, match="nested deeper"):
            decode_json(b"[" * depth + b"]" * depth, 4)


def test_command_times_must_fit_an_iso_date() -> None:
    assert check_time(253_402_300_799_999, "time") == 253_402_300_799_999
    for bad in (253_402_300_800_000, -1, float("nan"), float("inf"), True):
        with pytest.raises(ValidationError, match="year 9999"):
            check_time(bad, "time")


def test_keepalive_interval_is_held_within_its_bounds() -> None:
    assert keepalive_interval(None) == 2.0
    assert keepalive_interval("1e9") == KEEPALIVE_MAX_S
    assert keepalive_interval("0") == KEEPALIVE_MIN_S
    for bad in ("nan", "soon"):
        with pytest.raises(ValidationError):
            keepalive_interval(bad)


def test_a_packet_over_its_types_cap_is_refused_from_the_fixed_header() -> None:
    reader = PacketReader(1000, per_type={CONNECT: 10, SUBSCRIBE: 20})
    with pytest.raises(OversizeError) as caught:
        list(reader.feed(b"\x10\x0b"))  # a CONNECT of 11, nothing more sent
    assert (caught.value.kind, caught.value.length, caught.value.limit) == (CONNECT, 11, 10)
    assert list(PacketReader(1000, per_type={SUBSCRIBE: 20}).feed(b"\x82\x02\x00\x01")) == [(8, 2, b"\x00\x01")]


def test_limits_replace_refuses_nonsense() -> None:
    assert Limits().replace(max_rest_connections=3).max_rest_connections == 3
    for bad in (0, -1, True):
        with pytest.raises(ValidationError):
            Limits().replace(max_rest_connections=bad)


def test_default_connection_caps_fit_under_the_descriptor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_limits, "descriptor_limit", lambda: 1024)
    limits = default_limits()
    assert (limits.max_mqtt_connections, limits.max_rest_connections) == (720, 240)
    assert limits.max_mqtt_connections + limits.max_rest_connections + 64 <= 1024
    monkeypatch.setattr(_limits, "descriptor_limit", lambda: None)
    assert default_limits() == Limits()


def test_content_disposition_quotes_nothing_it_should_not() -> None:
    assert content_disposition("report.csv") == "attachment; filename=\"report.csv\"; filename*=UTF-8''report.csv"
    header = content_disposition('a"; filename="evil.exe\r\nX: 1')
    assert "\r" not in header and "\n" not in header and header.count('"') == 2
    assert safe_content_type("text/csv; charset=utf-8") == "text/csv"
    assert safe_content_type("text/plain\r\nX-Evil: 1") == "application/octet-stream"

"""The leaves: error tree, JSON codec and time conversions."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from losant_async import _json, _time, errors


class Point(msgspec.Struct, kw_only=True, omit_defaults=True):
    x: int
    label: str | msgspec.UnsetType = msgspec.UNSET


class TestErrors:
    def test_status_maps_to_meaningful_subclass(self) -> None:
        assert errors.error_for_status(404) is errors.NotFoundError
        assert errors.error_for_status(429) is errors.RateLimitedError
        assert errors.error_for_status(503) is errors.ServerError
        assert errors.error_for_status(418) is errors.APIError

    def test_transport_errors_are_also_builtins(self) -> None:
        assert issubclass(errors.RequestTimeoutError, TimeoutError)
        assert issubclass(errors.ConnectError, ConnectionError)
        assert issubclass(errors.ValidationError, ValueError)
        assert issubclass(errors.PayloadTooLargeMQTTError, errors.ValidationError)

    def test_api_error_message_names_status_type_and_request(self) -> None:
        exc = errors.NotFoundError(404, "NotFound", "Device was not found", {"type": "NotFound"},
                                   method="GET", path="/applications/x/devices/y")
        assert "404" in str(exc) and "NotFound" in str(exc) and "GET /applications/x/devices/y" in str(exc)
        assert exc.body == {"type": "NotFound"}

    def test_api_errors_survive_pickling(self) -> None:
        exc = errors.RateLimitedError(429, "RateLimit", "slow down", None, retry_after=3.0)
        again = pickle.loads(pickle.dumps(exc))
        assert isinstance(again, errors.RateLimitedError) and again.status == 429

    def test_invalid_id_error_truncates_long_values(self) -> None:
        exc = errors.InvalidIdError("deviceId", "x" * 500, "^[A-Fa-f\\d]{24}$")
        assert len(str(exc)) < 200 and "deviceId" in str(exc)


class TestJson:
    def test_encode_struct_omits_unset(self) -> None:
        assert _json.encode(Point(x=1)) == b'{"x":1}'

    def test_encode_unserialisable_is_a_validation_error(self) -> None:
        with pytest.raises(errors.ValidationError, match="state is not JSON-serialisable"):
            _json.encode({"a": object()}, what="state")

    def test_decode_mismatch_keeps_raw_and_path(self) -> None:
        raw = b'{"x": "not an int"}'
        with pytest.raises(errors.DecodeError) as info:
            _json.decode(raw, Point)
        assert info.value.raw == raw
        assert info.value.path == "$.x"

    def test_decode_garbage_is_a_decode_error(self) -> None:
        with pytest.raises(errors.DecodeError, match="not valid JSON"):
            _json.decode_any(b"<html>502 Bad Gateway</html>")

    def test_decoder_is_built_once_per_type(self) -> None:
        assert _json.decoder_for(Point) is _json.decoder_for(Point)


class TestTime:
    def test_aware_datetime_to_ms(self) -> None:
        dt = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
        assert _time.to_epoch_ms(dt) == 1767323045678

    def test_naive_datetime_is_refused(self) -> None:
        with pytest.raises(errors.ValidationError, match="naive"):
            _time.to_epoch_ms(datetime(2026, 1, 1))

    def test_none_is_now(self) -> None:
        before = _time.now_ms()
        assert before <= _time.to_epoch_ms(None) <= _time.now_ms()

    def test_bool_is_not_a_time(self) -> None:
        with pytest.raises(errors.ValidationError):
            _time.to_epoch_ms(True)

    def test_ejson_date_keeps_milliseconds(self) -> None:
        assert _time.to_ejson_date(1767323045000) == {"$date": "2026-01-02T03:04:05.000Z"}

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (1767323045678, 1767323045678),
            (1767323045, 1767323045000),
            ("1767323045678", 1767323045678),
            ({"$date": "2026-01-02T03:04:05.678Z"}, 1767323045678),
            ({"$date": 1767323045678}, 1767323045678),
            ("2026-01-02T03:04:05.678Z", 1767323045678),
            (-1000, 1767323044678),
            ({"$undefined": True}, None),
            ("not a date", None),
            (None, None),
        ],
    )
    def test_parse_every_losant_form(self, value: object, expected: int | None) -> None:
        assert _time.parse_losant_time(value, now=1767323045678) == expected

    def test_round_trip_through_datetime(self) -> None:
        ms = 1767323045678
        assert _time.to_epoch_ms(_time.from_epoch_ms(ms)) == ms
        assert _time.from_epoch_ms(ms) - _time.from_epoch_ms(ms - 1000) == timedelta(seconds=1)

"""Property-based tests of the REST path: generated states, ids, headers and replies.

Every property has the same shape: the client either raises a typed error
from ``losant_async.errors`` before anything is sent, or sends a request that
carries exactly what it was given (a ``MockTransport`` sees it); and a reply
either decodes or raises ``APIError``/``DecodeError``, never anything else.
"""

from __future__ import annotations

import asyncio
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from losant_async.errors import (
    APIError,
    DecodeError,
    InvalidIdError,
    LosantError,
    ValidationError,
)
from losant_async.rest import HTTPRequest, HTTPResponse, LosantClient, MockTransport, RequestOptions

APP_ID = "575ec8687ae143cd83dc4a97"
DEVICE_ID = "575ecf887ae143cd83dc4aa2"
STAMP = 1_750_000_000_000

FUZZ = settings(
    max_examples=300,
    deadline=None,  # the machine is shared: no timing in pass/fail
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_ATTR = re.compile(r"[0-9a-zA-Z_-]{1,255}", re.ASCII)
_HEX24 = re.compile(r"[0-9A-Fa-f]{24}", re.ASCII)


def _success(request: HTTPRequest) -> HTTPResponse:
    return HTTPResponse.from_json({"success": True})


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _client(transport: MockTransport, **kw: Any) -> LosantClient:
    return LosantClient("tok", transport=transport, stamp_clock=lambda: STAMP, max_retries=0, **kw)


# -- states -----------------------------------------------------------------------------------

text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)
names = st.one_of(
    st.from_regex(_ATTR, fullmatch=True).filter(lambda s: len(s) <= 40),
    st.text(max_size=8),  # mostly invalid: spaces, unicode, empty...
    st.integers(),
)
values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.text(max_size=4),  # may hold lone surrogates
    st.none(),
    st.binary(max_size=4),
    st.datetimes(),  # naive
    st.datetimes(timezones=st.just(timezone.utc)),
    st.sets(st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
times = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**45),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.datetimes(),
    st.datetimes(
        min_value=datetime(2000, 1, 1), timezones=st.just(timezone(timedelta(hours=2)))
    ),
    st.fixed_dictionaries({"$date": st.one_of(text, st.integers(0, 2**45), st.floats())}),
    st.lists(st.integers(), max_size=1),
)


def _valid_value(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= 65536 and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    return False


def _valid_time(when: Any) -> bool:
    if when is None or isinstance(when, bool):
        return when is None
    if isinstance(when, datetime):
        return when.tzinfo is not None
    if isinstance(when, int):
        return True
    if isinstance(when, float):
        return math.isfinite(when)
    if isinstance(when, str):
        return bool(when.strip())
    if isinstance(when, dict) and set(when) == {"$date"}:
        inner = when["$date"]
        if isinstance(inner, str):
            return bool(inner.strip())
        return isinstance(inner, (int, float)) and math.isfinite(inner)
    return False


def _valid_state(data: dict[Any, Any], when: Any) -> bool:
    return (
        bool(data)
        and all(isinstance(k, str) and _ATTR.fullmatch(k) for k in data)
        and all(_valid_value(v) for v in data.values())
        and _valid_time(when)
    )


@FUZZ
@given(data=st.dictionaries(names, values, max_size=4), when=times)
def test_fuzz_state_is_refused_before_sending_or_round_trips(
    data: dict[Any, Any], when: Any
) -> None:
    transport = MockTransport(_success)
    state: dict[str, Any] = {"data": data}
    if when is not None:
        state["time"] = when

    async def go() -> None:
        async with _client(transport) as client:
            await client.device.send_state(
                application_id=APP_ID, device_id=DEVICE_ID, device_state=state
            )

    try:
        _run(go())
    except ValidationError:
        assert transport.requests == [], "nothing is sent after a ValidationError"
        assert not _valid_state(data, when), (data, when)
        return
    assert _valid_state(data, when), (data, when)
    (request,) = transport.requests
    sent = request.json()
    assert sent["data"] == data
    assert [type(v) for v in sent["data"].values()] == [type(v) for v in data.values()]
    if when is None:
        assert sent["time"] == STAMP, "stamped by the library"
    else:
        assert sent["time"] == msgspec.json.decode(msgspec.json.encode(when)), "sent as given"


@FUZZ
@given(states=st.lists(st.dictionaries(names, values, min_size=1, max_size=2), max_size=4))
def test_fuzz_state_lists_stamped_distinct_or_refused(states: list[dict[Any, Any]]) -> None:
    transport = MockTransport(_success)
    body = [{"data": d} for d in states]

    async def go() -> None:
        async with _client(transport) as client:
            await client.device.send_state(
                application_id=APP_ID, device_id=DEVICE_ID, device_state=body
            )

    valid = bool(states) and all(_valid_state(d, None) for d in states)
    try:
        _run(go())
    except ValidationError:
        assert transport.requests == [] and not valid
        return
    assert valid
    sent = transport.requests[0].json()
    assert [s["data"] for s in sent] == states
    assert [s["time"] for s in sent] == list(range(STAMP, STAMP + len(states)))


# -- ids and path values -------------------------------------------------------------------------

ids = st.one_of(
    st.from_regex(_HEX24, fullmatch=True),
    st.text(alphabet="0123456789abcdefABCDEF\n\u0661\uff11\u0967 g", min_size=23, max_size=25),
    st.text(max_size=30),
)


@FUZZ
@given(app=ids, device=ids)
def test_fuzz_ids_are_ascii_hex24_or_refused(app: str, device: str) -> None:
    transport = MockTransport(lambda r: HTTPResponse.from_json({}))

    async def go() -> None:
        async with _client(transport) as client:
            await client.device.get(application_id=app, device_id=device, raw=True)

    try:
        _run(go())
    except InvalidIdError:
        assert transport.requests == []
        assert not (_HEX24.fullmatch(app) and _HEX24.fullmatch(device))
        return
    assert _HEX24.fullmatch(app) and _HEX24.fullmatch(device)
    path = urlsplit(transport.requests[0].url).path
    assert path == f"/applications/{app}/devices/{device}"


@FUZZ
@given(name=st.one_of(st.sampled_from(["", ".", "..", "a/b", "%2e%2e", "v1"]), st.text(max_size=12)))
def test_fuzz_unpatterned_path_values_round_trip_or_are_refused(name: str) -> None:
    transport = MockTransport(_success)

    async def go() -> None:
        async with _client(transport) as client:
            await client.experience_version.delete(
                application_id=APP_ID, experience_version_id_or_name=name
            )

    try:
        _run(go())
    except ValidationError:
        assert transport.requests == []
        assert name in ("", ".", "..") or "/" in name or any(
            0xD800 <= ord(c) <= 0xDFFF for c in name
        )
        return
    raw_path = urlsplit(transport.requests[0].url).path
    segment = raw_path.rsplit("/", 1)[1]
    assert "/" not in segment and segment not in ("", ".", "..")
    assert unquote(segment) == name, "the server reads back exactly the value given"


# -- headers ------------------------------------------------------------------------------------


@FUZZ
@given(name=st.text(max_size=8), value=st.text(max_size=12))
def test_fuzz_headers_refused_on_construction_or_sent_exactly(name: str, value: str) -> None:
    try:
        options = RequestOptions(headers={name: value})
    except ValidationError:
        token = re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name, re.ASCII)
        control = re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value)
        surrogate = any(0xD800 <= ord(c) <= 0xDFFF for c in value)
        assert not token or control or surrogate
        return
    transport = MockTransport(_success)

    async def go() -> None:
        async with _client(transport) as client:
            await client.device.get(
                application_id=APP_ID, device_id=DEVICE_ID, raw=True, request_options=options
            )

    _run(go())
    assert transport.requests[0].headers[name] == value


# -- replies ----------------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["id", "name", "deviceId", "tags", "x"]) | text, children, max_size=3),
    max_leaves=10,
)
bodies = st.one_of(
    json_values.map(lambda v: msgspec.json.encode(v)),
    st.binary(max_size=40),
    st.sampled_from([b"", b" ", b"\n\t", b"{}", b"null", b"[]", b'{"message":"Service Unavailable"}']),
)


@FUZZ
@given(status=st.sampled_from([200, 201, 202, 204, 301, 400, 401, 404, 413, 429, 500, 503, 599]), body=bodies)
def test_fuzz_replies_decode_or_raise_typed_errors(status: int, body: bytes) -> None:
    transport = MockTransport(lambda r: HTTPResponse(status, {}, body))

    async def go() -> Any:
        async with _client(transport) as client:
            return await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)

    try:
        result = _run(go())
    except (APIError, DecodeError) as exc:
        assert isinstance(exc, LosantError)
        if status < 300:
            assert isinstance(exc, DecodeError)
            if exc.raw is not None:
                assert len(exc.raw) <= 64 * 1024
        else:
            assert isinstance(exc, APIError) and exc.status == status
        return
    assert status < 300
    if status == 204:
        assert result is None
    else:
        assert isinstance(result, msgspec.Struct), "a typed reply, never None for a body"
        assert body.strip(), "a blank body never decodes"

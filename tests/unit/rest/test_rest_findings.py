"""Regression tests for issue 11's REST findings, each named after its finding, over a MockTransport."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import msgspec
import pytest

from losant_async.errors import (
    DecodeError,
    InvalidIdError,
    RateLimitedError,
    ResponseTooLargeError,
    ServerError,
    TLSVerificationError,
    ValidationError,
)
from losant_async.rest import (
    HTTPRequest,
    HTTPResponse,
    LosantClient,
    MockTransport,
    RequestOptions,
    RetryPolicy,
)
from losant_async.rest._generated import models as m
from tests.unit.rest.rest_unit_helpers import device_json

APP_ID = "575ec8687ae143cd83dc4a97"
DEVICE_ID = "575ecf887ae143cd83dc4aa2"
# One reply that decodes as a success and as a device (typed replies carry what the server assigns).
SUCCESS = HTTPResponse.from_json({"success": True, **device_json("a" * 24)})


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def _client(
    handler: Callable[[HTTPRequest], HTTPResponse], sleeps: Sleeps | None = None, **kw: Any
) -> tuple[LosantClient, MockTransport]:
    transport = MockTransport(handler)
    client = LosantClient(
        "tok-SECRET-123",
        url="https://api.example.test",
        transport=transport,
        sleep=sleeps or Sleeps(),
        retry=RetryPolicy(rng=lambda: 0.0),
        **kw,
    )
    return client, transport


def _ok(request: HTTPRequest) -> HTTPResponse:
    return SUCCESS


# -- finding 2: state data validated as MQTT validates it -------------------------------

BAD_VALUES: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    datetime(2024, 1, 1, 12, 0),  # naive
    datetime(2024, 1, 1, tzinfo=timezone.utc),  # aware but not a state value either
    b"bytes",
    {1, 2},
    2**64,
    -(2**63) - 1,
    [1, 2],
    {"nested": 1},
    None,
]


@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
async def test_finding_02_rest_state_values_validated(value: Any) -> None:
    client, transport = _client(_ok)
    async with client:
        with pytest.raises(ValidationError):
            await client.device.send_state(
                application_id=APP_ID, device_id=DEVICE_ID, device_state={"data": {"v": value}}
            )
        with pytest.raises(ValidationError):  # one bad state in a list spoils the request
            await client.device.send_state(
                application_id=APP_ID,
                device_id=DEVICE_ID,
                device_state=[{"data": {"ok": 1}}, {"data": {"v": value}}],
            )
        results = await client.bulk.send_states(APP_ID, [(DEVICE_ID, {"data": {"v": value}})])
        assert isinstance(results[0].error, ValidationError)
    assert transport.requests == [], "nothing is sent"


async def test_finding_02_rest_state_struct_and_names_validated() -> None:
    client, transport = _client(_ok)
    async with client:
        with pytest.raises(ValidationError):
            await client.device.send_state(
                application_id=APP_ID,
                device_id=DEVICE_ID,
                device_state=m.DeviceState(data={"t": math.nan}),
            )
        bad_states: list[Any] = [{"data": {"bad name": 1}}, {"data": {}}, {"time": 1}, "text", []]
        for bad in bad_states:
            with pytest.raises(ValidationError):
                await client.device.send_state(
                    application_id=APP_ID, device_id=DEVICE_ID, device_state=bad
                )
    assert transport.requests == []


async def test_finding_02_good_values_are_sent_unchanged() -> None:
    client, transport = _client(_ok)
    data = {"i": 2**63 - 1, "f": 1.5, "s": "x" * 10, "b": True, "n": -(2**63)}
    async with client:
        await client.device.send_state(
            application_id=APP_ID, device_id=DEVICE_ID, device_state={"data": data}
        )
    assert transport.requests[0].json()["data"] == data


# -- finding 3: NaN, inf and "" are not times --------------------------------------------


@pytest.mark.parametrize("when", [math.nan, math.inf, -math.inf, "", "   ", True, {"$date": ""}])
async def test_finding_03_rest_state_time_nan_inf_empty_refused(when: Any) -> None:
    client, transport = _client(_ok)
    async with client:
        with pytest.raises(ValidationError):
            await client.device.send_state(
                application_id=APP_ID,
                device_id=DEVICE_ID,
                device_state={"data": {"t": 1}, "time": when},
            )
    assert transport.requests == []


async def test_finding_03_only_real_times_make_a_state_retry_safe() -> None:
    answers = iter([HTTPResponse.from_json({"type": "X", "message": "boom"}, status=500), SUCCESS])
    client, transport = _client(lambda r: next(answers))
    async with client:
        await client.device.send_state(
            application_id=APP_ID,
            device_id=DEVICE_ID,
            device_state={"data": {"t": 1}, "time": 1_700_000_000_000},
        )
    assert len(transport.requests) == 2, "a state with a real time is retried after a 5xx"
    assert [r.json()["time"] for r in transport.requests] == [1_700_000_000_000] * 2


# -- finding 4: the reply's size is capped ------------------------------------------------


async def test_finding_04_max_response_bytes_per_client_and_per_call() -> None:
    big = HTTPResponse(200, {}, b'{"success": true, "pad": "' + b"x" * 5000 + b'"}')
    client, _ = _client(lambda r: big, max_response_bytes=1000)
    async with client:
        with pytest.raises(ResponseTooLargeError) as caught:
            await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)
        assert caught.value.limit == 1000
        # a per-call cap replaces the client's
        reply = await client.device.get(
            application_id=APP_ID,
            device_id=DEVICE_ID,
            raw=True,
            request_options=RequestOptions(max_response_bytes=10_000),
        )
        assert reply["success"] is True
    with pytest.raises(ValidationError):
        RequestOptions(max_response_bytes=0)
    with pytest.raises(ValidationError):
        LosantClient("t", transport=MockTransport(_ok), max_response_bytes=-1)


async def test_finding_04_too_large_is_not_retried() -> None:
    sleeps = Sleeps()
    client, transport = _client(
        lambda r: HTTPResponse(200, {}, b"[" + b"1," * 2000 + b"1]"), sleeps, max_response_bytes=100
    )
    async with client:
        with pytest.raises(ResponseTooLargeError):
            await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)
    assert len(transport.requests) == 1 and sleeps.delays == []


async def test_finding_04_decode_error_raw_is_bounded() -> None:
    junk = b"<html>" + b"x" * (1 << 20)
    client, _ = _client(lambda r: HTTPResponse(200, {}, junk))
    async with client:
        with pytest.raises(DecodeError) as caught:
            await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)
    raw = caught.value.raw
    assert isinstance(raw, bytes) and len(raw) == 64 * 1024 and junk.startswith(raw)
    assert caught.value.raw_size == len(junk)


# -- finding 5: a blank body is not a reply ------------------------------------------------


@pytest.mark.parametrize("body", [b"   ", b"\n", b"\t\r\n ", b""])
async def test_finding_05_blank_body_is_decode_error(body: bytes) -> None:
    client, _ = _client(lambda r: HTTPResponse(200, {}, body))
    async with client:
        with pytest.raises(DecodeError):
            await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)


async def test_finding_05_no_content_is_still_none() -> None:
    client, _ = _client(lambda r: HTTPResponse(204, {}, b""))
    async with client:
        assert await client.device.get(application_id=APP_ID, device_id=DEVICE_ID) is None


# -- finding 7: identifiers -----------------------------------------------------------------

UNICODE_IDS = [
    "\u0661" * 24,  # Arabic-Indic digits
    "\uff11" * 24,  # fullwidth digits
    "\u0967" * 24,  # Devanagari digits
    DEVICE_ID + "\n",
    DEVICE_ID[:-1] + "\u0661",
]


@pytest.mark.parametrize("bad", UNICODE_IDS, ids=repr)
async def test_finding_07_rest_ids_ascii_only_no_trailing_newline(bad: str) -> None:
    client, transport = _client(_ok)
    async with client:
        with pytest.raises(InvalidIdError):
            await client.device.get(application_id=APP_ID, device_id=bad)
        with pytest.raises(InvalidIdError):
            await client.device.get(application_id=bad, device_id=DEVICE_ID)
    assert transport.requests == []


@pytest.mark.parametrize("bad", ["..", ".", "", "a/b", "/", "../x"])
async def test_finding_07_path_values_refuse_dot_segments_and_slashes(bad: str) -> None:
    client, transport = _client(_ok)
    async with client:
        with pytest.raises(ValidationError):
            await client.experience_version.delete(
                application_id=APP_ID, experience_version_id_or_name=bad
            )
    assert transport.requests == []


async def test_finding_07_ordinary_names_still_travel_quoted() -> None:
    client, transport = _client(_ok)
    async with client:
        await client.experience_version.delete(
            application_id=APP_ID, experience_version_id_or_name="v 1.0..x"
        )
    assert f"/applications/{APP_ID}/experience/versions/v%201.0..x?" in transport.requests[0].url


# -- finding 8: Retry-After ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-5", "-0.1", "0.1"])
async def test_finding_08_retry_after_never_below_the_floor(value: str) -> None:
    sleeps = Sleeps()
    answers = iter(
        [HTTPResponse.from_json({"type": "Throttled", "message": "slow"}, 429, {"Retry-After": value})]
        * 3
        + [SUCCESS]
    )
    client, transport = _client(lambda r: next(answers), sleeps)
    async with client:
        await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)
    assert len(transport.requests) == 4
    assert sleeps.delays == [0.5, 0.5, 0.5]


async def test_finding_08_retry_after_respected_on_503_and_429() -> None:
    sleeps = Sleeps()
    answers = iter(
        [
            HTTPResponse.from_json({"message": "busy"}, 503, {"Retry-After": "7"}),
            HTTPResponse.from_json({"message": "slow"}, 429, {"Retry-After": "3"}),
            SUCCESS,
        ]
    )
    client, _ = _client(lambda r: next(answers), sleeps)
    async with client:
        await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)
    assert sleeps.delays == [7.0, 3.0]


async def test_finding_08_retry_after_beyond_the_cap_raises_at_once() -> None:
    sleeps = Sleeps()
    for status, error in ((429, RateLimitedError), (503, ServerError)):
        answer = HTTPResponse.from_json({"message": "x"}, status, {"Retry-After": "3600"})

        def reply(request: HTTPRequest, a: HTTPResponse = answer) -> HTTPResponse:
            return a

        client, transport = _client(reply, sleeps)
        async with client:
            with pytest.raises(error):
                await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)
        assert len(transport.requests) == 1
    assert sleeps.delays == []


async def test_finding_08_jittered_backoff_after_429_has_the_floor_too() -> None:
    sleeps = Sleeps()
    answers = iter([HTTPResponse.from_json({"message": "slow"}, 429), SUCCESS])
    client, _ = _client(lambda r: next(answers), sleeps)  # rng 0: the jittered wait would be 0
    async with client:
        await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)
    assert sleeps.delays == [0.5]


# -- finding 10: header values --------------------------------------------------------------

BAD_HEADER_VALUES = ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\x00b", "a\x7fb", "a\x1bb"]


@pytest.mark.parametrize("bad", BAD_HEADER_VALUES, ids=repr)
def test_finding_10_header_control_chars_refused_at_construction(bad: str) -> None:
    transport = MockTransport(_ok)
    with pytest.raises(ValidationError) as caught:
        LosantClient(bad, transport=transport)
    assert bad not in str(caught.value), "a token never appears in the message"
    with pytest.raises(ValidationError):
        LosantClient("t", transport=transport, losantdomain=bad)
    with pytest.raises(ValidationError):
        LosantClient("t", transport=transport, user_agent=bad)
    with pytest.raises(ValidationError):
        RequestOptions(headers={"X-Custom": bad})
    with pytest.raises(ValidationError):
        RequestOptions(losantdomain=bad)


@pytest.mark.parametrize("name", ["", "X Custom", "X:Y", "X\r\n", "Ä"])
def test_finding_10_header_names_must_be_tokens(name: str) -> None:
    with pytest.raises(ValidationError):
        RequestOptions(headers={name: "v"})


async def test_finding_10_good_headers_travel() -> None:
    client, transport = _client(_ok, losantdomain="example.com", user_agent="app/1.0")
    async with client:
        await client.device.get(
            application_id=APP_ID,
            device_id=DEVICE_ID,
            request_options=RequestOptions(headers={"X-Trace": "a\tb c"}),
        )
    headers = transport.requests[0].headers
    assert headers["losantdomain"] == "example.com"
    assert headers["User-Agent"].startswith("app/1.0 losant-async/")
    assert headers["X-Trace"] == "a\tb c"
    assert headers["Authorization"] == "Bearer tok-SECRET-123"


# -- finding 11: certificate failures are not retried --------------------------------------------


async def test_finding_11_tls_verification_error_is_not_retried() -> None:
    sleeps = Sleeps()

    def fail(request: HTTPRequest) -> HTTPResponse:
        raise TLSVerificationError("GET: the server's TLS certificate failed verification")

    client, transport = _client(fail, sleeps)
    async with client:
        with pytest.raises(TLSVerificationError):
            await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)  # idempotent
        with pytest.raises(TLSVerificationError):
            await client.device.send_state(
                application_id=APP_ID, device_id=DEVICE_ID, device_state={"data": {"t": 1}}
            )
    assert len(transport.requests) == 2 and sleeps.delays == []


def test_decode_error_subclasses_keep_the_tree() -> None:
    assert issubclass(ResponseTooLargeError, DecodeError)
    error = DecodeError("x", raw=b"abc")
    assert error.raw == b"abc" and error.raw_size == 3
    assert msgspec.json.decode(b"1") == 1

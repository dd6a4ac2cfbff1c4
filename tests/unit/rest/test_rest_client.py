"""LosantClient over a mocked aiohttp (aioresponses): headers, query, retries, errors, timeouts, secrets."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import aiohttp
import msgspec
import pytest

from losant_async.errors import (
    APIError,
    ConnectError,
    DecodeError,
    InvalidIdError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    UnauthorizedError,
    ValidationError,
)
from losant_async.rest import AiohttpTransport, LosantClient, RequestOptions, RetryPolicy, Timeout
from losant_async.rest._transport import default_user_agent
from tests.unit.rest.rest_unit_helpers import (
    APP_ID,
    AUTH_FREE,
    BASE,
    DEVICE_ID,
    GET_THING,
    LIST_THINGS,
    POST_THING,
    SEND_STATE,
    Server,
    Sleeps,
    Thing,
    connect_refused,
    disconnected,
    result,
)

THING = {"id": DEVICE_ID, "name": "n", "tagCount": 2}
SECRET = "tok-SECRET-123"


# -- headers and query -------------------------------------------------------


async def test_every_call_carries_the_api_headers_and_global_flags(
    server: Server, client: LosantClient
) -> None:
    server.reply(200, THING)
    thing = await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    assert thing == Thing(id=DEVICE_ID, name="n", tag_count=2)
    (call,) = server.calls
    assert call.method == "GET"
    assert call.path == f"/applications/{APP_ID}/things/{DEVICE_ID}"
    assert call.query == {"_actions": "false", "_links": "true", "_embedded": "true"}
    assert call.headers["Accept"] == "application/json"
    assert call.headers["Accept-Version"] == "^1.31.0"
    assert call.headers["Authorization"] == f"Bearer {SECRET}"
    assert call.headers["User-Agent"].startswith("losant-async/")
    assert "Content-Type" not in call.headers


async def test_json_body_and_content_type(server: Server, client: LosantClient) -> None:
    server.reply(201, THING)
    await client.request(POST_THING, (APP_ID, {"name": "x", "n": [1, 2]}), raw=False, options=None)
    (call,) = server.calls
    assert call.headers["Content-Type"] == "application/json"
    assert msgspec.json.decode(call.data) == {"name": "x", "n": [1, 2]}


async def test_no_authorization_on_actions_without_auth(
    server: Server, client: LosantClient
) -> None:
    server.reply(204)
    assert await client.request(AUTH_FREE, ("a@b.example",), raw=False, options=None) is None
    (call,) = server.calls
    assert "Authorization" not in call.headers
    assert call.query["email"] == "a@b.example"


async def test_no_authorization_without_a_token(server: Server) -> None:
    server.reply(200, THING)
    async with LosantClient(url=BASE) as client:
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    assert "Authorization" not in server.calls[0].headers


async def test_request_options_change_flags_headers_and_domain(
    server: Server, client: LosantClient
) -> None:
    server.reply(200, THING)
    options = RequestOptions(
        actions=True, links=False, headers={"X-Trace": "1"}, losantdomain="example.org"
    )
    await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=options)
    call = server.calls[0]
    assert call.query == {"_actions": "true", "_links": "false", "_embedded": "true"}
    assert call.headers["X-Trace"] == "1"
    assert call.headers["losantdomain"] == "example.org"


async def test_client_wide_domain_and_user_agent(server: Server) -> None:
    server.reply(200, THING)
    async with LosantClient(
        "t", url=BASE, losantdomain="d.example", user_agent="my-app/2"
    ) as client:
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    headers = server.calls[0].headers
    assert headers["losantdomain"] == "d.example"
    assert headers["User-Agent"] == default_user_agent("my-app/2")
    assert headers["User-Agent"].startswith("my-app/2 losant-async/")


async def test_bad_id_raises_before_any_request(server: Server, client: LosantClient) -> None:
    with pytest.raises(InvalidIdError):
        await client.request(GET_THING, ("not-an-id", DEVICE_ID), raw=False, options=None)
    with pytest.raises(ValidationError):
        await client.request(POST_THING, (APP_ID, "not a body"), raw=False, options=None)
    assert server.calls == []


# -- decoding --------------------------------------------------------------------


async def test_raw_returns_plain_json(server: Server, client: LosantClient) -> None:
    server.reply(200, THING)
    assert await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=True, options=None) == THING


async def test_malformed_json_is_a_decode_error_with_the_raw_body(
    server: Server, client: LosantClient
) -> None:
    server.reply(200, b'{"id": "abc", "name":')
    with pytest.raises(DecodeError) as info:
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    assert info.value.raw == b'{"id": "abc", "name":'
    assert "thing.get" in str(info.value)


async def test_wrong_types_are_a_decode_error_with_the_json_path(
    server: Server, client: LosantClient
) -> None:
    server.reply(200, {"id": DEVICE_ID, "tagCount": "many"})
    with pytest.raises(DecodeError) as info:
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    assert info.value.path == "$.tagCount"
    assert isinstance(info.value.raw, bytes) and b"many" in info.value.raw


async def test_unknown_fields_are_ignored(server: Server, client: LosantClient) -> None:
    server.reply(200, {**THING, "brandNew": {"x": 1}})
    assert (
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    ).id == DEVICE_ID


# -- error mapping ------------------------------------------------------------------


async def test_losant_error_body_maps_to_the_status_class(
    server: Server, client: LosantClient
) -> None:
    server.reply(404, {"type": "NotFound", "message": "Device was not found"})
    with pytest.raises(NotFoundError) as info:
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    err = info.value
    assert (err.status, err.type, err.message) == (404, "NotFound", "Device was not found")
    assert err.body == {"type": "NotFound", "message": "Device was not found"}
    assert err.path == f"/applications/{APP_ID}/things/{DEVICE_ID}"


async def test_html_proxy_page_still_gives_a_server_error(
    server: Server, client: LosantClient
) -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    server.replies.append(result(502, html, {"Content-Type": "text/html"}))
    with pytest.raises(ServerError) as info:
        await client.request(
            GET_THING, (APP_ID, DEVICE_ID), raw=False, options=RequestOptions(max_retries=0)
        )
    assert info.value.status == 502
    assert info.value.message == "Bad Gateway"
    assert info.value.body == html.decode()
    assert info.value.type is None


async def test_empty_413_body(server: Server, client: LosantClient) -> None:
    server.reply(413, b"")
    with pytest.raises(Exception) as info:
        await client.request(POST_THING, (APP_ID, {}), raw=False, options=None)
    assert type(info.value).__name__ == "PayloadTooLargeError"


# -- retries -----------------------------------------------------------------------------


async def test_idempotent_call_retries_on_5xx_then_succeeds(
    server: Server, client: LosantClient, sleeps: Sleeps
) -> None:
    server.reply(500, {"type": "Internal", "message": "busy"})
    server.reply(502, b"bad gateway")
    server.reply(200, THING)
    assert (
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    ).id == DEVICE_ID
    assert len(server.calls) == 3
    # full jitter with rng=0.5: half of base*2**n
    assert sleeps.delays == [0.25, 0.5]


async def test_non_idempotent_call_is_not_retried_on_5xx(
    server: Server, client: LosantClient, sleeps: Sleeps
) -> None:
    server.reply(503, {"type": "Unavailable", "message": "busy"})
    server.reply(201, THING)
    with pytest.raises(ServerError):
        await client.request(POST_THING, (APP_ID, {}), raw=False, options=None)
    assert len(server.calls) == 1 and sleeps.delays == []


async def test_429_is_retried_for_any_call_after_retry_after(
    server: Server, client: LosantClient, sleeps: Sleeps
) -> None:
    server.reply(
        429, {"type": "TooManyRequests", "message": "slow down"}, headers={"Retry-After": "3"}
    )
    server.reply(201, THING)
    await client.request(POST_THING, (APP_ID, {}), raw=False, options=None)
    assert len(server.calls) == 2
    assert sleeps.delays == [3.0]


async def test_retry_after_as_http_date(server: Server, sleeps: Sleeps) -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    server.reply(429, b"", headers={"Retry-After": later})
    server.reply(200, THING)
    async with LosantClient("t", url=BASE, sleep=sleeps, clock=lambda: now.timestamp()) as client:
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    assert sleeps.delays == [7.0]


async def test_retry_after_too_long_is_raised_at_once(
    server: Server, client: LosantClient, sleeps: Sleeps
) -> None:
    server.reply(429, b"", headers={"Retry-After": "3600"})
    with pytest.raises(RateLimitedError) as info:
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    assert info.value.retry_after == 3600.0
    assert sleeps.delays == [] and len(server.calls) == 1


async def test_max_retries_bounds_the_attempts(server: Server, sleeps: Sleeps) -> None:
    server.reply(500, b"")
    async with LosantClient(
        "t", url=BASE, sleep=sleeps, max_retries=2, retry=RetryPolicy(rng=lambda: 1.0, cap=0.75)
    ) as client:
        with pytest.raises(ServerError):
            await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    assert len(server.calls) == 3
    assert sleeps.delays == [0.5, 0.75]  # capped


async def test_per_call_max_retries_zero(server: Server, client: LosantClient) -> None:
    server.reply(503, b"")
    with pytest.raises(ServerError):
        await client.request(
            GET_THING, (APP_ID, DEVICE_ID), raw=False, options=RequestOptions(max_retries=0)
        )
    assert len(server.calls) == 1


async def test_refused_connection_is_retried_even_for_non_idempotent_calls(
    server: Server, client: LosantClient
) -> None:
    server.fail(connect_refused())
    server.reply(201, THING)
    await client.request(POST_THING, (APP_ID, {}), raw=False, options=None)
    assert len(server.calls) == 2


async def test_refused_connection_after_all_retries_is_a_connect_error(
    server: Server, client: LosantClient
) -> None:
    server.fail(connect_refused())
    with pytest.raises(ConnectError) as info:
        await client.request(POST_THING, (APP_ID, {}), raw=False, options=None)
    assert len(server.calls) == 4
    assert isinstance(info.value, ConnectionError)


async def test_disconnect_after_sending_is_not_retried_for_non_idempotent_calls(
    server: Server, client: LosantClient
) -> None:
    server.fail(disconnected())
    with pytest.raises(ConnectError):
        await client.request(POST_THING, (APP_ID, {}), raw=False, options=None)
    assert len(server.calls) == 1


async def test_disconnect_is_retried_for_idempotent_calls(
    server: Server, client: LosantClient
) -> None:
    server.fail(disconnected())
    server.reply(200, THING)
    await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    assert len(server.calls) == 2


async def test_timestamped_state_is_retried_with_the_same_time(
    server: Server, client: LosantClient
) -> None:
    server.reply(503, b"")
    server.reply(200, {"success": True})
    await client.request(
        SEND_STATE, (APP_ID, DEVICE_ID, [{"data": {"t": 1}}]), raw=False, options=None
    )
    assert len(server.calls) == 2
    first, second = (msgspec.json.decode(c.data) for c in server.calls)
    assert first == second and isinstance(first[0]["time"], int)


async def test_timeout_maps_to_request_timeout_error(server: Server, client: LosantClient) -> None:
    server.fail(asyncio.TimeoutError())
    with pytest.raises(RequestTimeoutError) as info:
        await client.request(
            POST_THING, (APP_ID, {}), raw=False, options=RequestOptions(timeout=1.5)
        )
    assert isinstance(info.value, TimeoutError)
    assert len(server.calls) == 1, "a POST that may have arrived is not repeated"


async def test_connect_timeout_is_retried_even_for_non_idempotent_calls(
    server: Server, client: LosantClient
) -> None:
    server.fail(aiohttp.ConnectionTimeoutError())
    server.reply(201, THING)
    await client.request(POST_THING, (APP_ID, {}), raw=False, options=None)
    assert len(server.calls) == 2


def test_bad_client_arguments_are_refused() -> None:
    with pytest.raises(ValidationError):
        LosantClient("t", url="ftp://x")
    with pytest.raises(ValidationError):
        LosantClient("t", max_retries=-1)
    with pytest.raises(ValidationError):
        LosantClient("t", timeout=0)
    with pytest.raises(ValidationError):
        LosantClient(42)  # type: ignore[arg-type]
    assert LosantClient("t", timeout=Timeout(total=3))._executor.timeout.total == 3


# -- secrets ---------------------------------------------------------------------------------


async def test_token_never_reaches_errors_reprs_or_logs(
    server: Server, client: LosantClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="losant_async")
    server.reply(503, b"")
    server.reply(401, {"type": "Unauthorized", "message": "bad token"})
    with pytest.raises(UnauthorizedError) as info:
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    server.replies.clear()
    server.fail(connect_refused())
    with pytest.raises(ConnectError) as info2:
        await client.request(
            GET_THING, (APP_ID, DEVICE_ID), raw=False, options=RequestOptions(max_retries=0)
        )
    texts = [
        str(info.value),
        repr(info.value),
        str(info2.value),
        repr(info2.value),
        repr(client),
        caplog.text,
    ]
    assert caplog.records, "the retry was logged"
    for text in texts:
        assert SECRET not in text
    assert info2.value.__cause__ is None


# -- lifecycle ---------------------------------------------------------------------------------


async def test_a_passed_in_session_is_not_closed(server: Server) -> None:
    server.reply(200, THING)
    async with aiohttp.ClientSession() as session:
        async with LosantClient("t", url=BASE, session=session) as client:
            await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
        assert not session.closed


async def test_a_client_never_closed_warns() -> None:
    client = LosantClient("t", url=BASE)
    await client.__aenter__()
    transport = client.transport
    assert isinstance(transport, AiohttpTransport)
    session = transport._session
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()
    assert any(
        issubclass(w.category, ResourceWarning) and "LosantClient" in str(w.message) for w in caught
    )
    assert session is not None
    await session.close()


async def test_a_closed_client_refuses_calls(server: Server) -> None:
    client = LosantClient("t", url=BASE)
    async with client:
        pass
    with pytest.raises(Exception, match="closed"):
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    assert server.calls == []


async def test_paginating_typed_pages_follows_total_count(
    server: Server, client: LosantClient
) -> None:
    for page in range(3):
        items = [{"id": f"{page}-{i}"} for i in range(2 if page < 2 else 1)]
        server.reply(200, {"items": items, "totalCount": 5, "perPage": 2, "page": page})
    paginator = client.paginate(LIST_THINGS, (APP_ID, None, 2), raw=False, options=None)
    ids = [thing.id async for thing in paginator]
    assert ids == ["0-0", "0-1", "1-0", "1-1", "2-0"]
    assert [c.query.get("page") for c in server.calls] == [None, "1", "2"]
    assert all(c.query["perPage"] == "2" for c in server.calls)


def test_paginate_and_stream_validate_before_sending(server: Server, client: LosantClient) -> None:
    with pytest.raises(InvalidIdError):
        client.paginate(LIST_THINGS, ("bad", None, None), raw=False, options=None)
    assert server.calls == []


def test_resources_are_created_once_per_client_and_named_as_the_catalog_names_them() -> None:
    client = LosantClient("t", url=BASE)
    assert client.device is client.device
    assert client.application_api_tokens is client.application_api_tokens
    assert client.bulk is client.bulk
    assert client.device is not LosantClient("t", url=BASE).device
    with pytest.raises(AttributeError):
        client._resource("no_such_resource")


async def test_a_redirect_is_an_error_not_followed(server: Server, client: LosantClient) -> None:
    server.reply(302, b"", headers={"Location": "https://elsewhere.example/steal"})
    with pytest.raises(APIError) as info:
        await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=False, options=None)
    assert info.value.status == 302
    assert len(server.calls) == 1


async def test_a_reply_nested_20000_levels_deep_is_a_decode_error_naming_the_action(
    server: Server, client: LosantClient
) -> None:
    # msgspec recurses per level: without the cap this escaped as a bare RecursionError (issue 19).
    # In a field the type does not declare (skipped, still parsed); aioresponses cannot serve over 64 KiB.
    deep = b'{"id": "x", "brandNew": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    for raw in (False, True):
        server.reply(200, deep)
        with pytest.raises(DecodeError, match="nested too deeply") as info:
            await client.request(GET_THING, (APP_ID, DEVICE_ID), raw=raw, options=None)
        assert "thing.get" in str(info.value) and info.value.raw_size == len(deep)

"""Distinct per-device state stamps over REST (issue 14 item 2), and configuration from the environment (issue 12 item 3)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from losant_async import _env
from losant_async.errors import ValidationError
from losant_async.rest import (
    DeviceCredentials,
    HTTPRequest,
    HTTPResponse,
    LosantClient,
    MockTransport,
    StaticToken,
)

APP_ID = "575ec8687ae143cd83dc4a97"
DEV_A = "575ecf887ae143cd83dc4aa2"
DEV_B = "575ecf887ae143cd83dc4aa3"
NOW = 1_750_000_000_000


def _success(request: HTTPRequest) -> HTTPResponse:
    return HTTPResponse.from_json({"success": True})


def _frozen_client() -> tuple[LosantClient, MockTransport]:
    transport = MockTransport(_success)
    return LosantClient("t", transport=transport, stamp_clock=lambda: NOW), transport


def _times(transport: MockTransport, device: str) -> list[int]:
    out: list[int] = []
    for request in transport.requests:
        if f"/devices/{device}/" in request.url:
            body = request.json()
            out.extend(s["time"] for s in (body if isinstance(body, list) else [body]))
    return out


async def test_tight_loop_states_get_strictly_increasing_ms_per_device() -> None:
    client, transport = _frozen_client()  # the clock never moves: every call in one millisecond
    async with client:
        for i in range(500):
            await client.device.send_state(
                application_id=APP_ID, device_id=DEV_A, device_state={"data": {"i": i}}
            )
            await client.device.send_state(
                application_id=APP_ID, device_id=DEV_B, device_state={"data": {"i": i}}
            )
    for device in (DEV_A, DEV_B):
        times = _times(transport, device)
        assert times == list(range(NOW, NOW + 500)), "strictly increasing, per device, no gaps"


async def test_states_in_one_request_get_distinct_ms_and_explicit_time_is_kept() -> None:
    client, transport = _frozen_client()
    async with client:
        await client.device.send_state(
            application_id=APP_ID,
            device_id=DEV_A,
            device_state=[{"data": {"a": 1}}, {"data": {"a": 2}, "time": 42}, {"data": {"a": 3}}],
        )
        await client.device.send_state(
            application_id=APP_ID, device_id=DEV_A, device_state={"data": {"a": 4}, "time": "2024-01-01"}
        )
    bodies = [r.json() for r in transport.requests]
    assert [s["time"] for s in bodies[0]] == [NOW, 42, NOW + 1]
    assert bodies[1]["time"] == "2024-01-01", "an explicit time is sent as given"


async def test_bulk_send_states_stamps_per_device() -> None:
    client, transport = _frozen_client()
    items = [(DEV_A if i % 2 else DEV_B, {"data": {"i": i}}) for i in range(200)]
    async with client:
        results = await client.bulk.send_states(APP_ID, items, concurrency=8)
    assert all(r.ok for r in results)
    for device in (DEV_A, DEV_B):
        times = _times(transport, device)
        assert len(times) == 100 and len(set(times)) == 100


async def test_stamps_follow_the_clock_when_it_moves() -> None:
    clock = iter(range(NOW, NOW + 1000, 10))
    transport = MockTransport(_success)
    async with LosantClient("t", transport=transport, stamp_clock=lambda: next(clock)) as client:
        for i in range(3):
            await client.device.send_state(
                application_id=APP_ID, device_id=DEV_A, device_state={"data": {"i": i}}
            )
    assert _times(transport, DEV_A) == [NOW, NOW + 10, NOW + 20]


# -- environment ------------------------------------------------------------------------------

ENV_NAMES = (
    _env.API_TOKEN,
    _env.DEVICE_ID,
    _env.ACCESS_KEY,
    _env.ACCESS_SECRET,
    _env.URL,
    _env.LOG,
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    logger = logging.getLogger("losant_async")
    level, handlers = logger.level, list(logger.handlers)
    yield monkeypatch
    logger.setLevel(level)
    for handler in logger.handlers:
        if handler not in handlers:
            logger.removeHandler(handler)
    _env._handler = None


async def test_api_token_and_url_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(_env.API_TOKEN, "env-SECRET-token")
    clean_env.setenv(_env.URL, "http://127.0.0.1:9/")
    transport = MockTransport(_success)
    async with LosantClient(transport=transport) as client:
        assert isinstance(client.token_source, StaticToken)
        assert client.url == "http://127.0.0.1:9"
        assert "SECRET" not in repr(client)
        await client.device.get(application_id=APP_ID, device_id=DEV_A, raw=True)
    assert transport.requests[0].headers["Authorization"] == "Bearer env-SECRET-token"
    assert transport.requests[0].url.startswith("http://127.0.0.1:9/applications/")


def test_device_credentials_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(_env.DEVICE_ID, DEV_A)
    clean_env.setenv(_env.ACCESS_KEY, "key-1")
    clean_env.setenv(_env.ACCESS_SECRET, "very-SECRET")
    client = LosantClient(transport=MockTransport(_success))
    source = client.token_source
    assert isinstance(source, DeviceCredentials) and source.device_id == DEV_A
    assert "very-SECRET" not in repr(source) and "very-SECRET" not in repr(client)
    secrets = _env.device_credentials()
    assert secrets is not None and "very-SECRET" not in repr(secrets)


def test_api_token_wins_over_device_credentials(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(_env.API_TOKEN, "tok")
    clean_env.setenv(_env.DEVICE_ID, DEV_A)
    clean_env.setenv(_env.ACCESS_KEY, "k")
    clean_env.setenv(_env.ACCESS_SECRET, "s")
    assert isinstance(LosantClient(transport=MockTransport(_success)).token_source, StaticToken)


def test_incomplete_device_credentials_are_named(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(_env.DEVICE_ID, DEV_A)
    clean_env.setenv(_env.ACCESS_SECRET, "s3cr3t")
    with pytest.raises(ValidationError, match="LOSANT_ACCESS_KEY") as caught:
        LosantClient(transport=MockTransport(_success))
    assert "s3cr3t" not in str(caught.value)


def test_nothing_set_means_no_token_and_the_default_url(clean_env: pytest.MonkeyPatch) -> None:
    client = LosantClient(transport=MockTransport(_success))
    assert client.token_source is None
    assert client.url == "https://api.losant.com"
    clean_env.setenv(_env.API_TOKEN, "   ")
    assert LosantClient(transport=MockTransport(_success)).token_source is None


def test_explicit_arguments_win_over_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(_env.API_TOKEN, "env")
    clean_env.setenv(_env.URL, "http://127.0.0.1:9")
    client = LosantClient("mine", url="https://own.example", transport=MockTransport(_success))
    assert client.url == "https://own.example"


@pytest.mark.parametrize(("value", "level"), [("debug", logging.DEBUG), ("INFO", logging.INFO)])
def test_losant_log_turns_on_the_library_logging(
    clean_env: pytest.MonkeyPatch, value: str, level: int
) -> None:
    logger = logging.getLogger("losant_async")
    logger.setLevel(logging.NOTSET)
    clean_env.setenv(_env.LOG, value)
    LosantClient(transport=MockTransport(_success))
    LosantClient(transport=MockTransport(_success))
    assert logger.getEffectiveLevel() == level
    ours = [h for h in logger.handlers if h is _env._handler]
    assert len(ours) == 1, "one handler, however many clients"


def test_losant_log_refuses_other_values(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(_env.LOG, "verbose")
    with pytest.raises(ValidationError, match="LOSANT_LOG"):
        LosantClient(transport=MockTransport(_success))


async def test_debug_logs_never_show_the_token(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clean_env.setenv(_env.LOG, "debug")
    transport = MockTransport(_success)
    with caplog.at_level(logging.DEBUG, logger="losant_async"):
        async with LosantClient("tok-SECRET-9", transport=transport) as client:
            await client.device.get(application_id=APP_ID, device_id=DEV_A, raw=True)
    assert caplog.records, "debug logging is on"
    assert all("SECRET" not in r.getMessage() for r in caplog.records)

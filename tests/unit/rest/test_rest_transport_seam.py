"""The transport seam: LosantClient(transport=...), MockTransport, and the length of the call path."""

from __future__ import annotations

import ast
import traceback
from pathlib import Path

import pytest

import losant_async.rest
from losant_async.errors import (
    ConnectError,
    RequestNotSentError,
    UnauthorizedError,
    ValidationError,
)
from losant_async.rest import (
    HTTPRequest,
    HTTPResponse,
    LosantClient,
    MockTransport,
    RequestOptions,
    RetryPolicy,
    Transport,
)

APP_ID = "575ec8687ae143cd83dc4a97"
DEVICE_ID = "575ecf887ae143cd83dc4aa2"
REST = Path(losant_async.rest.__file__).parent


async def _nosleep(delay: float) -> None:
    return None


async def test_mock_transport_sees_the_whole_request() -> None:
    transport = MockTransport(lambda r: HTTPResponse.from_json({"success": True}))
    async with LosantClient("tok", url="https://x.example", transport=transport) as client:
        assert client.transport is transport
        reply = await client.device.send_state(
            application_id=APP_ID, device_id=DEVICE_ID, device_state={"data": {"t": 1}}
        )
    assert reply.success is True
    (request,) = transport.requests
    assert request.method == "POST"
    assert request.url == (
        f"https://x.example/applications/{APP_ID}/devices/{DEVICE_ID}/state"
        "?_actions=false&_links=true&_embedded=true"
    )
    assert request.headers["Authorization"] == "Bearer tok"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json()["data"] == {"t": 1}
    assert request.stream is False and request.parts is None
    assert transport.closed, "closing the client closes its transport"


async def test_async_handler_and_per_call_options() -> None:
    async def handler(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.from_json({"id": DEVICE_ID, "name": "n"})

    transport = MockTransport(handler)
    async with LosantClient("tok", transport=transport) as client:
        await client.device.get(
            application_id=APP_ID,
            device_id=DEVICE_ID,
            raw=True,
            request_options=RequestOptions(timeout=5, links=False, headers={"X-A": "1"}),
        )
    request = transport.requests[0]
    assert request.timeout.total == 5
    assert "_links=false" in request.url
    assert request.headers["X-A"] == "1"


async def test_transport_errors_are_retried_by_the_client() -> None:
    calls = 0

    def handler(request: HTTPRequest) -> HTTPResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RequestNotSentError("refused")
        return HTTPResponse.from_json({"success": True})

    transport = MockTransport(handler)
    async with LosantClient(
        "tok", transport=transport, sleep=_nosleep, retry=RetryPolicy(rng=lambda: 0.0)
    ) as client:
        # not sent: safe to retry even a command (not idempotent)
        await client.device.send_command(
            application_id=APP_ID, device_id=DEVICE_ID, device_command={"name": "go"}
        )
    assert calls == 2


async def test_a_maybe_sent_command_is_not_retried() -> None:
    def handler(request: HTTPRequest) -> HTTPResponse:
        raise ConnectError("reset after sending")

    transport = MockTransport(handler)
    async with LosantClient("tok", transport=transport, sleep=_nosleep) as client:
        with pytest.raises(ConnectError):
            await client.device.send_command(
                application_id=APP_ID, device_id=DEVICE_ID, device_command={"name": "go"}
            )
    assert len(transport.requests) == 1


async def test_api_errors_through_the_mock() -> None:
    transport = MockTransport(
        lambda r: HTTPResponse.from_json({"type": "Unauthorized", "message": "no"}, 401)
    )
    async with LosantClient("tok", transport=transport) as client:
        with pytest.raises(UnauthorizedError, match="no"):
            await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)


async def test_streams_through_the_mock() -> None:
    body = (
        b'event: deviceState\ndata: {"data": {"t": 1}, "time": 1700000000000}\n\n'
        b": keepalive\n\n"
        b'event: deviceState\ndata: {"data": {"t": 2}, "time": 1700000000001}\n\n'
    )
    transport = MockTransport(lambda r: HTTPResponse(200, {}, body))
    async with LosantClient("tok", transport=transport) as client, client.device.state_stream(
        application_id=APP_ID, device_id=DEVICE_ID, raw=True
    ) as events:
        got = [event async for event in events]
    assert [e["data"]["t"] for e in got] == [1, 2]
    request = transport.requests[0]
    assert request.stream is True and request.headers["Accept"] == "text/event-stream"


def test_transport_arguments_are_checked() -> None:
    transport = MockTransport(lambda r: HTTPResponse(200))
    assert isinstance(transport, Transport)
    with pytest.raises(ValidationError):
        LosantClient("t", transport=transport, trust_env=True)
    with pytest.raises(ValidationError):
        LosantClient("t", transport=object())  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        LosantClient("t", url="ftp://x")
    with pytest.raises(ValidationError):
        LosantClient("t", ssl="yes")  # type: ignore[arg-type]


async def test_handler_must_answer_an_http_response() -> None:
    transport = MockTransport(lambda r: {"success": True})  # type: ignore[arg-type,return-value]
    async with LosantClient("t", transport=transport) as client:
        with pytest.raises(TypeError):
            await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)


async def test_call_path_crosses_at_most_four_files() -> None:
    """From the generated method to the transport: the generated file, client.py, the transport."""
    stacks: list[list[traceback.FrameSummary]] = []

    def handler(request: HTTPRequest) -> HTTPResponse:
        stacks.append(traceback.extract_stack())
        return HTTPResponse.from_json({"success": True})

    async with LosantClient("t", transport=MockTransport(handler)) as client:
        await client.device.send_state(
            application_id=APP_ID, device_id=DEVICE_ID, device_state={"data": {"t": 1}}
        )
    stack = stacks[0]
    start = next(i for i, f in enumerate(stack) if "_generated" in f.filename)
    end = max(i for i, f in enumerate(stack) if f.filename.endswith("rest/transport.py"))
    files = [Path(f.filename).name for f in stack[start : end + 1]]
    assert "_resource.py" not in files, files
    distinct = list(dict.fromkeys(files))
    # device.py -> client.py -> transport; _request.prepare is the fourth, off the stack by then
    assert distinct == ["device.py", "client.py", "transport.py"], files


def _imports(module: Path) -> set[str]:
    tree = ast.parse(module.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(("." * node.level) + node.module)
    return out


def test_bulk_does_not_import_the_client() -> None:
    assert not {i for i in _imports(REST / "bulk.py") if i.endswith("client")}


async def test_request_repr_never_shows_the_token() -> None:
    transport = MockTransport(lambda r: HTTPResponse.from_json({"success": True}))
    async with LosantClient("tok-SECRET-1", transport=transport) as client:
        await client.device.get(application_id=APP_ID, device_id=DEVICE_ID, raw=True)
    shown = repr(transport.requests[0])
    assert "SECRET" not in shown and "GET" in shown

"""The FastAPI example through httpx's ASGI transport, its lifespan run explicitly, against the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples._support import load_example, run_script
from losant_async import errors

app_module = load_example("fastapi_app/app.py")

UNKNOWN_ID = "0123456789abcdef01234567"


class World:
    def __init__(self, losant: Any) -> None:
        self.losant = losant
        self.app = losant.create_application(name="fastapi test")
        self.devices = [
            self.app.create_device(name=f"dev-{i}", attributes={"temperature": "number"}, tags={"room": f"r{i % 2}"})
            for i in range(7)
        ]
        self.token = self.app.create_api_token(scopes=["all.Application"])

    def settings(self, **overrides: Any) -> Any:
        values = {"api_token": self.token, "application_id": self.app.id, "url": self.losant.rest_url,
                  "keep_alive_interval": 1, "max_retries": 0}
        values.update(overrides)
        return app_module.Settings(**values)


@pytest.fixture
def world(losant_emulator: Any) -> World:
    return World(losant_emulator)


async def open_client(settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = app_module.create_app(settings)
    # ASGITransport does not run the lifespan: run it here, as a server would.
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://backend"
    ) as http:
        yield http


@pytest.fixture
async def http(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async for client in open_client(world.settings()):
        yield client


async def test_lists_devices_page_by_page(http: httpx.AsyncClient, world: World) -> None:
    seen: list[str] = []
    for page in range(3):
        resp = await http.get("/devices", params={"page": page, "per_page": 3})
        assert resp.status_code == 200
        body = resp.json()
        assert body["total"] == 7 and body["page"] == page and body["per_page"] == 3
        seen += [d["name"] for d in body["items"]]
    assert seen == [f"dev-{i}" for i in range(7)]
    first = (await http.get("/devices", params={"per_page": 1})).json()["items"][0]
    assert first["id"] == world.devices[0].id
    assert first["tags"] == {"room": ["r0"]}


async def test_bad_paging_parameters_are_422(http: httpx.AsyncClient) -> None:
    assert (await http.get("/devices", params={"per_page": 0})).status_code == 422
    assert (await http.get("/devices", params={"page": -1})).status_code == 422


async def test_sends_a_command_to_the_device(http: httpx.AsyncClient, world: World) -> None:
    target = world.devices[3].id
    resp = await http.post(f"/devices/{target}/commands", json={"name": "reboot", "payload": {"delay": 5}})

    assert resp.status_code == 202
    assert resp.json() == {"sent": True, "device_id": target, "name": "reboot"}
    sent = world.losant.commands_sent(target)
    assert [(c.name, c.payload) for c in sent] == [("reboot", {"delay": 5})]
    assert all(not world.losant.commands_sent(d.id) for d in world.devices if d.id != target)


async def test_unknown_device_is_404(http: httpx.AsyncClient) -> None:
    resp = await http.post(f"/devices/{UNKNOWN_ID}/commands", json={"name": "reboot"})
    assert resp.status_code == 404
    assert (await http.get(f"/devices/{UNKNOWN_ID}/state/stream")).status_code == 404


async def test_malformed_input_is_422_and_nothing_is_sent(http: httpx.AsyncClient, world: World) -> None:
    assert (await http.post("/devices/not-an-id/commands", json={"name": "reboot"})).status_code == 422
    assert (await http.post(f"/devices/{world.devices[0].id}/commands", json={"name": ""})).status_code == 422
    assert not world.losant.commands_sent(world.devices[0].id)


async def test_refused_backend_token_is_502(world: World) -> None:
    async for http in open_client(world.settings(api_token="not-a-token")):
        resp = await http.get("/devices")
        assert resp.status_code == 502
        assert "not-a-token" not in resp.text


async def test_unreachable_losant_is_503(world: World) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    async for http in open_client(world.settings(url=f"http://127.0.0.1:{closed_port}")):
        resp = await http.get("/devices")
        assert resp.status_code == 503
        assert resp.headers["retry-after"]


async def test_relays_the_device_state_as_server_sent_events(http: httpx.AsyncClient, world: World) -> None:
    device = world.devices[1]
    record = world.losant.store.device(device.id)
    request = asyncio.ensure_future(http.get(f"/devices/{device.id}/state/stream", params={"limit": 2}))
    # ASGITransport hands over the body only once the response ends (after 2 states), and
    # the stream sees only states reported after it opened: report until it has its two.
    sent: list[tuple[int, float]] = []
    base = int(time.time() * 1000)
    for i in range(200):
        value = 20.0 + i
        world.losant.store.record_state(record, {"time": base + i, "data": {"temperature": value}})
        sent.append((base + i, value))
        done, _ = await asyncio.wait({request}, timeout=0.02)
        if done:
            break
    resp = await asyncio.wait_for(request, 5)

    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = [block for block in resp.text.split("\n\n") if block.startswith("event:")]
    assert len(events) == 2
    values = []
    for block in events:
        name_line, data_line = block.split("\n")
        assert name_line == "event: state"
        values.append(json.loads(data_line.removeprefix("data: "))["data"]["temperature"])
    sent_values = [v for _, v in sent]
    start = sent_values.index(values[0])
    assert values == sent_values[start : start + 2]  # consecutive, in order, nothing invented


async def test_runs_standalone_help(tmp_path: Path) -> None:
    # The server itself runs until stopped; importing and building the app standalone must work.
    result = await run_script("fastapi_app/app.py", "--check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "/devices" in result.stdout


async def test_a_browser_that_leaves_releases_its_upstream_stream(world: World) -> None:
    import uvicorn

    app = app_module.create_app(world.settings())
    # A listening socket handed to the server: its port is known and connectable before serve() runs.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    device = world.devices[2]
    record = world.losant.store.device(device.id)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as browser:
            async with browser.stream("GET", f"/devices/{device.id}/state/stream") as resp:
                assert resp.status_code == 200
                got_state = asyncio.Event()

                async def read() -> None:
                    async for line in resp.aiter_lines():
                        if line == "event: state":
                            got_state.set()

                reader = asyncio.ensure_future(read())
                base = int(time.time() * 1000)
                for i in range(100):  # report until the browser has seen one state
                    world.losant.store.record_state(record, {"time": base + i, "data": {"temperature": i}})
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(got_state.wait(), 0.05)
                    if got_state.is_set():
                        break
                assert got_state.is_set()
                assert (await browser.get("/health")).json() == {"open_streams": 1}
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            # The browser has gone: the relay must close Losant's stream by itself.
            await asyncio.wait_for(app.state.streams.wait_idle(), 10)
            assert (await browser.get("/health")).json() == {"open_streams": 0}
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (errors.RateLimitedError(429, "RateLimit", "slow down", retry_after=7.2), 429, "7"),
        (errors.ServerError(500, "Internal", "boom"), 502, None),
        (errors.BadRequestError(400, "Validation", "bad query"), 422, None),
        (errors.ForbiddenError(403, "Forbidden", "no scope"), 502, None),
        (errors.RequestTimeoutError("timed out"), 503, "5"),
    ],
)
def test_losant_errors_become_http_statuses(error: Exception, status: int, retry_after: str | None) -> None:
    resp = app_module.error_response(error)
    assert resp.status_code == status
    assert resp.headers.get("retry-after") == retry_after


async def test_an_idle_relay_sends_keepalive_comments(world: World) -> None:
    # A device that reports nothing: with a 0.05 s keepalive the browser must still get bytes,
    # so a proxy with an idle timeout keeps the connection (the default is every 15 s).
    import uvicorn

    app = app_module.create_app(world.settings(relay_keepalive=0.05))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    device = world.devices[3]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as browser:
            async with browser.stream("GET", f"/devices/{device.id}/state/stream") as resp:
                assert resp.status_code == 200
                lines: list[str] = []

                async def three_keepalives() -> None:
                    async for line in resp.aiter_lines():
                        lines.append(line)
                        if lines.count(": keepalive") >= 3:
                            return

                await asyncio.wait_for(three_keepalives(), 10)
                assert lines[0] == ": connected"
                assert not any(line.startswith("event:") for line in lines)  # nothing invented
            await asyncio.wait_for(app.state.streams.wait_idle(), 10)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()


async def test_a_state_after_keepalives_is_still_relayed(world: World) -> None:
    # The read pending across keepalives is the one that delivers the state: none is lost.
    class Events:
        def __init__(self) -> None:
            self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def __aiter__(self) -> Events:
            return self

        async def __anext__(self) -> dict[str, Any]:
            return await self.queue.get()

    events = Events()
    upstream = contextlib.AsyncExitStack()
    closed = asyncio.Event()
    upstream.callback(closed.set)
    relay = app_module.relay(events, 1, upstream, keepalive=0.01)
    assert await relay.__anext__() == b": connected\n\n"
    assert await relay.__anext__() == b": keepalive\n\n"
    assert await relay.__anext__() == b": keepalive\n\n"
    events.queue.put_nowait({"data": {"t": 1}})
    chunk = await relay.__anext__()
    while chunk == b": keepalive\n\n":
        chunk = await relay.__anext__()
    assert chunk == b'event: state\ndata: {"data":{"t":1}}\n\n'
    with pytest.raises(StopAsyncIteration):
        await relay.__anext__()
    assert closed.is_set()

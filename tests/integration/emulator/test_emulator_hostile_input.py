"""Hostile input against the emulator: validated before it is recorded, and every answer in Losant's JSON shape.

Findings of issue 20, each a test that failed before: a command time past year 9999
recorded and then failing every read of the command log, JSON nested 1,000 deep
answering 500 over REST and closing the device's MQTT connection, abandoned SSE
streams kept until their next keepalive, a stored file name adding a parameter (or
a header) to ``Content-Disposition``, aiohttp's plain-text 400s, REST connections
that never end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from losant_async.emulator import LocalLosant
from losant_async.emulator._limits import Limits
from losant_async.emulator.store import BlobRecord
from losant_async.errors import ValidationError
from tests.integration.emulator.emulator_support import WAIT, RawMqtt

YEAR_10000_MS = 253_402_300_800_000


class World:
    def __init__(self, losant: LocalLosant) -> None:
        self.losant = losant
        self.app = losant.create_application(name="input")
        self.device = self.app.create_device(name="d", attributes={"t": "number"})
        self.other = self.app.create_device(name="e", attributes={"t": "number"})
        self.key = self.app.create_access_key()
        self.token = self.app.create_api_token()

    def url(self, tail: str = "") -> str:
        return f"{self.losant.rest_url}/applications/{self.app.id}{tail}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


Start = Callable[..., Awaitable[World]]


@pytest_asyncio.fixture
async def start() -> AsyncIterator[Start]:
    async with contextlib.AsyncExitStack() as stack:

        async def run(**changes: float) -> World:
            losant = await stack.enter_async_context(LocalLosant(ws_port=None, limits=Limits().replace(**changes)))
            return World(losant)

        yield run


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as session:
        yield session


async def send(http: aiohttp.ClientSession, method: str, url: str, world: World, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, url, headers=world.auth, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def test_a_command_past_year_9999_is_a_400_and_never_recorded(start: Start, http: aiohttp.ClientSession) -> None:
    """Before: recorded, then 500; from then on GET .../command answered 500 for good."""
    world = await start()
    device_url = world.url(f"/devices/{world.device.id}")
    status, body = await send(http, "POST", f"{device_url}/command", world, json={"name": "go", "time": YEAR_10000_MS})
    assert (status, body["type"]) == (400, "Validation")
    assert world.losant.commands_sent(world.device.id) == []
    status, commands = await send(http, "GET", f"{device_url}/command", world)
    assert (status, commands) == (200, [])
    # a multi-device command is all or nothing: no device is sent it
    status, _ = await send(
        http, "POST", world.url("/devices/command"), world,
        json={"name": "go", "time": YEAR_10000_MS, "deviceIds": [world.device.id, world.other.id]},
    )
    assert status == 400
    assert world.losant.commands_sent(world.other.id) == []
    with pytest.raises(ValidationError, match="year 9999"):
        await world.losant.send_command(world.device.id, "go", time=YEAR_10000_MS)


async def test_json_nested_1000_deep_is_a_400_over_rest(start: Start, http: aiohttp.ClientSession) -> None:
    """Before: 500 InternalError."""
    world = await start()
    nested = b'{"data": {"t": ' + b"[" * 1000 + b"]" * 1000 + b"}}"
    async with http.post(
        world.url(f"/devices/{world.device.id}/state"), data=nested,
        headers={**world.auth, "Content-Type": "application/json"},
    ) as response:
        body = await response.json()
        assert (response.status, body["type"]) == (400, "Validation")
        assert "nested" in body["message"]


async def test_a_nested_mqtt_state_is_dropped_and_counted_and_the_connection_stays(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the connection closed with a logged traceback; Losant drops a bad state silently."""
    world = await start()
    client = await RawMqtt.open(world.losant.mqtt_port)
    try:
        assert await client.connect(world.device.id, world.key.key, world.key.secret) == 0
        with caplog.at_level(logging.ERROR):
            await client.publish(f"losant/{world.device.id}/state", b'{"data": {"t": ' + b"[" * 1000 + b"]" * 1000 + b"}}")
            await client.publish(f"losant/{world.device.id}/state", {"data": {"t": 1}})
            await client.ping()  # still connected
        assert world.losant.counters.states_invalid == 1
        assert len(world.losant.states(world.device.id)) == 1
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        await client.close()


async def test_abandoned_streams_end_with_their_peers(start: Start) -> None:
    """Before: 1,000 abandoned stateStreams left 3,000 tasks and their listeners until the next keepalive."""
    world = await start()
    rest = world.losant._rest
    store = world.losant.store
    listeners_before = len(store._state_listeners)
    tasks_before = len(asyncio.all_tasks())
    path = f"/applications/{world.app.id}/devices/{world.device.id}/stateStream?keepAliveInterval=60"
    host, port = world.losant.rest_url.rsplit("/", 1)[-1].split(":")
    peers = []
    for _ in range(100):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {world.token}\r\n\r\n".encode())
        peers.append((reader, writer))
    for reader, _writer in peers:
        head = await asyncio.wait_for(reader.readuntil(b": connected\n\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 200")
    assert len(rest._streams) == 100
    for _reader, writer in peers:
        writer.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while rest._streams or len(asyncio.all_tasks()) > tasks_before:  # they end on their own, not at a keepalive
        assert loop.time() < deadline, f"{len(rest._streams)} streams still open"
        await asyncio.sleep(0.01)
    assert len(store._state_listeners) == listeners_before


async def test_a_stored_file_name_cannot_add_parameters_or_headers(start: Start, http: aiohttp.ClientSession) -> None:
    """Before: ``a"; filename="evil.exe`` gave two filename parameters, and a name with CR/LF no answer at all."""
    world = await start()
    names = {"quote": 'a"; filename="evil.exe', "crlf": "a\r\nSet-Cookie: x=1", "unicode": "r\u00e9sum\u00e9 \u2603.txt"}
    for label, name in names.items():
        world.losant.store.blobs[label] = BlobRecord(name, "text/plain\r\nX-Evil: 1", b"hi")
        async with http.get(f"{world.losant.rest_url}/_emulator/blobs/{label}") as response:
            assert response.status == 200, label
            disposition = response.headers["Content-Disposition"]
            assert "\r" not in disposition and "\n" not in disposition
            assert "X-Evil" not in response.headers and "Set-Cookie" not in response.headers
            assert response.content_type == "application/octet-stream"
            assert await response.read() == b"hi"
        message = Message()
        message["Content-Disposition"] = disposition
        params = message.get_params(header="content-disposition")
        # one ASCII fallback and one exact RFC 6266 ``filename*``: nothing else, whatever the name held
        assert [k for k, _v in params] == ["attachment", "filename", "filename"], disposition
        fallback, exact = params[1][1], params[2][1]
        assert isinstance(fallback, str) and '"' not in fallback
        assert isinstance(exact, tuple) and exact[0] == "UTF-8" and collapse_rfc2231_value(exact) == name, label


async def test_aiohttps_own_refusals_answer_in_losants_json_shape(start: Start, http: aiohttp.ClientSession) -> None:
    """Before: 10,000 query parameters got aiohttp's plain-text 400."""
    world = await start()
    many = "&".join(f"p{i}=1" for i in range(10_000))
    async with http.get(f"{world.url('/devices')}?{many}", headers=world.auth) as response:
        assert response.status == 400
        assert response.content_type == "application/json"
        assert set(await response.json()) == {"type", "message"}
    some = "&".join(f"p{i}" for i in range(1500))  # fits the request line, over the parameter cap
    status, body = await send(http, "GET", f"{world.url('/devices')}?{some}", world)
    assert (status, body["type"]) == (400, "Validation")
    status, body = await send(http, "POST", world.url(f"/devices/{world.device.id}/state"), world, data=bytes(5 * 1024 * 1024))
    assert status == 413 and set(body) == {"type", "message"}


async def _eof(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), WAIT)


async def test_a_slow_request_head_is_closed_at_its_deadline(start: Start) -> None:
    """Before: a request head dripped slowly kept its connection open (still open after 90 s)."""
    world = await start(rest_header_deadline_s=0.3)
    host, port = world.losant.rest_url.rsplit("/", 1)[-1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /applications HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    assert await _eof(reader) == b""
    writer.close()
    assert world.losant.counters.rest_timeouts == 1


async def test_an_idle_connection_is_closed(start: Start) -> None:
    world = await start(rest_idle_s=0.3)
    host, port = world.losant.rest_url.rsplit("/", 1)[-1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await _eof(reader)  # the answer, then the close once the connection sat idle
    assert answer.startswith(b"HTTP/1.1 404")
    writer.close()


async def test_over_the_rest_connection_cap_a_connection_gets_a_json_503(start: Start) -> None:
    world = await start(max_rest_connections=2)
    host, port = world.losant.rest_url.rsplit("/", 1)[-1].split(":")
    held = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
    reader, writer = await asyncio.open_connection(host, int(port))
    answer = await _eof(reader)
    assert answer.startswith(b"HTTP/1.1 503") and b'"type":"ServiceUnavailable"' in answer
    assert world.losant.counters.rest_connections_refused == 1
    writer.close()
    for _reader, other in held:
        other.close()


async def test_a_slow_body_gets_a_408_at_its_deadline(start: Start) -> None:
    world = await start(rest_body_deadline_s=0.3)
    host, port = world.losant.rest_url.rsplit("/", 1)[-1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    path = f"/applications/{world.app.id}/devices/{world.device.id}/state"
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {world.token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"data\":".encode()
    )  # and the other 92 bytes never come
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 408")
    assert world.losant.counters.rest_timeouts == 1
    writer.close()

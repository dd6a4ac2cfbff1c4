"""The client against a real local HTTP server: pagination, streams, uploads, bad replies, retries, auth."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from losant_async.errors import (
    ConnectError,
    DecodeError,
    NotFoundError,
    RequestTimeoutError,
    ServerError,
    ValidationError,
)
from losant_async.rest import DeviceCredentials, LosantClient, RequestOptions, Timeout
from losant_async.rest import models as m
from tests.integration.rest.rest_local_server import LocalServer, json_reply

APP = "575ec8687ae143cd83dc4a97"
DEV = "575ecf887ae143cd83dc4aa2"
DEV2 = "575ecf887ae143cd83dc4aa3"


WHEN = "2026-01-02T03:04:05.678Z"


def device(i: int) -> dict[str, object]:
    """A device with every field a device reply always carries (see docs/rest.md)."""
    return {
        "id": f"{i:024x}",
        "deviceId": f"{i:024x}",
        "name": f"device {i}",
        "applicationId": APP,
        "creationDate": WHEN,
        "lastUpdated": WHEN,
    }


async def test_pagination_fetches_every_page_ahead_in_order(local_server: LocalServer) -> None:
    total, per_page = 23, 5
    in_flight = 0
    peak = 0
    release = asyncio.Event()

    async def pages(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight, peak
        page = int(request.query.get("page", "0"))
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            if page > 0 and peak < 3:
                # Hold the later pages until several are in flight at once: proves prefetch
                # without timing (bounded by the test timeout, never by a sleep).
                await asyncio.wait_for(release.wait(), 10)
            if peak >= 3:
                release.set()
            items = [device(i) for i in range(page * per_page, min(total, (page + 1) * per_page))]
            return web.json_response(
                {
                    "items": items,
                    "count": len(items),
                    "totalCount": total,
                    "perPage": per_page,
                    "page": page,
                }
            )
        finally:
            in_flight -= 1

    local_server.handler = pages
    async with LosantClient("t", url=local_server.url, page_prefetch=3) as client:
        names = [d.name async for d in client.devices.get(application_id=APP, per_page=per_page)]
        first = await client.devices.get(application_id=APP, per_page=per_page)
    assert names == [f"device {i}" for i in range(total)]
    assert isinstance(first, m.Devices) and first.total_count == total
    requested = sorted(int(s.query.get("page", "0")) for s in local_server.seen[:-1])
    assert requested == [0, 1, 2, 3, 4]
    assert 1 < peak <= 3


async def test_state_stream_decodes_events_skips_keepalives_and_cancellation_closes_it(
    local_server: LocalServer,
) -> None:
    sent_two = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for value in (1, 2):
                await resp.write(b": keepalive\n\n")
                payload = json.dumps({"data": {"temp": value}, "time": 1700000000000 + value})
                await resp.write(f"event: deviceState\ndata: {payload}\n\n".encode())
            sent_two.set()
            while True:  # keepalives until the client goes away
                await resp.write(b":\n\n")
                await asyncio.sleep(0.05)
        except (ConnectionResetError, asyncio.CancelledError):
            local_server.disconnected.set()
            raise
        return resp

    local_server.handler = stream
    received: list[m.DeviceState] = []
    got_two = asyncio.Event()
    async with LosantClient("t", url=local_server.url) as client:

        async def consume() -> None:
            async with client.device.state_stream(application_id=APP, device_id=DEV) as events:
                async for state in events:
                    received.append(state)
                    if len(received) == 2:
                        got_two.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(got_two.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(local_server.disconnected.wait(), 10)
    assert [s.data for s in received] == [{"temp": 1}, {"temp": 2}]
    assert all(isinstance(s, m.DeviceState) for s in received)
    seen = local_server.seen[0]
    assert "_links" not in seen.query and "_actions" not in seen.query
    assert seen.headers["Authorization"] == "Bearer t"


async def test_stream_that_the_server_refuses_raises_the_api_error(
    local_server: LocalServer,
) -> None:
    local_server.handler = json_reply(404, {"type": "NotFound", "message": "no such device"})
    async with LosantClient("t", url=local_server.url) as client:
        with pytest.raises(NotFoundError):
            async with client.device.command_stream(application_id=APP, device_id=DEV) as events:
                async for _ in events:
                    pass


async def test_multipart_upload_from_a_path(local_server: LocalServer, tmp_path: Path) -> None:
    notebook = tmp_path / "analysis.ipynb"
    notebook.write_bytes(b'{"cells": []}')
    local_server.handler = json_reply(
        200,
        {"id": DEV, "notebookId": DEV, "applicationId": APP, "name": "analysis", "creationDate": WHEN, "lastUpdated": WHEN},
    )
    async with LosantClient("t", url=local_server.url) as client:
        result = await client.notebook.upload(
            application_id=APP, notebook_id=DEV, jupyter_file=notebook
        )
    assert isinstance(result, m.Notebook) and result.name == "analysis"
    (seen,) = local_server.seen
    assert seen.headers["Content-Type"].startswith("multipart/form-data")
    assert seen.parts == [
        ("jupyterFile", "analysis.ipynb", "application/octet-stream", b'{"cells": []}')
    ]


async def test_application_import_with_file_text_and_json_fields(local_server: LocalServer) -> None:
    local_server.handler = json_reply(202, {"jobQueued": True, "jobId": "j1", "success": True})
    async with LosantClient("t", url=local_server.url) as client:
        await client.application.api_import(
            application_id=APP,
            import_bundle=("bundle.zip", b"PK\x03\x04", "application/zip"),
            email="me@example.com",
            options={"overwrite": True},
        )
    parts = {
        name: (filename, ctype, content)
        for name, filename, ctype, content in local_server.seen[0].parts
    }
    assert parts["importBundle"] == ("bundle.zip", "application/zip", b"PK\x03\x04")
    assert parts["email"][2] == b"me@example.com"
    assert json.loads(parts["options"][2]) == {"overwrite": True}


async def test_a_passed_in_session_is_used_and_left_open(local_server: LocalServer) -> None:
    local_server.handler = json_reply(200, device(1))
    async with aiohttp.ClientSession() as session:
        async with LosantClient("t", url=local_server.url, session=session) as client:
            got = await client.device.get(application_id=APP, device_id=DEV)
        assert got.name == "device 1"
        assert not session.closed
        async with session.get(local_server.url + "/still-usable") as resp:
            assert resp.status == 200


async def test_html_502_from_a_proxy(local_server: LocalServer) -> None:
    async def proxy(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=502, text="<html><h1>502 Bad Gateway</h1></html>", content_type="text/html"
        )

    local_server.handler = proxy
    async with LosantClient("t", url=local_server.url, max_retries=0) as client:
        with pytest.raises(ServerError) as info:
            await client.device.get(application_id=APP, device_id=DEV)
    assert info.value.status == 502 and "502 Bad Gateway" in info.value.body


@pytest.mark.parametrize(
    ("body", "path"),
    [(b'{"id": "abc", "name": "trunc', None), (b'{"id": 5, "name": []}', "$.id")],
    ids=["truncated", "wrong-types"],
)
async def test_bad_json_is_a_decode_error_with_the_raw_body(
    local_server: LocalServer, body: bytes, path: str | None
) -> None:
    local_server.handler = json_reply(200, body)
    async with LosantClient("t", url=local_server.url) as client:
        with pytest.raises(DecodeError) as info:
            await client.device.get(application_id=APP, device_id=DEV)
        assert info.value.raw == body
        if path is not None:
            assert info.value.path == path
        raw = await client.device.get(application_id=APP, device_id=DEV, raw=True) if path else None
    assert path is None or raw == json.loads(body)


async def test_429_with_retry_after_then_success(local_server: LocalServer) -> None:
    replies = iter(
        [
            (429, {"type": "TooManyRequests", "message": "slow"}, {"Retry-After": "2"}),
            (200, {"success": True}, {}),
        ]
    )

    async def handler(request: web.Request) -> web.StreamResponse:
        status, body, headers = next(replies)
        return web.json_response(body, status=status, headers=headers)

    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)

    local_server.handler = handler
    async with LosantClient("t", url=local_server.url, sleep=fake_sleep) as client:
        result = await client.device.send_command(
            application_id=APP, device_id=DEV, device_command={"name": "go"}
        )
    assert result.success is True
    assert delays == [2.0]
    assert len(local_server.seen) == 2


async def test_refused_connection_is_a_connect_error_after_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)

    async with LosantClient(
        "t", url=f"http://127.0.0.1:{port}", sleep=fake_sleep, max_retries=2
    ) as client:
        with pytest.raises(ConnectError):
            await client.device.send_state(
                application_id=APP, device_id=DEV, device_state={"data": {"t": 1}}
            )
    assert len(delays) == 2


async def test_a_reply_that_never_comes_times_out(local_server: LocalServer) -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await never.wait()
        return web.json_response({})

    local_server.handler = hang
    async with LosantClient("t", url=local_server.url, max_retries=0) as client:
        with pytest.raises(RequestTimeoutError):
            await client.device.get(
                application_id=APP,
                device_id=DEV,
                request_options=RequestOptions(timeout=Timeout(total=0.2)),
            )
    never.set()


async def test_device_credentials_against_the_server(local_server: LocalServer) -> None:
    tokens = iter(["tok-1", "tok-2"])
    refused_once = False

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal refused_once
        if request.path == "/auth/device":
            body = await request.json()
            assert body == {"deviceId": DEV, "key": "k", "secret": "s3cret"}
            return web.json_response(
                {
                    "token": next(tokens),
                    "applicationId": APP,
                    "deviceId": DEV,
                    "deviceClass": "standalone",
                }
            )
        if request.headers.get("Authorization") == "Bearer tok-1" and not refused_once:
            refused_once = True
            return web.json_response({"type": "Unauthorized", "message": "expired"}, status=401)
        return web.json_response({"success": True})

    local_server.handler = handler
    async with LosantClient(DeviceCredentials(DEV, "k", "s3cret"), url=local_server.url) as client:
        result = await client.device.send_state(
            application_id=APP, device_id=DEV, device_state={"data": {"t": 1}}
        )
    assert result.success is True
    assert [s.raw_path for s in local_server.seen].count("/auth/device") == 2
    assert local_server.seen[-1].headers["Authorization"] == "Bearer tok-2"


async def test_bulk_send_states_reports_every_item_in_order(local_server: LocalServer) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if DEV2 in request.path:
            return web.json_response(
                {"type": "NotFound", "message": "Device was not found"}, status=404
            )
        return web.json_response({"success": True})

    local_server.handler = handler
    async with LosantClient("t", url=local_server.url) as client:
        results = await client.bulk.send_states(
            APP,
            [
                (DEV, {"data": {"t": 1}}),
                (DEV2, {"data": {"t": 2}}),
                ("bad-id", {"data": {}}),
                (DEV, [{"data": {"t": 3}}, {"data": {"t": 4}}]),
            ],
            concurrency=2,
        )
        commands = await client.bulk.send_command_many(APP, [(DEV, {"name": "reboot"})])
    assert [r.key for r in results] == [DEV, DEV2, "bad-id", DEV]
    assert [r.ok for r in results] == [True, False, False, True]
    assert isinstance(results[1].error, NotFoundError)
    assert isinstance(results[2].error, ValidationError)
    assert results[0].unwrap().success is True
    assert commands[0].ok
    state_bodies = [json.loads(s.body) for s in local_server.seen if s.raw_path.endswith("/state")]
    assert len(state_bodies) == 3, "the bad ID was refused before sending"
    assert any(isinstance(b, list) and len(b) == 2 for b in state_bodies), (
        "many states of one device: one request"
    )


async def test_a_two_step_upload_sends_no_token_to_the_target_and_puts_the_file_last(
    local_server: LocalServer,
) -> None:
    # Losant's files supplement: POST every upload.fields entry as a form field, the content
    # last as the part named "file", to upload.url (S3), with no Losant Authorization header.
    file_json = {"id": DEV, "applicationId": APP, "name": "a.txt", "type": "file", "creationDate": WHEN,
                 "lastUpdated": WHEN}
    polls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal polls
        if request.path.endswith("/files"):
            upload = {"url": f"{local_server.url}/s3-bucket", "fields": {"key": "k/a.txt", "policy": "p"}}
            return web.json_response({**file_json, "status": "pending", "upload": upload}, status=201)
        if request.path == "/s3-bucket":
            return web.Response(status=204)
        polls += 1  # pending once: the client waits for "completed"
        return web.json_response({**file_json, "status": "pending" if polls == 1 else "completed"})

    local_server.handler = handler
    async with LosantClient("tok-SECRET", url=local_server.url) as client:
        done = await client.files.upload(b"hello", application_id=APP, name="a.txt")
    assert done.status == "completed" and polls == 2
    create, upload, *_ = local_server.seen
    assert create.headers["Authorization"] == "Bearer tok-SECRET"
    assert upload.raw_path == "/s3-bucket" and "Authorization" not in upload.headers
    assert [p[0] for p in upload.parts] == ["key", "policy", "file"]
    assert upload.parts[-1] == ("file", "a.txt", "text/plain", b"hello")

"""Issue 11's REST findings over real sockets: reply caps after decompression, TLS failures, the ssl and proxy options."""

from __future__ import annotations

import gzip
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme
from aiohttp import web

from losant_async.errors import ResponseTooLargeError, TLSVerificationError
from losant_async.rest import LosantClient, RequestOptions
from tests.integration.rest.rest_local_server import LocalServer

pytestmark = pytest.mark.timeout(60)

APP_ID = "575ec8687ae143cd83dc4a97"
DEVICE_ID = "575ecf887ae143cd83dc4aa2"
MIB = 1 << 20


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def _json_array(n_bytes: int) -> bytes:
    return b"[" + b"0," * (n_bytes // 2) + b"0]"


async def test_finding_04_gzip_reply_capped_after_decompression(local_server: LocalServer) -> None:
    expanded = _json_array(16 * MIB)
    compressed = gzip.compress(expanded, compresslevel=9)
    assert len(compressed) < MIB // 4

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=compressed,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    local_server.handler = handle
    async with LosantClient("t", url=local_server.url, max_response_bytes=MIB) as client:
        with pytest.raises(ResponseTooLargeError) as caught:
            await client.device.get(application_id=APP_ID, device_id=DEVICE_ID, raw=True)
        assert caught.value.limit == MIB
        # The same reply within a larger per-call cap decodes.
        reply = await client.device.get(
            application_id=APP_ID,
            device_id=DEVICE_ID,
            raw=True,
            request_options=RequestOptions(max_response_bytes=32 * MIB),
        )
        assert isinstance(reply, list) and len(reply) == 16 * MIB // 2 + 1


async def test_finding_04_chunked_plain_reply_capped(local_server: LocalServer) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(64):  # 4 MiB in 64 KiB chunks, no Content-Length
                await resp.write(b" " * (64 * 1024))
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading at its cap and dropped the connection
        return resp

    local_server.handler = handle
    async with LosantClient("t", url=local_server.url, max_response_bytes=MIB) as client:
        with pytest.raises(ResponseTooLargeError):
            await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)
        # The connection was dropped, not returned half-read to the pool: the next call works.
        local_server.handler = _success
        assert (await client.device.get(application_id=APP_ID, device_id=DEVICE_ID, raw=True)) == {
            "success": True
        }


async def test_finding_04_announced_length_beyond_the_cap_refused(local_server: LocalServer) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=_json_array(2 * MIB), content_type="application/json")

    local_server.handler = handle
    async with LosantClient("t", url=local_server.url, max_response_bytes=MIB) as client:
        with pytest.raises(ResponseTooLargeError, match="announces"):
            await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)


async def _success(request: web.Request) -> web.StreamResponse:
    return web.json_response({"success": True})


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[tuple[str, list[Any]]]:
    hits: list[Any] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        return web.json_response({"success": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}", hits
    finally:
        await runner.cleanup()


async def test_finding_11_certificate_failure_is_typed_and_not_retried(
    tls_server: tuple[str, list[Any]],
) -> None:
    url, hits = tls_server
    sleeps = Sleeps()
    async with LosantClient("t", url=url, sleep=sleeps) as client:  # the system's trust store
        with pytest.raises(TLSVerificationError, match="certificate"):
            await client.device.get(application_id=APP_ID, device_id=DEVICE_ID)  # idempotent
    assert sleeps.delays == [], "a wrong CA is not a transient fault"
    assert hits == []


async def test_ssl_option_trusts_a_private_ca(
    ca: trustme.CA, tls_server: tuple[str, list[Any]]
) -> None:
    url, hits = tls_server
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    async with LosantClient("t", url=url, ssl=ctx) as client:
        reply = await client.device.get(application_id=APP_ID, device_id=DEVICE_ID, raw=True)
    assert reply == {"success": True}
    assert hits == [f"/applications/{APP_ID}/devices/{DEVICE_ID}"]


# -- trust_env: HTTP(S)_PROXY ------------------------------------------------------------------


async def test_trust_env_sends_through_http_proxy(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The local server plays the proxy: an absolute-form request for a host that does not exist.
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", local_server.url)
    local_server.handler = _success
    async with LosantClient("t", url="http://losant.invalid", trust_env=True) as client:
        reply = await client.device.get(application_id=APP_ID, device_id=DEVICE_ID, raw=True)
    assert reply == {"success": True}
    seen = local_server.seen[-1]
    assert seen.headers["Host"] == "losant.invalid"
    assert seen.raw_path == f"/applications/{APP_ID}/devices/{DEVICE_ID}"

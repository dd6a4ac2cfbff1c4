"""Fixed-reply Losant-shaped HTTP server (aiohttp.web) in its own process: prints ``READY <port>``."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from benchmarks._payloads import device_page
from benchmarks.workers._common import wait_for_stop_signal

SUCCESS = b'{"success":true}'
JSON = "application/json"


async def _success(request: web.Request) -> web.Response:
    await request.read()  # a real server reads the body; so does this one
    return web.Response(body=SUCCESS, content_type=JSON)


def make_app() -> web.Application:
    page = device_page(100)

    async def devices(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type=JSON)

    app = web.Application()
    app.router.add_get("/applications/{app}/devices", devices)
    app.router.add_route("*", "/{tail:.*}", _success)
    return app


async def main() -> None:
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(f"READY {port}", flush=True)
    try:
        await wait_for_stop_signal()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())

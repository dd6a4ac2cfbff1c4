"""A real aiohttp.web server on 127.0.0.1 (ephemeral port) whose answers each test scripts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web
from multidict import MultiDict


@dataclass
class Seen:
    """One request as the server saw it."""

    method: str
    raw_path: str
    """The path as sent (still percent-encoded), without the query."""
    query: MultiDict[str]
    headers: dict[str, str]
    body: bytes = b""
    parts: list[tuple[str, str | None, str | None, bytes]] = field(default_factory=list)
    """Multipart parts: (name, filename, content type, content)."""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LocalServer:
    """Records every request; ``handler`` (replaceable per test) makes the answer."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.handler: Handler = self._default
        self.url = ""
        self.disconnected = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def _default(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({})

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(
            request.method,
            request.rel_url.raw_path,
            MultiDict(request.query),
            dict(request.headers),
        )
        if (request.content_type or "").startswith("multipart/"):
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                assert isinstance(part, BodyPartReader), "no nested multipart expected"
                content = await part.read(decode=False)
                seen.parts.append(
                    (
                        part.name or "",
                        part.filename,
                        part.headers.get("Content-Type"),
                        bytes(content),
                    )
                )
        else:
            seen.body = await request.read()
        self.seen.append(seen)
        return await self.handler(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._entry)
        # The advanced-query examples make URLs far longer than the 8 KiB default allows.
        self._runner = web.AppRunner(
            app, handle_signals=False, max_line_size=1 << 20, max_field_size=1 << 16
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def json_reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    """A handler answering ``body`` as JSON (``bytes`` as is) with ``status``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if body is None:
            return web.Response(status=status, headers=headers)
        if isinstance(body, bytes):
            return web.Response(
                status=status, body=body, headers=headers, content_type="application/json"
            )
        return web.json_response(body, status=status, headers=headers)

    return handle

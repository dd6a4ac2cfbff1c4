"""A FastAPI backend in front of Losant: one shared client, paginated lists, commands, live state.

What it shows
  * one ``LosantClient`` for the whole process, opened and closed by the app's
    lifespan and handed to endpoints through a dependency (one connection pool,
    one token, no client per request);
  * ``GET /devices?page=0&per_page=25``: one page of the application's devices;
  * ``POST /devices/{device_id}/commands`` with ``{"name": ..., "payload": ...}``;
  * ``GET /devices/{device_id}/state/stream``: the device's state pushed to the
    browser as server-sent events, relayed from Losant's ``device.state_stream``
    (``new EventSource("/devices/<id>/state/stream")`` in the page); a browser
    that leaves closes its upstream stream (``GET /health`` counts them), and
    an idle stream gets a ``: keepalive`` comment every 15 s
    (``Settings.relay_keepalive``) so a proxy's idle timeout does not cut it;
  * Losant's errors turned into HTTP answers a browser can act on: unknown
    device 404, bad input 422, Losant rate limit 429 (with Retry-After), our
    own token refused 502 (the backend is misconfigured, not the caller
    unauthorised), Losant unreachable 503.

Run it against an embedded emulator (a demo application with a few devices;
needs the ``examples`` extra: ``pip install -e '.[examples]'``):
    python examples/fastapi_app/app.py
    curl 'http://127.0.0.1:8000/devices?per_page=2'

Run it against real Losant with an application API token (scopes: devices.get,
device.get, device.sendCommand, device.stateStream, or all.Application.read plus
device.sendCommand):
    LOSANT_API_TOKEN=<token> LOSANT_APPLICATION_ID=<application id> \\
    python examples/fastapi_app/app.py
or serve it with uvicorn's CLI: ``uvicorn app:app_from_env --factory`` from this directory.
Optional: LOSANT_URL (https://api.losant.com), PORT (8000). ``--check`` answers one
``GET /devices`` in-process and exits, without opening a port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from msgspec import UnsetType
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from losant_async.errors import (
    APIError,
    ForbiddenError,
    LosantError,
    NotFoundError,
    RateLimitedError,
    TransportError,
    UnauthorizedError,
    UnprocessableError,
    ValidationError,
)
from losant_async.rest import LosantClient
from losant_async.rest.models import Device

DEFAULT_URL = "https://api.losant.com"


@dataclass(frozen=True)
class Settings:
    """Where Losant is and which application this backend serves."""

    api_token: str = field(repr=False)
    application_id: str
    url: str = DEFAULT_URL
    keep_alive_interval: int = 15
    """Seconds between Losant's keepalives on a state stream."""
    relay_keepalive: float = 15.0
    """Seconds of silence after which the relay sends the browser a ``: keepalive`` comment.

    Proxies and load balancers cut a connection idle for 30 to 60 s; a device that
    reports rarely would otherwise lose its browsers. Losant's own keepalives end at
    the client (they carry no state), so the relay sends its own."""
    max_retries: int = 2
    """Retries of a failed Losant call (connection failures, 429, 5xx) before answering an error."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        missing = [n for n in ("LOSANT_API_TOKEN", "LOSANT_APPLICATION_ID") if not env.get(n)]
        if missing:
            raise RuntimeError(f"missing environment variables: {', '.join(missing)}")
        return cls(
            api_token=env["LOSANT_API_TOKEN"],
            application_id=env["LOSANT_APPLICATION_ID"],
            url=env.get("LOSANT_URL", DEFAULT_URL),
        )


# --------------------------------------------------------------------------- what the API answers


class DeviceSummary(BaseModel):
    id: str
    name: str
    device_class: str | None = None
    tags: dict[str, list[str]] = Field(default_factory=dict)
    connected: bool | None = None


class DevicePage(BaseModel):
    items: list[DeviceSummary]
    page: int
    per_page: int
    total: int


class CommandIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    payload: Any = None


class CommandAccepted(BaseModel):
    sent: bool = True
    device_id: str
    name: str


# --------------------------------------------------------------------------- open streams


class OpenStreams:
    """How many browsers are watching a state stream now; ``GET /health`` reports it."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def opened(self) -> None:
        self.count += 1
        self._idle.clear()

    def closed(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return when no stream is open (at shutdown, or in a test)."""
        await self._idle.wait()


# --------------------------------------------------------------------------- the shared client


def get_client(request: Request) -> LosantClient:
    """The process-wide client the lifespan opened."""
    client: LosantClient = request.app.state.losant
    return client


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Client = Annotated[LosantClient, Depends(get_client)]
AppSettings = Annotated[Settings, Depends(get_settings)]


# --------------------------------------------------------------------------- Losant errors -> HTTP


def error_response(exc: LosantError) -> JSONResponse:
    """The HTTP answer for a Losant error; the body never repeats anything secret."""
    headers: dict[str, str] = {}
    if isinstance(exc, NotFoundError):
        status, detail = 404, "not found"
    elif isinstance(exc, ValidationError):
        # Raised by the client before sending: an ID of the wrong shape, say.
        status, detail = 422, str(exc)
    elif isinstance(exc, (UnprocessableError,)) or (isinstance(exc, APIError) and exc.status == 400):
        status, detail = 422, exc.message
    elif isinstance(exc, RateLimitedError):
        status, detail = 429, "Losant rate limit; retry later"
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    elif isinstance(exc, (UnauthorizedError, ForbiddenError)):
        # Our token was refused: the caller can do nothing about that, the operator can.
        status, detail = 502, "the backend's Losant credentials were refused"
    elif isinstance(exc, TransportError):
        status, detail = 503, "Losant is unreachable"
        headers["Retry-After"] = "5"
    else:
        status, detail = 502, "Losant failed to answer this request"
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


# --------------------------------------------------------------------------- the app


def create_app(settings: Settings) -> FastAPI:
    """The application; tests build it with the emulator's settings."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with LosantClient(settings.api_token, url=settings.url, max_retries=settings.max_retries) as client:
            app.state.losant = client
            app.state.settings = settings
            app.state.streams = OpenStreams()
            yield

    app = FastAPI(title="Losant devices", lifespan=lifespan)

    @app.exception_handler(LosantError)
    async def on_losant_error(request: Request, exc: LosantError) -> JSONResponse:
        return error_response(exc)

    @app.get("/devices", response_model=DevicePage)
    async def list_devices(
        client: Client,
        cfg: AppSettings,
        page: Annotated[int, Query(ge=0)] = 0,
        per_page: Annotated[int, Query(ge=1, le=1000)] = 25,
    ) -> DevicePage:
        result = await client.devices.get(
            application_id=cfg.application_id,
            page=page,
            per_page=per_page,
            sort_field="name",
            sort_direction="asc",
        )
        total = result.total_count
        return DevicePage(
            items=[summarise(d) for d in result.items],
            page=page,
            per_page=per_page,
            total=total if isinstance(total, int) else len(result.items),
        )

    @app.post("/devices/{device_id}/commands", status_code=202, response_model=CommandAccepted)
    async def send_command(device_id: str, command: CommandIn, client: Client, cfg: AppSettings) -> CommandAccepted:
        await client.device.send_command(
            application_id=cfg.application_id,
            device_id=device_id,
            device_command={"name": command.name, "payload": command.payload},
        )
        return CommandAccepted(device_id=device_id, name=command.name)

    @app.get("/devices/{device_id}/state/stream")
    async def stream_state(
        request: Request,
        device_id: str,
        client: Client,
        cfg: AppSettings,
        limit: Annotated[int | None, Query(ge=1, description="stop after this many states")] = None,
    ) -> StreamingResponse:
        streams: OpenStreams = request.app.state.streams
        upstream = contextlib.AsyncExitStack()
        # Open Losant's stream before answering: an unknown device is then a 404,
        # not a 200 followed by a broken stream.
        events = await upstream.enter_async_context(
            client.device.state_stream(
                application_id=cfg.application_id,
                device_id=device_id,
                keep_alive_interval=cfg.keep_alive_interval,
            )
        )
        streams.opened()
        upstream.callback(streams.closed)
        return StreamingResponse(
            relay(events, limit, upstream, keepalive=cfg.relay_keepalive),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            # The relay closes the upstream stream when it ends; this covers a
            # response that never started (closing twice is harmless).
            background=BackgroundTask(upstream.aclose),
        )

    @app.get("/health")
    async def health(request: Request) -> dict[str, int]:
        streams: OpenStreams = request.app.state.streams
        return {"open_streams": streams.count}

    return app


def summarise(device: Device) -> DeviceSummary:
    """The fields the browser needs from a ``Device`` Struct (``id`` and ``name`` are always there)."""
    tags: dict[str, list[str]] = {}
    for tag in device.tags if not isinstance(device.tags, UnsetType) else ():
        tags.setdefault(tag.key, []).append(tag.value)
    info = device.connection_info
    connected = None if isinstance(info, UnsetType) else info.connected
    return DeviceSummary(
        id=device.id,
        name=device.name,
        device_class=None if isinstance(device.device_class, UnsetType) else device.device_class,
        tags=tags,
        connected=bool(connected) if connected is not None and not isinstance(connected, UnsetType) else None,
    )


async def relay(
    events: AsyncIterator[Any],
    limit: int | None,
    upstream: contextlib.AsyncExitStack,
    *,
    keepalive: float = 15.0,
) -> AsyncIterator[bytes]:
    """Losant's state events as browser SSE (``event: state``); closes the upstream stream however it ends.

    After ``keepalive`` seconds without an event it sends a ``: keepalive``
    comment (browsers ignore comments; proxies see bytes and keep the
    connection). When the browser goes away the server stops iterating this
    generator, and its ``finally`` (run when the generator is closed) releases
    Losant's stream and the pending read.
    """
    sent = 0
    iterator = events.__aiter__()
    pending: asyncio.Future[Any] | None = None
    try:
        yield b": connected\n\n"
        while limit is None or sent < limit:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            # asyncio.wait leaves the read running on a timeout: no event is lost to a keepalive.
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                yield b": keepalive\n\n"
                continue
            read, pending = pending, None
            try:
                state = read.result()
            except StopAsyncIteration:
                break
            yield b"event: state\ndata: " + msgspec.json.encode(state) + b"\n\n"
            sent += 1
    except LosantError as exc:
        # The 200 is already sent: tell the browser in the stream, then end it.
        body = error_response(exc).body
        yield b"event: error\ndata: " + bytes(body) + b"\n\n"
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await upstream.aclose()


def app_from_env() -> FastAPI:
    """For ``uvicorn app:app_from_env --factory`` against real Losant."""
    return create_app(Settings.from_env())


# --------------------------------------------------------------------------- running it


@contextlib.asynccontextmanager
async def demo_settings() -> AsyncIterator[Settings]:
    """Settings for a demo application on an embedded emulator (five thermostats)."""
    from losant_async.testing import LocalLosant

    async with LocalLosant() as losant:
        record = losant.create_application(name="fastapi example")
        for i in range(5):
            record.create_device(name=f"thermostat-{i}", attributes={"temperature": "number"}, tags={"floor": str(i % 2)})
        token = record.create_api_token(scopes=["all.Application"])
        print(f"demo application {record.id} on the emulator at {losant.rest_url}", flush=True)
        yield Settings(api_token=token, application_id=record.id, url=losant.rest_url)


async def check(settings: Settings) -> None:
    """Run the app in-process for one request (no server, no port) and print the answer."""
    import httpx

    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://backend"
    ) as http:
        resp = await http.get("/devices", params={"per_page": 2})
        print(f"GET /devices?per_page=2 -> {resp.status_code} {resp.text}")


async def serve(port: int) -> None:
    import uvicorn

    if os.environ.get("LOSANT_API_TOKEN"):
        await uvicorn.Server(uvicorn.Config(app_from_env(), host="127.0.0.1", port=port)).serve()
        return
    async with demo_settings() as settings:
        await uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port)).serve()


async def main(argv: list[str]) -> int:
    if "--check" in argv:
        if os.environ.get("LOSANT_API_TOKEN"):
            await check(Settings.from_env())
        else:
            async with demo_settings() as settings:
                await check(settings)
        return 0
    await serve(int(os.environ.get("PORT", "8000")))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(sys.argv[1:])))

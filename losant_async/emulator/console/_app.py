"""The console's door: its token and session cookie, the login, the guard in front of every page, mounting under ``/console``."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ..store import Store
from ._context import CommandSender, ConsoleContext

__all__ = ["COOKIE", "PREFIX", "Console"]

COOKIE = "losant_console"
PREFIX = "/console"
STATIC = Path(__file__).parent / "static"

# No inline script anywhere (the pages load their code from /console/static), so a device
# name that tried to be markup could not run even if escaping failed. uPlot sizes its
# parts through style attributes, hence 'unsafe-inline' for styles only.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # the login link carries the token: it must never leave in a Referer
    "Referrer-Policy": "no-referrer",
}


class Console:
    """The web console of one emulator: ``mount(app)`` serves it under ``/console`` of that app.

    Only a browser that opened the login link (``login_path``, with the token) gets a
    session cookie; every other request is refused, and no CORS header is ever sent.
    """

    def __init__(
        self,
        store: Store,
        send_command: CommandSender,
        *,
        banned_until: Callable[[str], int | None] | None = None,
    ) -> None:
        self.store = store
        self.send_command = send_command
        self.banned_until: Callable[[str], int | None] = banned_until or (lambda _device_id: None)
        self.token = secrets.token_urlsafe(32)
        # The cookie is not the token: a leaked cookie ends with this run, and the
        # token in a terminal's scrollback does not open a session without the login.
        self._session = secrets.token_urlsafe(32)
        csrf = hmac.new(self._session.encode(), b"console csrf", hashlib.sha256).hexdigest()
        self._context = ConsoleContext(store, send_command, self.banned_until, csrf)
        self._pages: Any = None
        self._live: Any = None

    def __repr__(self) -> str:
        return "Console(token=<hidden>)"

    @property
    def login_path(self) -> str:
        """The login link's path and query (the token in it): append it to the REST URL."""
        return f"{PREFIX}/login?token={self.token}"

    def mount(self, app: web.Application) -> None:
        """Serve the console under ``/console`` of ``app`` (before its catch-all route answers)."""
        sub = web.Application(middlewares=[self._guard])
        sub.router.add_get("/login", self._login)
        sub.router.add_post("/login", self._login)
        sub.router.add_static("/static", STATIC, append_version=False)
        try:
            from ._live import Live
            from ._pages import Pages
        except ModuleNotFoundError as exc:  # jinja2 missing: say which extra, once, on every page
            missing = exc.name or "jinja2"

            async def unavailable(_request: web.Request) -> web.Response:
                return web.Response(
                    status=503, content_type="text/plain",
                    text=f"The console needs the module {missing!r}: pip install 'losant-async[emulator]'",
                )

            sub.router.add_route("*", "/{tail:.*}", unavailable)
        else:
            self._pages = Pages(self._context)
            self._live = Live(self._context)
            self._pages.add_routes(sub.router)
            self._live.add_routes(sub.router)
            sub.on_shutdown.append(self._live.close)
        app.add_subapp(PREFIX, sub)

    def close(self) -> None:
        """End the live streams (the server is stopping)."""
        if self._live is not None:
            self._live.stop()

    # -- the door ------------------------------------------------------------------------------

    def authorized(self, request: web.Request) -> bool:
        return hmac.compare_digest(request.cookies.get(COOKIE, ""), self._session)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        given = request.query.get("token", "")
        if request.method == "POST":
            form = await request.post()
            field = form.get("token")
            given = field if isinstance(field, str) else ""
        if given and hmac.compare_digest(given.strip(), self.token):
            response = web.HTTPSeeOther(f"{PREFIX}/")
            response.set_cookie(COOKIE, self._session, path=PREFIX, httponly=True, samesite="Strict")
            raise response
        status = 403 if given else 401
        return _refusal(status, "That is not this emulator's console token." if given else None)

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path == PREFIX:
            raise web.HTTPPermanentRedirect(f"{PREFIX}/")
        if request.path == f"{PREFIX}/login":
            response = await handler(request)
        elif not self.authorized(request):
            response = _refusal(401, None)
        elif request.method not in ("GET", "HEAD") and not _same_origin(request):
            response = _refusal(403, "A form from another origin is refused.")
        else:
            response = await handler(request)
        if not response.prepared:
            response.headers.update(_HEADERS)
        return response


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    # Browsers send Origin on every POST; a missing one is a non-browser client, which
    # holds the cookie only if the user gave it on purpose (the CSRF field still applies).
    return origin is None or origin == f"{request.scheme}://{request.host}"


_REFUSAL = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Losant emulator console</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head><body style="font-family:sans-serif;margin:2rem">
<h1>Console login needed</h1><p>{detail}</p>
<p>Open the console link printed by the emulator at start (it ends in <code>/console/login?token=...</code>),
or paste its token here:</p>
<form method="post" action="/console/login"><input name="token" type="password" autocomplete="off" size="48">
<button>Log in</button></form></body></html>"""


def _refusal(status: int, detail: str | None) -> web.Response:
    text = _REFUSAL.format(detail=detail or "This page is only for the browser that logged in with the console token.")
    return web.Response(status=status, text=text, content_type="text/html")

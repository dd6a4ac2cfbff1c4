"""The console's pages, rendered on the server with Jinja2: applications, devices, a device, the fleet, events; and the command form."""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web

from ... import _json
from ..._time import from_epoch_ms
from ..store import DeviceRecord
from . import _views
from ._context import ConsoleContext

__all__ = ["Pages"]

RECENT_STATES = 20
RECENT_COMMANDS = 20
RECENT_LOG = 50
EVENTS_SHOWN = 200
MAX_PAYLOAD = 64 * 1024
"""Largest command payload the form takes, in bytes of JSON."""


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    dt = from_epoch_ms(ms)
    return dt.strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _partial(request: web.Request) -> bool:
    """An htmx swap wants the fragment; its history restore (back button) wants the whole page."""
    headers = request.headers
    return headers.get("HX-Request") == "true" and headers.get("HX-History-Restore-Request") != "true"


def _json_text(value: Any) -> str:
    return _json.encode(value).decode()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("losant_async.emulator.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["json"] = _json_text
    env.filters["kind"] = _views.disconnect_kind
    return env


class Pages:
    """Page handlers over the console's store."""

    def __init__(self, context: ConsoleContext) -> None:
        self._context = context
        self._store = context.store
        self._env = _environment()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self.applications)
        router.add_get("/applications/{application_id}", self.devices)
        router.add_get("/devices/{device_id}", self.device)
        router.add_post("/devices/{device_id}/command", self.command)
        router.add_get("/fleet", self.fleet)
        router.add_get("/events", self.events)

    def _render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        context.setdefault("csrf", self._context.csrf)
        text = self._env.get_template(template).render(**context)
        return web.Response(text=text, status=status, content_type="text/html")

    def _device(self, request: web.Request) -> DeviceRecord:
        device = self._store.devices.get(request.match_info["device_id"])
        if device is None:
            raise web.HTTPNotFound(text="no such device", content_type="text/plain")
        return device

    # -- pages ---------------------------------------------------------------------------------

    async def applications(self, request: web.Request) -> web.Response:
        return self._render("applications.html", page="applications", apps=_views.application_rows(self._store))

    async def devices(self, request: web.Request) -> web.Response:
        app = self._store.applications.get(request.match_info["application_id"])
        if app is None:
            raise web.HTTPNotFound(text="no such application", content_type="text/plain")
        name = request.query.get("name", "")
        tag = request.query.get("tag", "")
        try:
            number = int(request.query.get("page", "1"))
        except ValueError:
            number = 1
        listing = _views.device_page(self._store, app.id, name=name, tag=tag, page=number)
        template = "_device_rows.html" if _partial(request) else "devices.html"
        return self._render(template, page="devices", app=app, listing=listing, name=name, tag=tag)

    async def device(self, request: web.Request) -> web.Response:
        device = self._device(request)
        store = self._store
        app = store.applications.get(device.application_id)
        return self._render(
            "device.html",
            page="device",
            app=app,
            device=device,
            row=_views.device_row(store, device),
            numeric=_views.numeric_attributes(device),
            states=store.states(device.id, limit=RECENT_STATES, descending=True),
            commands=store.commands(device.id)[-RECENT_COMMANDS:][::-1],
            log=store.connection_log(device.id)[-RECENT_LOG:][::-1],
            banned_until=self._context.banned_until(device.id),
        )

    async def command(self, request: web.Request) -> web.Response:
        device = self._device(request)
        form = await request.post()
        csrf = form.get("csrf")
        if not isinstance(csrf, str) or not self._context.csrf_ok(csrf):
            return self._render("_command_result.html", status=403, ok=False,
                                message="The form's CSRF token is missing or wrong: reload the page.")
        name = form.get("name")
        raw = form.get("payload")
        name = name.strip() if isinstance(name, str) else ""
        raw = raw.strip() if isinstance(raw, str) else ""
        problem = None
        payload: Any = None
        if not 1 <= len(name) <= 255:
            problem = "A command name is 1 to 255 characters."
        elif len(raw.encode()) > MAX_PAYLOAD:
            problem = f"The payload is over {MAX_PAYLOAD // 1024} KB."
        elif raw:
            try:
                payload = _json.decode_any(raw.encode())
            except ValueError as exc:
                # the decoder's words after its own prefix ("reply is not valid JSON: ...")
                problem = f"The payload is not JSON: {str(exc).rpartition('JSON: ')[2]}"
        if problem is not None:
            return self._render("_command_result.html", status=400, ok=False, message=problem)
        await self._context.send_command(device.id, name, payload, None)
        return self._render("_command_result.html", ok=True, message=f"Sent {name!r} to {device.name}.",
                            time=self._store.clock())

    async def fleet(self, request: web.Request) -> web.Response:
        return self._render("fleet.html", page="fleet", figures=_views.fleet_figures(self._store))

    async def events(self, request: web.Request) -> web.Response:
        app_id = request.query.get("application", "")
        level = request.query.get("level", "")
        found = [
            e for e in self._store.docs.get("events", {}).values()
            if (not app_id or e.get("applicationId") == app_id) and (not level or e.get("level") == level)
        ]
        found.sort(key=lambda e: str(e.get("creationDate", "")), reverse=True)
        apps = {a.id: a.name for a in self._store.applications.values()}
        template = "_event_rows.html" if _partial(request) else "events.html"
        return self._render(template, page="events", events=found[:EVENTS_SHOWN], matched=len(found), apps=apps,
                            application=app_id, level=level)

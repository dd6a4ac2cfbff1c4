"""The emulator's REST dispatcher: route, authenticate, authorize, check the path's objects exist, run the handler."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web

from ...errors import ValidationError
from .. import _access
from .._limits import Limits, decode_json, default_limits
from .._routes import Route, RouteTable, load_routes
from ..store import ApiTokenRecord, Store, UnknownObjectError
from . import (
    account,
    app_transfer,
    application_api_tokens,
    application_keys,
    applications,
    auth,
    certificates,
    data,
    data_tables,
    device_attributes,
    device_summaries,
    devices,
    devices_bulk,
    events,
    executions,
    experience,
    files,
    flows,
    invites,
    lifecycle,
    me,
    memberships,
    mqtt,
    operations,
    orgs,
    recipes,
    webhooks,
)
from ._common import Call, CommandSender, Handler, HttpError, Server, error_response
from ._engine import Kind, find, generic_handler, kind_for_route, path_kinds
from ._params import check_path_params

__all__ = ["RestApp"]

_log = logging.getLogger("losant_async.testing.rest")
T = TypeVar("T")

_MODULES = (
    auth, me, applications, devices, devices_bulk, device_attributes, application_keys, application_api_tokens, data,
    data_tables, events, files, flows, webhooks, orgs, experience, mqtt, certificates,
    # the effects of the actions once answered from their response schema alone (issue 21)
    recipes, executions, lifecycle, app_transfer, invites, account, operations, device_summaries, memberships,
)

Exists = Callable[[Server, Mapping[str, str]], bool]


def _record_resolvers() -> dict[str, Exists]:
    """Kinds whose objects live in the Store's own records rather than the document store."""

    def app(srv: Server, p: Mapping[str, str]) -> bool:
        return p.get("applicationId", "") in srv.store.applications

    def device(srv: Server, p: Mapping[str, str]) -> bool:
        found = srv.store.devices.get(p.get("deviceId", ""))
        return found is not None and found.application_id == p.get("applicationId")

    def attribute(srv: Server, p: Mapping[str, str]) -> bool:
        found = srv.store.devices.get(p.get("deviceId", ""))
        return found is not None and p.get("name", "") in found.attributes

    def key(srv: Server, p: Mapping[str, str]) -> bool:
        try:
            srv.store.key_by_id(p.get("applicationId", ""), p.get("applicationKeyId", ""))
        except UnknownObjectError:
            return False
        return True

    def token(srv: Server, p: Mapping[str, str]) -> bool:
        return any(
            t.id == p.get("apiTokenId") and t.application_id == p.get("applicationId") and t.kind == "api"
            for t in srv.store.tokens.values()
        )

    return {
        "data_table_rows": data_tables.row_exists,
        "applications": app,
        "devices": device,
        "device_attributes": attribute,
        "application_keys": key,
        "application_api_tokens": token,
    }


_LABELS = {
    "applications": "Application",
    "devices": "Device",
    "device_attributes": "Device attribute",
    "application_keys": "Application key",
    "application_api_tokens": "API token",
    "data_table_rows": "Data table row",
}


class RestApp(Server):
    """Builds the aiohttp application over a store; ``send_command`` reaches devices over MQTT."""

    def __init__(
        self,
        store: Store,
        send_command: CommandSender,
        *,
        routes: RouteTable | None = None,
        throttle: bool = False,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(store, send_command, throttle=throttle)
        self.limits = limits or default_limits()
        self.routes = routes or load_routes()
        self._hand: dict[str, Handler] = {}
        for module in _MODULES:
            self._hand.update(module.HANDLERS)
        self._resolvers = _record_resolvers()
        self._extra: list[tuple[str, Callable[[Server, web.Request], Any]]] = []
        for module in _MODULES:
            self._extra.extend(getattr(module, "EXTRA_ROUTES", ()))

    @property
    def emulated(self) -> frozenset[str]:
        """Every catalog action the emulator answers (all of them, by hand or by the engine)."""
        return frozenset(r.full_name for r in self.routes.routes)

    def coverage(self) -> dict[str, str]:
        """Action -> how it is answered: ``hand``, ``engine`` (generic CRUD) or ``schema`` (schema-built reply)."""
        out: dict[str, str] = {}
        for route in self.routes.routes:
            if route.full_name in self._hand:
                out[route.full_name] = "hand"
            elif kind_for_route(route) is not None and generic_handler(route).__name__ == "<lambda>":
                out[route.full_name] = "engine"
            else:
                out[route.full_name] = "schema"
        return out

    def build(self) -> web.Application:
        app = web.Application(client_max_size=self.limits.rest_max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.close_streams()

    # -- dispatch ----------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._handle(request)
        except HttpError as exc:
            return error_response(exc.status, exc.type, exc.message, exc.headers)
        except UnknownObjectError as exc:
            return error_response(404, "NotFound", str(exc))
        except ValidationError as exc:
            return error_response(400, "Validation", str(exc))
        except web.HTTPException as exc:  # aiohttp's own refusals (e.g. 413), in Losant's error shape
            return error_response(exc.status, exc.reason.replace(" ", ""), exc.reason)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # every request gets an answer: clients have no timeout
            _log.exception("emulator failure on %s %s", request.method, request.path)
            return error_response(500, "InternalError", f"emulator failure: {type(exc).__name__}")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if len(request.query) > self.limits.rest_max_query_params:
            raise ValidationError(f"at most {self.limits.rest_max_query_params} query parameters are accepted")
        for prefix, extra in self._extra:
            if request.path.startswith(prefix):
                # uploads and webhooks read their own bodies: the same deadline holds
                result: web.StreamResponse = await self._within_body_deadline(extra(self, request))
                return result
        found = self.routes.match(request.method, request.path)
        if found is None:
            raise HttpError(404, "NotFound", f"Resource {request.method} {request.path} not found")
        route, params = found
        token: ApiTokenRecord | None = None
        if route.auth_required:
            token = self._authenticate(request, route)
        check_path_params(route.full_name, params)  # a malformed id is a 400, before any lookup
        self._check_exists(route, params)
        if token is not None:
            self._authorize(token, route, params)
        handler = self._hand.get(route.full_name) or generic_handler(route)
        body = await self._within_body_deadline(self._read_body(request))
        call = Call(route, params, list(request.query.items()), body, token, request)
        response = await handler(self, call)
        if route.full_name in _access.REVOKING:
            self.credentials_changed()
        return response

    async def _within_body_deadline(self, reading: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(reading, self.limits.rest_body_deadline_s)
        except asyncio.TimeoutError:
            self.store.counters.rest_timeouts += 1
            raise HttpError(408, "RequestTimeout", "the request body did not arrive in time") from None

    async def _read_body(self, request: web.Request) -> Any:
        if not request.can_read_body:
            return None
        if request.content_type.startswith("multipart/"):
            fields: dict[str, Any] = {}
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, web.FileField):
                    fields[name] = {
                        "filename": value.filename,
                        "content_type": value.content_type,
                        "data": value.file.read(),
                    }
                else:
                    fields[name] = value
            return fields
        raw = await request.read()
        if not raw:
            return None
        try:
            return decode_json(raw, self.limits.max_json_depth)
        except ValueError as exc:
            raise ValidationError(f"request body is not valid JSON: {exc}") from None

    def _authenticate(self, request: web.Request, route: Route) -> ApiTokenRecord:
        try:
            return _access.authenticate(self.store, request.headers.get("Authorization", ""), route)
        except _access.Denied as exc:
            raise HttpError(exc.status, "Unauthorized" if exc.status == 401 else "Forbidden", exc.message) from None

    def _check_exists(self, route: Route, params: Mapping[str, str]) -> None:
        """404 for the first object on the path that does not exist, whatever the token."""
        for kind in path_kinds(route):
            if kind.id_param not in params:
                continue
            if not self._exists(kind, params):
                raise HttpError(404, "NotFound", f"{self._label(kind)} was not found")

    def _exists(self, kind: Kind, params: Mapping[str, str]) -> bool:
        resolver = self._resolvers.get(kind.name)
        if resolver is not None:
            return resolver(self, params)
        return find(self, kind, params) is not None

    @staticmethod
    def _label(kind: Kind) -> str:
        from ._engine import label

        return _LABELS.get(kind.name) or label(kind)

    def _authorize(self, token: ApiTokenRecord, route: Route, params: Mapping[str, str]) -> None:
        try:
            _access.authorize(self.store, self, token, route, params)
        except _access.Denied as exc:
            raise HttpError(exc.status, "Unauthorized" if exc.status == 401 else "Forbidden", exc.message) from None

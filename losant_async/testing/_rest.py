"""The emulator's REST API: an aiohttp app answering Losant's paths, statuses, shapes and error bodies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import statistics
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .. import _json
from .._time import from_epoch_ms, parse_losant_time
from ..errors import ValidationError
from ._query import device_matches, parse_brackets, wildcard_match
from ._routes import Route, RouteTable, load_routes
from ._store import (
    DAY_MS,
    ApiTokenRecord,
    ApplicationRecord,
    AttributeRecord,
    CommandRecord,
    DeviceRecord,
    KeyRecord,
    StateRecord,
    Store,
    UnknownObjectError,
)

__all__ = ["RestApp"]

_log = logging.getLogger("losant_async.testing.rest")

CommandSender = Callable[[str, str, Any, "int | None"], Awaitable[None]]
"""(device_id, name, payload, time_ms) -> records the command and delivers it over MQTT."""

_SSE_QUEUE = 1000
_REST_LIMIT = 30
_REST_WINDOW_MS = 15_000


class HttpError(Exception):
    """An error answer: status plus Losant's ``{"type", "message"}`` body."""

    def __init__(self, status: int, type: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.headers = dict(headers or {})


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    dt = from_epoch_ms(ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_json.encode(body), status=status, content_type="application/json")


def _error(status: int, type: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    response = _json_response({"type": type, "message": message}, status)
    response.headers.update(headers or {})
    return response


@dataclass(slots=True)
class Call:
    route: Route
    params: dict[str, str]
    query: list[tuple[str, str]]
    body: Any
    token: ApiTokenRecord | None
    request: web.Request

    def q(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return default

    def int_q(self, name: str, default: int) -> int:
        raw = self.q(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise ValidationError(f"{name} must be an integer, not {raw!r}") from None

    def bool_q(self, name: str) -> bool:
        return (self.q(name) or "").lower() == "true"

    def json_q(self, name: str) -> Any:
        raw = self.q(name)
        if raw is None or raw == "":
            return None
        try:
            return _json.decode_any(raw)
        except ValueError:
            raise ValidationError(f"{name} must be one JSON-encoded value") from None


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


class RestApp:
    """Builds the aiohttp application over a store; ``send_command`` reaches devices over MQTT."""

    def __init__(
        self, store: Store, send_command: CommandSender, *, routes: RouteTable | None = None, throttle: bool = False
    ) -> None:
        self.store = store
        self.throttle = throttle
        self.on_device_deleted: Callable[[str], Awaitable[None]] | None = None
        self._windows: dict[tuple[str, str], deque[int]] = {}
        self._send_command = send_command
        self.routes = routes or load_routes()
        self._streams: set[asyncio.Queue[Any]] = set()
        self._closing = asyncio.Event()
        self._handlers: dict[str, Handler] = {
            "auth.authenticate_device": self.auth_device,
            "auth.authenticate_user": self.auth_user,
            "me.refresh_token": self.refresh_token,
            "applications.get": self.applications_get,
            "applications.post": self.applications_post,
            "application.get": self.application_get,
            "devices.get": self.devices_get,
            "devices.post": self.devices_post,
            "devices.send_command": self.devices_send_command,
            "devices.get_composite_state": self.devices_composite,
            "device.get": self.device_get,
            "device.patch": self.device_patch,
            "device.delete": self.device_delete,
            "device.send_state": self.device_send_state,
            "device.get_state": self.device_get_state,
            "device.get_composite_state": self.device_composite,
            "device.send_command": self.device_send_command,
            "device.get_command": self.device_get_command,
            "device.set_connection_status": self.device_set_connection,
            "device.get_log_entries": self.device_log,
            "device.state_stream": self.device_state_stream,
            "device.command_stream": self.device_command_stream,
            "device_attributes.get": self.attributes_get,
            "device_attributes.post": self.attributes_post,
            "device_attribute.get": self.attribute_get,
            "device_attribute.patch": self.attribute_patch,
            "device_attribute.delete": self.attribute_delete,
            "application_keys.get": self.keys_get,
            "application_keys.post": self.keys_post,
            "application_key.get": self.key_get,
            "application_key.delete": self.key_delete,
            "application_api_tokens.get": self.tokens_get,
            "application_api_tokens.post": self.tokens_post,
            "application_api_token.get": self.token_get,
            "application_api_token.delete": self.token_delete,
            "data.time_series_query": self.time_series,
            "data.last_value_query": self.last_value,
        }

    @property
    def emulated(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def build(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.close_streams()

    def close_streams(self) -> None:
        """End every open SSE stream so the server can stop without waiting on them."""
        self._closing.set()
        for queue in list(self._streams):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    # -- dispatch ----------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._handle(request)
        except HttpError as exc:
            return _error(exc.status, exc.type, exc.message, exc.headers)
        except UnknownObjectError as exc:
            return _error(404, "NotFound", str(exc))
        except ValidationError as exc:
            return _error(400, "Validation", str(exc))
        except web.HTTPException as exc:  # aiohttp's own refusals (e.g. 413), in Losant's error shape
            return _error(exc.status, exc.reason.replace(" ", ""), exc.reason)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # every request gets an answer: clients have no timeout
            _log.exception("emulator failure on %s %s", request.method, request.path)
            return _error(500, "InternalError", f"emulator failure: {type(exc).__name__}")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        found = self.routes.match(request.method, request.path)
        if found is None:
            raise HttpError(404, "NotFound", f"Resource {request.method} {request.path} not found")
        route, params = found
        token: ApiTokenRecord | None = None
        if route.auth_required:
            token = self._authorize(request, route, params)
        handler = self._handlers.get(route.full_name)
        if handler is None:
            raise HttpError(501, "NotImplemented", f"{route.full_name} is not emulated")
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    body = _json.decode_any(raw)
                except ValueError:
                    raise ValidationError("request body is not valid JSON") from None
        call = Call(route, params, list(request.query.items()), body, token, request)
        return await handler(call)

    def _authorize(self, request: web.Request, route: Route, params: Mapping[str, str]) -> ApiTokenRecord:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        token = self.store.token(value.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise HttpError(401, "Unauthorized", "Invalid access token")
        if route.scopes and not route.scopes.intersection(token.scopes):
            raise HttpError(403, "Forbidden", f"Token does not have a scope allowing {route.full_name}")
        app_id = params.get("applicationId")
        if app_id is not None and token.application_id is not None and app_id != token.application_id:
            raise HttpError(403, "Forbidden", "Token is not valid for this application")
        device_id = params.get("deviceId")
        if token.kind == "device" and device_id is not None and device_id != token.device_id:
            raise HttpError(403, "Forbidden", "A device token may only act on its own device")
        return token

    # -- helpers -----------------------------------------------------------------------------

    def _app(self, call: Call) -> ApplicationRecord:
        return self.store.application(call.params["applicationId"])

    def _device(self, call: Call) -> DeviceRecord:
        app = self._app(call)
        return self.store.device(call.params["deviceId"], app.id)

    def _body(self, call: Call) -> dict[str, Any]:
        if not isinstance(call.body, dict):
            raise ValidationError("request body must be a JSON object")
        return call.body

    def _time_q(self, call: Call, name: str, *, zero_is_now: bool = True) -> int | None:
        raw = call.q(name)
        if raw is None or raw == "":
            return None
        if zero_is_now and raw.strip() in ("0", "0.0"):
            return self.store.clock()
        stamp = parse_losant_time(raw, now=self.store.clock())
        if stamp is None:
            raise ValidationError(f"{name} is not a time Losant accepts: {raw!r}")
        return stamp

    @staticmethod
    def _page(call: Call, items: list[Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        page = call.int_q("page", 0)
        per_page = call.int_q("perPage", 100)
        if page < 0 or per_page < 1 or per_page > 1000:
            raise ValidationError("page must be >= 0 and perPage 1 to 1000")
        chunk = items[page * per_page:(page + 1) * per_page]
        return {"items": chunk, "count": len(chunk), "totalCount": len(items), "perPage": per_page, "page": page, **extra}

    @staticmethod
    def _sort(call: Call, items: list[dict[str, Any]], default_field: str, default_dir: str = "asc") -> tuple[str, str]:
        field = call.q("sortField", default_field) or default_field
        direction = (call.q("sortDirection", default_dir) or default_dir).lower()
        if direction not in ("asc", "desc"):
            raise ValidationError("sortDirection must be asc or desc")
        items.sort(key=lambda item: (item.get(field) is None, str(item.get(field, ""))), reverse=direction == "desc")
        return field, direction

    @staticmethod
    def _filter(call: Call, items: list[dict[str, Any]], default_field: str) -> list[dict[str, Any]]:
        pattern = call.q("filter")
        if not pattern:
            return items
        field = call.q("filterField", default_field) or default_field
        return [item for item in items if wildcard_match(pattern, str(item.get(field, "")))]

    def _check_rate(self, device_id: str, action: str) -> None:
        """Losant holds REST sendState / sendCommand to 30 per 15 s per device (when throttling)."""
        if not self.throttle:
            return
        now = self.store.clock()
        window = self._windows.setdefault((device_id, action), deque())
        while window and window[0] <= now - _REST_WINDOW_MS:
            window.popleft()
        if len(window) >= _REST_LIMIT:
            wait_s = max(1, math.ceil((window[0] + _REST_WINDOW_MS - now) / 1000))
            raise HttpError(
                429, "TooManyRequests", f"{action} is limited to {_REST_LIMIT} per 15 s per device",
                {"Retry-After": str(wait_s)},
            )
        window.append(now)

    # -- JSON shapes -----------------------------------------------------------------------------

    def app_json(self, app: ApplicationRecord) -> dict[str, Any]:
        return {
            "id": app.id,
            "applicationId": app.id,
            "name": app.name,
            "description": app.description,
            "creationDate": iso(app.created),
            "lastUpdated": iso(app.updated),
            "ownerId": app.owner_id or app.id,
            "ownerType": "user",
        }

    @staticmethod
    def attr_json(attr: AttributeRecord, device: DeviceRecord | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"name": attr.name, "dataType": attr.data_type}
        if attr.description:
            out["description"] = attr.description
        if attr.content_type:
            out["contentType"] = attr.content_type
        if attr.attribute_tags:
            out["attributeTags"] = dict(attr.attribute_tags)
        if device is not None:
            out["applicationId"] = device.application_id
            out["deviceId"] = device.id
        return out

    def device_json(self, device: DeviceRecord, *, connection: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": device.id,
            "deviceId": device.id,
            "applicationId": device.application_id,
            "creationDate": iso(device.created),
            "lastUpdated": iso(device.updated),
            "name": device.name,
            "description": device.description,
            "tags": [{"key": k, "value": v} for k, v in device.tags],
            "attributes": [self.attr_json(a) for a in device.attributes.values()],
            "deviceClass": device.device_class,
            "parentId": device.parent_id,
            "ancestorIds": self._ancestors(device),
        }
        if device.device_class == "peripheral" and device.parent_id:
            out["gatewayId"] = device.parent_id
        if connection:
            out["connectionInfo"] = {"connected": device.connected, "time": iso(device.connection_time or device.created)}
        return out

    def _ancestors(self, device: DeviceRecord) -> list[str]:
        out: list[str] = []
        parent = device.parent_id
        while parent is not None and parent not in out:
            out.append(parent)
            node = self.store.devices.get(parent)
            parent = node.parent_id if node is not None else None
        return out

    @staticmethod
    def key_json(key: KeyRecord, *, secret: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": key.id,
            "applicationKeyId": key.id,
            "applicationId": key.application_id,
            "creationDate": iso(key.created),
            "lastUpdated": iso(key.created),
            "key": key.key,
            "status": key.status,
            "filterType": "none",
        }
        if key.name:
            out["name"] = key.name
        if key.description:
            out["description"] = key.description
        if key.device_ids is not None:
            out["deviceIds"] = list(key.device_ids)
        if key.device_tags is not None:
            out["deviceTags"] = [{"key": k, "value": v} for k, v in key.device_tags]
        if secret:
            out["secret"] = key.secret
        return out

    @staticmethod
    def token_json(token: ApiTokenRecord, *, include_token: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": token.id,
            "apiTokenId": token.id,
            "ownerId": token.application_id or "",
            "ownerType": "application",
            "name": token.name,
            "creationDate": iso(token.created),
            "lastUpdated": iso(token.created),
            "scope": list(token.scopes),
            "status": token.status,
        }
        if token.description:
            out["description"] = token.description
        if token.expires is not None:
            out["expirationDate"] = iso(token.expires)
        if include_token:
            out["token"] = token.token
        return out

    @staticmethod
    def state_json(record: StateRecord) -> dict[str, Any]:
        return {"time": iso(record.time), "data": dict(record.data)}

    @staticmethod
    def command_json(record: CommandRecord) -> dict[str, Any]:
        return {"time": iso(record.time), "name": record.name, "payload": record.payload}

    # -- auth ----------------------------------------------------------------------------------

    async def auth_device(self, call: Call) -> web.Response:
        body = self._body(call)
        device = self.store.devices.get(str(body.get("deviceId", "")))
        if device is None or not self.store.check_key(body.get("key"), body.get("secret"), device):
            raise HttpError(401, "Unauthorized", "Invalid device credentials")
        token = self.store.add_token(
            application_id=device.application_id, scopes=["all.Device"], kind="device", device_id=device.id
        )
        return _json_response(
            {
                "token": token.token,
                "applicationId": device.application_id,
                "deviceId": device.id,
                "deviceClass": device.device_class,
                "ownerType": "user",
                "filterType": "all",
                "pubTopics": [],
                "subTopics": [],
            }
        )

    async def auth_user(self, call: Call) -> web.Response:
        body = self._body(call)
        user = self.store.check_user(body.get("email"), body.get("password"))
        if user is None:
            raise HttpError(401, "Unauthorized", "Invalid email or password")
        token = self.store.add_token(application_id=None, scopes=["all.User"], kind="user", user_id=user.id)
        return _json_response({"userId": user.id, "token": token.token})

    async def refresh_token(self, call: Call) -> web.Response:
        current = call.token
        if current is None or current.kind != "user" or current.user_id is None:
            raise HttpError(401, "Unauthorized", "Only a user token can be refreshed")
        token = self.store.add_token(application_id=None, scopes=current.scopes, kind="user", user_id=current.user_id)
        return _json_response({"userId": current.user_id, "token": token.token})

    # -- applications --------------------------------------------------------------------------------

    async def applications_get(self, call: Call) -> web.Response:
        items = [self.app_json(a) for a in self.store.applications.values()]
        items = self._filter(call, items, "name")
        field, direction = self._sort(call, items, "name")
        return _json_response(self._page(call, items, {"sortField": field, "sortDirection": direction}))

    async def applications_post(self, call: Call) -> web.Response:
        body = self._body(call)
        owner = call.token.user_id if call.token is not None else None
        app = self.store.add_application(body.get("name"), description=str(body.get("description", "")), owner_id=owner)  # type: ignore[arg-type]
        return _json_response(self.app_json(app), 201)

    async def application_get(self, call: Call) -> web.Response:
        return _json_response(self.app_json(self._app(call)))

    # -- devices ---------------------------------------------------------------------------------

    def _select_devices(self, call: Call, app: ApplicationRecord) -> list[DeviceRecord]:
        devices = [d for d in self.store.devices.values() if d.application_id == app.id]
        token = call.token
        if token is not None and token.kind == "device":
            devices = [d for d in devices if d.id == token.device_id]
        classes = parse_brackets(call.query, "deviceClass")
        if classes is not None:
            wanted = {classes} if isinstance(classes, str) else set(classes)
            devices = [d for d in devices if d.device_class in wanted]
        tag_filter = parse_brackets(call.query, "tagFilter")
        if tag_filter is not None:
            if not isinstance(tag_filter, list):
                raise ValidationError("tagFilter must be a list of {key, value}")
            devices = [d for d in devices if all(self._tag_filter_ok(d, f) for f in tag_filter)]
        parent = call.q("parentId")
        if parent:
            devices = [d for d in devices if d.parent_id == parent]
        query = call.json_q("query")
        if query is not None:
            devices = [d for d in devices if device_matches(d, query)]
        return devices

    @staticmethod
    def _tag_filter_ok(device: DeviceRecord, tag_filter: Any) -> bool:
        if not isinstance(tag_filter, dict):
            raise ValidationError("each tagFilter entry must be {key, value}")
        key, value = tag_filter.get("key"), tag_filter.get("value")
        return any((key is None or k == key) and (value is None or v == value) for k, v in device.tags)

    async def devices_get(self, call: Call) -> web.Response:
        app = self._app(call)
        devices = self._select_devices(call, app)
        with_conn = not call.bool_q("excludeConnectionInfo")
        items = [self.device_json(d, connection=with_conn) for d in devices]
        items = self._filter(call, items, "name")
        field, direction = self._sort(call, items, "name")
        return _json_response(
            self._page(call, items, {"sortField": field, "sortDirection": direction, "applicationId": app.id})
        )

    async def devices_post(self, call: Call) -> web.Response:
        app = self._app(call)
        body = self._body(call)
        allowed = {"name", "description", "tags", "attributes", "deviceClass", "gatewayId", "parentId", "systemInterval", "keepDuplicates"}
        unknown = set(body) - allowed
        if unknown:
            raise ValidationError(f"unknown device fields: {', '.join(sorted(unknown))}")
        device = self.store.add_device(
            app.id,
            body.get("name"),  # type: ignore[arg-type]
            device_class=body.get("deviceClass", "standalone"),
            parent_id=body.get("parentId") or body.get("gatewayId"),
            attributes=body.get("attributes"),
            tags=body.get("tags"),
            description=str(body.get("description", "")),
        )
        return _json_response(self.device_json(device), 201)

    def _command_targets(self, app: ApplicationRecord, body: Mapping[str, Any]) -> list[DeviceRecord]:
        ids, tags, query = body.get("deviceIds"), body.get("deviceTags"), body.get("deviceQuery")
        if ids is None and tags is None and query is None:
            raise ValidationError("give deviceIds, deviceTags or deviceQuery")
        devices = [d for d in self.store.devices.values() if d.application_id == app.id]
        if ids is not None:
            if not isinstance(ids, list):
                raise ValidationError("deviceIds must be a list")
            wanted = set(ids)
            devices = [d for d in devices if d.id in wanted]
        if tags is not None:
            pairs = self.store.parse_tags(tags) if tags else []
            devices = [d for d in devices if any(p in d.tags for p in pairs)]
        if query is not None:
            devices = [d for d in devices if device_matches(d, query)]
        return devices

    def _command_fields(self, body: Mapping[str, Any]) -> tuple[str, Any, int | None]:
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise ValidationError("command name must be a string of 1 to 255 characters")
        stamp = parse_losant_time(body.get("time"), now=self.store.clock())
        return name, body.get("payload"), stamp

    async def devices_send_command(self, call: Call) -> web.Response:
        app = self._app(call)
        body = self._body(call)
        name, payload, stamp = self._command_fields(body)
        targets = self._command_targets(app, body)
        token = call.token
        if token is not None and token.kind == "device" and any(d.id != token.device_id for d in targets):
            raise HttpError(403, "Forbidden", "A device token may only command its own device")
        for device in targets:
            await self._send_command(device.id, name, payload, stamp)
        return _json_response({"success": True})

    def _composite_json(self, device_id: str, start: int | None, end: int | None, attributes: set[str] | None) -> dict[str, Any]:
        state = self.store.composite_state(device_id, start=start, end=end)
        return {
            name: {"value": value, "time": iso(stamp)}
            for name, (value, stamp) in state.items()
            if attributes is None or name in attributes
        }

    def _composite_window(self, call: Call) -> tuple[int | None, int | None, set[str] | None]:
        # Losant's defaults start=1, end=0 mean "all of it, up to now": the running composite
        start = None if (call.q("start") or "1").strip() == "1" else self._time_q(call, "start", zero_is_now=False)
        end = None if (call.q("end") or "0").strip() == "0" else self._time_q(call, "end")
        raw = call.q("attributes")
        attributes = {a for a in raw.split(",") if a} if raw else None
        return start, end, attributes

    async def devices_composite(self, call: Call) -> web.Response:
        app = self._app(call)
        start, end, attributes = self._composite_window(call)
        devices = self._select_devices(call, app)
        items = [
            {"id": d.id, "name": d.name, "compositeState": self._composite_json(d.id, start, end, attributes)}
            for d in devices
        ]
        field, direction = self._sort(call, items, "name")
        return _json_response(
            self._page(call, items, {"sortField": field, "sortDirection": direction, "applicationId": app.id})
        )

    # -- device ------------------------------------------------------------------------------------

    async def device_get(self, call: Call) -> web.Response:
        device = self._device(call)
        return _json_response(self.device_json(device, connection=not call.bool_q("excludeConnectionInfo")))

    async def device_patch(self, call: Call) -> web.Response:
        device = self._device(call)
        body = self._body(call)
        if "name" in body:
            name = body["name"]
            if not isinstance(name, str) or not 1 <= len(name) <= 255:
                raise ValidationError("device name must be 1 to 255 characters")
        attributes = self.store.parse_attributes(body["attributes"]) if "attributes" in body else None
        tags = self.store.parse_tags(body["tags"]) if "tags" in body else None
        if "deviceClass" in body and body["deviceClass"] not in {"standalone", "gateway", "peripheral", "floating", "edgeCompute", "system", "embedded"}:
            raise ValidationError("unknown deviceClass")
        if "name" in body:
            device.name = body["name"]
        if "description" in body:
            device.description = str(body["description"])
        if attributes is not None:
            device.attributes = attributes
        if tags is not None:
            device.tags = tags
        if "deviceClass" in body:
            device.device_class = body["deviceClass"]
        if "parentId" in body:
            device.parent_id = body["parentId"]
        device.updated = self.store.clock()
        return _json_response(self.device_json(device))

    async def device_delete(self, call: Call) -> web.Response:
        device = self._device(call)
        self.store.remove_device(device.id)
        if self.on_device_deleted is not None:
            await self.on_device_deleted(device.id)  # Losant drops a deleted device's connection
        return _json_response({"success": True})

    async def device_send_state(self, call: Call) -> web.Response:
        device = self._device(call)
        if call.body is None:
            raise ValidationError("request body must be a state or a list of states")
        self._check_rate(device.id, "sendState")
        self.store.record_state(device, call.body)
        return _json_response({"success": True})

    def _window(self, call: Call) -> tuple[int | None, int | None, int, bool]:
        end = self._time_q(call, "end")
        start = self._time_q(call, "start", zero_is_now=False)
        since = self._time_q(call, "since", zero_is_now=False)
        duration = call.q("duration")
        if start is None and since is not None:
            start = since
        if start is None and duration:
            try:
                start = (end if end is not None else self.store.clock()) - int(float(duration))
            except ValueError:
                raise ValidationError("duration must be milliseconds") from None
        limit = call.int_q("limit", 1)
        if limit < 1:
            raise ValidationError("limit must be at least 1")
        descending = (call.q("sortDirection", "desc") or "desc").lower() != "asc"
        return start, end, limit, descending

    async def device_get_state(self, call: Call) -> web.Response:
        device = self._device(call)
        start, end, limit, descending = self._window(call)
        records = self.store.states(device.id, start=start, end=end, limit=limit, descending=descending)
        return _json_response([self.state_json(r) for r in records])

    async def device_composite(self, call: Call) -> web.Response:
        device = self._device(call)
        start, end, attributes = self._composite_window(call)
        return _json_response(self._composite_json(device.id, start, end, attributes))

    async def device_send_command(self, call: Call) -> web.Response:
        device = self._device(call)
        name, payload, stamp = self._command_fields(self._body(call))
        self._check_rate(device.id, "sendCommand")
        await self._send_command(device.id, name, payload, stamp)
        return _json_response({"success": True})

    async def device_get_command(self, call: Call) -> web.Response:
        device = self._device(call)
        start, end, limit, descending = self._window(call)
        records = [
            c for c in self.store.commands(device.id)
            if (start is None or c.time >= start) and (end is None or c.time <= end)
        ]
        records.sort(key=lambda c: c.time, reverse=descending)
        return _json_response([self.command_json(c) for c in records[:limit]])

    async def device_set_connection(self, call: Call) -> web.Response:
        device = self._device(call)
        body = self._body(call)
        status = body.get("status")
        if status not in ("connected", "disconnected"):
            raise ValidationError("status must be connected or disconnected")
        reason = body.get("disconnectReason")
        self.store.set_connection(device.id, status == "connected", reason=reason if isinstance(reason, str) else None)
        return _json_response({"success": True})

    async def device_log(self, call: Call) -> web.Response:
        device = self._device(call)
        start, end, limit, descending = self._window(call)
        entries = [
            e for e in self.store.connection_log(device.id)
            if (start is None or e.time >= start) and (end is None or e.time <= end)
        ]
        entries.sort(key=lambda e: e.time, reverse=descending)
        out = []
        for entry in entries[:limit]:
            item: dict[str, Any] = {"connected": 1 if entry.connected else 0, "time": iso(entry.time)}
            if entry.reason:
                item["disconnectReason"] = entry.reason
            out.append(item)
        return _json_response(out)

    # -- server-sent events ----------------------------------------------------------------------

    async def _stream(
        self,
        call: Call,
        event: str,
        subscribe: Callable[[Callable[[Any], None]], Callable[[], None]],
        render: Callable[[Any], dict[str, Any]],
        device_id: str,
    ) -> web.StreamResponse:
        raw = call.q("keepAliveInterval", "2") or "2"
        try:
            interval = max(0.05, float(raw))
        except ValueError:
            raise ValidationError("keepAliveInterval must be a number of seconds") from None
        queue: asyncio.Queue[Any] = asyncio.Queue(_SSE_QUEUE)

        def listener(record: Any) -> None:
            if record.device_id == device_id:
                with contextlib.suppress(asyncio.QueueFull):  # a slow reader loses events, not memory
                    queue.put_nowait(record)

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(call.request)
        unsubscribe = subscribe(listener)
        self._streams.add(queue)
        try:
            await response.write(b": connected\n\n")
            while not self._closing.is_set():
                try:
                    record = await asyncio.wait_for(queue.get(), timeout=interval)
                except asyncio.TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if record is None:
                    break
                data = _json.encode(render(record))
                await response.write(b"event: " + event.encode() + b"\ndata: " + data + b"\n\n")
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self._streams.discard(queue)
            unsubscribe()
        return response

    async def device_state_stream(self, call: Call) -> web.StreamResponse:
        device = self._device(call)
        return await self._stream(call, "deviceState", self.store.on_state, self.state_json, device.id)

    async def device_command_stream(self, call: Call) -> web.StreamResponse:
        device = self._device(call)
        return await self._stream(call, "deviceCommand", self.store.on_command, self.command_json, device.id)

    # -- attributes ------------------------------------------------------------------------------

    def _attribute(self, call: Call) -> tuple[DeviceRecord, AttributeRecord]:
        device = self._device(call)
        attr = device.attributes.get(call.params["name"])
        if attr is None:
            raise HttpError(404, "NotFound", "Device attribute was not found")
        return device, attr

    async def attributes_get(self, call: Call) -> web.Response:
        device = self._device(call)
        items = [self.attr_json(a, device) for a in device.attributes.values()]
        items = self._filter(call, items, "name")
        field, direction = self._sort(call, items, "name")
        return _json_response(
            {
                "items": items,
                "count": len(items),
                "totalCount": len(items),
                "sortField": field,
                "sortDirection": direction,
                "applicationId": device.application_id,
                "deviceId": device.id,
            }
        )

    async def attributes_post(self, call: Call) -> web.Response:
        device = self._device(call)
        attr = self.store.parse_attribute(self._body(call))
        if attr.name in device.attributes:
            raise ValidationError(f"attribute {attr.name} already exists")
        device.attributes[attr.name] = attr
        device.updated = self.store.clock()
        return _json_response(self.attr_json(attr, device), 201)

    async def attribute_get(self, call: Call) -> web.Response:
        device, attr = self._attribute(call)
        return _json_response(self.attr_json(attr, device))

    async def attribute_patch(self, call: Call) -> web.Response:
        device, attr = self._attribute(call)
        body = self._body(call)
        if "dataType" in body:
            raise ValidationError("an attribute's dataType cannot be changed")
        if "description" in body:
            attr.description = str(body["description"])
        if "contentType" in body:
            attr.content_type = body["contentType"]
        if isinstance(body.get("attributeTags"), dict):
            attr.attribute_tags = dict(body["attributeTags"])
        if "name" in body and body["name"] != attr.name:
            renamed = self.store.parse_attribute({"name": body["name"], "dataType": attr.data_type})
            del device.attributes[attr.name]
            attr.name = renamed.name
            device.attributes[attr.name] = attr
        device.updated = self.store.clock()
        return _json_response(self.attr_json(attr, device))

    async def attribute_delete(self, call: Call) -> web.Response:
        device, attr = self._attribute(call)
        del device.attributes[attr.name]
        return _json_response({"success": True})

    # -- keys and tokens ---------------------------------------------------------------------------

    async def keys_get(self, call: Call) -> web.Response:
        app = self._app(call)
        items = [self.key_json(k) for k in self.store.keys.values() if k.application_id == app.id]
        query = call.json_q("query")
        if query is not None:
            if not isinstance(query, dict):
                raise ValidationError("query must be a JSON object")
            items = [i for i in items if all(i.get(k) == v for k, v in query.items() if not k.startswith("$"))]
        items = self._filter(call, items, "key")
        field, direction = self._sort(call, items, "creationDate", "desc")
        return _json_response(
            self._page(call, items, {"sortField": field, "sortDirection": direction, "applicationId": app.id})
        )

    async def keys_post(self, call: Call) -> web.Response:
        app = self._app(call)
        body = call.body if call.body is not None else {}
        if not isinstance(body, dict):
            raise ValidationError("request body must be a JSON object")
        key = self.store.add_key(
            app.id,
            device_ids=body.get("deviceIds"),
            device_tags=body.get("deviceTags"),
            name=str(body.get("name", "")),
            description=str(body.get("description", "")),
        )
        return _json_response(self.key_json(key, secret=True), 201)

    async def key_get(self, call: Call) -> web.Response:
        app = self._app(call)
        return _json_response(self.key_json(self.store.key_by_id(app.id, call.params["applicationKeyId"])))

    async def key_delete(self, call: Call) -> web.Response:
        app = self._app(call)
        key = self.store.key_by_id(app.id, call.params["applicationKeyId"])
        del self.store.keys[key.key]
        return _json_response({"success": True})

    def _app_tokens(self, app: ApplicationRecord) -> list[ApiTokenRecord]:
        return [t for t in self.store.tokens.values() if t.kind == "api" and t.application_id == app.id]

    async def tokens_get(self, call: Call) -> web.Response:
        app = self._app(call)
        items = [self.token_json(t) for t in self._app_tokens(app)]
        items = self._filter(call, items, "name")
        field, direction = self._sort(call, items, "name")
        return _json_response(
            self._page(call, items, {"sortField": field, "sortDirection": direction, "ownerId": app.id, "ownerType": "application"})
        )

    async def tokens_post(self, call: Call) -> web.Response:
        app = self._app(call)
        body = self._body(call)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ValidationError("token name is required")
        scopes = body.get("scope") or ["all.Application"]
        if not isinstance(scopes, list):
            raise ValidationError("scope must be a list of scope names")
        expires = parse_losant_time(body.get("expirationDate"), now=self.store.clock()) if body.get("expirationDate") else None
        token = self.store.add_token(
            application_id=app.id, scopes=scopes, name=name, description=str(body.get("description", "")), expires=expires
        )
        return _json_response(self.token_json(token, include_token=True), 201)

    def _token_by_id(self, call: Call) -> ApiTokenRecord:
        app = self._app(call)
        for token in self._app_tokens(app):
            if token.id == call.params["apiTokenId"]:
                return token
        raise HttpError(404, "NotFound", "API token was not found")

    async def token_get(self, call: Call) -> web.Response:
        return _json_response(self.token_json(self._token_by_id(call)))

    async def token_delete(self, call: Call) -> web.Response:
        token = self._token_by_id(call)
        del self.store.tokens[token.token]
        return _json_response({"success": True})

    # -- data ---------------------------------------------------------------------------------------

    def _query_devices(self, app: ApplicationRecord, body: Mapping[str, Any]) -> list[DeviceRecord]:
        devices = [d for d in self.store.devices.values() if d.application_id == app.id]
        ids, tags, query = body.get("deviceIds"), body.get("deviceTags"), body.get("deviceQuery")
        if ids is not None:
            wanted = set(ids) if isinstance(ids, list) else set()
            devices = [d for d in devices if d.id in wanted]
        if tags is not None:
            pairs = self.store.parse_tags(tags)
            devices = [d for d in devices if any(p in d.tags for p in pairs)]
        if query is not None:
            devices = [d for d in devices if device_matches(d, query)]
        return devices

    @staticmethod
    def _body_time(body: Mapping[str, Any], name: str, now: int, default: int) -> int:
        raw = body.get(name)
        if raw is None:
            return default
        if not isinstance(raw, (int, float)) or isinstance(raw, bool):
            raise ValidationError(f"{name} must be a number of milliseconds")
        if raw == 0:
            return now
        if raw < 0:
            return now + int(raw)
        return int(raw)

    async def time_series(self, call: Call) -> web.Response:
        app = self._app(call)
        body = call.body if call.body is not None else {}
        if not isinstance(body, dict):
            raise ValidationError("query must be a JSON object")
        now = self.store.clock()
        end = self._body_time(body, "end", now, now)
        duration = body.get("duration", DAY_MS)
        start = self._body_time(body, "start", now, end - int(duration))
        aggregation = body.get("aggregation", "MEAN")
        agg_type = aggregation.get("type") if isinstance(aggregation, dict) else aggregation
        if agg_type not in ("NONE", "FIRST", "LAST", "COUNT", "MAX", "MIN", "MEDIAN", "MEAN", "SUM", "STD_DEV"):
            raise ValidationError(f"aggregation {agg_type!r} is not emulated")
        resolution = body.get("resolution", 300_000 if agg_type != "NONE" else None)
        limit = body.get("limit", 1000)
        order = body.get("order", "asc")
        if order not in ("asc", "desc"):
            raise ValidationError("order must be asc or desc")
        attributes = body.get("attributes")
        devices: dict[str, Any] = {}
        for device in self._query_devices(app, body):
            records = self.store.states(device.id, start=start, end=end, descending=False)
            if agg_type == "NONE":
                points = [
                    {"time": iso(r.time), "data": {k: v for k, v in r.data.items() if attributes is None or k in attributes}}
                    for r in records
                ]
            else:
                points = self._aggregate(records, start, int(resolution or 300_000), agg_type, attributes, device)
            if order == "desc":
                points.reverse()
            if isinstance(limit, int) and limit > 0:
                points = points[:limit]
            devices[device.id] = {"name": device.name, "tags": device.tag_dict(), "points": points}
        return _json_response(
            {
                "start": iso(start),
                "end": iso(end),
                "resolution": resolution,
                "aggregation": agg_type,
                "limit": limit,
                "order": order,
                "devices": devices,
            }
        )

    @staticmethod
    def _aggregate(
        records: Iterable[StateRecord],
        start: int,
        resolution: int,
        kind: str,
        attributes: list[str] | None,
        device: DeviceRecord,
    ) -> list[dict[str, Any]]:
        if resolution <= 0:
            raise ValidationError("resolution must be positive")
        buckets: dict[int, dict[str, list[Any]]] = {}
        for record in records:
            bucket = start + ((record.time - start) // resolution) * resolution
            for name, value in record.data.items():
                if attributes is not None and name not in attributes:
                    continue
                buckets.setdefault(bucket, {}).setdefault(name, []).append(value)
        out = []
        for bucket in sorted(buckets):
            data: dict[str, Any] = {}
            for name, values in buckets[bucket].items():
                attr = device.attributes.get(name)
                numeric = attr is not None and attr.data_type == "number"
                if kind == "FIRST":
                    data[name] = values[0]
                elif kind == "LAST":
                    data[name] = values[-1]
                elif kind == "COUNT":
                    data[name] = len(values)
                elif numeric:
                    nums = [float(v) for v in values]
                    result = {
                        "MAX": max(nums),
                        "MIN": min(nums),
                        "MEDIAN": statistics.median(nums),
                        "MEAN": statistics.fmean(nums),
                        "SUM": math.fsum(nums),
                        "STD_DEV": statistics.pstdev(nums),
                    }[kind]
                    data[name] = result
            out.append({"time": iso(bucket), "data": data})
        return out

    async def last_value(self, call: Call) -> web.Response:
        app = self._app(call)
        body = self._body(call)
        attribute = body.get("attribute")
        if not isinstance(attribute, str) or not attribute:
            raise ValidationError("attribute is required")
        now = self.store.clock()
        end = self._body_time(body, "end", now, now)
        out: dict[str, Any] = {}
        for device in self._query_devices(app, body):
            for record in self.store.states(device.id, end=end, descending=True):
                if attribute in record.data:
                    out[device.id] = {"time": iso(record.time), "data": {attribute: record.data[attribute]}}
                    break
        return _json_response(out)

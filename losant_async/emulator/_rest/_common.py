"""What every handler of the emulated REST API shares: the call, error answers, JSON shapes, SSE streams."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from ... import _json
from ..._time import from_epoch_ms, parse_losant_time
from ...errors import ValidationError
from .._access import live_token
from .._limits import decode_json
from .._query import wildcard_match
from .._routes import Route
from ..store import (
    ApiTokenRecord,
    ApplicationRecord,
    AttributeRecord,
    CommandRecord,
    DeviceRecord,
    KeyRecord,
    StateRecord,
    Store,
)
from ._listing import filter_of, sort_field

__all__ = ["Call", "CommandSender", "Handler", "HttpError", "Server", "error_response", "iso", "json_response"]

CommandSender = Callable[[str, str, Any, "int | None"], Awaitable[None]]
"""(device_id, name, payload, time_ms) -> records the command and delivers it over MQTT."""

_SSE_QUEUE = 1000
_QUERY_JSON_DEPTH = 64
_REST_LIMIT = 30
_REST_WINDOW_MS = 15_000


KEEPALIVE_MIN_S = 0.05
KEEPALIVE_MAX_S = 60.0
"""An SSE stream's ``keepAliveInterval`` is held within these (seconds); Losant documents no bounds."""


def keepalive_interval(raw: str | None) -> float:
    """``keepAliveInterval`` (default 2 s) as seconds within the emulator's bounds."""
    try:
        value = float(raw or "2")
    except ValueError:
        raise ValidationError("keepAliveInterval must be a number of seconds") from None
    if not math.isfinite(value):
        raise ValidationError("keepAliveInterval must be a number of seconds")
    return min(max(value, KEEPALIVE_MIN_S), KEEPALIVE_MAX_S)


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


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_json.encode(body), status=status, content_type="application/json")


def error_response(status: int, type: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    response = json_response({"type": type, "message": message}, status)
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
            return decode_json(raw, _QUERY_JSON_DEPTH)
        except ValueError:
            raise ValidationError(f"{name} must be one JSON-encoded value") from None


Handler = Callable[["Server", Call], Awaitable[web.StreamResponse]]


class PeerWatch(Protocol):
    """A request's connection, watched: whether it closed, and a callback for when it does."""

    @property
    def closed(self) -> bool: ...

    def on_close(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once the connection closes (at once if it has); returns the remover."""
        ...


class Server:
    """The state handlers share (store, throttle windows, open streams) and the helpers they use."""

    def __init__(self, store: Store, send_command: CommandSender, *, throttle: bool = False) -> None:
        self.store = store
        self.throttle = throttle
        self.on_device_deleted: Callable[[str], Awaitable[None]] | None = None
        self.on_credentials_changed: Callable[[], None] | None = None
        """Told when a key or token is deleted or deactivated: the broker ends the sessions it no longer allows."""
        self.peer_watch: Callable[[web.BaseRequest], PeerWatch | None] = lambda _request: None
        """What tells a handler that its request's connection closed (the guarded listener provides it)."""
        self.send_command = send_command
        self.broker: Any = None
        """The emulator's MQTT broker (``publish``, ``on_message``), set by LocalLosant."""
        self.mqtt_listeners: list[Callable[[Any], None]] = []
        """SSE subscription streams, told of every message REST publishes."""
        self.base_url = ""
        """Where this REST server answers (upload targets and download URLs point here)."""
        self._windows: dict[tuple[str, str], deque[int]] = {}
        self._streams: dict[asyncio.Queue[Any], ApiTokenRecord | None] = {}
        self._closing = asyncio.Event()

    def user_in_org(self, user_id: str | None, org_id: str) -> bool:
        org = self.store.docs.get("orgs", {}).get(org_id)
        if org is None or user_id is None:
            return False
        return any(isinstance(m, dict) and m.get("userId") == user_id for m in org.get("members", ()))

    def user_reaches_app(self, user_id: str | None, application_id: str) -> bool:
        """A user reaches the applications they own, those of their organizations, and unowned ones."""
        app = self.store.applications.get(application_id)
        if app is None or user_id is None:
            return False
        if app.owner_id is None or app.owner_id == user_id:
            return True
        return self.user_in_org(user_id, app.owner_id)

    def close_streams(self) -> None:
        """End every open SSE stream so the server can stop without waiting on them."""
        self._closing.set()
        for queue in list(self._streams):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    def credentials_changed(self) -> None:
        """A key or token was deleted or deactivated: end the streams and MQTT sessions it opened."""
        for queue, token in list(self._streams.items()):
            if token is not None and not self.token_live(token):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)
        if self.on_credentials_changed is not None:
            self.on_credentials_changed()

    def _caller_live(self, call: Call) -> bool:
        return call.token is None or self.token_live(call.token)

    def token_live(self, token: ApiTokenRecord) -> bool:
        """Whether a token that authenticated a call would still authenticate it."""
        return live_token(self.store, token.token) is not None

    def app_of(self, call: Call) -> ApplicationRecord:
        return self.store.application(call.params["applicationId"])

    def device_of(self, call: Call) -> DeviceRecord:
        app = self.app_of(call)
        return self.store.device(call.params["deviceId"], app.id)

    def body_of(self, call: Call) -> dict[str, Any]:
        if not isinstance(call.body, dict):
            raise ValidationError("request body must be a JSON object")
        return call.body

    def time_q(self, call: Call, name: str, *, zero_is_now: bool = True) -> int | None:
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
    def page(call: Call, items: list[Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        page = call.int_q("page", 0)
        per_page = call.int_q("perPage", 100)
        if page < 0 or per_page < 1 or per_page > 1000:
            raise ValidationError("page must be >= 0 and perPage 1 to 1000")
        chunk = items[page * per_page:(page + 1) * per_page]
        return {"items": chunk, "count": len(chunk), "totalCount": len(items), "perPage": per_page, "page": page, **extra}

    @staticmethod
    def sort(call: Call, items: list[dict[str, Any]], default_field: str, default_dir: str = "asc") -> tuple[str, str]:
        field = sort_field(call, default_field)
        direction = (call.q("sortDirection", default_dir) or default_dir).lower()
        if direction not in ("asc", "desc"):
            raise ValidationError("sortDirection must be asc or desc")
        items.sort(key=lambda item: (item.get(field) is None, str(item.get(field, ""))), reverse=direction == "desc")
        return field, direction

    @staticmethod
    def filter_items(call: Call, items: list[dict[str, Any]], default_field: str) -> list[dict[str, Any]]:
        """``filter`` on ``filterField``; blank either means no filtering (``default_field`` is unused:
        Losant's docs say a blank ``filterField`` does not filter)."""
        del default_field
        chosen = filter_of(call)
        if chosen is None:
            return items
        return [item for item in items if wildcard_match(chosen[1], str(item.get(chosen[0], "")))]

    def check_rate(self, device_id: str, action: str) -> None:
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
            "ancestorIds": self.ancestors(device),
        }
        if device.device_class == "peripheral" and device.parent_id:
            out["gatewayId"] = device.parent_id
        if connection:
            out["connectionInfo"] = {"connected": device.connected, "time": iso(device.connection_time or device.created)}
        return out

    def ancestors(self, device: DeviceRecord) -> list[str]:
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
            "filterType": key.filter_type,
            "pubTopics": list(key.pub_topics),
            "subTopics": list(key.sub_topics),
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

    async def stream(
        self,
        call: Call,
        event: str,
        subscribe: Callable[[Callable[[Any], None]], Callable[[], None]],
        render: Callable[[Any], dict[str, Any]],
        device_id: str | None = None,
        accept: Callable[[Any], bool] | None = None,
    ) -> web.StreamResponse:
        interval = keepalive_interval(call.q("keepAliveInterval"))
        queue: asyncio.Queue[Any] = asyncio.Queue(_SSE_QUEUE)

        def listener(record: Any) -> None:
            if (device_id is None or record.device_id == device_id) and (accept is None or accept(record)):
                with contextlib.suppress(asyncio.QueueFull):  # a slow reader loses events, not memory
                    queue.put_nowait(record)

        def wake() -> None:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(call.request)
        watch = self.peer_watch(call.request)
        # the stream ends when its peer goes, not at the next keepalive it fails to write
        unwatch = watch.on_close(wake) if watch is not None else None
        unsubscribe = subscribe(listener)
        self._streams[queue] = call.token
        try:
            await response.write(b": connected\n\n")
            while not self._closing.is_set():
                try:
                    record = await asyncio.wait_for(queue.get(), timeout=interval)
                except asyncio.TimeoutError:
                    if not self._caller_live(call) or (watch is not None and watch.closed):
                        break
                    await response.write(b": keepalive\n\n")
                    continue
                if record is None or (watch is not None and watch.closed) or not self._caller_live(call):
                    break
                data = _json.encode(render(record))
                await response.write(b"event: " + event.encode() + b"\ndata: " + data + b"\n\n")
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self._streams.pop(queue, None)
            unsubscribe()
            if unwatch is not None:
                unwatch()
        return response

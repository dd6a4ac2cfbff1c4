"""Helpers for the REST core's unit tests: test operations and Structs, a scripted aioresponses server."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import msgspec
from aioresponses import CallbackResult

from losant_async.rest._operation import Operation, Param

BASE = "https://api.example.test"
APP_ID = "575ec8687ae143cd83dc4a97"
DEVICE_ID = "575ecf887ae143cd83dc4aa2"
HEX24 = r"^[A-Fa-f\d]{24}$"


def device_json(device_id: str = DEVICE_ID, **extra: Any) -> dict[str, Any]:
    """A device as Losant answers it: the fields every device reply carries (see the codegen rules), plus ``extra``."""
    return {
        "id": device_id,
        "deviceId": device_id,
        "applicationId": APP_ID,
        "creationDate": "2026-01-02T03:04:05.678Z",
        "lastUpdated": "2026-01-02T03:04:05.678Z",
        "name": "pump",
        **extra,
    }


class Thing(msgspec.Struct, kw_only=True, rename="camel"):
    id: str
    name: str | None = None
    tag_count: int = 0


class Things(msgspec.Struct, kw_only=True, rename="camel"):
    items: list[Thing]
    count: int | None = None
    total_count: int | None = None
    per_page: int | None = None
    page: int | None = None


APP = Param("applicationId", "application_id", "path", "string", True, pattern=HEX24)
DEV = Param("deviceId", "device_id", "path", "string", True, pattern=HEX24)

GET_THING = Operation(
    "thing",
    "get",
    "GET",
    "/applications/{applicationId}/things/{deviceId}",
    (APP, DEV),
    {200: Thing},
    idempotent=True,
)
POST_THING = Operation(
    "things",
    "post",
    "POST",
    "/applications/{applicationId}/things",
    (APP, Param("thing", "thing", "body", "hash", True)),
    {201: Thing},
)
SEND_STATE = Operation(
    "device",
    "send_state",
    "POST",
    "/applications/{applicationId}/devices/{deviceId}/state",
    (APP, DEV, Param("deviceState", "device_state", "body", "hash", True)),
    {200: None},
    timestamped_body=True,
)
AUTH_FREE = Operation(
    "auth",
    "sso_domain",
    "GET",
    "/auth/ssoDomain",
    (Param("email", "email", "query", "string", True),),
    {200: None, 204: None},
    auth_required=False,
    idempotent=True,
)
LIST_THINGS = Operation(
    "things",
    "get",
    "GET",
    "/applications/{applicationId}/things",
    (
        APP,
        Param("page", "page", "query", "string", False),
        Param("perPage", "per_page", "query", "string", False),
    ),
    {200: Things},
    idempotent=True,
    page_item=Thing,
)


_RESPONSE_PARAMS = inspect.signature(aiohttp.ClientResponse.__init__).parameters


class MockResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 predates aiohttp 3.14's ``stream_writer`` argument: supply a stand-in."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        if "stream_writer" in _RESPONSE_PARAMS:  # older aiohttp (the declared floor) has none
            kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


def result(
    status: int, body: bytes | str = b"", headers: dict[str, str] | None = None
) -> CallbackResult:
    """A scripted reply."""
    return CallbackResult(response_class=MockResponse, status=status, body=body, headers=headers)


@dataclass
class Call:
    method: str
    url: Any
    headers: dict[str, str]
    data: Any

    @property
    def path(self) -> str:
        return str(self.url.path)

    @property
    def query(self) -> dict[str, str]:
        return dict(self.url.query)


@dataclass
class Server:
    """Scripted answers, consumed in order (the last one repeats), and every call recorded."""

    replies: list[Any] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    by_path: dict[str, list[Any]] = field(default_factory=dict)

    def reply(
        self, status: int = 200, body: Any = b"", headers: dict[str, str] | None = None
    ) -> None:
        if not isinstance(body, (bytes, str)):
            body = msgspec.json.encode(body)
        self.replies.append(result(status, body, headers or {"Content-Type": "application/json"}))

    def fail(self, exc: BaseException) -> None:
        self.replies.append(exc)

    def on(self, path: str, status: int = 200, body: Any = b"") -> None:
        """A reply for one path (used before the general script)."""
        if not isinstance(body, (bytes, str)):
            body = msgspec.json.encode(body)
        self.by_path.setdefault(path, []).append(
            result(status, body, {"Content-Type": "application/json"})
        )

    def _answer(self, method: str, url: Any, **kwargs: Any) -> Any:
        self.calls.append(Call(method, url, dict(kwargs.get("headers") or {}), kwargs.get("data")))
        queue = self.by_path.get(str(url.path))
        if queue:
            return queue.pop(0) if len(queue) > 1 else queue[0]
        if not self.replies:
            return CallbackResult(response_class=MockResponse, status=200, body=b"{}")
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, BaseException):
            raise reply
        return reply


@dataclass
class Sleeps:
    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def connect_refused() -> aiohttp.ClientConnectorError:
    key = SimpleNamespace(host="api.example.test", port=443, ssl=True)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))  # type: ignore[arg-type]


def disconnected() -> aiohttp.ServerDisconnectedError:
    return aiohttp.ServerDisconnectedError()

"""Asyncio client for the Losant IoT platform: typed REST API, MQTT devices and gateways.

Public names are re-exported here lazily: ``from losant_async import Device``
imports only the MQTT layer, ``from losant_async import LosantClient`` only
the REST core, so a device process never pays for the 101 REST resources.
The emulator lives in ``losant_async.testing`` and is never imported from here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _env, errors
from ._extras import MissingExtraError
from ._version import __version__
from .errors import (
    APIError,
    AuthenticationRefusedError,
    BadRequestError,
    ConflictError,
    ConnectError,
    ConnectionLostError,
    DecodeError,
    DeviceClosedError,
    ForbiddenError,
    InvalidIdError,
    LosantError,
    MQTTError,
    NotFoundError,
    NotImplementedByServerError,
    OutboxFullError,
    PayloadTooLargeError,
    PayloadTooLargeMQTTError,
    RateLimitedError,
    RequestTimeoutError,
    RetainNotAllowedError,
    ServerError,
    TopicNotAllowedError,
    TransportError,
    UnauthorizedError,
    UnprocessableError,
    UnsupportedQoSError,
    ValidationError,
)

if TYPE_CHECKING:
    from .mqtt import (
        Command,
        ConnectionEvent,
        ConnectionState,
        Device,
        Fleet,
        Gateway,
        MemoryOutbox,
        Peripheral,
        SQLiteOutbox,
        ThrottleConfig,
    )
    from .rest import (
        BulkResult,
        DeviceCredentials,
        EventStream,
        LosantClient,
        Paginator,
        RequestOptions,
        RetryPolicy,
        StaticToken,
        Timeout,
        TokenSource,
        UserCredentials,
    )

_LAZY = {
    **dict.fromkeys(
        (
            "BulkResult",
            "DeviceCredentials",
            "EventStream",
            "LosantClient",
            "Paginator",
            "RequestOptions",
            "RetryPolicy",
            "StaticToken",
            "Timeout",
            "TokenSource",
            "UserCredentials",
        ),
        "rest",
    ),
    **dict.fromkeys(
        (
            "Command",
            "ConnectionEvent",
            "ConnectionState",
            "Device",
            "Fleet",
            "Gateway",
            "MemoryOutbox",
            "Peripheral",
            "SQLiteOutbox",
            "ThrottleConfig",
        ),
        "mqtt",
    ),
}

__all__ = [
    "APIError",
    "AuthenticationRefusedError",
    "BadRequestError",
    "BulkResult",
    "Command",
    "ConflictError",
    "ConnectError",
    "ConnectionEvent",
    "ConnectionLostError",
    "ConnectionState",
    "DecodeError",
    "Device",
    "DeviceClosedError",
    "DeviceCredentials",
    "EventStream",
    "Fleet",
    "ForbiddenError",
    "Gateway",
    "InvalidIdError",
    "LosantClient",
    "LosantError",
    "MQTTError",
    "MemoryOutbox",
    "MissingExtraError",
    "NotFoundError",
    "NotImplementedByServerError",
    "OutboxFullError",
    "Paginator",
    "PayloadTooLargeError",
    "PayloadTooLargeMQTTError",
    "Peripheral",
    "RateLimitedError",
    "RequestOptions",
    "RequestTimeoutError",
    "RetainNotAllowedError",
    "RetryPolicy",
    "SQLiteOutbox",
    "ServerError",
    "StaticToken",
    "ThrottleConfig",
    "Timeout",
    "TokenSource",
    "TopicNotAllowedError",
    "TransportError",
    "UnauthorizedError",
    "UnprocessableError",
    "UnsupportedQoSError",
    "UserCredentials",
    "ValidationError",
    "__version__",
    "errors",
]


# LOSANT_LOG takes effect on import, not only once a LosantClient is built (issue 19).
_env.configure_logging_on_import()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'losant_async' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

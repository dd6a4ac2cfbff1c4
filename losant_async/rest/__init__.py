"""The Losant REST API: ``LosantClient`` and what its calls take and return."""

from __future__ import annotations

from ._retry import RetryPolicy
from ._transport import AiohttpTransport
from .auth import DeviceCredentials, StaticToken, TokenSource, UserCredentials
from .bulk import BulkResult
from .client import LosantClient
from .options import RequestOptions, Timeout
from .pagination import Paginator
from .sse import EventStream
from .transport import HTTPRequest, HTTPResponse, MockTransport, ResponseStream, Transport

__all__ = [
    "AiohttpTransport",
    "BulkResult",
    "DeviceCredentials",
    "EventStream",
    "HTTPRequest",
    "HTTPResponse",
    "LosantClient",
    "MockTransport",
    "Paginator",
    "RequestOptions",
    "ResponseStream",
    "RetryPolicy",
    "StaticToken",
    "Timeout",
    "TokenSource",
    "Transport",
    "UserCredentials",
]

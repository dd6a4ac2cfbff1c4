"""The Losant REST API: ``LosantClient`` and what its calls take and return."""

from __future__ import annotations

from ._retry import RetryPolicy
from .auth import DeviceCredentials, StaticToken, TokenSource, UserCredentials
from .bulk import BulkResult
from .client import LosantClient
from .options import RequestOptions, Timeout
from .pagination import Paginator
from .sse import EventStream

__all__ = [
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
]

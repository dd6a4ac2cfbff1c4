"""Reading a reply: the value an operation declares for its status, or the typed error of a non-2xx."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import msgspec

from .._json import decode, decode_any
from ..errors import APIError, DecodeError, RateLimitedError, error_for_status
from ._operation import Operation
from ._request import PreparedRequest
from ._retry import parse_retry_after
from .transport import HTTPResponse

__all__ = ["api_error", "decode_reply"]

_MISSING: Any = object()


def decode_reply(op: Operation, resp: HTTPResponse, raw: bool) -> Any:
    """The reply's body as ``op`` declares it for its status (builtins with ``raw``)."""
    body = resp.body
    status = resp.status
    if not raw and body and (decoders := op.plan.decoders if op.plan else None):
        decoder = decoders.get(status)
        if decoder is not None:
            try:
                return decoder.decode(body)
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
                pass  # the slow path below says what is wrong, with the JSON path (or the depth)
    if status == 204:
        return None
    tp = op.responses.get(status, _MISSING)
    if tp is _MISSING:
        declared = [t for t in op.responses.values() if t is not None]
        tp = declared[0] if len(declared) == 1 else Any
    if not body:
        if tp is None or raw:
            return None
        raise DecodeError(f"{op.full_name}: HTTP {status} with an empty body", raw=body)
    try:
        if raw:
            return decode_any(body)
        if tp is None:
            return None
        return decode(body, tp)
    except DecodeError as exc:
        raise DecodeError(
            f"{op.full_name}: {exc}", raw=exc.raw, path=exc.path, raw_size=exc.raw_size
        ) from None


def api_error(prepared: PreparedRequest, resp: HTTPResponse, clock: Callable[[], float]) -> APIError:
    """The typed error for a non-2xx reply, with Losant's ``type`` and ``message`` when sent."""
    status = resp.status
    raw = resp.body
    body: Any = None
    if raw:
        try:
            body = decode_any(raw)
        except DecodeError:
            body = raw[:4096].decode("utf-8", "replace")
    kind = body.get("type") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "error"
    cls = error_for_status(status)
    kwargs: dict[str, Any] = {"method": prepared.method, "path": prepared.path}
    if cls is RateLimitedError:
        kwargs["retry_after"] = parse_retry_after(resp.headers, clock())
    return cls(status, kind if isinstance(kind, str) else None, message, body, **kwargs)

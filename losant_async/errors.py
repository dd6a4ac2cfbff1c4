"""Every exception losant_async raises, in one tree.

::

    LosantError
    ├── ValidationError (also ValueError)     bad input, raised before anything is sent
    │   └── InvalidIdError                    an ID that does not match the API's pattern
    ├── APIError                              the server answered with a status >= 400
    │   ├── BadRequestError          400
    │   ├── UnauthorizedError        401
    │   ├── ForbiddenError           403
    │   ├── NotFoundError            404
    │   ├── ConflictError            409
    │   ├── PayloadTooLargeError     413
    │   ├── UnprocessableError       422
    │   ├── RateLimitedError         429   (retry_after)
    │   ├── NotImplementedByServerError 501
    │   └── ServerError              5xx
    ├── TransportError                        no usable answer from the network
    │   ├── ConnectError (also ConnectionError)
    │   │   ├── RequestNotSentError           the connection failed before the request was written
    │   │   └── TLSVerificationError          the server's certificate failed verification (not retried)
    │   └── RequestTimeoutError (also TimeoutError)
    │       └── ConnectTimeoutError           no connection within the connect timeout (not sent)
    ├── DecodeError (also ValueError)         a reply that is not what the API promises
    │   └── ResponseTooLargeError             a reply larger than ``max_response_bytes`` (not retried)
    └── MQTTError                             the device layer
        ├── AuthenticationRefusedError        CONNACK refused the credentials (not retried)
        ├── ConnectionLostError (also ConnectionError)
        ├── DeviceClosedError                 used after close, or closed while waiting
        ├── OutboxFullError                   the outbox is full and the policy says raise
        ├── OutboxStorageError                the persistent outbox's file failed (SQLite error)
        ├── PayloadTooLargeMQTTError (also ValidationError)
        ├── UnsupportedQoSError (also ValidationError)
        ├── RetainNotAllowedError (also ValidationError)
        └── TopicNotAllowedError (also ValidationError)

Secrets never reach a message or a repr: errors carry the request's method and
URL path, never its headers, and bodies are what the *server* sent.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AuthenticationRefusedError",
    "BadRequestError",
    "ConflictError",
    "ConnectError",
    "ConnectTimeoutError",
    "ConnectionLostError",
    "DecodeError",
    "DeviceClosedError",
    "ForbiddenError",
    "InvalidIdError",
    "LosantError",
    "MQTTError",
    "NotFoundError",
    "NotImplementedByServerError",
    "OutboxFullError",
    "OutboxStorageError",
    "PayloadTooLargeError",
    "PayloadTooLargeMQTTError",
    "RateLimitedError",
    "RequestNotSentError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "RetainNotAllowedError",
    "ServerError",
    "TLSVerificationError",
    "TopicNotAllowedError",
    "TransportError",
    "UnauthorizedError",
    "UnprocessableError",
    "UnsupportedQoSError",
    "ValidationError",
    "error_for_status",
]


class LosantError(Exception):
    """Root of every error raised by losant_async."""


class ValidationError(LosantError, ValueError):
    """An argument is invalid; nothing was sent."""


class InvalidIdError(ValidationError):
    """An ID does not match the pattern the API requires (usually 24 hex characters)."""

    def __init__(self, param: str, value: object, pattern: str) -> None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        super().__init__(f"{param}={shown} does not match the API's pattern {pattern}")
        self.param = param
        self.pattern = pattern


class APIError(LosantError):
    """The server answered with an error status.

    ``status`` is the HTTP status, ``type`` and ``message`` come from Losant's
    JSON error body (``{"type": ..., "message": ...}``) when there is one, and
    ``body`` is that body decoded (or the raw text when it was not JSON).
    """

    def __init__(
        self,
        status: int,
        type: str | None,
        message: str,
        body: Any = None,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        where = f" ({method} {path})" if method and path else ""
        kind = f" {type}" if type else ""
        super().__init__(f"HTTP {status}{kind}: {message}{where}")
        self.status = status
        self.type = type
        self.message = message
        self.body = body
        self.method = method
        self.path = path

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(status={self.status}, type={self.type!r}, "
            f"message={self.message!r})"
        )

    def __reduce__(self) -> Any:
        return (_rebuild_api_error, (self.__class__, self.status, self.type, self.message, self.body))


def _rebuild_api_error(
    cls: type[APIError], status: int, type: str | None, message: str, body: Any
) -> APIError:
    if cls is RateLimitedError:
        return RateLimitedError(status, type, message, body)
    return cls(status, type, message, body)


class BadRequestError(APIError):
    """400: the server rejected the request as malformed."""


class UnauthorizedError(APIError):
    """401: the token is missing, invalid or expired, or credentials were wrong."""


class ForbiddenError(APIError):
    """403: the token lacks the scope for this action."""


class NotFoundError(APIError):
    """404: the resource does not exist (or the token cannot see it)."""


class ConflictError(APIError):
    """409: the request conflicts with the resource's current state."""


class PayloadTooLargeError(APIError):
    """413: the request body is larger than the server accepts."""


class UnprocessableError(APIError):
    """422: the server understood the request but refused its content."""


class RateLimitedError(APIError):
    """429: too many requests; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(
        self,
        status: int,
        type: str | None,
        message: str,
        body: Any = None,
        *,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, type, message, body, method=method, path=path)
        self.retry_after = retry_after


class NotImplementedByServerError(APIError):
    """501: the server does not implement this action (the local emulator says so for
    actions it does not emulate)."""


class ServerError(APIError):
    """5xx: the server failed."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableError,
    429: RateLimitedError,
    501: NotImplementedByServerError,
}


def error_for_status(status: int) -> type[APIError]:
    """The APIError subclass that means ``status``."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    if status >= 500:
        return ServerError
    return APIError


class TransportError(LosantError):
    """The request got no usable answer: connection failed or timed out."""


class ConnectError(TransportError, ConnectionError):
    """Could not connect, or the connection broke before an answer arrived."""


class RequestNotSentError(ConnectError):
    """The connection failed before the request was written: the server never saw it.

    Always safe to retry, whatever the request; a custom REST transport raises
    it for failures it knows happened before sending.
    """


class TLSVerificationError(ConnectError):
    """The server's TLS certificate failed verification (wrong CA, wrong host name, expired).

    Not a transient fault: neither REST retries nor the MQTT supervisor retry it.
    Raised by both REST and MQTT connections.
    """


class RequestTimeoutError(TransportError, TimeoutError):
    """The request did not complete within its timeout."""


class ConnectTimeoutError(RequestTimeoutError):
    """No connection within the connect timeout: the server never saw the request."""


#: How much of a reply a ``DecodeError`` keeps in ``raw`` (the first 64 KiB).
MAX_RAW_KEPT = 64 * 1024


class DecodeError(LosantError, ValueError):
    """A reply could not be decoded into the type the API promises.

    ``raw`` keeps the first 64 KiB of what was received (``raw_size`` is its
    full length), and ``path`` the JSON path where decoding failed, when known.
    Bounded so that a huge reply is not kept alive by the exception.
    """

    def __init__(
        self,
        message: str,
        raw: bytes | str | None = None,
        path: str | None = None,
        *,
        raw_size: int | None = None,
    ) -> None:
        super().__init__(message)
        self.raw_size: int = raw_size if raw_size is not None else (len(raw) if raw is not None else 0)
        if raw is not None and len(raw) > MAX_RAW_KEPT:
            raw = raw[:MAX_RAW_KEPT]
        self.raw = raw
        self.path = path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.args[0]!r}, path={self.path!r})"


class ResponseTooLargeError(DecodeError):
    """The reply's body (after decompression) is larger than ``max_response_bytes``.

    Reading stopped at the limit; the request is not retried.
    """

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class MQTTError(LosantError):
    """Root of the device layer's errors."""


class AuthenticationRefusedError(MQTTError):
    """The broker refused the credentials (CONNACK return code 4 or 5); not retried."""

    def __init__(self, message: str, return_code: int | None = None) -> None:
        super().__init__(message)
        self.return_code = return_code


class ConnectionLostError(MQTTError, ConnectionError):
    """The connection to the broker was lost."""


class BrokerRefusedError(ConnectionLostError):
    """The broker refused the connection for now (CONNACK 3 "server unavailable", or MQTT 5's busy,
    banned, quota and rate codes): retried after a wait, never at once. ``return_code`` is the code."""

    def __init__(self, message: str, return_code: int | None = None) -> None:
        super().__init__(message)
        self.return_code = return_code


class TLSHandshakeError(ConnectionLostError):
    """The TLS handshake got no answer or a plaintext one: the port may be plain MQTT over TCP.

    Raised at once from the first connect (it does not heal by retrying); the message says how
    to select ``transport="tcp"``.
    """


class DeviceClosedError(MQTTError):
    """The device was closed (or is closing) and cannot do this any more."""


class OutboxFullError(MQTTError):
    """The outbox is full and the call asked not to wait."""


class OutboxStorageError(MQTTError):
    """The persistent outbox could not read or write its file (the SQLite error is the cause)."""


class PayloadTooLargeMQTTError(MQTTError, ValidationError):
    """The encoded message is larger than the broker accepts (256 KB on Losant)."""


class UnsupportedQoSError(MQTTError, ValidationError):
    """Losant accepts QoS 0 and 1 only."""


class RetainNotAllowedError(MQTTError, ValidationError):
    """Losant does not accept retained messages."""


class TopicNotAllowedError(MQTTError, ValidationError):
    """This connection may not publish or subscribe to that topic."""

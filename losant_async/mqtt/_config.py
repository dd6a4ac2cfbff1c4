"""A device's options, validated once into one frozen object (``DeviceConfig``), and read from the environment."""

from __future__ import annotations

import importlib.util
import math
import os
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ValidationError
from ._payloads import check_qos
from ._supervisor import Backoff
from ._throttle import ThrottleConfig
from ._topics import validate_device_id

__all__ = [
    "DEFAULT_PORTS",
    "ENV_VARIABLES",
    "LOSANT_BROKER",
    "Certificate",
    "CommandOverflow",
    "DeviceConfig",
    "Proxy",
    "Transport",
    "options_from_env",
]

Transport = Literal["tls", "tcp", "websockets", "wss"]
#: What a full command stream does: drop its oldest command (counted in ``Stream.dropped``)
#: or stop reading from the connection until the consumer catches up.
CommandOverflow = Literal["drop_oldest", "wait"]

LOSANT_BROKER = "broker.losant.com"
DEFAULT_PORTS: dict[str, int] = {"tls": 8883, "tcp": 1883, "websockets": 80, "wss": 443}
_PROXY_SCHEMES = ("http", "socks4", "socks5")


@dataclass(frozen=True)
class Proxy:
    """An HTTP (CONNECT) or SOCKS proxy the MQTT connection goes through.

    ``Proxy.parse("http://user:pass@proxy.corp:3128")`` or
    ``"socks5://127.0.0.1:1080"``; needs PySocks (``pip install losant-async[proxy]``).
    The password is never shown in the repr.
    """

    scheme: Literal["http", "socks4", "socks5"]
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: Let the proxy resolve the broker's host name (default), not this machine.
    remote_dns: bool = True

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """Parse a proxy URL (http, socks4 or socks5) into its parts; ValidationError when it is not one."""
        if not isinstance(url, str) or "://" not in url:
            raise ValidationError("proxy must be a URL like http://host:port or socks5://host:port")
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "socks5h":
            scheme = "socks5"
        if scheme not in _PROXY_SCHEMES:
            raise ValidationError(f"proxy scheme must be one of {list(_PROXY_SCHEMES)}, not {parts.scheme!r}")
        try:
            port = parts.port
        except ValueError:
            raise ValidationError("proxy port must be an int in 1..65535") from None
        if not parts.hostname:
            raise ValidationError("proxy URL has no host")
        default_port = 3128 if scheme == "http" else 1080
        user = urllib.parse.unquote(parts.username) if parts.username else None
        secret = urllib.parse.unquote(parts.password) if parts.password else None
        return cls(scheme, parts.hostname, port or default_port, user, secret)  # type: ignore[arg-type]


def _positive_int(name: str, value: object, upper: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or (upper is not None and value > upper):
        bound = f"1..{upper}" if upper is not None else ">= 1"
        raise ValidationError(f"{name} must be an int in {bound}, not {value!r}")
    return value


def _seconds(name: str, value: object, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValidationError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


Certificate = tuple[str | os.PathLike[str], str | os.PathLike[str]]
"""A client certificate: (the certificate's PEM file, its private key's PEM file)."""


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """Everything a ``Device`` was told, checked once (``DeviceConfig.build``); secrets stay out of the repr.

    ``throttle`` is the resolved ``ThrottleConfig`` (None: off) and
    ``ban_detection`` the resolved flag: both default on only against
    broker.losant.com; ``throttle=True`` (or a ``ThrottleConfig``) turns both on
    for a private Losant instance, which enforces the same limits.
    """

    device_id: str
    key: str | None = field(repr=False)
    """The access key; None when the device authenticates by certificate."""
    secret: str | None = field(repr=False)
    host: str
    port: int
    transport: Transport
    tls_context: ssl.SSLContext | None
    qos: int
    keepalive: int
    throttle: ThrottleConfig | None
    backoff: Backoff
    ban_detection: bool
    max_inflight: int
    connect_timeout: float
    close_timeout: float
    wait_ready: bool
    ready_timeout: float | None
    websocket_path: str
    stream_size: int
    command_overflow: CommandOverflow
    proxy: Proxy | None
    certificate: str | None = None
    """The client certificate's path, when the device authenticates by certificate."""

    @property
    def credential(self) -> tuple[str, str]:
        """What identifies the credentials (never shown): key and secret, or the certificate's path."""
        if self.certificate is not None:
            return "certificate", self.certificate
        return self.key or "", self.secret or ""

    @property
    def uses_tls(self) -> bool:
        return self.transport in ("tls", "wss")

    @property
    def on_losant(self) -> bool:
        return self.host == LOSANT_BROKER

    @classmethod
    def build(
        cls,
        device_id: str,
        key: str | None,
        secret: str | None,
        *,
        certificate: Certificate | None = None,
        host: str = LOSANT_BROKER,
        port: int | None = None,
        transport: Transport = "tls",
        tls_context: ssl.SSLContext | None = None,
        qos: int = 0,
        keepalive: int = 15,
        throttle: ThrottleConfig | bool | None = None,
        backoff: Backoff | None = None,
        ban_detection: bool | None = None,
        max_inflight: int = 50,
        connect_timeout: float = 10.0,
        close_timeout: float = 5.0,
        wait_ready: bool = True,
        ready_timeout: float | None = 30.0,
        websocket_path: str = "/mqtt",
        stream_size: int = 1000,
        command_overflow: CommandOverflow = "drop_oldest",
        proxy: Proxy | str | None = None,
    ) -> DeviceConfig:
        """Validate every option before anything starts; ``ValidationError`` names the first bad one."""
        device_id = validate_device_id(device_id)
        if certificate is not None:
            if key is not None or secret is not None:
                raise ValidationError("give key and secret, or certificate=(cert, key): not both")
        else:
            if not isinstance(key, str) or not key:
                raise ValidationError("key (the access key) must be a non-empty string")
            if not isinstance(secret, str) or not secret:
                raise ValidationError("secret (the access secret) must be a non-empty string")
        if not isinstance(host, str) or not host:
            raise ValidationError("host must be a non-empty string")
        if transport not in DEFAULT_PORTS:
            raise ValidationError(f"transport must be one of {sorted(DEFAULT_PORTS)}, not {transport!r}")
        port = _positive_int("port", DEFAULT_PORTS[transport] if port is None else port, 65535)
        if tls_context is not None and not isinstance(tls_context, ssl.SSLContext):
            raise ValidationError("tls_context must be an ssl.SSLContext")
        if tls_context is not None and transport in ("tcp", "websockets"):
            raise ValidationError(f"tls_context given but transport={transport!r} does not use TLS")
        cert_path: str | None = None
        if certificate is not None:
            if transport in ("tcp", "websockets"):
                raise ValidationError(f"a client certificate needs TLS; transport={transport!r} does not use it")
            cert_path, tls_context = _with_certificate(certificate, tls_context)
        if throttle is None:
            throttle = host == LOSANT_BROKER
        if not isinstance(throttle, (bool, ThrottleConfig)):
            raise ValidationError("throttle must be a bool, a ThrottleConfig or None")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise ValidationError("backoff must be a Backoff")
        if command_overflow not in ("drop_oldest", "wait"):
            raise ValidationError(f"command_overflow must be 'drop_oldest' or 'wait', not {command_overflow!r}")
        if not isinstance(websocket_path, str) or not websocket_path.startswith("/"):
            raise ValidationError("websocket_path must be a string starting with '/'")
        if proxy is not None and not isinstance(proxy, Proxy):
            proxy = Proxy.parse(proxy)
        if proxy is not None and importlib.util.find_spec("socks") is None:
            raise ValidationError("proxy needs PySocks: pip install 'losant-async[proxy]'")
        connect = _seconds("connect_timeout", connect_timeout)
        close = _seconds("close_timeout", close_timeout)
        assert connect is not None and close is not None
        return cls(
            device_id=device_id,
            key=key,
            secret=secret,
            host=host,
            port=port,
            transport=transport,
            tls_context=tls_context,
            qos=check_qos(qos),
            keepalive=_positive_int("keepalive", keepalive),
            throttle=throttle if isinstance(throttle, ThrottleConfig) else ThrottleConfig() if throttle else None,
            backoff=backoff or Backoff(),
            # A throttled device stays under the limits by itself, so a disconnect after a burst
            # beyond them is a ban: throttle=True brings ban detection along for a private instance.
            ban_detection=(host == LOSANT_BROKER or throttle is not False) if ban_detection is None
            else bool(ban_detection),
            max_inflight=_positive_int("max_inflight", max_inflight, 65535),
            connect_timeout=connect,
            close_timeout=close,
            wait_ready=bool(wait_ready),
            ready_timeout=_seconds("ready_timeout", ready_timeout, optional=True),
            websocket_path=websocket_path,
            stream_size=_positive_int("stream_size", stream_size),
            command_overflow=command_overflow,
            proxy=proxy,
            certificate=cert_path,
        )


def _with_certificate(
    certificate: Certificate, tls_context: ssl.SSLContext | None
) -> tuple[str, ssl.SSLContext]:
    """The certificate's path and a TLS context that presents it (``tls_context`` itself when given)."""
    if not isinstance(certificate, tuple) or len(certificate) != 2:
        raise ValidationError("certificate must be a (certificate file, private key file) pair")
    cert, key = (os.fspath(p) if isinstance(p, (str, os.PathLike)) else None for p in certificate)
    if cert is None or key is None:
        raise ValidationError("certificate must be a pair of paths: (certificate file, private key file)")
    context = tls_context if tls_context is not None else ssl.create_default_context()
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ValidationError(f"certificate: no such file {exc.filename!r}") from None
    except (ssl.SSLError, OSError) as exc:
        # The reason only (e.g. KEY_VALUES_MISMATCH): never the key's content.
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise ValidationError(f"certificate: {cert!r} and its key cannot be used ({reason})") from None
    return cert, context


#: What ``Device.from_env`` reads: (variable, keyword, required).
ENV_VARIABLES: tuple[tuple[str, str, bool], ...] = (
    ("LOSANT_DEVICE_ID", "device_id", True),
    ("LOSANT_ACCESS_KEY", "key", True),
    ("LOSANT_ACCESS_SECRET", "secret", True),
    ("LOSANT_MQTT_HOST", "host", False),
    ("LOSANT_MQTT_PORT", "port", False),
    ("LOSANT_MQTT_TRANSPORT", "transport", False),
)


def options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Device arguments from ``LOSANT_*`` variables; a missing or bad one is a ``ValidationError`` naming it.

    Values are never put in a message: a secret in the wrong variable stays secret.
    """
    env = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    missing = [name for name, _, required in ENV_VARIABLES if required and not env.get(name, "").strip()]
    if missing:
        raise ValidationError(f"environment variable {' and '.join(missing)} is not set (or empty)")
    for name, keyword, _ in ENV_VARIABLES:
        raw = env.get(name, "").strip()
        if not raw:
            continue
        if keyword == "port":
            if not raw.isdigit():
                raise ValidationError(f"environment variable {name} must be a port number (1..65535)")
            options[keyword] = int(raw)
        elif keyword == "transport":
            if raw not in DEFAULT_PORTS:
                raise ValidationError(f"environment variable {name} must be one of {sorted(DEFAULT_PORTS)}")
            options[keyword] = raw
        else:
            options[keyword] = raw
    return options

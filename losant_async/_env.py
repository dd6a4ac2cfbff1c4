"""The environment variables losant_async reads, in one place, for REST and MQTT alike.

=========================  ===============================================
``LOSANT_API_TOKEN``       a bearer token for ``LosantClient()``
``LOSANT_DEVICE_ID``       a device's ID    \\
``LOSANT_ACCESS_KEY``      its access key    > device credentials (REST and MQTT)
``LOSANT_ACCESS_SECRET``   its access secret /
``LOSANT_URL``             the REST base URL (private instances, the emulator)
``LOSANT_LOG``             ``debug`` or ``info``: log the library's records to stderr
=========================  ===============================================

Values are read when a client is created; ``LOSANT_LOG`` also when the package is
imported, so a program that only runs devices gets the library's logs. Secrets
are never logged or shown: only which variables were used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ValidationError

__all__ = [
    "ACCESS_KEY",
    "ACCESS_SECRET",
    "API_TOKEN",
    "DEVICE_ID",
    "LOG",
    "URL",
    "DeviceSecrets",
    "configure_logging",
    "device_credentials",
    "get",
]

API_TOKEN = "LOSANT_API_TOKEN"
DEVICE_ID = "LOSANT_DEVICE_ID"
ACCESS_KEY = "LOSANT_ACCESS_KEY"
ACCESS_SECRET = "LOSANT_ACCESS_SECRET"
URL = "LOSANT_URL"
LOG = "LOSANT_LOG"

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}
_LIBRARY_LOGGER = "losant_async"


def get(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value with surrounding blanks removed; ``None`` when unset or blank."""
    value = (os.environ if environ is None else environ).get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


@dataclass(frozen=True, slots=True)
class DeviceSecrets:
    """A device's ID, access key and secret, as read from the environment."""

    device_id: str
    key: str
    secret: str

    def __repr__(self) -> str:
        return f"DeviceSecrets(device_id={self.device_id!r}, key='***', secret='***')"


def device_credentials(environ: Mapping[str, str] | None = None) -> DeviceSecrets | None:
    """``LOSANT_DEVICE_ID``, ``LOSANT_ACCESS_KEY`` and ``LOSANT_ACCESS_SECRET``, or None when none is set.

    Some but not all of the three is a mistake worth saying so: ``ValidationError``
    naming the missing ones.
    """
    values = {name: get(name, environ) for name in (DEVICE_ID, ACCESS_KEY, ACCESS_SECRET)}
    missing = [name for name, value in values.items() if value is None]
    if len(missing) == 3:
        return None
    if missing:
        raise ValidationError(
            f"device credentials from the environment are incomplete: set {', '.join(missing)}"
        )
    device_id, key, secret = (values[n] for n in (DEVICE_ID, ACCESS_KEY, ACCESS_SECRET))
    assert device_id is not None and key is not None and secret is not None
    return DeviceSecrets(device_id, key, secret)


_handler: logging.Handler | None = None


def configure_logging_on_import() -> None:
    """``configure_logging`` at import: a bad value warns here and raises where a client or device is built."""
    try:
        configure_logging()
    except ValidationError as exc:
        import warnings

        warnings.warn(str(exc), stacklevel=3)


def configure_logging(environ: Mapping[str, str] | None = None) -> int | None:
    """Apply ``LOSANT_LOG`` (``debug``/``info``) to the ``losant_async`` logger; the level set, or None.

    Adds one stderr handler the first time (never twice), and only lowers the
    logger's level: an application's own logging configuration is otherwise
    left alone. Unset does nothing; another value is a ``ValidationError``.
    """
    global _handler
    value = get(LOG, environ)
    if value is None:
        return None
    level = _LEVELS.get(value.lower())
    if level is None:
        raise ValidationError(f"{LOG}={value!r}: use debug or info")
    logger = logging.getLogger(_LIBRARY_LOGGER)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    if _handler is None:
        _handler = logging.StreamHandler()
        _handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        logger.addHandler(_handler)
    _handler.setLevel(level)
    return level

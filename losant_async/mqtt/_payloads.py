"""State and command payloads: encoding, decoding and Losant's limits (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from .._json import encode
from .._state import MAX_STRING_CHARS, check_state_data
from .._time import from_epoch_ms, parse_losant_time, to_epoch_ms
from ..errors import (
    DecodeError,
    PayloadTooLargeMQTTError,
    RetainNotAllowedError,
    UnsupportedQoSError,
    ValidationError,
)

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_STRING_CHARS",
    "Command",
    "check_qos",
    "check_retain",
    "check_size",
    "decode_command",
    "encode_payload",
    "encode_state",
]

#: Losant's per-message cap (256 KB). Checked on the encoded payload.
MAX_PAYLOAD_BYTES = 256 * 1024

class Command(msgspec.Struct, frozen=True, kw_only=True):
    """A command Losant sent to a device (or, through a gateway, to a peripheral).

    ``time`` is when it was sent, as an aware UTC datetime, or None when the
    command carried no usable time. ``device_id`` says which device it is for,
    which matters when one gateway receives for many peripherals.
    """

    name: str
    payload: Any = None
    time: datetime | None = None
    device_id: str = ""


class _RawCommand(msgspec.Struct):
    name: str
    payload: Any = None
    time: Any = None


_command_decoder = msgspec.json.Decoder(_RawCommand)


def check_qos(qos: object) -> int:
    """``qos`` if Losant accepts it (0 or 1), else ``UnsupportedQoSError``."""
    if qos is True or qos is False or qos not in (0, 1):
        raise UnsupportedQoSError(f"Losant accepts QoS 0 and 1 only, not {qos!r}")
    return 1 if qos == 1 else 0


def check_retain(retain: object) -> None:
    """Losant refuses retained messages: raise before anything is sent."""
    if retain:
        raise RetainNotAllowedError("Losant does not accept retained messages (retain=True)")


def check_size(payload: bytes, *, what: str = "message") -> bytes:
    """``payload`` if within Losant's 256 KB cap, else ``PayloadTooLargeMQTTError``."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLargeMQTTError(
            f"{what} is {len(payload)} bytes encoded; Losant accepts at most {MAX_PAYLOAD_BYTES}"
        )
    return payload


def encode_state(
    data: Mapping[str, Any],
    time: datetime | int | float | None = None,
    *,
    flow_version: str | None = None,
    now: int | None = None,
) -> bytes:
    """The JSON Losant expects on ``losant/<id>/state``: ``{"data": ..., "time": <epoch ms>}``.

    ``time`` None stamps ``now`` (the call's time), so a state that waits in an
    outbox keeps the time it describes. Every check runs before anything is sent.
    """
    check_state_data(data)
    ms = now if time is None and now is not None else to_epoch_ms(time)
    body: dict[str, Any] = {"data": data, "time": ms}
    if flow_version is not None:
        if not isinstance(flow_version, str) or not flow_version:
            raise ValidationError("flow_version must be a non-empty string")
        body["flowVersion"] = flow_version
    return check_size(encode(body, what="state"), what="state")


def encode_payload(payload: object) -> bytes:
    """A custom topic's payload as bytes: bytes as is, str as UTF-8, anything else as JSON."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        out = bytes(payload)
    elif isinstance(payload, str):
        out = payload.encode()
    else:
        out = encode(payload, what="payload")
    return check_size(out, what="payload")


def _undefined_to_none(value: Any) -> Any:
    if type(value) is dict and len(value) == 1 and value.get("$undefined") is True:
        return None
    return value


def decode_command(payload: bytes, device_id: str = "") -> Command:
    """A command from its JSON; ``DecodeError`` when it is not a Losant command.

    Accepts ``time`` as ``{"$date": ...}``, epoch ms or seconds, or an ISO string;
    ``{"$undefined": true}`` anywhere at the top level means absent.
    """
    try:
        raw = _command_decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"command does not match {{name, payload, time}}: {exc}", raw=payload) from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"command is not valid JSON: {exc}", raw=payload) from None
    when = raw.time
    stamp: datetime | None = None
    if type(when) is dict and type(inner := when.get("$date")) is str and inner.endswith("Z"):
        # Losant's usual form; parsed directly rather than through epoch milliseconds.
        try:
            stamp = datetime.fromisoformat(inner[:-1] + "+00:00")
        except ValueError:
            stamp = None
        else:
            when = None
    if when is not None:
        ms = parse_losant_time(when)
        if ms is not None:
            try:
                stamp = from_epoch_ms(ms)
            except (OverflowError, OSError, ValueError):
                stamp = None
    return Command(name=raw.name, payload=_undefined_to_none(raw.payload), time=stamp, device_id=device_id)

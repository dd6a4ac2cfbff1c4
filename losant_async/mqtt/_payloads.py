"""State and command payloads: encoding, decoding and Losant's limits (pure, no I/O)."""

from __future__ import annotations

import re
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
    "MAX_COMMAND_DEPTH",
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

#: Deepest nesting of arrays and objects a command may have (the command object is level 1).
#: Deeper payloads are malformed: decoding them, or anything the caller does with the result,
#: could otherwise exhaust Python's recursion limit.
MAX_COMMAND_DEPTH = 64

# A JSON string (escapes included) or one bracket: strings are skipped whole so brackets
# inside them do not count.
_STRUCTURE_RE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")

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


def _nesting_depth(payload: bytes, stop: int | None = None) -> int:
    """How deeply ``payload``'s arrays and objects nest, counted without recursion.

    Exact for valid JSON; with ``stop``, the count ends as soon as it passes ``stop``.
    """
    depth = deepest = 0
    for match in _STRUCTURE_RE.finditer(payload):
        first = match.group()[0]
        if first in _OPENERS:
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop is not None and deepest > stop:
                    break
        elif first != 0x22:  # a closing bracket (0x22 is '"': a whole string, skipped)
            depth -= 1
    return deepest


def _too_deep(payload: bytes, limit: int) -> bool:
    # Cheap bound first (two C-speed counts): fewer brackets than the limit cannot nest deeper.
    if payload.count(b"[") + payload.count(b"{") <= limit:
        return False
    return _nesting_depth(payload, limit) > limit


def decode_command(payload: bytes, device_id: str = "") -> Command:
    """A command from its JSON; ``DecodeError`` when it is not a Losant command.

    Accepts ``time`` as ``{"$date": ...}``, epoch ms or seconds, or an ISO string;
    ``{"$undefined": true}`` anywhere at the top level means absent. Arrays and
    objects nested deeper than ``MAX_COMMAND_DEPTH`` make it malformed.
    """
    if _too_deep(payload, MAX_COMMAND_DEPTH):
        raise DecodeError(
            f"command nests arrays/objects deeper than {MAX_COMMAND_DEPTH} levels", raw=payload[:200]
        )
    try:
        raw = _command_decoder.decode(payload)
    except RecursionError:
        # Unreachable after the depth check, kept so no payload can raise it from here.
        raise DecodeError("command nests too deeply to decode", raw=payload[:200]) from None
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

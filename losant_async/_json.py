"""JSON encoding and decoding for the whole package: one cached msgspec decoder per type."""

from __future__ import annotations

import functools
import sys
from typing import Any

import msgspec

from .errors import DecodeError, ValidationError

__all__ = ["TooDeepError", "decode", "decode_any", "decoder_for", "encode", "to_builtins"]



class TooDeepError(DecodeError):
    """JSON nested beyond the interpreter's recursion limit (the emulator words it for request bodies)."""


_encoder = msgspec.json.Encoder()
_any_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


@functools.cache
def decoder_for(tp: Any) -> msgspec.json.Decoder[Any]:
    """The decoder for ``tp``, built once: building one costs far more than using it."""
    return msgspec.json.Decoder(tp)


def encode(value: Any, *, what: str = "value") -> bytes:
    """Encode ``value`` (Structs, dicts, lists, scalars, datetimes) as JSON bytes.

    Raises ``ValidationError`` naming ``what`` when the value cannot be encoded,
    so nothing half-encoded is ever sent.
    """
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise ValidationError(f"{what} is not JSON-serialisable: {exc}") from None


def decode(data: bytes | str, tp: Any) -> Any:
    """Decode ``data`` into ``tp``; failures become ``DecodeError`` with the JSON path and raw bytes.

    Nesting is capped by the interpreter's recursion limit (about 1,000 levels, far beyond
    any Losant reply): deeper input is a ``DecodeError``, never a bare ``RecursionError``.
    """
    try:
        return decoder_for(tp).decode(data)
    except RecursionError:
        raise _too_deep(data) from None
    except msgspec.ValidationError as exc:
        text = str(exc)
        path = text.rsplit("at `", 1)[1].rstrip("`") if "at `" in text else None
        raise DecodeError(f"reply does not match {_type_name(tp)}: {text}", raw=data, path=path) from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"reply is not valid JSON: {exc}", raw=data) from None


def decode_any(data: bytes | str) -> Any:
    """Decode JSON into plain Python values (nesting capped as in ``decode``)."""
    try:
        return _any_decoder.decode(data)
    except RecursionError:
        raise _too_deep(data) from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"reply is not valid JSON: {exc}", raw=data) from None


def _too_deep(data: bytes | str) -> TooDeepError:
    return TooDeepError(f"reply is nested too deeply to decode (over ~{sys.getrecursionlimit()} levels)",
                       raw=data[:200], raw_size=len(data))


def to_builtins(value: Any) -> Any:
    """Structs and other msgspec-supported values as plain dicts, lists and scalars."""
    return msgspec.to_builtins(value)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)

"""Losant MQTT topic names and the rules about who may use which topic (pure, no I/O)."""

from __future__ import annotations

import re

from ..errors import InvalidIdError, TopicNotAllowedError, ValidationError

__all__ = [
    "LOSANT_PREFIX",
    "check_publish_topic",
    "check_subscribe_filter",
    "command_topic",
    "is_losant_topic",
    "state_topic",
    "topic_matches",
    "validate_device_id",
]

LOSANT_PREFIX = "losant/"
_ID_PATTERN = "^[0-9A-Fa-f]{24}$"
# ASCII only (re's [0-9A-Fa-f] is ASCII, unlike \d) and fullmatch, so "<id>\n" is refused:
# a device id goes into CONNECT and SUBSCRIBE as is.
_ID_RE = re.compile("[0-9A-Fa-f]{24}")


def validate_device_id(device_id: object, *, what: str = "device_id") -> str:
    """``device_id`` if it is a Losant device id (24 ASCII hex characters), else ``InvalidIdError``."""
    if not isinstance(device_id, str) or _ID_RE.fullmatch(device_id) is None:
        raise InvalidIdError(what, device_id, _ID_PATTERN)
    return device_id


def state_topic(device_id: str) -> str:
    """Where a device (or a gateway for its peripheral) publishes state."""
    return f"losant/{device_id}/state"


def command_topic(device_id: str) -> str:
    """Where Losant delivers a device's commands."""
    return f"losant/{device_id}/command"


def is_losant_topic(topic: str) -> bool:
    """True for topics in Losant's reserved ``losant/`` namespace."""
    return topic.startswith(LOSANT_PREFIX)


# What MQTT 3.1.1 (1.5.3) says a topic should not hold: control characters (C0 and C1) and
# Unicode non-characters. Brokers (mosquitto among them) drop the connection over them.
_UNFIT_RE = re.compile(
    "[\x00-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff"
    + "".join(f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(1, 17))
    + "]"
)


def _check_topic_text(topic: object, what: str) -> str:
    if not isinstance(topic, str) or not topic:
        raise ValidationError(f"{what} must be a non-empty string")
    if _UNFIT_RE.search(topic) is not None:
        raise ValidationError(f"{what} must not contain control characters or Unicode non-characters: {topic!r}")
    try:
        size = len(topic.encode())
    except UnicodeEncodeError:
        raise ValidationError(f"{what} is not valid UTF-8 (it holds a lone surrogate)") from None
    if size > 65535:
        raise ValidationError(f"{what} is longer than MQTT allows (65535 bytes)")
    return topic


def _losant_target(text: str, kind: str, own_ids: frozenset[str] | set[str], gateway: bool, verb: str) -> None:
    """Losant's reserved namespace: exactly ``losant/<id>/<kind>``, for this device (or a peripheral)."""
    parts = text.split("/")
    if len(parts) != 3 or _ID_RE.fullmatch(parts[1]) is None:
        raise TopicNotAllowedError(
            f"{text!r} is not a Losant device topic; inside losant/ a device may {verb} "
            f"only losant/<device id>/{kind}"
        )
    if parts[2] != kind:
        raise TopicNotAllowedError(
            f"Losant lets devices {verb} only losant/<device id>/{kind} inside losant/, not {text!r}"
        )
    if parts[1] not in own_ids and not gateway:
        raise TopicNotAllowedError(
            f"a device may {verb} only its own losant/ topics, not {text!r} "
            "(only a gateway does it for other devices)"
        )


def check_publish_topic(topic: object, own_ids: frozenset[str] | set[str], *, gateway: bool) -> str:
    """``topic`` if this connection may publish to it, else a typed error, before anything is sent.

    Losant's rules: no wildcards and no ``$``-topics (``$SYS/...``); custom topics
    (outside ``losant/``) are free; inside ``losant/`` only ``losant/<id>/state``,
    for the device itself, or for any device when it is a gateway (Losant checks
    the peripheral belongs to it). Nobody publishes to a command topic.
    """
    text = _check_topic_text(topic, "topic")
    if "#" in text or "+" in text:
        raise TopicNotAllowedError(f"cannot publish to a wildcard topic: {text!r}")
    if text.startswith("$"):
        raise TopicNotAllowedError(f"topics starting with '$' are the broker's, not a device's: {text!r}")
    if is_losant_topic(text) or text == "losant":
        _losant_target(text, "state", own_ids, gateway, "publish to")
    return text


def check_subscribe_filter(topic_filter: object, own_ids: frozenset[str] | set[str], *, gateway: bool) -> str:
    """``topic_filter`` if it is well formed and Losant lets this connection subscribe to it.

    Refused with ``TopicNotAllowedError``: any filter that could match another
    device's ``losant/`` topics (``#``, ``+/...``, ``losant/#``, ``losant/+/command``),
    ``$``-topics (``$SYS/#``), and anything in ``losant/`` but a device's own
    ``losant/<id>/command`` (a gateway: also its peripherals'). Custom filters
    are free. A misplaced wildcard is a ``ValidationError``.
    """
    text = _check_topic_text(topic_filter, "topic filter")
    levels = text.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValidationError(f"'#' must be a whole last level in {text!r}")
        if "+" in level and level != "+":
            raise ValidationError(f"'+' must be a whole level in {text!r}")
    first = levels[0]
    if first in ("#", "+"):
        raise TopicNotAllowedError(
            f"{text!r} would match the reserved losant/ topics of other devices; "
            "start the filter with a custom first level"
        )
    if first.startswith("$"):
        raise TopicNotAllowedError(f"topics starting with '$' are not open to devices: {text!r}")
    if first == "losant":
        if "#" in levels or "+" in levels:
            raise TopicNotAllowedError(f"Losant refuses wildcards inside losant/: {text!r}")
        _losant_target(text, "command", own_ids, gateway, "subscribe to")
    return text


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT filter ``topic_filter`` (``+`` and ``#`` wildcards)."""
    if topic_filter == topic:
        return True
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    # Wildcards at the first level do not match $-topics (MQTT 3.1.1, 4.7.2).
    if t_levels[0].startswith("$") and f_levels[0] in ("+", "#"):
        return False
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels):
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)

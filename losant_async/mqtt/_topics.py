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
_ID_PATTERN = "^[A-Fa-f\\d]{24}$"
_ID_RE = re.compile(_ID_PATTERN)
# The emulator and tests may use readable ids; Losant's own are 24 hex characters.
# Anything that cannot break a topic (no wildcards, separators or NUL) is accepted.
_SAFE_ID_RE = re.compile(r"^[^/#+\x00\s]{1,128}$")


def validate_device_id(device_id: object, *, what: str = "device_id") -> str:
    """``device_id`` if it can name a device's topics, else ``InvalidIdError``."""
    if not isinstance(device_id, str) or not _SAFE_ID_RE.match(device_id):
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


def _check_topic_text(topic: object, what: str) -> str:
    if not isinstance(topic, str) or not topic:
        raise ValidationError(f"{what} must be a non-empty string")
    if "\x00" in topic:
        raise ValidationError(f"{what} must not contain NUL characters")
    if len(topic.encode()) > 65535:
        raise ValidationError(f"{what} is longer than MQTT allows (65535 bytes)")
    return topic


def check_publish_topic(topic: object, own_ids: frozenset[str] | set[str], *, gateway: bool) -> str:
    """``topic`` if this connection may publish to it, else a typed error.

    Custom topics (outside ``losant/``) are free. Inside ``losant/`` a device may
    publish only to its own topics; a gateway also to any peripheral's (Losant
    checks the peripheral belongs to it).
    """
    text = _check_topic_text(topic, "topic")
    if "#" in text or "+" in text:
        raise TopicNotAllowedError(f"cannot publish to a wildcard topic: {text!r}")
    if is_losant_topic(text):
        parts = text.split("/")
        if len(parts) < 3 or not parts[1]:
            raise TopicNotAllowedError(f"{text!r} is not a Losant device topic")
        if parts[1] not in own_ids and not gateway:
            raise TopicNotAllowedError(
                f"a device may publish only to its own losant/ topics, not {text!r} "
                "(only a gateway publishes for other devices)"
            )
    return text


def check_subscribe_filter(topic_filter: object, own_ids: frozenset[str] | set[str], *, gateway: bool) -> str:
    """``topic_filter`` if it is well formed and may be subscribed, else a typed error."""
    text = _check_topic_text(topic_filter, "topic filter")
    levels = text.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValidationError(f"'#' must be a whole last level in {text!r}")
        if "+" in level and level != "+":
            raise ValidationError(f"'+' must be a whole level in {text!r}")
    if is_losant_topic(text) and not gateway and (len(levels) < 2 or levels[1] not in own_ids):
        raise TopicNotAllowedError(f"a device may subscribe only to its own losant/ topics, not {text!r}")
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

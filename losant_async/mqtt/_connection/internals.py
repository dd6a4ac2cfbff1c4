"""The private aiomqtt and paho names this package relies on, and the check, once per process, that they are there."""

from __future__ import annotations

import asyncio
import collections
import importlib.metadata
import inspect
import socket
import threading
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from ...errors import MQTTError

__all__ = ["IN_PACKET_KEYS", "PAHO_NAMES", "PRIVATE_NEEDS", "bytes_in_attribute", "check_internals", "check_once"]

# Written against paho-mqtt 2.1-2.2 and aiomqtt 2.5 (pyproject pins both). Each entry is
# (owner, name, kind): "method" with its parameter names after self, or the type an attribute
# holds. ``check_internals`` verifies them once per process, so an upgrade that renames one
# fails at the first connect naming it (and in tests/unit/mqtt/test_internals.py), instead of
# hanging in production.
_Kind = tuple[str, tuple[str, ...]] | type | tuple[type, ...]
PRIVATE_NEEDS: tuple[tuple[str, str, _Kind], ...] = (
    ("aiomqtt.Client", "_client", paho.Client),
    ("aiomqtt.Client", "_client_connect", ("method", ())),
    ("aiomqtt.Client", "_connected", asyncio.Future),
    ("aiomqtt.Client", "_disconnected", asyncio.Future),
    ("paho.Client", "_handle_pubackcomp", ("method", ("cmd",))),
    ("paho.Client", "_handle_publish", ("method", ())),
    ("paho.Client", "_send_puback", ("method", ("mid",))),
    ("paho.Client", "_update_inflight", ("method", ())),
    ("paho.Client", "_mid_generate", ("method", ())),
    ("paho.Client", "_packet_read", ("method", ())),
    ("paho.Client", "_loop_rc_handle", ("method", ("rc",))),
    ("paho.Client", "_reset_sockets", ("method", ("sockpair_only",))),
    ("paho.Client", "_call_socket_register_write", ("method", ())),
    ("paho.Client", "_sock", (type(None), socket.socket)),
    ("paho.Client", "_in_packet", dict),
    ("paho.Client", "_out_packet", collections.deque),
    ("paho.Client", "_out_messages", dict),
    ("paho.Client", "_out_message_mutex", type(threading.RLock())),
    ("paho.Client", "_inflight_messages", int),
    ("paho.Client", "_max_inflight_messages", int),
    ("paho.Client", "_last_msg_out", (int, float)),
    # When bytes last came in: paho 2.2 renamed it ("a|b": whichever this release has).
    ("paho.Client", "_last_bytes_received|_last_msg_in", (int, float)),
    ("paho.Client", "_ping_t", (int, float)),
    ("paho.MQTTMessageInfo", "_set_as_published", ("method", ())),
)
#: Keys of paho's packet dicts read (``_in_packet``) or built (``_out_packet`` entries) here.
IN_PACKET_KEYS = ("command", "packet")
#: Module-level names of paho used here.
PAHO_NAMES = ("time_func", "MQTTMessageInfo", "PUBLISH", "MQTT_ERR_SUCCESS", "MQTT_ERR_AGAIN", "error_string",
              "WebsocketConnectionError", "CallbackAPIVersion")

_checked = False
#: paho's "when bytes last came in" attribute in the installed release (set by the check).
_bytes_in = "_last_bytes_received"


def check_internals(aio_client: Any, message_info: Any, module: Any = paho) -> list[str]:
    """What is missing or changed among the private names this package relies on (empty: all fine).

    ``aio_client`` is an ``aiomqtt.Client`` (its paho client is read from it),
    ``message_info`` a ``paho.MQTTMessageInfo``, ``module`` paho's client module.
    """
    problems: list[str] = []
    owners = {
        "aiomqtt.Client": aio_client,
        "paho.Client": getattr(aio_client, "_client", None),
        "paho.MQTTMessageInfo": message_info,
    }
    for owner, entry, kind in PRIVATE_NEEDS:
        obj = owners[owner]
        where = f"{owner}.{entry}"
        name = next((n for n in entry.split("|") if obj is not None and hasattr(obj, n)), None)
        if name is None:
            problems.append(f"{where} is missing")
            continue
        value = getattr(obj, name)
        if isinstance(kind, tuple) and kind and kind[0] == "method":
            if not callable(value):
                problems.append(f"{where} is no longer a method")
                continue
            try:
                params = tuple(inspect.signature(value).parameters)
            except (TypeError, ValueError):
                continue
            if params != kind[1]:
                problems.append(f"{where} takes {params}, expected {kind[1]}")
        elif not isinstance(value, kind):  # type: ignore[arg-type]
            problems.append(f"{where} is a {type(value).__name__}, expected {kind}")
    in_packet = getattr(owners["paho.Client"], "_in_packet", None)
    if isinstance(in_packet, dict):
        problems += [f"paho.Client._in_packet has no {key!r}" for key in IN_PACKET_KEYS if key not in in_packet]
    problems += [f"paho.mqtt.client.{name} is missing" for name in PAHO_NAMES if not hasattr(module, name)]
    return problems


def check_once(aio_client: aiomqtt.Client) -> None:
    """``check_internals`` on the first client of the process; ``MQTTError`` naming what changed."""
    global _checked, _bytes_in
    if _checked:
        return
    problems = check_internals(aio_client, paho.MQTTMessageInfo(0))
    if not hasattr(aio_client._client, _bytes_in):
        _bytes_in = "_last_msg_in"  # paho 2.1
    if problems:
        raise MQTTError(
            "this aiomqtt/paho-mqtt release differs from the one losant_async was written against "
            f"(aiomqtt {_version('aiomqtt')}, paho-mqtt {_version('paho-mqtt')}): " + "; ".join(problems)
        )
    _checked = True


def bytes_in_attribute() -> str:
    """The name of paho's "when bytes last came in" attribute in the installed release (after ``check_once``)."""
    return _bytes_in


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"

"""Emulated workflow storage: a flow's key/value entries set, read and cleared (flows themselves never run)."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from ... import _json
from ...errors import ValidationError
from . import _engine
from ._common import Call, Handler, Server


def _entries(srv: Server, call: Call) -> dict[str, Any]:
    flow = _engine.require(srv, _engine.kinds()["flows"], call.params)
    return srv.store.docs.setdefault("flow_storage", {}).setdefault(flow["id"], {})


async def set_entry(srv: Server, call: Call) -> web.Response:
    """``value`` stored under ``key``; a missing ``value`` removes the key."""
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("a storage entry is {key, value}")
    entries = _entries(srv, call)
    if "value" in body:
        entries[body["key"]] = copy.deepcopy(body["value"])
    else:
        entries.pop(body["key"], None)
    return _engine.reply(call.route.full_name, {"success": True})


async def get_entries(srv: Server, call: Call) -> web.Response:
    return _engine.reply(call.route.full_name, copy.deepcopy(_entries(srv, call)))


async def clear_entries(srv: Server, call: Call) -> web.Response:
    """Every entry removed; the reply is what was stored."""
    entries = _entries(srv, call)
    cleared = copy.deepcopy(entries)
    entries.clear()
    return _engine.reply(call.route.full_name, cleared)


async def entries_metadata(srv: Server, call: Call) -> web.Response:
    entries = _entries(srv, call)
    used = sum(len(k) + len(_json.encode(v)) for k, v in entries.items())
    return _engine.reply(call.route.full_name, {"keysCount": len(entries), "memoryUsed": used})


HANDLERS: dict[str, Handler] = {
    "flow.set_storage_entry": set_entry,
    "flow.get_storage_entries": get_entries,
    "flow.clear_storage_entries": clear_entries,
    "flow.get_storage_entries_metadata": entries_metadata,
}

"""The console's live updates: server-sent event streams that look at the store at most twice a second while a page is open.

Each stream polls what its page shows (a device's counts, a page of devices, the
fleet's counters) on a fixed tick and sends what changed, in one message. Polling,
not the store's listeners: a state listener makes the store build a record for every
state of the whole fleet, while a page needs one device's news twice a second. With no
page open nothing runs at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ... import _json
from ..store import DeviceRecord, Store
from . import _views
from ._context import ConsoleContext

__all__ = ["MAX_STREAMS", "TICK", "Live"]

TICK = 0.5
"""Seconds between two looks at the store: a page gets at most 2 updates a second."""
FLEET_TICK = 1.0
MAX_STREAMS = 64
"""Live streams open at once (every page open in a browser holds one)."""
MAX_IDS = 200
"""Devices one list stream follows (a page shows 50)."""
MAX_POINTS = 2000
"""Chart points sent when a device page opens, and states sent in one update at most."""
CHART_WINDOW_MS = 10 * 60 * 1000
"""How far back the device chart starts."""
RECENT = 20
"""Rows of the states and commands tables."""
RECENT_LOG = 50
"""Rows of the connection log table."""
KEEPALIVE = 15.0
_ID = re.compile(r"^[0-9a-fA-F]{24}$")

Step = Callable[[], "dict[str, Any] | None"]
"""What changed since the last tick (None: nothing)."""


class Live:
    """The event streams: ``/live/devices``, ``/live/device/{id}``, ``/live/fleet``."""

    def __init__(self, context: ConsoleContext) -> None:
        self._context = context
        self._store = context.store
        self._stopping = asyncio.Event()
        self.open_streams = 0
        self.idle = asyncio.Event()
        """Set while no stream is open."""
        self.idle.set()

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/live/devices", self.devices)
        router.add_get("/live/device/{device_id}", self.device)
        router.add_get("/live/fleet", self.fleet)

    def stop(self) -> None:
        self._stopping.set()

    async def close(self, _app: web.Application) -> None:
        self.stop()

    # -- the streams ----------------------------------------------------------------------------

    async def devices(self, request: web.Request) -> web.StreamResponse:
        ids = [i for i in request.query.get("ids", "").split(",") if _ID.match(i)][:MAX_IDS]
        store = self._store
        seen: dict[str, tuple[Any, ...]] = {}
        counts: dict[str, int] = {}
        last_state: dict[str, int | None] = {}

        def step() -> dict[str, Any] | None:
            changed: dict[str, Any] = {}
            for device_id in ids:
                device = store.devices.get(device_id)
                if device is None:
                    continue
                count = store.accepted_count(device_id)
                if counts.get(device_id) != count:
                    counts[device_id] = count
                    last_state[device_id] = _views.last_state_time(store, device_id)
                now = (device.connected, device.connection_time, last_state.get(device_id))
                if seen.get(device_id) != now:
                    seen[device_id] = now
                    changed[device_id] = {"connected": now[0], "since": now[1], "last_state": now[2]}
            return {"devices": changed} if changed else None

        return await self._stream(request, step, TICK)

    async def device(self, request: web.Request) -> web.StreamResponse:
        device = self._store.devices.get(request.match_info["device_id"])
        if device is None:
            raise web.HTTPNotFound(text="no such device", content_type="text/plain")
        return await self._stream(request, _DeviceFeed(self._store, device, self._context.banned_until).step, TICK)

    async def fleet(self, request: web.Request) -> web.StreamResponse:
        store = self._store
        previous: dict[str, Any] = {}

        def step() -> dict[str, Any]:
            figures = _views.fleet_figures(store)
            now = time.monotonic()
            counters = figures.counters
            out: dict[str, Any] = {
                "time": store.clock(), "devices": figures.devices, "connected": figures.connected,
                "refusals": figures.refusals, "bans": figures.bans, "counters": dict(counters),
            }
            if previous:
                elapsed = max(now - previous["at"], 1e-3)
                out["states_per_s"] = round((counters["states_accepted"] - previous["states"]) / elapsed, 1)
                out["commands_per_s"] = round((counters["commands_sent"] - previous["commands"]) / elapsed, 1)
            previous.update(at=now, states=counters["states_accepted"], commands=counters["commands_sent"])
            return out

        return await self._stream(request, step, FLEET_TICK)

    # -- the loop --------------------------------------------------------------------------------

    async def _stream(self, request: web.Request, step: Step, tick: float) -> web.StreamResponse:
        if self.open_streams >= MAX_STREAMS:
            raise web.HTTPServiceUnavailable(text=f"{MAX_STREAMS} live pages are open already", content_type="text/plain")
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
        })
        self.open_streams += 1
        self.idle.clear()
        try:
            await response.prepare(request)
            quiet_since = time.monotonic()
            while not self._stopping.is_set():
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                message = step()
                if message is not None:
                    await response.write(b"data: " + _json.encode(message) + b"\n\n")
                    quiet_since = time.monotonic()
                    if message.get("gone"):
                        break
                elif time.monotonic() - quiet_since > KEEPALIVE:
                    await response.write(b": keepalive\n\n")
                    quiet_since = time.monotonic()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), tick)
        except ConnectionResetError:
            pass  # the page was closed
        finally:
            self.open_streams -= 1
            if not self.open_streams:
                self.idle.set()
        return response


class _DeviceFeed:
    """One device page's news: first its recent history, then what is new at each tick."""

    def __init__(self, store: Store, device: DeviceRecord, banned_until: Callable[[str], int | None]) -> None:
        self._store = store
        self._id = device.id
        self._numeric = _views.numeric_attributes(device)
        self._banned_until = banned_until
        now = store.clock()
        history = store.states(device.id, start=now - CHART_WINDOW_MS, limit=MAX_POINTS, descending=True)[::-1]
        commands = store.commands(device.id)
        log = store.connection_log(device.id)
        self._count = store.accepted_count(device.id)
        self._last_time = history[-1].time if history else now - CHART_WINDOW_MS
        self._commands = len(commands)
        self._log = len(log)
        self._status: tuple[int | None, int | None, int | None] | None = None
        self._first: dict[str, Any] | None = {
            "init": True,
            "attributes": self._numeric,
            "points": _views.numeric_points(history, self._numeric),
            "states": [_views.state_json(s) for s in history[-RECENT:][::-1]],
            "commands": [_views.command_json(c) for c in commands[-RECENT:][::-1]],
            "log": [_views.log_json(e) for e in log[-RECENT_LOG:][::-1]],
        }

    def step(self) -> dict[str, Any] | None:
        store = self._store
        device = store.devices.get(self._id)
        if device is None:
            return {"gone": True}
        out: dict[str, Any] = self._first or {}
        self._first = None
        status = (device.connected, device.connection_time, self._banned_until(self._id))
        if status != self._status:
            self._status = status
            out["status"] = {"connected": status[0], "since": status[1], "banned_until": status[2]}
        count = store.accepted_count(self._id)
        if count != self._count:
            self._count = count
            # The newest states from the last one sent on, that one again: a state in the same
            # millisecond merges into it. A late, older state shows only after a reload.
            fresh = store.states(self._id, start=self._last_time, limit=MAX_POINTS, descending=True)[::-1]
            if fresh:
                self._last_time = fresh[-1].time
                out["new_points"] = _views.numeric_points(fresh, self._numeric)
                out["new_states"] = [_views.state_json(s) for s in fresh[-RECENT:]]
        commands = store.commands(self._id)
        if len(commands) > self._commands:
            out["new_commands"] = [_views.command_json(c) for c in commands[self._commands:][-RECENT:]]
            self._commands = len(commands)
        log = store.connection_log(self._id)
        if len(log) > self._log:
            out["new_log"] = [_views.log_json(e) for e in log[self._log:][-RECENT_LOG:]]
            self._log = len(log)
        return out or None

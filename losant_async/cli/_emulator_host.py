"""The embedded emulator in a process of its own: provisioned for the fleet, shared by every shard, asked what it stored.

Running it apart keeps the broker off the simulator's core (one process was
both the fleet and the server, so each slowed the other) and lets shard
processes and local Ray actors reach one emulator over loopback.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import signal
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import LosantError, ValidationError
from ..simulator import (
    SENSOR_ATTRIBUTES,
    GatewayGroup,
    Shard,
    SimulationConfig,
    Target,
    config_from_dict,
    config_to_dict,
    device_name,
    plan_gateways,
    shard_range,
    target_from_dict,
    target_to_dict,
)
from ..simulator._pipes import PipeInbox

if TYPE_CHECKING:
    from ..emulator import Application, LocalLosant

__all__ = ["SIMULATOR_TAG", "EmulatorHost", "create_fleet"]

SIMULATOR_TAG = "losant-async-simulator"
_START_TIMEOUT = 120.0
_FREEZE_EVERY = 5.0


def create_fleet(app: Application, config: SimulationConfig, shard: Shard) -> tuple[list[str], list[GatewayGroup]]:
    """Provision one shard's devices (names from the fleet index; gateways per shard) in the emulator."""
    attributes = dict(SENSOR_ATTRIBUTES)
    tags = {"simulator": SIMULATOR_TAG}
    indices = shard_range(config.devices, shard)
    if not config.gateway:
        ids = [app.create_device(name=device_name(i), device_class="standalone", attributes=attributes,
                                 tags=tags).id for i in indices]
        return ids, []
    groups: list[GatewayGroup] = []
    ids = []
    it = iter(indices)
    for g, size in enumerate(plan_gateways(len(indices), config.rate, throttled=config.throttle)):
        gw = app.create_device(name=f"sim-gateway-{shard.index:03d}-{g:04d}", device_class="gateway", tags=tags)
        members = [
            app.create_device(name=device_name(next(it)), device_class="peripheral", parent_id=gw.id,
                              attributes=attributes, tags=tags).id
            for _ in range(size)
        ]
        ids.extend(members)
        groups.append(GatewayGroup(gateway_id=gw.id, peripheral_ids=tuple(members)))
    return ids, groups


def _host_main(config: dict[str, Any], shards: list[tuple[int, int]], events: Connection,
               control: Connection, provision: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    try:
        anyio.run(_host_async, config_from_dict(config), shards, events, control, provision)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            events.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        events.close()


async def _host_async(config: SimulationConfig, shards: list[tuple[int, int]], events: Connection,
                      control: Connection, provision: bool) -> None:
    from ..emulator import LocalLosant

    async with LocalLosant(throttle=False) as losant:
        app = losant.create_application(name="losant-async simulator")
        key = app.create_access_key()
        token = app.create_api_token(scopes=["all.Application"])
        targets = []
        for index, count in shards:
            ids, groups = create_fleet(app, config, Shard(index, count)) if provision else ([], [])
            targets.append(target_to_dict(Target(
                application_id=app.id, device_ids=tuple(ids), gateways=tuple(groups), key=key.key,
                secret=key.secret, mqtt_host=losant.mqtt_host, mqtt_port=losant.mqtt_port,
                mqtt_transport="tcp", rest_url=losant.rest_url, api_token=token, embedded=True,
            )))
        gc.freeze()
        events.send(("ready", targets, losant.console_url))
        async with anyio.create_task_group() as tg:
            tg.start_soon(_keep_history_frozen)
            await _serve(losant, PipeInbox(control, "emulator control"), events)
            tg.cancel_scope.cancel()


async def _keep_history_frozen() -> None:
    # Stored states are never freed during a run, and there are millions of objects of them:
    # a full collection walking them all pauses every connection (0.4 s per million). Moving
    # them out of the collector's sight as they come keeps every collection short.
    while True:
        await anyio.sleep(_FREEZE_EVERY)
        gc.freeze()


async def _serve(losant: LocalLosant, inbox: PipeInbox, events: Connection) -> None:
    while True:
        try:
            message = await inbox.get()
        except EOFError:
            return
        if message[0] == "stop":
            return
        if message[0] == "stored":
            expected: Mapping[str, int] = message[1]
            within: float = message[2]
            with anyio.move_on_after(within):
                for device_id, count in expected.items():
                    # accepted, not kept: the emulator's retention may have dropped the oldest
                    if count <= 0 or losant.store.accepted_count(device_id) >= count:
                        continue
                    try:
                        await losant.wait_for_states(device_id, count, within)
                    except TimeoutError:
                        break
            events.send(("stored", sum(losant.store.accepted_count(d) for d in expected)))


class EmulatorHost:
    """``async with EmulatorHost(config, shards) as host:`` the emulator runs in a child process.

    It provisions the devices of ``shards``; ``host.targets[i]`` is ``shards[i]``'s target; ``await host.wait_stored(...)``
    is the :class:`~losant_async.simulator.StoredStates` of every shard. Leaving
    stops the child (terminated if it does not stop in time).
    """

    def __init__(self, config: SimulationConfig, shards: Sequence[Shard], *, provision: bool = True) -> None:
        """``provision=False``: the application, key and token only, no devices (the caller provisions them)."""
        if not shards:
            raise ValidationError("the emulator needs at least one shard to provision")
        self._config = config
        self._shards = list(shards)
        self._provision = provision
        self.targets: list[Target] = []
        self.console_url: str | None = None
        """The emulator's web console login link (it holds the console token)."""
        self._proc: Any = None
        self._control: Connection | None = None
        self._inbox: PipeInbox | None = None
        self._lock = anyio.Lock()

    async def __aenter__(self) -> EmulatorHost:
        ctx = multiprocessing.get_context("spawn")
        events_r, events_w = ctx.Pipe(duplex=False)
        control_r, control_w = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_host_main, name="losant-async emulator",
                                 args=(config_to_dict(self._config), [(s.index, s.count) for s in self._shards],
                                       events_w, control_r, self._provision),
                                 daemon=True)
        self._proc.start()
        events_w.close()
        control_r.close()
        self._control = control_w
        self._inbox = PipeInbox(events_r, "emulator events")
        try:
            with anyio.fail_after(_START_TIMEOUT):
                message = await self._inbox.get()
            if message[0] != "ready":
                raise LosantError(f"the embedded emulator failed to start: {message[1]}")
            self.targets = [target_from_dict(t) for t in message[1]]
            self.console_url = message[2]
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()

    async def wait_stored(self, expected: Mapping[str, int], within: float) -> int:
        """Wait up to ``within`` seconds until each device has its states stored; the total stored."""
        assert self._control is not None and self._inbox is not None
        async with self._lock:
            self._control.send(("stored", dict(expected), within))
            message = await self._inbox.get()
        if message[0] != "stored":
            raise LosantError(f"the embedded emulator failed: {message[1]}")
        total: int = message[1]
        return total

    async def _close(self) -> None:
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.send(("stop",))
        proc, self._proc = self._proc, None
        if proc is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_stop_process, proc)
        if self._control is not None:
            self._control.close()
            self._control = None


def _stop_process(proc: Any) -> None:
    proc.join(15.0)
    if proc.is_alive():
        proc.terminate()
        proc.join(5.0)
    if proc.is_alive():
        proc.kill()
        proc.join()


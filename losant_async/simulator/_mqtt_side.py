"""The run's MQTT connections: devices and gateways, started as a fleet or at their ramp-up time, and their counters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio

from ..errors import LosantError, MQTTError
from ._fleet import DeviceSpec, FleetType, SimulationConfig, Target
from ._report import SimulationStats

__all__ = ["MqttSide"]


class MqttSide:
    """The MQTT devices of one run: ``async with`` starts those due at once and closes them all.

    A device's connection is its own, or its gateway's for a peripheral. With a
    ramp-up, a connection whose devices begin later starts at that time
    (:meth:`ramp`), within the fleet's connect concurrency and budget.
    """

    def __init__(self, config: SimulationConfig, target: Target, types: Sequence[FleetType],
                 specs: Sequence[DeviceSpec], stats: SimulationStats, on_command: Callable[[Any], None]) -> None:
        self._config = config
        self._target = target
        self._types = types
        self._specs = specs
        self._stats = stats
        self._on_command = on_command
        kinds = {d: types[s.kind] for d, s in zip(target.device_ids, specs, strict=True)}
        self.device_ids = [d for d in target.device_ids if kinds[d].transport == "mqtt"]
        """The devices reporting over MQTT (the ones commands can reach)."""
        self._kind_of = {d: kinds[d] for d in self.device_ids}
        self._begin = {d: s.begin for d, s in zip(target.device_ids, specs, strict=True)}
        self.connections: list[Any] = []
        """Every connection (device or gateway), for its counters; a reboot replaces its entry."""
        self._senders: dict[str, Any] = {}
        self._carriers: dict[str, Any] = {}
        self._late: list[tuple[float, Any]] = []
        self._idle: set[int] = set()
        """Connections (by id) not started: late ones not yet due, or that failed to start."""
        self._starting: dict[int, anyio.Event] = {}
        """Late connections (by id) not started yet: a state due meanwhile waits for the start."""
        self._fleet: Any = None
        self._options: dict[str, Any] = {}
        self._stats_cursor = 0
        self._stats_seen: list[tuple[int, int]] = []  # per connection: (reconnects, acked) last gathered

    async def _build(self) -> list[Any]:
        """Make every connection; return those that start with the fleet (the others wait for :meth:`ramp`)."""
        from ..mqtt import Gateway, ThrottleConfig

        cfg, tgt = self._config, self._target
        assert tgt.mqtt_host is not None and tgt.key is not None and tgt.secret is not None
        throttle: ThrottleConfig | bool = False
        if cfg.throttle:
            # The application's budget of new connections is shared by every shard.
            throttle = ThrottleConfig(connections_per_application=cfg.connections_per_window)
        options: dict[str, Any] = {"host": tgt.mqtt_host, "transport": tgt.mqtt_transport, "throttle": throttle}
        self._options = options
        if tgt.mqtt_port is not None:
            options["port"] = tgt.mqtt_port
        now: list[Any] = []
        for group in tgt.gateways:
            if not group.peripheral_ids:
                continue
            qos = self._kind_of[group.peripheral_ids[0]].qos
            gw = Gateway(group.gateway_id, tgt.key, tgt.secret, qos=qos, **options)
            # Registered before connecting: the gateway subscribes their command topics
            # with its own, and is ready only after every SUBACK.
            for pid in group.peripheral_ids:
                self._senders[pid] = await gw.peripheral(pid)
                self._carriers[pid] = gw
            self._place(gw, min(self._begin[p] for p in group.peripheral_ids), now)
        for d in self.device_ids:
            if d not in self._senders:
                dev = self._new_device(d)
                self._senders[d] = self._carriers[d] = dev
                self._place(dev, self._begin[d], now)
        for sender in self._senders.values():
            sender.on_command(self._on_command)
        self._late.sort(key=lambda item: item[0])
        return now

    def _new_device(self, device_id: str) -> Any:
        from ..mqtt import Device

        tgt = self._target
        assert tgt.key is not None and tgt.secret is not None
        return Device(device_id, tgt.key, tgt.secret, qos=self._kind_of[device_id].qos, **self._options)

    def _place(self, conn: Any, begin: float, now: list[Any]) -> None:
        self.connections.append(conn)
        if begin > 0:
            self._late.append((begin, conn))
            self._idle.add(id(conn))
            self._starting[id(conn)] = anyio.Event()
        else:
            now.append(conn)

    async def __aenter__(self) -> MqttSide:
        from ..mqtt import Fleet

        now = await self._build()
        self._stats.connections = len(self.connections)
        self._fleet = fleet = Fleet(now, connect_concurrency=self._config.connect_concurrency,
                                    throttle=self._options["throttle"])
        try:
            await fleet.__aenter__()
        except LosantError as exc:
            raise self._not_connected(now, exc) from exc
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._fleet is not None:
            await self._fleet.aclose(flush=exc_info[0] is None)

    async def send(self, device_id: str, data: dict[str, Any], ms: int) -> bool:
        """Send one state; False when it was only buffered (its connection was down)."""
        carrier = self._carriers[device_id]
        if self._starting and id(carrier) in self._starting:
            # Due before its connection has started (the ramp's start is a task of its own).
            await self._starting[id(carrier)].wait()
        # Read before the send: a state written to a connected session, or only buffered.
        connected: bool = carrier.connected
        await self._senders[device_id].send_state(data, time=ms)
        return connected

    async def send_many(self, device_id: str, states: list[dict[str, Any]]) -> None:
        """An array of states on the device's state topic (its gateway's connection for a peripheral).

        QoS 1 whatever the scenario says: the broker's acknowledgements pace the history
        (at QoS 0 a fast sender outran the emulator and lost a third of a day's history),
        and a cut connection re-sends what was not acknowledged.
        """
        await self._carriers[device_id].publish(f"losant/{device_id}/state", states, qos=1)

    async def ramp(self, start: float) -> None:
        """Start each late connection when its first device begins (``start`` + its begin), until cancelled."""
        if not self._late:
            return
        try:
            async with anyio.create_task_group() as tg:
                for begin, conn in self._late:
                    delay = start + begin - anyio.current_time()
                    if delay > 0:
                        await anyio.sleep(delay)
                    tg.start_soon(self._join, conn)
        finally:
            # Ended early (the run stopped): a lane waiting for a start that will not come goes on.
            for event in self._starting.values():
                event.set()

    async def _join(self, conn: Any) -> None:
        try:
            await self._fleet.add(conn)
            self._idle.discard(id(conn))
        except LosantError as exc:
            self._stats.record_error(MQTTError(f"{conn.device_id} could not connect at its ramp-up time: "
                                               f"{type(exc).__name__}: {exc}"))
        finally:
            self._starting.pop(id(conn)).set()

    async def reboot(self, device_id: str, seconds: float) -> None:
        """Off for ``seconds``, then on again: a direct device disconnects and reconnects (a peripheral only pauses)."""
        old: Any = self._carriers.get(device_id)
        direct = old is not None and self._senders.get(device_id) is old
        try:
            if direct:
                with anyio.CancelScope(shield=True):
                    await old.aclose(flush=False)
            await anyio.sleep(seconds)
            if direct:
                new = self._new_device(device_id)
                new.on_command(self._on_command)
                await self._fleet.add(new)
                self._swap(old, new)
                self._stats.reconnects += 1
        except LosantError as exc:
            self._stats.record_error(exc)

    def _swap(self, old: Any, new: Any) -> None:
        """``new`` replaces ``old`` (the same device, connected again) for sending and for counters."""
        device_id = old.device_id
        self._senders[device_id] = self._carriers[device_id] = new
        for i, conn in enumerate(self.connections):
            if conn is old:
                # The totals keep what the old connection counted; the new one counts from zero.
                if i < len(self._stats_seen):
                    self._stats_seen[i] = (0, 0)
                self.connections[i] = new
                break

    async def drain(self) -> None:
        """Wait, at most ``drain_timeout``, until every connection has written (QoS 1: had acknowledged) its queue."""
        with anyio.move_on_after(self._config.drain_timeout):
            async with anyio.create_task_group() as tg:
                for conn in self.connections:
                    if id(conn) not in self._idle:  # nothing was ever queued on one not started
                        tg.start_soon(self._flush_one, conn)

    async def _flush_one(self, conn: Any) -> None:
        try:
            await conn.flush()
        except LosantError as exc:
            self._stats.record_error(exc)

    def refresh(self, count: int | None = None) -> None:
        """Gather the counters of the next ``count`` connections in turn (all: ``None``); totals move by the change."""
        conns = self.connections
        stats = self._stats
        stats.connected = sum(1 for conn in conns if conn.connected)
        seen = self._stats_seen
        if len(seen) != len(conns):
            seen[:] = [(0, 0)] * len(conns)
        reconnects = stats.reconnects
        acked = stats.states_acked or 0
        cursor = self._stats_cursor
        for _ in range(len(conns) if count is None else min(count, len(conns))):
            st = conns[cursor].stats
            r, a = st.reconnects, st.acked
            old_r, old_a = seen[cursor]
            reconnects += r - old_r
            acked += a - old_a
            seen[cursor] = (r, a)
            cursor = (cursor + 1) % len(conns)
        self._stats_cursor = cursor
        stats.reconnects = reconnects
        if stats.states_acked is not None:
            stats.states_acked = acked

    def _not_connected(self, tried: Sequence[Any], exc: LosantError) -> MQTTError:
        """The fleet could not start: an error naming the devices that could not connect, and why."""
        tgt = self._target
        names = {d: s.name for d, s in zip(tgt.device_ids, self._specs, strict=True)}
        peripherals = {g.gateway_id: g.peripheral_ids for g in tgt.gateways}
        failed: list[str] = []
        for conn in tried:
            # The device layer keeps the error that stopped a device; the fleet raises only the first.
            if getattr(conn, "_failure", None) is None:
                continue
            device_id = conn.device_id
            if device_id in peripherals:
                carried = ", ".join(names[p] for p in peripherals[device_id][:3])
                failed.append(f"gateway {device_id} (carrying {carried})")
            else:
                failed.append(f"{names.get(device_id, '?')} ({device_id})")
        if not failed:
            return MQTTError(f"the fleet could not connect: {type(exc).__name__}: {exc}")
        shown = "; ".join(failed[:5]) + (f"; and {len(failed) - 5} more" if len(failed) > 5 else "")
        return MQTTError(f"{len(failed)} of {len(tried)} devices could not connect ({shown}): "
                         f"{type(exc).__name__}: {exc}")

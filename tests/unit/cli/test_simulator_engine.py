"""The engine's reporting loop with a fake sender: no sockets, counts and order instead of timing."""

from __future__ import annotations

from collections import defaultdict

import anyio
import pytest

from losant_async.errors import ConnectionLostError, UnauthorizedError
from losant_async.simulator import Phase, Simulation, SimulationConfig, Target, expected_states


def _sim(devices: int, rate: float, duration: float) -> Simulation:
    ids = tuple(f"{i:024x}" for i in range(devices))
    target = Target(application_id="a" * 24, device_ids=ids, mqtt_host="127.0.0.1", key="k", secret="s")
    return Simulation(SimulationConfig(devices=devices, rate=rate, duration=duration, seed=1), target)


async def test_every_scheduled_state_is_sent_in_phase_order_with_increasing_times() -> None:
    sim = _sim(devices=8, rate=20.0, duration=0.3)
    calls: list[tuple[str, int]] = []
    by_device: dict[str, list[int]] = defaultdict(list)

    async def send(device_id: str, data: dict[str, float], ms: int) -> None:
        assert set(data) == {"temperature", "humidity", "battery"}
        calls.append((device_id, ms))
        by_device[device_id].append(ms)

    # _report is the engine's scheduler; run() adds only the transports around it.
    await sim._report(send, None)
    assert len(calls) == sim.stats.states_sent == expected_states(8, 20.0, 0.3)
    # Devices start staggered through the period, in order, not all at once.
    assert [d for d, _ in calls[:8]] == list(sim.target.device_ids)
    # Losant merges states of one device that share a millisecond: times strictly increase.
    for times in by_device.values():
        assert times == sorted(set(times))


async def test_a_send_that_blocks_holds_back_only_its_own_lane_of_devices() -> None:
    from losant_async.simulator._lanes import _LANE_DEVICES

    sim = _sim(devices=3 * _LANE_DEVICES, rate=10.0, duration=0.2)
    ids = sim.target.device_ids
    others = set(ids[_LANE_DEVICES:])
    first_seen: set[str] = set()
    others_sent = anyio.Event()
    stuck = ids[0]

    async def send(device_id: str, data: dict[str, float], ms: int) -> None:
        first_seen.add(device_id)
        if others <= first_seen:
            others_sent.set()
        if device_id == stuck and not others_sent.is_set():
            # Unblocked only once every device of the other lanes has sent: one task for the whole
            # fleet would wait here for ever (and fail_after would say so).
            await others_sent.wait()

    with anyio.fail_after(20):
        await sim._report(send, None)
    assert sim.stats.states_sent == expected_states(3 * _LANE_DEVICES, 10.0, 0.2)


def test_progress_gathers_device_statistics_a_slice_at_a_time_and_the_totals_add_up() -> None:
    from losant_async.simulator._engine import _STATS_PER_PROGRESS

    class Stats:
        def __init__(self, reconnects: int, acked: int) -> None:
            self.reconnects, self.acked = reconnects, acked

    class Conn:
        connected = True

        def __init__(self, i: int) -> None:
            self.stats = Stats(i % 3, i)

    n = 2 * _STATS_PER_PROGRESS + 7
    ids = tuple(f"{i:024x}" for i in range(n))
    target = Target(application_id="a" * 24, device_ids=ids, mqtt_host="127.0.0.1", key="k", secret="s")
    sim = Simulation(SimulationConfig(devices=n, qos=1), target)
    conns = [Conn(i) for i in range(n)]
    assert sim._mqtt is not None
    sim._mqtt.connections = conns  # type: ignore[assignment]
    sim.progress()
    assert sim.stats.reconnects == sum(i % 3 for i in range(_STATS_PER_PROGRESS))  # one slice so far
    sim.progress()
    sim.progress()
    assert sim.stats.reconnects == sum(i % 3 for i in range(n)) and sim.stats.states_acked == sum(range(n))
    conns[5].stats.reconnects += 10  # a device reconnected: the next pass over it adds exactly that
    sim._mqtt.refresh()
    assert sim.stats.reconnects == sum(i % 3 for i in range(n)) + 10
    assert sim.progress().connected == n


async def test_stop_ends_the_reporting_early() -> None:
    sim = _sim(devices=4, rate=10.0, duration=30.0)
    sent = 0

    async def send(device_id: str, data: dict[str, float], ms: int) -> None:
        nonlocal sent
        sent += 1
        if sent == 6:
            sim.stop()

    with anyio.fail_after(10):
        await sim._report(send, None)
    assert sim.stats.states_sent == 6
    assert sim.progress().states_sent == 6


async def test_a_failed_send_is_counted_and_the_run_goes_on() -> None:
    sim = _sim(devices=2, rate=20.0, duration=0.2)

    async def send(device_id: str, data: dict[str, float], ms: int) -> None:
        if device_id == sim.target.device_ids[0]:
            raise ConnectionLostError("cut")

    await sim._report(send, None)
    per_device = expected_states(2, 20.0, 0.2) // 2
    assert sim.stats.errors == per_device and sim.stats.states_sent == per_device
    assert sim.stats.errors_by_type == {"ConnectionLostError": per_device}


async def test_refused_credentials_end_the_run() -> None:
    sim = _sim(devices=3, rate=20.0, duration=5.0)

    async def send(device_id: str, data: dict[str, float], ms: int) -> None:
        raise UnauthorizedError(401, "Unauthorized", "bad token")

    with anyio.fail_after(10), pytest.raises(BaseException) as info:
        await sim._report(send, None)
    def leaves(exc: BaseException) -> list[BaseException]:
        inner = getattr(exc, "exceptions", None)
        return [leaf for e in inner for leaf in leaves(e)] if inner else [exc]

    assert leaves(info.value) and all(isinstance(e, UnauthorizedError) for e in leaves(info.value))


class _Command:
    def __init__(self, device_id: str, round_no: int, sent_ms: int) -> None:
        self.name = "simulate"
        self.device_id = device_id
        self.payload = {"round": round_no, "sent_ms": sent_ms}


async def test_commands_delivered_by_a_plain_loop_callback_end_the_wait() -> None:
    import asyncio

    from losant_async._time import now_ms

    sim = _sim(devices=2, rate=1.0, duration=1.0)
    sim.stats.commands_sent = 2
    loop = asyncio.get_running_loop()
    # As a device's network code does: outside any task, where anyio < 4.7 could not make an Event.
    loop.call_soon(sim._on_command, _Command(sim.target.device_ids[0], 1, now_ms()))
    loop.call_soon(sim._on_command, _Command(sim.target.device_ids[0], 1, now_ms()))  # a duplicate
    loop.call_soon(sim._on_command, _Command(sim.target.device_ids[1], 1, now_ms() - 40))
    with anyio.fail_after(10):
        await sim._commander.wait()
    assert sim.stats.commands_received == 2 and sim.stats.commands_duplicate == 1
    assert sim.stats.command_latency.count == 2


async def test_the_wait_for_late_commands_is_bounded_and_they_count_as_lost() -> None:
    ids = tuple(f"{i:024x}" for i in range(2))
    target = Target(application_id="a" * 24, device_ids=ids, mqtt_host="127.0.0.1", key="k", secret="s")
    sim = Simulation(SimulationConfig(devices=2, duration=1.0, command_wait=0.2), target)
    sim.stats.commands_sent = 3
    with anyio.fail_after(10):
        await sim._commander.wait()
    assert sim.stats.commands_received == 0


def _commanding_target(devices: int) -> Target:
    """A target with a REST API, so the controller sends commands (to a fake client, never to the URL)."""
    ids = tuple(f"{i:024x}" for i in range(devices))
    return Target(application_id="a" * 24, device_ids=ids, mqtt_host="127.0.0.1", key="k", secret="s",
                  rest_url="http://127.0.0.1:9", api_token="t")


class _StuckClient:
    """A REST client whose command calls hang until the test releases them: a command path slower than the rounds."""

    def __init__(self) -> None:
        self.started = 0
        self.devices_named = 0
        self.stuck = anyio.Event()
        self.release = anyio.Event()
        self.devices = self

    async def send_command(self, **kw: object) -> None:
        self.started += 1
        self.devices_named += len(kw["multi_device_command"]["deviceIds"])  # type: ignore[index]
        if self.started >= 4:
            self.stuck.set()
        await self.release.wait()


class _SlowClient(_StuckClient):
    """A REST client whose command calls hang until four are in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.four = self.release = self.stuck


async def test_a_slow_command_call_does_not_hold_back_the_next_rounds() -> None:
    target = _commanding_target(4)
    sim = Simulation(SimulationConfig(devices=4, rate=1.0, duration=60.0, command_interval=0.01), target)
    client = _SlowClient()

    async def send(device_id: str, data: dict[str, float], ms: int) -> None:
        return None

    async def stop_when_four() -> None:
        await client.four.wait()
        sim.stop()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_when_four)
            await sim._report(send, client)  # type: ignore[arg-type]
    # Rounds went on while the first call hung; each finished call counted its devices.
    assert client.started >= 4
    assert sim.stats.commands_sent == client.devices_named >= client.started * sim.config.command_batch


class _WatchedSimulation(Simulation):
    """A Simulation that says when its reporting ends (the phase turns to draining), for the test to act then."""

    draining: anyio.Event | None = None

    @property
    def _phase(self) -> Phase:
        return self.__dict__["_watched_phase"]  # type: ignore[no-any-return]

    @_phase.setter
    def _phase(self, value: Phase) -> None:
        self.__dict__["_watched_phase"] = value
        if value == "draining" and self.draining is not None:
            self.draining.set()


async def test_rounds_the_controller_never_sent_count_as_unsent_and_fail_the_run() -> None:
    from losant_async.simulator import build_report

    target = _commanding_target(4)
    config = SimulationConfig(devices=4, rate=10.0, duration=0.5, command_interval=0.01)
    sim = _WatchedSimulation(config, target)
    sim.draining = anyio.Event()
    client = _StuckClient()

    async def send(device_id: str, data: dict[str, float], ms: int) -> None:
        return None

    async def release_after_the_reporting() -> None:
        # Four calls hang: every later round waits for one of them until the reporting is over.
        await client.stuck.wait()
        assert sim.draining is not None
        await sim.draining.wait()
        client.release.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(release_after_the_reporting)
            await sim._report(send, client)  # type: ignore[arg-type]
    assert client.started == 4
    due = config.commands_scheduled()
    assert due == 49 * config.command_batch  # rounds at 0.01 .. 0.49 s
    sent = client.devices_named  # four calls, each of the rounds due when it started
    assert sim.stats.commands_scheduled == due and sim.stats.commands_sent == sent < due
    sim.stats.commands_received = sim.stats.commands_sent  # every command sent arrived ...
    report = build_report(config, sim.stats, gateways=0, run_seconds=0.5, connect_seconds=0.0,
                          states_stored=sim.stats.states_sent, interrupted=False, embedded=True,
                          peak_rss=None, machine={})
    # ... and still the run failed: commands were due and never sent.
    assert report.commands_lost == 0 and report.commands_unsent == due - sent > 0
    assert not report.ok
    data = report.to_dict()
    assert data["commands_scheduled"] == due and data["commands_unsent"] == due - sent and data["ok"] is False


async def test_rounds_due_while_calls_were_slow_go_together_in_one_call_without_a_device_twice() -> None:
    target = _commanding_target(200)
    config = SimulationConfig(devices=200, rate=10.0, duration=1.5, command_interval=0.05)
    sim = Simulation(config, target)
    release = anyio.Event()
    calls: list[list[str]] = []

    class Client:
        @property
        def devices(self) -> Client:
            return self

        async def send_command(self, **kw: object) -> None:
            calls.append(list(kw["multi_device_command"]["deviceIds"]))  # type: ignore[index]
            await release.wait()

    async def send(device_id: str, data: dict[str, float], ms: int) -> None:
        # The first calls hang until 0.8 s of states went out (16 rounds due by then, 4 in flight).
        if sim.stats.states_sent >= 1600:
            release.set()

    with anyio.fail_after(30):
        await sim._report(send, Client())  # type: ignore[arg-type]
    batch = config.command_batch
    assert max(len(c) for c in calls) > batch  # rounds that fell due meanwhile went in one call
    assert all(len(set(c)) == len(c) for c in calls)
    assert sim.stats.commands_sent == sum(len(c) for c in calls) <= sim.stats.commands_scheduled
    assert sim.stats.commands_sent % batch == 0


async def test_a_controller_that_keeps_up_sends_every_round_due_and_no_more() -> None:
    target = _commanding_target(4)
    config = SimulationConfig(devices=4, rate=10.0, duration=0.7, command_interval=0.2)
    sim = Simulation(config, target)
    calls: list[object] = []

    class Client:
        @property
        def devices(self) -> Client:
            return self

        async def send_command(self, **kw: object) -> None:
            calls.append(kw["multi_device_command"])

    client = Client()

    async def send(device_id: str, data: dict[str, float], ms: int) -> None:
        return None

    with anyio.fail_after(30):
        await sim._report(send, client)  # type: ignore[arg-type]
    # Rounds at 0.2, 0.4, 0.6 s; none at or after the end of the reporting.
    assert sum(len(c["deviceIds"]) for c in calls) == 3  # type: ignore[index]
    assert sim.stats.commands_scheduled == sim.stats.commands_sent == 3
    assert sim.progress().commands_scheduled == 3


async def test_shards_against_losant_split_the_applications_connection_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import losant_async.mqtt as mqtt
    from losant_async.simulator import Shard

    seen: list[object] = []

    class Stop(Exception):
        pass

    def fake_fleet(devices: object, *, connect_concurrency: int, throttle: object) -> object:
        seen.append(throttle)
        raise Stop

    monkeypatch.setattr(mqtt, "Fleet", fake_fleet)
    config = SimulationConfig(devices=40, rate=1.0, duration=1.0, throttle=True, shard=Shard(2, 4))
    ids = tuple(f"{i:024x}" for i in range(config.shard_devices))
    sim = Simulation(config, Target(application_id="a" * 24, device_ids=ids, mqtt_host="broker.example",
                                    key="k", secret="s"))
    with pytest.raises(Stop):
        await sim.run()
    (throttle,) = seen
    assert isinstance(throttle, mqtt.ThrottleConfig)
    assert throttle.connections_per_application == 75  # 300 per 15 s shared by 4 shards

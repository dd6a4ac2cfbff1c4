"""Bans on any host: a refusal of credentials that connected before is waited out, not fatal."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from losant_async.errors import AuthenticationRefusedError
from losant_async.mqtt import Backoff, ConnectionEvent, ConnectionState, Device, DisconnectKind
from tests.support.mqtt_peer import scripted_broker

DEV = "0123456789abcdef01234567"
# The ban waits, shrunk so the test does not wait 30 s (the policy is the same: ban_delay).
SHORT_BANS = Backoff(initial=0.05, cap=0.2, ban_initial=0.05, ban_cap=0.4)


async def test_a_ban_on_a_private_host_is_waited_out_and_the_device_resumes() -> None:
    async with scripted_broker() as broker:
        events: list[ConnectionEvent] = []
        async with Device(DEV, "key", "secret", host=broker.host, port=broker.port, transport="tcp",
                          backoff=SHORT_BANS, connect_timeout=5.0) as device:
            stream = device.events()

            async def record() -> None:
                async for event in stream:
                    events.append(event)

            recorder = asyncio.ensure_future(record())
            # The broker bans: it drops the connection and refuses the next three CONNECTs with code 5.
            broker.refuse = [5, 5, 5]
            broker.cut()
            await broker.wait_for(lambda: len(broker.connects) >= 5)
            await device.wait_connected(timeout=30)
            await device.send_state({"n": 1}, time=1_700_000_000_000)
            await device.flush()
            await broker.wait_for(lambda: any(t == f"losant/{DEV}/state" for t, _ in broker.published))
            stream.close()
            await recorder
        assert [c.return_code for c in broker.connects] == [0, 5, 5, 5, 0]
        bans = [e for e in events if e.kind is DisconnectKind.THROTTLE_BAN]
        assert len(bans) == 3 and all(e.state is ConnectionState.RECONNECTING for e in bans)
        # Growing on repeats (jittered by at most a quarter) and never above the cap.
        delays = [e.delay or 0.0 for e in bans]
        assert 0.05 <= delays[0] <= 0.0625 and 0.1 <= delays[1] <= 0.125 and 0.2 <= delays[2] <= 0.25
        assert all(e.device_id == DEV and e.at > 0 for e in events)
        assert not any(e.state is ConnectionState.FAILED for e in events)
        assert msgspec.json.decode(broker.published[-1][1]) == {"data": {"n": 1}, "time": 1_700_000_000_000}


async def test_a_refusal_on_the_first_connect_is_bad_credentials() -> None:
    async with scripted_broker() as broker:
        broker.refuse = [5]
        with pytest.raises(AuthenticationRefusedError) as info:
            async with Device("0123456789abcdef0123456a", "key", "wrong", host=broker.host, port=broker.port,
                              transport="tcp", backoff=SHORT_BANS, connect_timeout=5.0):
                pass
        assert info.value.return_code == 5
        assert len(broker.connects) == 1


async def test_credentials_that_connected_before_in_this_process_are_banned_not_refused() -> None:
    async with scripted_broker() as broker:
        kwargs = dict(host=broker.host, port=broker.port, transport="tcp", backoff=SHORT_BANS, connect_timeout=5.0)
        async with Device("0123456789abcdef0123456b", "key", "secret", **kwargs):  # type: ignore[arg-type]
            pass
        # A new Device with the same credentials, refused twice: the process knows they are good.
        broker.refuse = [4, 4]
        async with Device("0123456789abcdef0123456b", "key", "secret", **kwargs) as again:  # type: ignore[arg-type]
            assert again.connected
        assert [c.return_code for c in broker.connects] == [0, 4, 4, 0]


# The emulator's store clock, sped up: its 30 s ban lasts 30 / SPEED real seconds, and the device's
# ban_initial is shrunk by the same factor, so the test keeps Losant's proportions in seconds.
SPEED = 10


async def test_an_emulator_ban_refused_with_connack_3_is_waited_out_with_one_refused_attempt() -> None:
    """The emulator bans a device that bursts past 30 messages per 15 s on a topic for 30 s, and
    refuses it with CONNACK 3 (server unavailable) meanwhile; a refused attempt extends the ban
    ("reconnecting at once only extends the ban"). Losant documents the ban, not the code.

    The device (throttle off, so it bursts; no burst heuristics on a private host) must take the
    refusal as a ban: one refused attempt, then a wait of at least ban_initial, and back within
    ban_initial x 1.25 + 5 s of the cut (the issue's bound).
    """
    import time

    from .conftest import running_emulator

    t0, base = time.monotonic(), 1_700_000_000_000

    def clock() -> int:
        return base + int((time.monotonic() - t0) * 1000 * SPEED)

    ban_initial = 30.0 / SPEED
    backoff = Backoff(initial=0.05, cap=0.3, ban_initial=ban_initial, ban_cap=3600.0 / SPEED,
                      refusal_floor=5.0 / SPEED)
    async with running_emulator(throttle=True, clock=clock) as losant:
        app = losant.create_application(name="bans")
        key = app.create_access_key()
        made = app.create_device(name="burst", attributes={"n": "number"})
        async with Device(made.id, key.key, key.secret, host=losant.mqtt_host, port=losant.mqtt_port,
                          transport="tcp", throttle=False, backoff=backoff, connect_timeout=5.0) as device:
            events = device.events()
            for n in range(40):  # past 30 in a window: the emulator closes the connection and bans
                await device.send_state({"n": n})
            lost = await anext_state(events, ConnectionState.DISCONNECTED)
            refused_before = losant.store.counters.mqtt_connects_refused
            back = await anext_state(events, ConnectionState.CONNECTED, timeout=60)
            refused = losant.store.counters.mqtt_connects_refused - refused_before
            outage = back.at - lost.at
            events.close()
        assert refused <= 1, f"{refused} refused attempts, each extending the ban"
        assert ban_initial <= outage <= ban_initial * 1.25 + 5.0, f"outage {outage:.2f} s"


async def anext_state(events: Any, state: ConnectionState, timeout: float = 10.0) -> ConnectionEvent:
    """The next event in ``state``, within ``timeout`` in all (other events keep coming meanwhile)."""

    async def scan() -> ConnectionEvent:
        while True:
            event: ConnectionEvent = await events.get()
            if event.state is state:
                return event

    return await asyncio.wait_for(scan(), timeout)

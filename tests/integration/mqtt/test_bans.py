"""Bans on any host: a refusal of credentials that connected before is waited out, not fatal."""

from __future__ import annotations

import asyncio

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

"""Keepalive without a task per device: PINGREQs go out on an idle connection, and a silent broker is noticed."""

from __future__ import annotations

import asyncio

from losant_async.mqtt import Backoff, ConnectionState, Device
from tests.support.mqtt_peer import scripted_broker

DEV = "0123456789abcdef0123456b"


async def test_an_idle_device_pings_every_keepalive_and_stays_connected() -> None:
    async with scripted_broker() as broker:
        before = asyncio.all_tasks()
        async with Device(DEV, "key", "secret", host=broker.host, port=broker.port, transport="tcp",
                          keepalive=1, connect_timeout=5.0) as device:
            # One task per device (its task group), none for the keepalive (aiomqtt runs one per client).
            new = asyncio.all_tasks() - before
            ours = [t for t in new if _library_code(t)]
            assert [t.get_name() for t in ours] == [f"losant-mqtt:{DEV}"]
            # Nothing is sent: only the keepalive timer can make these PINGREQs.
            await broker.wait_for(lambda: broker.pings >= 3, timeout=15)
            assert device.connected
        assert len(broker.connects) == 1


def _library_code(task: asyncio.Task[object]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return "losant_async" in filename or "aiomqtt" in filename


async def test_a_broker_that_stops_answering_pings_is_taken_as_a_lost_connection() -> None:
    async with scripted_broker() as broker:
        broker.answer_pings = False
        async with Device(DEV, "key", "secret", host=broker.host, port=broker.port, transport="tcp",
                          keepalive=1, connect_timeout=5.0, backoff=Backoff(initial=0.05, cap=0.1)) as device:
            events = device.events()
            async with events:
                async def lost() -> str:
                    async for event in events:
                        if event.state is ConnectionState.DISCONNECTED:
                            return event.reason
                    return ""

                reason = await asyncio.wait_for(lost(), 15)
            assert broker.pings >= 1
            assert reason
            # And the supervisor reconnects.
            await broker.wait_for(lambda: len(broker.connects) >= 2, timeout=15)

"""Commands sent over REST reach devices while the fleet keeps reporting state.

With amqtt as the broker, every message was matched against every subscription on
one shared queue: at a few thousand states/s with a few hundred subscribed devices
the queue grew without bound and commands arrived only after the fleet stopped.
Here the fleet keeps reporting until every command has arrived (or a generous
timeout passes), so a stall fails the test instead of showing up as latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from losant_async.rest import LosantClient
from losant_async.testing import LocalLosant
from tests.integration.emulator.emulator_support import remaining_length

DEVICES = 300
STATE_RATE = 10.0
"""States per second per device: 3,000 states/s in all, well past what amqtt carried here."""
ROUNDS = 6
PER_ROUND = 40
TIMEOUT = 60.0


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + remaining_length(len(body)) + body


class _Device(asyncio.Protocol):
    """A minimal MQTT device: CONNECT, SUBSCRIBE to its command topic, count commands."""

    def __init__(self, device_id: str, key: str, secret: str, commands: dict[str, int], arrived: asyncio.Event) -> None:
        self.device_id = device_id
        self._connect = _packet(
            0x10,
            _string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60)
            + _string(device_id) + _string(key) + _string(secret),
        )
        self._state_head = _string(f"losant/{device_id}/state")
        self.ready = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._commands = commands
        self._arrived = arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._connect)
        topic = _string(f"losant/{self.device_id}/command")
        transport.write(_packet(0x82, b"\x00\x01" + topic + b"\x00"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 2:
            length, shift, pos = 0, 0, 1
            while True:
                if pos >= len(self._buffer):
                    return
                byte = self._buffer[pos]
                pos += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            if len(self._buffer) < pos + length:
                return
            kind = self._buffer[0] >> 4
            del self._buffer[:pos + length]
            if kind == 9 and not self.ready.done():  # SUBACK
                self.ready.set_result(None)
            elif kind == 3:
                self._commands[self.device_id] = self._commands.get(self.device_id, 0) + 1
                self._arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"{self.device_id} lost its connection"))

    def report(self, value: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            payload = json.dumps({"data": {"temperature": value}}).encode()
            self.transport.write(_packet(0x30, self._state_head + payload))


@pytest_asyncio.fixture
async def losant() -> AsyncIterator[LocalLosant]:
    async with LocalLosant(ws_port=None) as emulator:
        yield emulator


@pytest.mark.timeout(180)
async def test_rest_commands_reach_devices_while_the_fleet_reports(losant: LocalLosant) -> None:
    app = losant.create_application(name="load")
    ids = [app.create_device(name=f"d{i}", attributes={"temperature": "number"}).id for i in range(DEVICES)]
    key = app.create_access_key()
    token = app.create_api_token()
    loop = asyncio.get_running_loop()
    commands: dict[str, int] = {}
    arrived = asyncio.Event()
    fleet: list[_Device] = []
    for device_id in ids:
        _, device = await loop.create_connection(
            lambda d=device_id: _Device(d, key.key, key.secret, commands, arrived), "127.0.0.1", losant.mqtt_port
        )
        fleet.append(device)
    await asyncio.wait_for(asyncio.gather(*(d.ready for d in fleet)), TIMEOUT)

    stop = asyncio.Event()

    async def report() -> None:
        tick = 0
        while not stop.is_set():
            tick += 1
            for device in fleet:
                device.report(tick)
            await asyncio.sleep(1 / STATE_RATE)

    reporter = asyncio.create_task(report())
    sent = 0
    try:
        async with LosantClient(token, url=losant.rest_url) as client:
            for round_ in range(ROUNDS):
                chosen = ids[round_ * PER_ROUND:(round_ + 1) * PER_ROUND]
                await client.devices.send_command(
                    application_id=app.id,
                    multi_device_command={"name": "blink", "payload": round_, "deviceIds": chosen},
                )
                await client.device.send_command(
                    application_id=app.id, device_id=ids[-1 - round_], device_command={"name": "one", "payload": round_}
                )
                sent += len(chosen) + 1
                await asyncio.sleep(0.5)

            async def all_arrived() -> None:
                while sum(commands.values()) < sent:
                    arrived.clear()
                    await arrived.wait()

            # the fleet is still reporting: a command queued behind state traffic never comes
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(all_arrived(), TIMEOUT)
            reporting = not reporter.done()
    finally:
        stop.set()
        await reporter
        for device in fleet:
            if device.transport is not None:
                device.transport.close()

    received = sum(commands.values())
    assert reporting
    assert received == sent, f"{received} of {sent} commands arrived while the fleet reported"
    expected = {device_id: 1 for device_id in ids[:ROUNDS * PER_ROUND]}
    for round_ in range(ROUNDS):
        expected[ids[-1 - round_]] = expected.get(ids[-1 - round_], 0) + 1
    assert commands == expected
    assert losant.counters.states_accepted > DEVICES * 2

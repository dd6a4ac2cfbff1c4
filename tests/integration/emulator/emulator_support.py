"""Helpers for the emulator's integration tests: a fake clock, a raw MQTT 3.1.1 client, schema checks."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

from losant_async.testing import AccessKey, Application, Device, LocalLosant

SCHEMAS = Path(__file__).resolve().parents[3] / "losant_async" / "_spec" / "schemas"
WAIT = 5.0


class FakeClock:
    """Epoch milliseconds that move only when the test says so."""

    def __init__(self, start: int = 1_800_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@functools.cache
def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.json"):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((f"urn:losant:{path.stem}", Resource.from_contents(contents)))
    return Registry().with_resources(resources)


@functools.cache
def _validator(name: str) -> jsonschema.Draft7Validator:
    contents = json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))
    # "#/definitions/<name>" means spec/schemas/<name>.json (spec/README.md)
    text = json.dumps(contents).replace('"#/definitions/', '"urn:losant:')
    fixed = json.loads(text)
    return jsonschema.Draft7Validator(fixed, registry=_registry())


def assert_schema(name: str, body: Any) -> None:
    """Fail with the first schema error of ``body`` against spec/schemas/<name>.json."""
    errors = sorted(_validator(name).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{name}: {errors[0].message} at {list(errors[0].path)}"


# -- a raw MQTT 3.1.1 client: exact packets and return codes, no library guessing ---------------


def _string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@dataclass
class Packet:
    kind: int
    flags: int
    body: bytes


class RawMqtt:
    """One TCP connection speaking just enough MQTT 3.1.1 for the tests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._packet_id = 0
        self.inbox: asyncio.Queue[Packet | None] = asyncio.Queue()
        self._reader_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def open(cls, port: int) -> RawMqtt:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def _read_loop(self) -> None:
        try:
            while True:
                head = await self.reader.readexactly(1)
                length, shift = 0, 0
                while True:
                    byte = (await self.reader.readexactly(1))[0]
                    length += (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await self.reader.readexactly(length) if length else b""
                await self.inbox.put(Packet(head[0] >> 4, head[0] & 0x0F, body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            await self.inbox.put(None)

    def _send(self, first: int, body: bytes) -> None:
        self.writer.write(bytes([first]) + remaining_length(len(body)) + body)

    async def next_packet(self, timeout: float = WAIT) -> Packet | None:
        """The next packet, or None at EOF."""
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def expect(self, kind: int, timeout: float = WAIT) -> Packet:
        while True:
            packet = await self.next_packet(timeout)
            assert packet is not None, f"connection closed while waiting for packet type {kind}"
            if packet.kind == kind:
                return packet

    async def connect(
        self, client_id: str, username: str | None, password: str | None, *, clean: bool = True, keepalive: int = 15
    ) -> int:
        """Send CONNECT and return the CONNACK return code."""
        flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
        body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + _string(client_id)
        if username is not None:
            body += _string(username)
        if password is not None:
            body += _string(password)
        self._send(0x10, body)
        packet = await self.expect(2)
        return packet.body[1]

    async def subscribe(self, topic: str, qos: int = 0) -> int:
        """SUBSCRIBE one filter; the SUBACK's return code (0x80 = refused)."""
        self._packet_id += 1
        self._send(0x82, struct.pack("!H", self._packet_id) + _string(topic) + bytes([qos]))
        packet = await self.expect(9)
        return packet.body[2]

    async def publish(self, topic: str, payload: bytes | str | dict[str, Any], *, qos: int = 0, retain: bool = False) -> None:
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        data = data.encode() if isinstance(data, str) else data
        body = _string(topic)
        if qos:
            self._packet_id += 1
            body += struct.pack("!H", self._packet_id)
        self._send(0x30 | (qos << 1) | (1 if retain else 0), body + data)
        await self.writer.drain()

    async def ping(self) -> None:
        """A round trip: everything sent before it has been read by the broker."""
        self._send(0xC0, b"")
        await self.expect(13)

    async def next_publish(self, timeout: float = WAIT) -> tuple[str, bytes]:
        packet = await self.expect(3, timeout)
        (length,) = struct.unpack("!H", packet.body[:2])
        topic = packet.body[2:2 + length].decode()
        offset = 2 + length + (2 if (packet.flags >> 1) & 3 else 0)
        return topic, packet.body[offset:]

    async def wait_closed(self, timeout: float = WAIT) -> None:
        """Wait for EOF from the broker, skipping any packets before it."""
        while True:
            packet = await asyncio.wait_for(self.inbox.get(), timeout)
            if packet is None:
                return

    async def close(self) -> None:
        self.writer.close()
        self._reader_task.cancel()
        await asyncio.gather(self._reader_task, return_exceptions=True)
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


@dataclass
class World:
    losant: LocalLosant
    clock: FakeClock
    app: Application
    key: AccessKey
    device: Device
    other: Device
    gateway: Device
    peripheral: Device
    token: str



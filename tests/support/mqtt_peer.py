"""A small MQTT 3.1.1 broker on loopback that tests script: refuse CONNECTs, cut connections, record PUBLISHes.

Not a general broker: one client at a time is enough for the device tests that use it
(a ban on a private host, stamps counted on the wire). It speaks just what a device
sends: CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBLISH (QoS 0/1), PINGREQ, DISCONNECT.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["Connect", "ScriptedBroker", "scripted_broker"]

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 10, 11, 12, 13, 14


@dataclass(frozen=True)
class Connect:
    """One CONNECT the broker saw, and the CONNACK return code it answered."""

    client_id: str
    username: str
    return_code: int


@dataclass
class ScriptedBroker:
    """What a test controls and observes; ``refuse`` holds the return codes for the next CONNECTs."""

    host: str = "127.0.0.1"
    port: int = 0
    refuse: list[int] = field(default_factory=list)
    connects: list[Connect] = field(default_factory=list)
    published: list[tuple[str, bytes]] = field(default_factory=list)
    #: PINGREQs received; ``answer_pings`` False leaves them unanswered (a broker gone silent).
    pings: int = 0
    answer_pings: bool = True
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def cut(self) -> None:
        """Drop every open connection without a word, as a broker banning a device does."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def wait_for(self, predicate: object, timeout: float = 30.0) -> None:
        """Until ``predicate()`` holds (it is re-checked after every packet)."""
        assert callable(predicate)

        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(_wait(), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                kind, flags, body = await _read_packet(reader)
                if kind == CONNECT:
                    client_id, username = _parse_connect(body)
                    code = self.refuse.pop(0) if self.refuse else 0
                    self.connects.append(Connect(client_id, username, code))
                    writer.write(bytes((CONNACK << 4, 2, 0, code)))
                    await writer.drain()
                    await self._notify()
                    if code:
                        writer.close()
                        return
                elif kind == SUBSCRIBE:
                    mid = body[:2]
                    pos, granted = 2, bytearray()
                    while pos < len(body):
                        length = int.from_bytes(body[pos : pos + 2], "big")
                        pos += 2 + length
                        granted.append(min(body[pos], 1))
                        pos += 1
                    writer.write(bytes((SUBACK << 4, 2 + len(granted))) + mid + bytes(granted))
                elif kind == UNSUBSCRIBE:
                    writer.write(bytes((UNSUBACK << 4, 2)) + body[:2])
                elif kind == PUBLISH:
                    qos = (flags >> 1) & 3
                    length = int.from_bytes(body[:2], "big")
                    topic = body[2 : 2 + length].decode()
                    pos = 2 + length
                    if qos:
                        writer.write(bytes((PUBACK << 4, 2)) + body[pos : pos + 2])
                        pos += 2
                    self.published.append((topic, bytes(body[pos:])))
                    await self._notify()
                elif kind == PINGREQ:
                    self.pings += 1
                    if self.answer_pings:
                        writer.write(bytes((PINGRESP << 4, 0)))
                    await self._notify()
                elif kind == DISCONNECT:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    first = (await reader.readexactly(1))[0]
    remaining, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        remaining |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    body = await reader.readexactly(remaining) if remaining else b""
    return first >> 4, first & 0x0F, body


def _parse_connect(body: bytes) -> tuple[str, str]:
    pos = 2 + int.from_bytes(body[:2], "big")  # protocol name
    flags = body[pos + 1]
    pos += 4  # level, flags, keepalive
    fields: list[str] = []
    for _ in range(1 + bool(flags & 0x04) * 2 + bool(flags & 0x80)):
        length = int.from_bytes(body[pos : pos + 2], "big")
        fields.append(body[pos + 2 : pos + 2 + length].decode(errors="replace"))
        pos += 2 + length
    client_id = fields[0]
    username = fields[-1] if flags & 0x80 else ""
    return client_id, username


@contextlib.asynccontextmanager
async def scripted_broker() -> AsyncIterator[ScriptedBroker]:
    """A ``ScriptedBroker`` listening on an ephemeral loopback port for the life of the block."""
    broker = ScriptedBroker()
    server = await asyncio.start_server(broker._handle, broker.host, 0)
    broker.port = server.sockets[0].getsockname()[1]
    try:
        yield broker
    finally:
        broker.cut()
        server.close()
        await server.wait_closed()

"""MQTT 3.1.1 bytes built and read by hand: PUBLISH packets, and the socket wrappers paho reads through."""

from __future__ import annotations

import socket
import ssl
from typing import Any

__all__ = [
    "MAX_INCOMING_PACKET",
    "Capped",
    "PacketTooLarge",
    "ReadBuffered",
    "named_topic",
    "qos0_packet",
    "qos0_publish",
    "qos1_publish",
]

#: Incoming packets larger than this end the connection before they are buffered: Losant's
#: own limit is 256 KB, so anything far beyond it is a broken or hostile peer.
MAX_INCOMING_PACKET = 1 << 20


def qos0_publish(topic: bytes, payload: bytes) -> bytes:
    """An MQTT 3.1.1 PUBLISH packet at QoS 0, no retain, no dup."""
    remaining = 2 + len(topic) + len(payload)
    header = bytearray(b"\x30")
    while True:
        byte, remaining = remaining & 0x7F, remaining >> 7
        header.append(byte | 0x80 if remaining else byte)
        if not remaining:
            break
    return b"".join((header, len(topic).to_bytes(2, "big"), topic, payload))


def named_topic(topic: str) -> bytes:
    """A topic as PUBLISH carries it: two length bytes, then UTF-8."""
    encoded = topic.encode()
    return len(encoded).to_bytes(2, "big") + encoded


def qos0_packet(named: bytes, payload: bytes) -> bytes:
    """``qos0_publish`` for a topic already in ``named_topic`` form; headers of 1-2 length bytes in one step."""
    remaining = len(named) + len(payload)
    if remaining < 0x80:
        return b"".join((bytes((0x30, remaining)), named, payload))
    if remaining < 0x4000:
        return b"".join((bytes((0x30, (remaining & 0x7F) | 0x80, remaining >> 7)), named, payload))
    return qos0_publish(named[2:], payload)


def qos1_publish(topic: bytes, payload: bytes, mid: int) -> bytes:
    """An MQTT 3.1.1 PUBLISH packet at QoS 1 with packet identifier ``mid``, no retain, no dup."""
    remaining = 4 + len(topic) + len(payload)
    header = bytearray(b"\x32")
    while True:
        byte, remaining = remaining & 0x7F, remaining >> 7
        header.append(byte | 0x80 if remaining else byte)
        if not remaining:
            break
    return b"".join((header, len(topic).to_bytes(2, "big"), topic, mid.to_bytes(2, "big"), payload))


class PacketTooLarge(Exception):
    """paho asked for the body of an incoming packet larger than the cap (raised from ``recv``)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(size, limit)
        self.size = size
        self.limit = limit


class ReadBuffered:
    """A socket whose reads come from one large ``recv``.

    paho reads each packet with ``recv(1)``, ``recv(1)`` and ``recv(rest)``: three
    system calls per message. Feeding those small reads from a 64 KiB buffer turns
    a burst of commands or PUBACKs into one system call. Everything else is the
    socket's own. paho's first read of a packet's body asks for all of it, so a
    packet over ``max_packet`` is refused there, before any of it is buffered.
    """

    __slots__ = ("_buf", "_pos", "_sock", "max_packet", "plain", "send")

    def __init__(self, sock: socket.socket, max_packet: int = MAX_INCOMING_PACKET) -> None:
        self._sock = sock
        self.max_packet = max_packet
        self._buf = b""
        self._pos = 0
        #: A plain TCP socket (not TLS): ``send`` writes the bytes given, as given.
        self.plain = not isinstance(sock, ssl.SSLSocket)
        # Bound once: every outgoing packet goes through send, so skip __getattr__.
        self.send = sock.send

    def recv(self, bufsize: int) -> bytes:
        if bufsize > self.max_packet:
            raise PacketTooLarge(bufsize, self.max_packet)  # not an OSError: paho lets it through
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            buf = self._sock.recv(65536)
            if not buf:
                return b""
            self._buf = buf
            pos = 0
        end = pos + bufsize
        self._pos = end if end < len(buf) else len(buf)
        return buf[pos:end]

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return self.buffered + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Capped:
    """Any other socket paho reads from (its WebSocket wrapper): only the incoming packet cap."""

    __slots__ = ("_sock", "max_packet")

    def __init__(self, sock: Any, max_packet: int) -> None:
        self._sock = sock
        self.max_packet = max_packet

    def recv(self, bufsize: int) -> bytes:
        if bufsize > self.max_packet:
            raise PacketTooLarge(bufsize, self.max_packet)
        data: bytes = self._sock.recv(bufsize)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

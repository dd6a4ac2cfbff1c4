"""A minimal MQTT 3.1.1 wire codec for the harness's own probes: no library, so it measures every contender alike."""

from __future__ import annotations

import contextlib
import socket
import struct
import time

__all__ = ["MqttSocket", "connect_packet", "publish_packet", "subscribe_packet"]


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id: str) -> bytes:
    # Clean session, keepalive 0: the probes live for seconds and must not be timed out.
    body = _str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0) + _str(client_id)
    return b"\x10" + _remaining_length(len(body)) + body


def subscribe_packet(packet_id: int, topic: str, qos: int = 0) -> bytes:
    body = struct.pack("!H", packet_id) + _str(topic) + bytes([qos])
    return b"\x82" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH."""
    body = _str(topic) + payload
    return b"\x30" + _remaining_length(len(body)) + body


class MqttSocket:
    """A blocking MQTT connection that yields the payloads of the PUBLISH packets it receives."""

    def __init__(self, host: str, port: int, client_id: str, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.buf = bytearray()
        self.sock.sendall(connect_packet(client_id))
        kind, body = self._read_packet()
        if kind != 0x20 or body[1] != 0:
            raise ConnectionError(f"CONNACK refused: {bytes(body)!r}")

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("broker closed the connection")
        self.buf += chunk

    def _read_packet(self) -> tuple[int, bytearray]:
        while True:
            parsed = self._parse_one(0)
            if parsed is not None:
                kind, start, end, nxt = parsed
                body = self.buf[start:end]
                del self.buf[:nxt]
                return kind, body
            self._fill()

    def _parse_one(self, pos: int) -> tuple[int, int, int, int] | None:
        buf = self.buf
        n = len(buf)
        if pos + 2 > n:
            return None
        first = buf[pos]
        mult, length, i = 1, 0, pos + 1
        while True:
            if i >= n:
                return None
            b = buf[i]
            length += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        if i + length > n:
            return None
        return first & 0xF0, i, i + length, i + length

    def subscribe(self, topic: str) -> None:
        self.sock.sendall(subscribe_packet(1, topic, 0))
        while True:
            kind, _ = self._read_packet()
            if kind == 0x90:
                return

    def read_publishes(self, deadline: float) -> tuple[list[bytes], float]:
        """Payloads of every complete PUBLISH after one read, and the time the read returned."""
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            self._fill()
        except TimeoutError:
            return [], time.monotonic()
        now = time.monotonic()
        out: list[bytes] = []
        pos = 0
        buf = self.buf
        while True:
            parsed = self._parse_one(pos)
            if parsed is None:
                break
            kind, start, end, pos = parsed
            if kind == 0x30:
                # Subscriptions are QoS 0, so deliveries carry no packet id.
                tlen = (buf[start] << 8) | buf[start + 1]
                out.append(bytes(buf[start + 2 + tlen : end]))
        del buf[:pos]
        return out, now

    def count_publishes(self, deadline: float) -> tuple[int, float]:
        """How many PUBLISH packets one read completed (no payload copies), and when it returned."""
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            self._fill()
        except TimeoutError:
            return 0, time.monotonic()
        now = time.monotonic()
        count = 0
        pos = 0
        while True:
            parsed = self._parse_one(pos)
            if parsed is None:
                break
            kind, _, _, pos = parsed
            if kind == 0x30:
                count += 1
        del self.buf[:pos]
        return count, now

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()

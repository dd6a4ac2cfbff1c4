"""Reading one paho client's socket on the event loop: every buffered packet per wakeup, pausable, and a keepalive timer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from ...errors import ConnectionLostError
from .internals import bytes_in_attribute
from .wire import MAX_INCOMING_PACKET, Capped, PacketTooLarge, ReadBuffered

__all__ = ["Reader"]

log = logging.getLogger("losant_async.mqtt")

# Packets handled per readiness callback before yielding to other connections.
_READ_BATCH = 512


class Reader:
    """The read side of one paho client, and its keepalive, driven by the event loop.

    aiomqtt handles one packet per readiness event and paho reads each packet
    with three ``recv`` calls; here one wakeup drains every packet buffered, from
    one large ``recv`` (``ReadBuffered``). aiomqtt also runs a task per client
    that wakes every second to call paho's ``loop_misc``; here one timer fires
    when ``loop_misc`` can next have something to do. ``on_socket_open`` is
    paho's callback (it runs in the connect thread); ``fail(exc)`` ends the
    connection with ``exc`` as the reason; after ``stop()`` no reading starts
    and no keepalive fires.
    """

    __slots__ = ("_bytes_in", "_client", "_client_id", "_fail", "_keepalive", "_loop", "_paused", "_stopped",
                 "_timer", "max_packet")

    def __init__(
        self,
        client: paho.Client,
        loop: asyncio.AbstractEventLoop,
        *,
        client_id: str,
        keepalive: int,
        fail: Callable[[BaseException], None],
    ) -> None:
        self._client = client
        self._loop = loop
        self._client_id = client_id
        self._keepalive = keepalive
        self._fail = fail
        self._bytes_in = bytes_in_attribute()
        self._paused = False
        self._stopped = False
        self._timer: asyncio.TimerHandle | None = None
        #: Incoming packets over this many bytes end the connection (see ``MAX_INCOMING_PACKET``).
        self.max_packet = MAX_INCOMING_PACKET

    def on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        # Runs in the executor thread that connects, before CONNECT is sent. Replaces
        # aiomqtt's handler so a readable socket drains every packet it holds, not one.
        if isinstance(sock, socket.socket):
            self._client._sock = ReadBuffered(sock, self.max_packet)
        else:
            self._client._sock = Capped(sock, self.max_packet)
        fd = sock.fileno()

        def start() -> None:
            if self._stopped or self._client._sock is None:
                return
            if not self._paused:
                self._loop.add_reader(fd, self._on_readable)
            self._arm_keepalive()

        self._loop.call_soon_threadsafe(start)

    def stop(self) -> None:
        """No more keepalives, and no reading started (reading in progress goes on until the socket closes)."""
        self._stopped = True
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def pause(self, paused: bool) -> None:
        """Stop reading incoming packets (a consumer is full) or start again; PINGRESPs wait too."""
        if paused == self._paused:
            return
        self._paused = paused
        sock = self._client._sock
        if sock is None or self._stopped:
            return
        fd = sock.fileno()
        if paused:
            self._loop.remove_reader(fd)
        else:
            self._loop.add_reader(fd, self._on_readable)
            self._loop.call_soon(self._on_readable)  # bytes may wait in the user-space buffer

    def _on_readable(self) -> None:
        paho_client = self._client
        try:
            for _ in range(_READ_BATCH):
                if paho_client._sock is None or self._paused:
                    return
                rc = paho_client._packet_read()
                if rc > 0:
                    paho_client._loop_rc_handle(rc)
                    return
                if rc == paho.MQTT_ERR_AGAIN:
                    return
            # Bytes may be left in the user-space buffer, where the selector cannot see them.
            self._loop.call_soon(self._on_readable)
        except PacketTooLarge as exc:
            log.warning("device %s: dropped the connection: the broker sent a packet of %d bytes, over the "
                        "limit of %d", self._client_id, exc.size, exc.limit, extra={"device_id": self._client_id})
            self._fail(ConnectionLostError(
                f"the broker sent a packet of {exc.size} bytes, over the limit of {exc.limit} bytes: "
                "connection dropped"
            ))
            with contextlib.suppress(Exception):
                paho_client._reset_sockets()  # stop reading now: the rest of the packet is not wanted
        except Exception as exc:  # a broken socket: report it as the end of the connection
            self._fail(exc)

    def _arm_keepalive(self) -> None:
        """Wake ``loop_misc`` when it can next act, not every second as aiomqtt's task does.

        Before the earliest of (last packet out, last bytes in, PINGREQ sent) plus
        the keepalive, paho's ``loop_misc`` is a no-op; each call that acts moves
        those times on (or ends the connection), so the timer never spins.
        """
        client = self._client
        if self._keepalive <= 0 or self._stopped or client._sock is None:
            return
        due = min(client._last_msg_out, getattr(client, self._bytes_in))
        ping = client._ping_t
        if ping > 0 and ping < due:
            due = ping
        # A millisecond late rather than early: early would only re-arm for the rest.
        delay = due + self._keepalive - paho.time_func() + 0.001
        self._timer = self._loop.call_later(delay if delay > 0 else 0, self._on_keepalive)

    def _on_keepalive(self) -> None:
        self._timer = None
        if self._stopped:
            return
        try:
            rc = self._client.loop_misc()
        except Exception as exc:  # a broken socket: report it as the end of the connection
            self._fail(exc)
            return
        if rc == paho.MQTT_ERR_SUCCESS:
            self._arm_keepalive()

"""``Gateway`` and ``Peripheral``: one connection that reports and receives for many devices."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from .._state import KeyedStamper
from ..errors import ConnectionLostError, DeviceClosedError
from ._payloads import Command, encode_state
from ._streams import Stream
from ._topics import command_topic, state_topic, validate_device_id
from .device import CommandCallback, Device

__all__ = ["Gateway", "Peripheral"]

log = logging.getLogger("losant_async.mqtt")


class Peripheral:
    """A peripheral device reached through its gateway's connection (never connects itself)."""

    __slots__ = ("_gateway", "_state_topic", "device_id")

    def __init__(self, gateway: Gateway, device_id: str) -> None:
        self._gateway = gateway
        self.device_id = device_id
        self._state_topic = state_topic(device_id)

    async def send_state(
        self,
        data: Mapping[str, Any],
        time: datetime | int | float | None = None,
        *,
        flow_version: str | None = None,
        wait: bool = True,
    ) -> None:
        """Report the peripheral's state on ``losant/<peripheral id>/state`` (see ``Device.send_state``)."""
        gw = self._gateway
        gw._check_usable()
        if self.device_id not in gw._peripherals:
            raise DeviceClosedError(f"peripheral {self.device_id} was removed from its gateway")
        stamp = gw._peripheral_stamp(self.device_id) if time is None else None
        payload = encode_state(data, time, flow_version=flow_version, now=stamp)
        await gw._send(self._state_topic, payload, gw.qos, wait)

    def commands(self) -> Stream[Command]:
        """The peripheral's commands from now on (``async for`` or ``async with``)."""
        return self._gateway._command_stream(self.device_id)

    def on_command(self, callback: CommandCallback) -> Callable[[], None]:
        """Call ``callback(command)`` for each of this peripheral's commands."""
        return self._gateway._add_command_callback(self.device_id, callback)

    def __repr__(self) -> str:
        return f"Peripheral(device_id={self.device_id!r}, gateway={self._gateway.device_id!r})"


class Gateway(Device):
    """A gateway device: a ``Device`` that also speaks for its peripherals.

    ``gateway.peripheral(id)`` returns a handle and subscribes to the
    peripheral's commands (at once when connected, else on connect);
    ``await gateway.add_peripheral(id)`` does the same and waits for the
    broker's SUBACK. ``remove_peripheral(id)`` unsubscribes. Losant's limit of
    30 messages per 15 s applies per peripheral; the throttle keeps to it.
    """

    _gateway = True

    def __init__(self, device_id: str, key: str, secret: str, **kwargs: Any) -> None:
        super().__init__(device_id, key, secret, **kwargs)
        self._peripherals: dict[str, Peripheral] = {}
        # Per peripheral, like a device's own stamps: no two states of one peripheral share a millisecond.
        self._peripheral_stamp = KeyedStamper()

    def peripheral(self, peripheral_id: str) -> Peripheral:
        """The handle of a peripheral, added (and subscribed) on first use."""
        existing = self._peripherals.get(peripheral_id)
        if existing is not None:
            return existing
        handle = self._register(peripheral_id)
        conn = self._conn
        if conn is not None:
            self._spawn(self._subscribe_now(peripheral_id), f"losant-mqtt-subscribe:{peripheral_id}")
        return handle

    async def add_peripheral(self, peripheral_id: str) -> Peripheral:
        """Add a peripheral and, when connected, wait until its command topic is subscribed."""
        existing = self._peripherals.get(peripheral_id)
        handle = existing or self._register(peripheral_id)
        if existing is None:
            await self._subscribe_now(peripheral_id)
        return handle

    def _register(self, peripheral_id: str) -> Peripheral:
        if self._closed or self._closing:
            raise DeviceClosedError(f"gateway {self.device_id} is closed")
        pid = validate_device_id(peripheral_id, what="peripheral_id")
        handle = Peripheral(self, pid)
        self._peripherals[pid] = handle
        self._own_ids.add(pid)
        self._command_topics[command_topic(pid)] = pid
        return handle

    async def _subscribe_now(self, peripheral_id: str) -> None:
        conn = self._conn
        if conn is None:
            return  # subscribed with everything else on the next connection
        try:
            await conn.subscribe([command_topic(peripheral_id)], self.qos, timeout=self._connect_timeout)
        except (ConnectionLostError, asyncio.TimeoutError) as exc:
            log.info("subscribing peripheral %s waits for the next connection: %s", peripheral_id, exc)

    def remove_peripheral(self, peripheral_id: str) -> None:
        """Stop speaking for a peripheral: unsubscribe its commands and end its streams."""
        if self._peripherals.pop(peripheral_id, None) is None:
            return
        self._own_ids.discard(peripheral_id)
        topic = command_topic(peripheral_id)
        self._command_topics.pop(topic, None)
        self._command_callbacks.pop(peripheral_id, None)
        for stream in list(self._command_streams.pop(peripheral_id, ())):
            stream.end()
        conn = self._conn
        if conn is not None and not self._closing:
            self._spawn(self._unsubscribe_now(conn, topic), f"losant-mqtt-unsubscribe:{peripheral_id}")

    async def _unsubscribe_now(self, conn: Any, topic: str) -> None:
        with contextlib.suppress(ConnectionLostError, asyncio.TimeoutError):
            await conn.unsubscribe([topic], timeout=self._connect_timeout)

    @property
    def peripherals(self) -> list[str]:
        """The ids of the peripherals this gateway speaks for."""
        return list(self._peripherals)

"""``Gateway`` and ``Peripheral``: one connection that reports and receives for many devices."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from .._state import KeyedStamper
from ..errors import DeviceClosedError
from ._payloads import Command, encode_state
from ._streams import Stream
from ._topics import state_topic, validate_device_id
from .device import CommandCallback, Device

__all__ = ["Gateway", "Peripheral"]


class Peripheral:
    """A peripheral device reached through its gateway's connection (never connects itself)."""

    __slots__ = ("_gateway", "_state_topic", "device_id")

    def __init__(self, gateway: Gateway, device_id: str) -> None:
        self._gateway = gateway
        self.device_id: str = device_id
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
        await self._gateway._send_for(self, data, time, flow_version, wait)

    def commands(self) -> Stream[Command]:
        """The peripheral's commands from now on (``async for`` or ``async with``)."""
        return self._gateway._inbox.command_stream(self.device_id)

    def on_command(self, callback: CommandCallback) -> Callable[[], None]:
        """Call ``callback(command)`` for each of this peripheral's commands."""
        return self._gateway._inbox.add_callback(self.device_id, callback)

    def __repr__(self) -> str:
        return f"Peripheral(device_id={self.device_id!r}, gateway={self._gateway.device_id!r})"


class Gateway(Device):
    """A gateway device: a ``Device`` that also speaks for its peripherals.

    ``await gateway.peripheral(id)`` adds a peripheral and returns its handle
    only once its command topic is subscribed: when connected, after the
    broker's SUBACK (a refusal raises ``TopicNotAllowedError``); before the
    gateway is started or while it reconnects, at once, and the connection
    subscribes it before the gateway is ready again. A command sent after it
    returns is never missed. ``remove_peripheral(id)`` unsubscribes. Losant's limit of
    30 messages per 15 s applies per peripheral; the throttle keeps to it.
    Each peripheral's stamped states get strictly increasing milliseconds.
    """

    _gateway = True

    def __init__(self, device_id: str, key: str | None = None, secret: str | None = None, **kwargs: Any) -> None:
        super().__init__(device_id, key, secret, **kwargs)
        self._peripherals: dict[str, Peripheral] = {}
        # Peripherals whose SUBSCRIBE is in flight: a second caller waits for the first one's SUBACK.
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        # Per peripheral, like a device's own stamps: no two states of one peripheral share a millisecond.
        self._peripheral_stamp = KeyedStamper()

    async def peripheral(self, peripheral_id: str) -> Peripheral:
        """The handle of a peripheral, added on first use; returns once its commands are subscribed.

        A coroutine (since issue 19): a handle handed out before the SUBACK lost the commands
        sent meanwhile. Connected, it waits for the broker's SUBACK (``TopicNotAllowedError``
        when refused); otherwise it returns at once and the next connection subscribes first.
        """
        while True:
            pending = self._subscribing.get(peripheral_id)
            if pending is None:
                break
            await asyncio.shield(pending)
        existing = self._peripherals.get(peripheral_id)
        if existing is not None:
            return existing
        handle, topic = self._register(peripheral_id)
        done = asyncio.get_running_loop().create_future()
        self._subscribing[handle.device_id] = done
        try:
            await self._session.subscribe_or_raise(topic, self.qos)
        except BaseException:
            self._forget(handle.device_id)
            raise
        finally:
            del self._subscribing[handle.device_id]
            done.set_result(None)
        return handle

    async def add_peripheral(self, peripheral_id: str) -> Peripheral:
        """The same as ``await peripheral(id)`` (the name of earlier releases)."""
        return await self.peripheral(peripheral_id)

    def _register(self, peripheral_id: str) -> tuple[Peripheral, str]:
        if self._life.closed or self._life.closing:
            raise DeviceClosedError(f"gateway {self.device_id} is closed")
        pid = validate_device_id(peripheral_id, what="peripheral_id")
        handle = Peripheral(self, pid)
        self._peripherals[pid] = handle
        return handle, self._inbox.add_device(pid)

    def _forget(self, peripheral_id: str) -> str | None:
        if self._peripherals.pop(peripheral_id, None) is None:
            return None
        return self._inbox.remove_device(peripheral_id)

    def remove_peripheral(self, peripheral_id: str) -> None:
        """Stop speaking for a peripheral: unsubscribe its commands and end its streams."""
        topic = self._forget(peripheral_id)
        if topic is None:
            return
        if self.connected and not self._life.closing:
            self._spawn(self._session.unsubscribe(topic), f"losant-mqtt-unsubscribe:{peripheral_id}")

    async def _send_for(
        self, peripheral: Peripheral, data: Mapping[str, Any], time: datetime | int | float | None,
        flow_version: str | None, wait: bool,
    ) -> None:
        self._check_usable()
        if self._peripherals.get(peripheral.device_id) is not peripheral:
            raise DeviceClosedError(f"peripheral {peripheral.device_id} was removed from its gateway")
        stamp = self._peripheral_stamp(peripheral.device_id) if time is None else None
        payload = encode_state(data, time, flow_version=flow_version, now=stamp)
        await self._session.send(peripheral._state_topic, payload, self.qos, wait)

    @property
    def peripherals(self) -> list[str]:
        """The ids of the peripherals this gateway speaks for."""
        return list(self._peripherals)

"""``Gateway`` and ``Peripheral``: one connection that reports and receives for many devices."""

from __future__ import annotations

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

    ``gateway.peripheral(id)`` returns a handle and subscribes to the
    peripheral's commands (at once when connected, else on connect);
    ``await gateway.add_peripheral(id)`` does the same and waits for the
    broker's SUBACK. ``remove_peripheral(id)`` unsubscribes. Losant's limit of
    30 messages per 15 s applies per peripheral; the throttle keeps to it.
    Each peripheral's stamped states get strictly increasing milliseconds.
    """

    _gateway = True

    def __init__(self, device_id: str, key: str | None = None, secret: str | None = None, **kwargs: Any) -> None:
        super().__init__(device_id, key, secret, **kwargs)
        self._peripherals: dict[str, Peripheral] = {}
        # Per peripheral, like a device's own stamps: no two states of one peripheral share a millisecond.
        self._peripheral_stamp = KeyedStamper()

    def peripheral(self, peripheral_id: str) -> Peripheral:
        """The handle of a peripheral, added (and subscribed) on first use."""
        existing = self._peripherals.get(peripheral_id)
        if existing is not None:
            return existing
        handle, topic = self._register(peripheral_id)
        if self.connected:
            self._spawn(self._session.subscribe(topic, self.qos), f"losant-mqtt-subscribe:{handle.device_id}")
        return handle

    async def add_peripheral(self, peripheral_id: str) -> Peripheral:
        """Add a peripheral and, when connected, wait until its command topic is subscribed."""
        existing = self._peripherals.get(peripheral_id)
        if existing is not None:
            return existing
        handle, topic = self._register(peripheral_id)
        await self._session.subscribe(topic, self.qos)
        return handle

    def _register(self, peripheral_id: str) -> tuple[Peripheral, str]:
        if self._closed or self._closing:
            raise DeviceClosedError(f"gateway {self.device_id} is closed")
        pid = validate_device_id(peripheral_id, what="peripheral_id")
        handle = Peripheral(self, pid)
        self._peripherals[pid] = handle
        return handle, self._inbox.add_device(pid)

    def remove_peripheral(self, peripheral_id: str) -> None:
        """Stop speaking for a peripheral: unsubscribe its commands and end its streams."""
        if self._peripherals.pop(peripheral_id, None) is None:
            return
        topic = self._inbox.remove_device(peripheral_id)
        if self.connected and not self._closing:
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

"""``Fleet``: start and stop many devices in one process, within Losant's connection budget."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable, Iterator
from types import TracebackType

from ..errors import MQTTError, ValidationError
from ._connection import default_tls_context
from ._throttle import ThrottleConfig
from ._waits import settle
from .device import LOSANT_BROKER, Device, DeviceStats

__all__ = ["Fleet"]


class Fleet:
    """``async with Fleet(devices, connect_concurrency=50) as fleet: ...``.

    Entering starts every device with at most ``connect_concurrency`` connects
    in flight, all TLS devices sharing one ``SSLContext`` (unless they brought
    their own), and new connections (first ones and reconnects) kept within
    ``connections_per_application`` per window of the throttle config (on by
    default against broker.losant.com). Leaving closes them all. If a device
    fails to start, the ones started are closed and the error is raised.
    """

    def __init__(
        self,
        devices: Iterable[Device],
        *,
        connect_concurrency: int = 50,
        tls_context: ssl.SSLContext | None = None,
        throttle: ThrottleConfig | bool | None = None,
    ) -> None:
        self.devices: list[Device] = list(devices)
        if not isinstance(connect_concurrency, int) or connect_concurrency < 1:
            raise ValidationError("connect_concurrency must be a positive int")
        self.connect_concurrency = connect_concurrency
        self._tls_context = tls_context
        if throttle is None:
            throttle = any(d.host == LOSANT_BROKER for d in self.devices)
        config = throttle if isinstance(throttle, ThrottleConfig) else ThrottleConfig() if throttle else None
        self._bucket = config.bucket(config.connections_per_application, time.monotonic) if config else None
        self._started: list[Device] = []
        self._gate: asyncio.Semaphore | None = None
        self._shared_tls: ssl.SSLContext | None = None

    def __iter__(self) -> Iterator[Device]:
        return iter(self.devices)

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def stats(self) -> DeviceStats:
        """The devices' counters summed (a snapshot)."""
        return DeviceStats.total(d.stats for d in self.devices)

    @property
    def connected(self) -> int:
        """How many devices are connected now."""
        return sum(1 for d in self.devices if d.connected)

    async def __aenter__(self) -> Fleet:
        shared = None
        if any(d._needs_tls_context for d in self.devices):
            shared = self._tls_context or await default_tls_context()
        self._shared_tls = shared
        for device in self.devices:
            device._join_fleet(shared, self._bucket)
        self._gate = gate = asyncio.Semaphore(self.connect_concurrency)

        async def start(device: Device) -> None:
            async with gate:
                await device.start()
                self._started.append(device)

        tasks = [asyncio.ensure_future(start(d)) for d in self.devices]
        try:
            if tasks:
                await asyncio.wait(tasks)
        except BaseException:
            # Cancelled while starting: stop the starts still running (each closes its own
            # device), then close every device already started, before the cancellation goes on.
            for task in tasks:
                task.cancel()
            for task in tasks:
                await settle(task)
            await self.aclose(flush=False)
            raise
        errors = [e for t in tasks if not t.cancelled() and (e := t.exception()) is not None]
        if errors or any(t.cancelled() for t in tasks):
            await self.aclose()
            raise errors[0] if errors else asyncio.CancelledError()
        return self

    async def add(self, device: Device) -> None:
        """Start one more device in the entered fleet: within its connect concurrency and connection budget.

        For a fleet that grows while it runs (a ramp-up, a device coming back).
        It is closed with the others. A device that fails to start is closed and
        its error raised; the fleet's other devices go on.
        """
        gate = self._gate
        if gate is None:
            raise MQTTError("Fleet.add() needs an entered fleet: use 'async with Fleet(...)' first")
        if device._needs_tls_context and self._shared_tls is None:
            self._shared_tls = self._tls_context or await default_tls_context()
        device._join_fleet(self._shared_tls, self._bucket)
        self.devices.append(device)
        async with gate:
            await device.start()
        if self._gate is not gate:
            # The fleet closed while this device was starting: it would outlive the fleet.
            await device.aclose(flush=False)
            raise MQTTError(f"the fleet closed while device {device.device_id} was starting")
        self._started.append(device)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose(flush=exc_type is None)

    async def aclose(self, *, flush: bool = True) -> int:
        """Close every started device (concurrently); how many queued messages they did not deliver.

        Cancelled, every device stops flushing and finishes closing (bounded) before the
        cancellation propagates.
        """
        self._gate = None  # closing: no device joins any more
        started, self._started = self._started, []
        if not started:
            return 0
        closing = asyncio.gather(*(d.aclose(flush=flush) for d in started), return_exceptions=True)
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            closing.cancel()  # each Device.aclose cancelled: it stops flushing and still closes
            await settle(closing)
            raise
        return sum(r for r in closing.result() if isinstance(r, int))

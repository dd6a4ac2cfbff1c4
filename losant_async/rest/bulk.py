"""Many devices at once: bounded concurrency, one result per input item, in input order.

For many states of *one* device, one request is enough: the API takes an
array, so call ``client.device.send_state(device_state=[state, state, ...])``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from ..errors import ValidationError
from .options import RequestOptions

if TYPE_CHECKING:
    from ._generated.models import DeviceCommand, DeviceStateOrStates, Success
    from ._generated.resources.device import DeviceResource

__all__ = ["Bulk", "BulkResult", "run_bulk"]

K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class BulkResult(Generic[K, R]):
    """The outcome for one input item: ``value`` on success, ``error`` on failure."""

    key: K
    """What identifies the item (the device ID)."""
    value: R | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> R:
        """The value, or the item's exception raised."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


async def run_bulk(
    items: Iterable[tuple[K, V]],
    call: Callable[[K, V], Awaitable[R]],
    *,
    concurrency: int = 16,
) -> list[BulkResult[K, R]]:
    """``call(key, value)`` for every item, at most ``concurrency`` at a time.

    Every item gets a result, in input order: an exception an item raises is
    its result, never lost and never stopping the others. Cancelling the
    caller cancels the calls in flight.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError("concurrency must be an integer >= 1")
    work = list(items)
    results: list[BulkResult[K, R] | None] = [None] * len(work)
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(work):
            i = next_index
            next_index += 1
            key, value = work[i]
            try:
                results[i] = BulkResult(key, await call(key, value))
            except Exception as exc:
                results[i] = BulkResult(key, None, exc)

    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, len(work))):
            tg.start_soon(worker)
    return [r for r in results if r is not None]


class Bulk:
    """``client.bulk``: state reports and commands for many devices, over the client's ``device`` resource."""

    __slots__ = ("_device",)

    def __init__(self, device: DeviceResource) -> None:
        self._device = device

    async def send_states(
        self,
        application_id: str,
        states: Iterable[tuple[str, DeviceStateOrStates | Mapping[str, Any] | Sequence[Any]]],
        *,
        concurrency: int = 16,
        options: RequestOptions | None = None,
    ) -> list[BulkResult[str, Success]]:
        """Send ``(device_id, state_or_states)`` pairs, ``concurrency`` requests at a time.

        Each item is one ``device.send_state`` call (a state dict/Struct, or a
        list of them for one device: that is still one request), so states are
        checked and stamped as there: each state without a ``time`` gets the
        next distinct millisecond of its device. Results come back one per
        item, in input order, failures included (a bad ID or state is a
        ``ValidationError`` result, a refused request an ``APIError`` result).
        """
        device = self._device

        async def send(device_id: str, state: Any) -> Success:
            return await device.send_state(
                application_id=application_id,
                device_id=device_id,
                device_state=state,
                request_options=options,
            )

        return await run_bulk(states, send, concurrency=concurrency)

    async def send_command_many(
        self,
        application_id: str,
        commands: Iterable[tuple[str, DeviceCommand | Mapping[str, Any]]],
        *,
        concurrency: int = 16,
        options: RequestOptions | None = None,
    ) -> list[BulkResult[str, Success]]:
        """Send ``(device_id, command)`` pairs (``{"name": ..., "payload": ...}``), one request each.

        Results as for ``send_states``. To send one command to many devices
        in a single request, use ``devices.send_command`` with a query instead.
        """
        device = self._device

        async def send(device_id: str, command: Any) -> Success:
            return await device.send_command(
                application_id=application_id,
                device_id=device_id,
                device_command=command,
                request_options=options,
            )

        return await run_bulk(commands, send, concurrency=concurrency)

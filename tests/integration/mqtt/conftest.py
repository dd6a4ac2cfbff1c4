"""Fixtures for the MQTT integration tests: a broker per test and an independent subscriber."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import aiomqtt
import msgspec
import pytest

from losant_async.mqtt import Backoff
from tests.support.brokers import MOSQUITTO, Broker, running_broker

_skip_without_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None, reason="needs the mosquitto binary (TLS listener, password file or persistence)"
)
F = TypeVar("F", bound=Callable[..., Any])


def needs_mosquitto(fn: F) -> F:
    """Mark a test as needing mosquitto (``-m mosquitto``) and skip it, with the reason, when absent."""
    marked: F = pytest.mark.mosquitto(_skip_without_mosquitto(fn))
    return marked

FAST = Backoff(initial=0.05, cap=0.3)


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    async with running_broker() as b:
        yield b


def device_kwargs(broker: Broker, **extra: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(host=broker.host, port=broker.port, transport="tcp", backoff=FAST, connect_timeout=5.0)
    kwargs.update(extra)
    return kwargs


class Peer:
    """An independent aiomqtt client: what a real subscriber or Losant would see."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.received: list[tuple[str, bytes]] = []
        self._arrived = asyncio.Event()

    async def run(self) -> None:
        async for message in self.client.messages:
            self.received.append((message.topic.value, bytes(message.payload)))
            self._arrived.set()

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        async def _wait() -> None:
            while not predicate(self.received):
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(_wait(), timeout)

    def states(self, topic: str) -> list[dict[str, Any]]:
        return [msgspec.json.decode(p) for t, p in self.received if t == topic]


@contextlib.asynccontextmanager
async def peer(broker: Broker, *filters: str, qos: int = 1) -> AsyncIterator[Peer]:
    async with aiomqtt.Client(broker.host, broker.port, identifier=None) as client:
        for f in filters:
            await client.subscribe(f, qos)
        p = Peer(client)
        task = asyncio.ensure_future(p.run())
        try:
            yield p
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

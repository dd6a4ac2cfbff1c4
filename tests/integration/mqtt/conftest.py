"""Fixtures for the MQTT integration tests: a world on a plain broker or on the Losant emulator.

``world`` is parametrized: ``broker`` (mosquitto, or amqtt with ``LOSANT_TEST_BROKER=amqtt``,
anonymous, any device ID) and ``emulator`` (``LocalLosant``: known device IDs, key/secret,
no wildcard or foreign ``losant/`` subscriptions). A test asks the world for what it needs
and gets the same shape on both: device credentials, connection settings, a watcher of
the states that arrived, a way to send commands, and a peer for custom topics.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiomqtt
import msgspec
import pytest

from losant_async._time import to_ejson_date
from losant_async.mqtt import Backoff
from losant_async.testing import Application, LocalLosant, StateRecord
from tests.support.brokers import MOSQUITTO, Broker, free_port, running_broker

_skip_without_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None, reason="needs the mosquitto binary (TLS listener, password file or persistence)"
)
F = TypeVar("F", bound=Callable[..., Any])


def needs_mosquitto(fn: F) -> F:
    """Mark a test as needing mosquitto (``-m mosquitto``) and skip it, with the reason, when absent."""
    marked: F = pytest.mark.mosquitto(_skip_without_mosquitto(fn))
    return marked


# For ``@pytest.mark.parametrize("kind", ...)`` with ``make_world(kind, ...)``: the broker side
# needs mosquitto (password file or persistence), the emulator side does not.
KINDS_BROKER_NEEDS_MOSQUITTO = [
    pytest.param("broker", marks=[pytest.mark.mosquitto, _skip_without_mosquitto]),
    "emulator",
]

FAST = Backoff(initial=0.05, cap=0.3)

# Every attribute a test in this directory reports: the emulator ignores undefined ones, as Losant does.
ATTRIBUTES: dict[str, str] = {
    name: "number" for name in ("i", "n", "temperature", "level", "uptime", "ws", "wss", "up", "a")
} | {"door": "string", "ok": "boolean", "secure": "boolean", "blob": "string"}


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
    async with _peer(broker.host, broker.port, filters, qos) as p:
        yield p


@contextlib.asynccontextmanager
async def _peer(
    host: str, port: int, filters: tuple[str, ...], qos: int, identifier: str | None = None,
    username: str | None = None, password: str | None = None,
) -> AsyncIterator[Peer]:
    async with aiomqtt.Client(host, port, identifier=identifier, username=username, password=password) as client:
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


# -- the world ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Creds:
    """One device's MQTT identity."""

    id: str
    key: str
    secret: str = field(repr=False)


class Arrivals:
    """States in the order the far side accepted them, as ``{"data": ..., "time": ...}`` per device."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []
        self.raw: list[tuple[str, bytes]] = []  # topic and exact payload; only a plain broker shows these
        self._arrived = asyncio.Event()

    def add(self, device_id: str, state: dict[str, Any]) -> None:
        self.entries.append((device_id, state))
        self._arrived.set()

    def states(self, device_id: str) -> list[dict[str, Any]]:
        return [s for d, s in self.entries if d == device_id]

    def device_ids(self) -> set[str]:
        return {d for d, _ in self.entries}

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def _wait() -> None:
            while not predicate():
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(_wait(), timeout)

    async def wait_states(self, device_id: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        await self.wait_for(lambda: len(self.states(device_id)) >= count, timeout)
        return self.states(device_id)

    async def wait_distinct(self, device_id: str, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` different ``i`` values arrived (re-sent duplicates count once)."""
        await self.wait_for(lambda: len({s["data"]["i"] for s in self.states(device_id)}) >= count, timeout)


def _state_of_topic(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "losant" and parts[2] == "state":
        return parts[1]
    return None


class World:
    """What a test needs from the far side, the same on a plain broker and on the emulator."""

    kind: str
    host: str = "127.0.0.1"
    port: int
    ws_port: int | None

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self._stack = stack

    def device(self, *, device_class: str = "standalone", parent_id: str | None = None) -> Creds:
        raise NotImplementedError

    def kwargs(self, **extra: Any) -> dict[str, Any]:
        """Device keyword arguments: this world's host and port, tcp, fast reconnects."""
        merged: dict[str, Any] = dict(host=self.host, port=self.port, transport="tcp", backoff=FAST, connect_timeout=5.0)
        merged.update(extra)
        return merged

    def watch(self, *, survive_restart: bool = False) -> contextlib.AbstractAsyncContextManager[Arrivals]:
        """Record every state that arrives from now on (per device, in arrival order).

        ``survive_restart``: keep watching across ``restart()`` without losing a message.
        """
        raise NotImplementedError

    def peer(self, *filters: str) -> contextlib.AbstractAsyncContextManager[Peer]:
        """A client allowed to publish to and subscribe on custom (non-``losant/``) topics."""
        raise NotImplementedError

    async def send_command(self, device_id: str, name: str, payload: Any = None, *, time: int | None = None) -> None:
        raise NotImplementedError

    async def restart(self) -> None:
        """Stop the broker and start it again on the same ports; what it stored survives."""
        raise NotImplementedError


class BrokerWorld(World):
    """A plain broker: any 24-hex ID connects, an anonymous subscriber on ``losant/+/state`` watches."""

    kind = "broker"

    def __init__(self, stack: contextlib.AsyncExitStack, broker: Broker) -> None:
        super().__init__(stack)
        self.broker = broker
        self.port = broker.port
        self.ws_port = broker.ws_port
        self._count = 0
        self._sender: aiomqtt.Client | None = None

    def device(self, *, device_class: str = "standalone", parent_id: str | None = None) -> Creds:
        self._count += 1
        return Creds(f"{0xD0 << 88 | self._count:024x}", "key", "secret")

    @contextlib.asynccontextmanager
    async def watch(self, *, survive_restart: bool = False) -> AsyncIterator[Arrivals]:
        arrivals = Arrivals()
        subscribed = asyncio.Event()

        async def run() -> None:
            # Across a restart: a persistent session (the broker must persist it) and reconnects.
            while True:
                try:
                    async with aiomqtt.Client(
                        self.host, self.port, identifier="watcher-1" if survive_restart else None,
                        clean_session=False if survive_restart else None,
                    ) as client:
                        await client.subscribe("losant/+/state", 1)
                        subscribed.set()
                        async for message in client.messages:
                            device_id = _state_of_topic(message.topic.value)
                            if device_id is not None:
                                arrivals.raw.append((message.topic.value, bytes(message.payload)))
                                arrivals.add(device_id, msgspec.json.decode(bytes(message.payload)))
                except aiomqtt.MqttError:
                    if not survive_restart:
                        raise
                    await asyncio.sleep(0.05)  # the broker is restarting: retry, as a real client would

        task = asyncio.ensure_future(run())
        ready = asyncio.ensure_future(subscribed.wait())
        try:
            await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # the watcher could not connect: say why
            if not subscribed.is_set():
                raise TimeoutError("the watcher did not subscribe within 10 s")
            yield arrivals
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def peer(self, *filters: str) -> contextlib.AbstractAsyncContextManager[Peer]:
        return _peer(self.host, self.port, filters, 1)

    async def publish_raw(self, topic: str, payload: bytes) -> None:
        if self._sender is None:
            self._sender = await self._stack.enter_async_context(aiomqtt.Client(self.host, self.port))
        await self._sender.publish(topic, payload, 1)

    async def send_command(self, device_id: str, name: str, payload: Any = None, *, time: int | None = None) -> None:
        body: dict[str, Any] = {"name": name, "payload": payload}
        if time is not None:
            body["time"] = to_ejson_date(time)
        await self.publish_raw(f"losant/{device_id}/command", msgspec.json.encode(body))

    async def restart(self) -> None:
        await self.broker.restart()


class EmulatorWorld(World):
    """The Losant emulator: devices provisioned in one application; the emulator's store watches."""

    kind = "emulator"

    def __init__(self, stack: contextlib.AsyncExitStack, losant: LocalLosant) -> None:
        super().__init__(stack)
        self.losant = losant
        self.app: Application = losant.create_application(name="mqtt-suite")
        key = self.app.create_access_key()
        self._key, self._secret = key.key, key.secret
        self.host = losant.mqtt_host
        self.port = losant.mqtt_port
        self.ws_port = losant.ws_port
        self._count = 0

    def device(self, *, device_class: str = "standalone", parent_id: str | None = None) -> Creds:
        self._count += 1
        made = self.app.create_device(
            name=f"{device_class}-{self._count}", device_class=device_class, parent_id=parent_id, attributes=ATTRIBUTES
        )
        return Creds(made.id, self._key, self._secret)

    @contextlib.asynccontextmanager
    async def watch(self, *, survive_restart: bool = False) -> AsyncIterator[Arrivals]:
        arrivals = Arrivals()  # the store outlives a broker restart: nothing to do for survive_restart

        def on_state(record: StateRecord) -> None:
            arrivals.add(record.device_id, {"data": dict(record.data), "time": record.time})

        unlisten = self.losant.store.on_state(on_state)
        try:
            yield arrivals
        finally:
            unlisten()

    @contextlib.asynccontextmanager
    async def peer(self, *filters: str) -> AsyncIterator[Peer]:
        # The emulator only lets known devices in: the peer is one more device of the application.
        me = self.device()
        async with _peer(self.host, self.port, filters, 1, identifier=me.id, username=me.key, password=me.secret) as p:
            yield p

    async def send_command(self, device_id: str, name: str, payload: Any = None, *, time: int | None = None) -> None:
        await self.losant.send_command(device_id, name, payload, time=time)

    async def restart(self) -> None:
        # LocalLosant cannot restart its broker and keep its store: no public way, and stopping
        # its private EmbeddedBroker under QoS 1 traffic hangs in amqtt's Broker.shutdown().
        raise NotImplementedError("the emulator cannot restart its broker; cut the connection instead")


@contextlib.asynccontextmanager
async def running_emulator(**options: Any) -> AsyncIterator[LocalLosant]:
    """A LocalLosant on fixed (free) ports chosen here (retried if another process takes one)."""
    for attempt in range(5):
        losant = LocalLosant(mqtt_port=free_port(), ws_port=free_port(), **options)
        try:
            await losant.__aenter__()
        except OSError:
            if attempt == 4:
                raise
            continue
        try:
            yield losant
        finally:
            await losant.__aexit__(None, None, None)
        return


@contextlib.asynccontextmanager
async def make_world(
    kind: str, *, websockets: bool = False, users: dict[str, str] | None = None, persistence: bool = False
) -> AsyncIterator[World]:
    """``users`` (a password file) and ``persistence`` need mosquitto on the broker side."""
    async with contextlib.AsyncExitStack() as stack:
        if kind == "broker":
            b = await stack.enter_async_context(
                running_broker(websockets=websockets, users=users, persistence=persistence)
            )
            yield BrokerWorld(stack, b)
        else:
            losant = await stack.enter_async_context(running_emulator())
            yield EmulatorWorld(stack, losant)


@pytest.fixture(params=["broker", "emulator"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    async with make_world(request.param) as w:
        yield w


@pytest.fixture(params=["broker", "emulator"])
async def ws_world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    """A world whose broker also listens for MQTT over WebSockets."""
    async with make_world(request.param, websockets=True) as w:
        yield w

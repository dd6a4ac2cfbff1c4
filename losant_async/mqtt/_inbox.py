"""The inbox: routes incoming messages to command streams, command callbacks and custom subscriptions."""

from __future__ import annotations

import contextlib
import inspect
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import DecodeError, ValidationError
from ._config import CommandOverflow
from ._payloads import Command, decode_command
from ._streams import Message, Stream
from ._topics import command_topic, topic_matches

__all__ = ["CommandCallback", "Inbox"]

log = logging.getLogger("losant_async.mqtt")

CommandCallback = Callable[[Command], "Awaitable[None] | None"]
SpawnFn = Callable[[Awaitable[Any], str], None]

#: Async command callbacks running at once per device (or gateway); the next ones queue, up to
#: ``stream_size``, under the command streams' overflow policy.
MAX_RUNNING_CALLBACKS = 100


class Inbox:
    """Who gets what arrives on one connection: per device id (the device, a gateway's peripherals).

    ``on_message(topic, payload)`` runs on paho's read path: it decodes commands,
    pushes them to the streams and calls the callbacks (a coroutine callback is
    handed to ``spawn``), and fans custom-topic messages out to their streams.
    With ``overflow="wait"`` a full command stream calls ``pause(True)`` (the
    session stops reading) until its consumer catches up (``pause(False)``).

    Async callbacks are bounded like streams: ``MAX_RUNNING_CALLBACKS`` run at
    once, the next wait in a queue of ``stream_size``, and when it is full the
    oldest waiting is dropped (counted in ``callbacks_dropped``) or, with
    "wait", reading pauses until the queue is down to half.
    """

    __slots__ = (
        "_callbacks", "_command_topics", "_custom", "_ended", "_error", "_full", "_overflow", "_pause", "_queued",
        "_running", "_spawn", "_stream_size", "_streams", "callbacks_dropped", "commands", "device_id",
        "malformed", "own_ids",
    )

    def __init__(
        self,
        device_id: str,
        *,
        stream_size: int,
        overflow: CommandOverflow,
        spawn: SpawnFn,
        pause: Callable[[bool], None] = lambda paused: None,
    ) -> None:
        self.device_id: str = device_id
        self._stream_size = stream_size
        self._overflow = overflow
        self._spawn = spawn
        self._pause = pause
        self._full: set[int] | None = None  # made on first use: most devices never fill a stream
        #: The device ids this connection speaks for (the device, and a gateway's peripherals).
        self.own_ids: set[str] = {device_id}
        self._command_topics: dict[str, str] = {command_topic(device_id): device_id}
        self._streams: dict[str, weakref.WeakSet[Stream[Command]]] = {}
        self._callbacks: dict[str, list[CommandCallback]] = {}
        self._custom: dict[str, tuple[int, set[Stream[Message]]]] = {}
        self._ended = False
        self._error: BaseException | None = None
        #: Commands that could not be decoded; commands decoded and delivered.
        self.malformed: int = 0
        self.commands: int = 0
        #: Commands an async callback never got: its queue was full (policy "drop_oldest").
        self.callbacks_dropped: int = 0
        self._running = 0
        self._queued: deque[tuple[Awaitable[Any], str]] | None = None  # made on first use

    # -- who is served ------------------------------------------------------------------
    def add_device(self, device_id: str) -> str:
        """Serve ``device_id``'s commands too (a gateway's peripheral); its command topic."""
        topic = command_topic(device_id)
        self.own_ids.add(device_id)
        self._command_topics[topic] = device_id
        return topic

    def remove_device(self, device_id: str) -> str:
        """Stop serving ``device_id``: end its streams, drop its callbacks; its command topic."""
        topic = command_topic(device_id)
        self.own_ids.discard(device_id)
        self._command_topics.pop(topic, None)
        self._callbacks.pop(device_id, None)
        for stream in list(self._streams.pop(device_id, ())):
            stream.end()
        return topic

    def command_filters(self) -> list[str]:
        """The command topics to subscribe to, one per device this connection speaks for."""
        return list(self._command_topics)

    def custom_filters(self) -> list[tuple[str, int]]:
        """The custom topic filters to subscribe to, with their QoS."""
        return [(f, q) for f, (q, _) in self._custom.items()]

    # -- commands -----------------------------------------------------------------------
    def command_stream(self, device_id: str) -> Stream[Command]:
        """A new stream of the commands sent to ``device_id``."""
        streams = self._streams.setdefault(device_id, weakref.WeakSet())
        stream: Stream[Command]
        if self._overflow == "wait":
            stream = Stream(self._stream_size, streams.discard, policy="wait", on_full=self._on_full)
        else:
            stream = Stream(self._stream_size, streams.discard)
        if self._ended:
            stream.end(self._error)
        else:
            streams.add(stream)
        return stream

    def add_callback(self, device_id: str, callback: CommandCallback) -> Callable[[], None]:
        """Call ``callback`` for each command sent to ``device_id``; returns a function that stops it."""
        if not callable(callback):
            raise ValidationError("on_command needs a callable")
        callbacks = self._callbacks.setdefault(device_id, [])
        callbacks.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                callbacks.remove(callback)

        return remove

    def _on_full(self, stream: Stream[Any], full: bool) -> None:
        self._set_full(id(stream), full)

    def _set_full(self, key: int, full: bool) -> None:
        if self._full is None:
            self._full = set()
        was_paused = bool(self._full)
        if full:
            self._full.add(key)
        else:
            self._full.discard(key)
        if bool(self._full) != was_paused:
            self._pause(bool(self._full))

    # -- the read path ------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes) -> None:
        """Route a message from the broker to the command streams and callbacks, or the custom streams."""
        device_id = self._command_topics.get(topic)
        if device_id is not None:
            self._dispatch_command(device_id, payload)
            return
        if self._custom:
            message: Message | None = None
            for topic_filter, (_, streams) in self._custom.items():
                if topic_matches(topic_filter, topic):
                    if message is None:
                        message = Message(topic, payload)
                    for stream in streams:
                        stream.push(message)

    def _dispatch_command(self, device_id: str, payload: bytes) -> None:
        try:
            command = decode_command(payload, device_id)
        except DecodeError as exc:
            self.malformed += 1
            # The reason names the shape problem; the payload itself is not logged.
            log.warning(
                "device %s: ignored a malformed command for %s (%d bytes): %s",
                self.device_id, device_id, len(payload), exc.args[0], extra={"device_id": device_id},
            )
            return
        self.commands += 1
        streams = self._streams.get(device_id)
        if streams:
            for stream in streams:
                stream.push(command)
        callbacks = self._callbacks.get(device_id)
        if callbacks:
            for callback in list(callbacks):
                try:
                    result = callback(command)
                except Exception:
                    log.exception("device %s: a command callback failed", device_id, extra={"device_id": device_id})
                    continue
                if result is not None and inspect.isawaitable(result):
                    self._run_async(result, device_id)

    def _run_async(self, awaitable: Awaitable[Any], device_id: str) -> None:
        if self._running < MAX_RUNNING_CALLBACKS:
            self._start(awaitable, device_id)
            return
        queued = self._queued
        if queued is None:
            queued = self._queued = deque()
        if len(queued) >= self._stream_size and self._overflow == "drop_oldest":
            dropped, _ = queued.popleft()
            _discard(dropped)
            self.callbacks_dropped += 1
            if _worth_logging(self.callbacks_dropped):
                log.warning(
                    "device %s: async command callbacks fall behind: %d commands dropped so far "
                    "(%d running, %d waiting)", self.device_id, self.callbacks_dropped, self._running, len(queued),
                    extra={"device_id": self.device_id},
                )
        queued.append((awaitable, device_id))
        if self._overflow == "wait" and len(queued) >= self._stream_size:
            self._set_full(id(queued), True)

    def _start(self, awaitable: Awaitable[Any], device_id: str) -> None:
        self._running += 1
        self._spawn(self._guard(awaitable, device_id), f"losant-mqtt-command:{device_id}")

    async def _guard(self, awaitable: Awaitable[Any], device_id: str) -> None:
        try:
            await awaitable
        except Exception:
            log.exception("device %s: a command callback failed", device_id, extra={"device_id": device_id})
        finally:
            self._running -= 1
            queued = self._queued
            if queued:
                if not self._ended:
                    self._start(*queued.popleft())
                if self._full and len(queued) <= self._stream_size // 2:
                    self._set_full(id(queued), False)

    # -- custom subscriptions -----------------------------------------------------------
    def add_filter(self, topic_filter: str, qos: int, stream: Stream[Message]) -> bool:
        """Route ``topic_filter`` to ``stream``; True when the filter is new (it needs a SUBSCRIBE)."""
        entry = self._custom.get(topic_filter)
        if entry is None:
            self._custom[topic_filter] = (qos, {stream})
            return True
        entry[1].add(stream)
        return False

    def remove_filter(self, topic_filter: str, stream: Stream[Message]) -> bool:
        """Stop routing to ``stream``; True when no stream is left (the filter needs an UNSUBSCRIBE)."""
        entry = self._custom.get(topic_filter)
        if entry is None:
            return False
        entry[1].discard(stream)
        if entry[1]:
            return False
        del self._custom[topic_filter]
        return True

    # -- the end ------------------------------------------------------------------------
    def fail(self, error: BaseException) -> None:
        """The device failed: command streams end with ``error`` (raised to their consumers)."""
        self._error = error
        for streams in self._streams.values():
            for stream in list(streams):
                stream.end(error)

    def end(self) -> None:
        """The device closed: every stream ends after what it holds; waiting callbacks never start."""
        self._ended = True
        queued, self._queued = self._queued, None
        for awaitable, _ in queued or ():
            _discard(awaitable)
        for streams in self._streams.values():
            for stream in list(streams):
                stream.end(self._error)
        for _, message_streams in self._custom.values():
            for message_stream in list(message_streams):
                message_stream.end()


def _discard(awaitable: Awaitable[Any]) -> None:
    if inspect.iscoroutine(awaitable):
        awaitable.close()  # never started: no "coroutine was never awaited" warning


def _worth_logging(count: int) -> bool:
    """1, 10, 100, 1000, ...: a flood is reported without a record per message."""
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count == 1

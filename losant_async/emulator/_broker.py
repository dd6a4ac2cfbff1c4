"""The emulator's MQTT broker: our own MQTT 3.1.1 server (``_mqtt_server``) with Losant's rules (``_rules``).

It replaced embedded amqtt 0.12, whose single broadcast queue scans every
subscription for every message: with 2,000 devices subscribed to their command
topics it carried about 400 messages/s, so state traffic queued up without bound
and commands waited behind it (0 of 120 arrived in a 20 s run). See
docs/emulator.md, "MQTT broker".
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import Callable
from typing import Any

from .. import _json
from .._time import to_ejson_date
from ._limits import Limits
from ._mqtt_server import MqttServer
from ._rules import MAX_PAYLOAD, Rules
from .store import Store

__all__ = ["MAX_PAYLOAD", "EmbeddedBroker", "Rules"]


class EmbeddedBroker:
    """Losant's broker on 127.0.0.1: TCP (optionally TLS) and, optionally, WebSockets."""

    def __init__(
        self,
        store: Store,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_port: int | None = 0,
        throttle: bool = False,
        ssl: _ssl.SSLContext | None = None,
        reap_interval: float = 1.0,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.host = host
        # A command to many devices stamps them all with one time: its date is formatted once
        # (strftime per device was 6 % of the emulator's CPU at 3,000 devices).
        self._date_of: tuple[int, dict[str, str]] = (-1, {})
        self.rules = Rules(store, throttle=throttle)
        self._options: dict[str, Any] = {
            "host": host, "port": port, "ws_port": ws_port, "ssl": ssl, "reap_interval": reap_interval,
            "limits": limits,
        }
        self._server: MqttServer | None = None
        self._pending_listeners: list[tuple[Callable[[str, str, bytes], None], list[Callable[[], None]]]] = []
        self.port = 0
        self.ws_port: int | None = None

    async def start(self) -> None:
        server = MqttServer(self.rules, **self._options)
        await server.start()
        self._server = server
        self.port = server.port
        self.ws_port = server.ws_port
        for listener, holder in self._pending_listeners:
            holder.append(server.on_message(listener))
        self._pending_listeners.clear()

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    # -- what the REST side and LocalLosant use ----------------------------------------------

    async def publish_command(self, device_id: str, name: str, payload: Any, time_ms: int) -> None:
        """Deliver a command on ``losant/<id>/command`` at QoS 0, in the form Losant's clients parse."""
        stamp, date = self._date_of
        if stamp != time_ms:
            date = to_ejson_date(time_ms)
            self._date_of = (time_ms, date)
        body = _json.encode({"name": name, "payload": payload, "time": date})
        await self.publish(f"losant/{device_id}/command", body, 0)

    async def publish(self, topic: str, payload: bytes, qos: int = 0, *, application_id: str | None = None) -> None:
        """Deliver to subscribers as the platform would (no publish ACL).

        A ``losant/<deviceId>/...`` topic reaches the device's application only; a
        custom topic reaches ``application_id``'s subscribers, or every
        application's when it is None.
        """
        server = self._server
        if server is None:
            return
        app = application_id
        if topic.startswith("losant/"):
            parts = topic.split("/")
            device = self.store.devices.get(parts[1]) if len(parts) > 1 else None
            if device is None:
                return
            app = device.application_id
        server.deliver(app, topic, bytes(payload), min(max(qos, 0), 1))

    def on_message(self, listener: Callable[[str, str, bytes], None]) -> Callable[[], None]:
        """Call ``listener(client_id, topic, payload)`` for every accepted client PUBLISH; returns the remover."""
        if self._server is not None:
            return self._server.on_message(listener)
        # registered before start: attach when the server exists
        holder: list[Callable[[], None]] = []
        entry = (listener, holder)
        self._pending_listeners.append(entry)

        def remove() -> None:
            if entry in self._pending_listeners:
                self._pending_listeners.remove(entry)
            for undo in holder:
                undo()

        return remove

    def is_connected(self, device_id: str) -> bool:
        return self._server is not None and device_id in self._server.live

    async def disconnect(self, device_id: str) -> None:
        """Close the device's connection, if it has one (as Losant does for a deleted device)."""
        server = self._server
        session = server.session_of(device_id) if server is not None else None
        if session is not None:
            session.close("disconnected by the platform")

    def revalidate(self) -> None:
        """End the sessions whose access key no longer allows them (deleted, deactivated, narrowed)."""
        if self._server is not None:
            self._server.revalidate()

    def reap(self) -> None:
        """Close connections silent for longer than 1.5 x their keepalive (the reaper does this every second)."""
        if self._server is not None:
            self._server.reap()

"""Emulated MQTT actions of ``application``: publish through the emulator's broker, stream what it carries as SSE."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ...errors import ValidationError
from .._access import publish_target_allowed
from . import _engine
from ._common import Call, Handler, HttpError, Server


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    application_id: str | None = None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching: ``+`` one level, ``#`` the rest."""
    want, have = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return True
        if i >= len(have) or (part != "+" and part != have[i]):
            return False
    return len(want) == len(have)


async def publish_message(srv: Server, call: Call) -> web.Response:
    """Delivered to the broker's subscribers (and the application's SSE streams) as Losant's platform would."""
    body = _engine.check_body(call)
    if not isinstance(body, dict):
        raise ValidationError("request body must be an object with topic and message")
    topic, message = body["topic"], body["message"]
    if "+" in topic or "#" in topic:
        raise ValidationError("topic: a message is published to a topic, not a filter")
    payload = message.encode()
    app_id = call.params["applicationId"]
    if not publish_target_allowed(srv.store, app_id, topic):
        raise HttpError(403, "Forbidden", f"topic {topic}: losant/ topics reach only this application's devices")
    if srv.broker is not None:
        # Custom topics are scoped per application, as on Losant: only this application's devices hear it.
        await srv.broker.publish(topic, payload, 0, application_id=app_id)
    for listener in list(srv.mqtt_listeners):
        listener(Message(topic, payload, app_id))
    return _engine.reply(call.route.full_name, {"success": True})


async def subscription_stream(srv: Server, call: Call) -> web.StreamResponse:
    """``mqttMessage`` events of every message on ``topic`` (a filter), from devices and from REST."""
    topic_filter = call.q("topic")
    if not topic_filter:
        raise ValidationError("topic is required")
    app_id = call.params["applicationId"]

    def from_client(client_id: str) -> str | None:
        device = srv.store.devices.get(client_id)
        return device.application_id if device is not None else None

    def subscribe(listener: Callable[[Any], None]) -> Callable[[], None]:
        listeners = srv.mqtt_listeners
        listeners.append(listener)
        off_broker: Callable[[], None] | None = None
        if srv.broker is not None and hasattr(srv.broker, "on_message"):
            off_broker = srv.broker.on_message(
                lambda client, topic, payload: listener(Message(topic, payload, from_client(client)))
            )

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)
            if off_broker is not None:
                off_broker()

        return unsubscribe

    def render(message: Message) -> dict[str, Any]:
        return {"topic": message.topic, "message": message.payload.decode("utf-8", "replace")}

    return await srv.stream(
        call, "mqttMessage", subscribe, render, accept=lambda m: m.application_id == app_id and topic_matches(topic_filter, m.topic)
    )


HANDLERS: dict[str, Handler] = {
    "application.mqtt_publish_message": publish_message,
    "application.mqtt_subscription_stream": subscription_stream,
}

"""What comes in on one connection: PUBLISH and PUBACK packets taken straight from paho's read buffer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import paho.mqtt.client as paho

__all__ = ["AckHandler", "Inbound", "MessageHandler"]

log = logging.getLogger("losant_async.mqtt")

MessageHandler = Callable[[str, bytes], None]
AckHandler = Callable[[int], None]


class Inbound:
    """Takes over paho's handlers of incoming PUBLISH and PUBACK packets on construction.

    paho decodes MQTT 5 reason codes and properties for every ack and builds a
    message object, a log line and a callback search for every PUBLISH; 3.1.1
    packets are read here directly (QoS 2 and anything odd still go to paho).
    ``on_message(topic, payload)`` and ``on_ack(mid)`` run straight from paho's
    read path. QoS 1 messages written past paho are acknowledged through
    ``direct_acks`` (paho never knew them); those paho published, through
    ``pending_acks``: the publisher adds each mid to one of the two sets.
    """

    __slots__ = ("_client", "_client_id", "_on_ack", "_on_message", "_paho_handle_publish", "_paho_pubackcomp",
                 "direct_acks", "pending_acks")

    def __init__(self, client: paho.Client, *, client_id: str, on_message: MessageHandler, on_ack: AckHandler) -> None:
        self._client = client
        self._client_id = client_id
        self._on_message = on_message
        self._on_ack = on_ack
        #: QoS 1 mids written past paho and not yet acknowledged.
        self.direct_acks: set[int] = set()
        #: QoS 1 mids paho published and not yet acknowledged.
        self.pending_acks: set[int] = set()
        client.on_message = self._on_paho_message
        # on_publish stays unset: paho builds a ReasonCode and a Properties object per
        # message just to call it. PUBACKs are handled by on_puback instead, which for
        # MQTT 3.1.1 needs only the two bytes of the message id; paho's own handler
        # decodes reason codes and properties that 3.1.1 does not have.
        client.on_publish = None
        self._paho_pubackcomp = client._handle_pubackcomp
        client._handle_pubackcomp = self.on_puback  # type: ignore[method-assign]
        # Incoming PUBLISH likewise: paho builds an MQTTMessage, formats a log line and
        # walks its callback matcher per message; the topic and payload are all we need.
        self._paho_handle_publish = client._handle_publish
        client._handle_publish = self.on_publish_packet  # type: ignore[method-assign]

    def _on_paho_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            self._on_message(message.topic, bytes(message.payload))
        except Exception:  # a bug in a handler must not break paho's read loop
            log.exception("device %s: handling an incoming message failed", self._client_id,
                          extra={"device_id": self._client_id})

    def on_publish_packet(self) -> Any:
        client = self._client
        qos = (client._in_packet["command"] & 0x06) >> 1
        packet = client._in_packet["packet"]
        if qos > 1 or len(packet) < 2:
            return self._paho_handle_publish()
        end = 2 + ((packet[0] << 8) | packet[1])
        if len(packet) < end + 2 * qos:
            return self._paho_handle_publish()  # malformed: paho reports it its way
        try:
            topic = bytes(packet[2:end]).decode()
        except UnicodeDecodeError:
            return self._paho_handle_publish()
        if qos:
            mid = (packet[end] << 8) | packet[end + 1]
            end += 2
        try:
            self._on_message(topic, bytes(packet[end:]))
        except Exception:  # a bug in a handler must not break paho's read loop
            log.exception("device %s: handling an incoming message failed", self._client_id,
                          extra={"device_id": self._client_id})
        return client._send_puback(mid) if qos else paho.MQTT_ERR_SUCCESS

    def on_puback(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> Any:
        client = self._client
        packet = client._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) < 2:
            return self._paho_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        direct = self.direct_acks
        if mid in direct:  # written past paho: paho never knew this message
            direct.discard(mid)
            self._on_ack(mid)
            return paho.MQTT_ERR_SUCCESS
        if len(packet) != 2:  # not 3.1.1: let paho decode it, then report the ack
            rc = self._paho_pubackcomp(cmd)
        else:
            rc = paho.MQTT_ERR_SUCCESS
            with client._out_message_mutex:
                msg = client._out_messages.pop(mid, None)
                if msg is None:
                    return rc  # a duplicate PUBACK
                msg.info._set_as_published()
                if msg.qos > 0:
                    client._inflight_messages -= 1
                    # paho rescans every stored message here; only needed when it queued some.
                    if client._max_inflight_messages > 0 and len(client._out_messages) > client._inflight_messages:
                        rc = client._update_inflight()
        pending = self.pending_acks
        if mid in pending:
            pending.discard(mid)
            self._on_ack(mid)
        return rc

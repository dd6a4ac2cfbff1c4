"""One MQTT connection over aiomqtt: the only package that touches aiomqtt or paho.

aiomqtt builds and configures the paho client (TLS, WebSockets, credentials)
and runs its subscribe and unsubscribe. The hot paths go around it on purpose,
through the paho client it wraps (``client._client``):

- publish (``connection``): aiomqtt awaits paho's ``on_publish`` for every
  message, even at QoS 0, an event-loop round trip per message that caps a
  connection near 12,000 messages/s, and paho writes each packet with its own
  ``send`` (over TLS, its own record). Here QoS 0 and QoS 1 PUBLISH packets are
  built here (``wire``; QoS 1 with paho's mid generator) and those of one
  event-loop turn written with one ``send`` (``flusher``), on TCP and TLS
  alike; the caller yields every few hundred messages, when the buffer grows,
  or (QoS 1) when its window of unacknowledged messages is full. WebSockets,
  and a moment when paho has something queued, take paho's own publish.
- PUBACK and incoming PUBLISH (``inbound``): paho decodes MQTT 5 reason codes
  and properties for every ack and builds a message object, a log line and a
  callback search for every PUBLISH; 3.1.1 packets are read here directly
  (QoS 2 and anything odd still go to paho).
- reads (``reader``): aiomqtt handles one packet per readiness event and paho
  reads each packet with three ``recv`` calls; here one wakeup drains every
  packet buffered, from one large ``recv``.
- keepalive (``reader``): aiomqtt runs a task per client that wakes every
  second to call paho's ``loop_misc``: 10,000 devices cost 10,000 task steps a
  second doing nothing. Here one timer per connection fires when ``loop_misc``
  can next have something to do (a keepalive after the last packet out or bytes
  in, or a PINGRESP overdue), about once per keepalive period.
- connect and writer registration (``handshake``, ``connection``): taken apart
  so that cancellation and early hang-ups leave nothing half-open.

This private access lives in this package and nowhere else, so an aiomqtt or
paho upgrade touches only it; every private name is listed in
``internals.PRIVATE_NEEDS`` and checked once per process (and by the canary
test in tests/unit/mqtt/test_internals.py). aiomqtt and paho exceptions are
turned into ``losant_async.errors`` here too.
"""

from .client import default_tls_context
from .connection import Connection
from .internals import PRIVATE_NEEDS, check_internals

__all__ = ["PRIVATE_NEEDS", "Connection", "check_internals", "default_tls_context"]

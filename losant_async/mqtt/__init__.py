"""The MQTT device layer: devices, gateways and peripherals that reconnect and never lose a state."""

from ._config import CommandOverflow, DeviceConfig, Proxy
from ._outbox import MemoryOutbox, Outbox, OutboxItem, OutboxPolicy, SQLiteOutbox
from ._payloads import MAX_PAYLOAD_BYTES, Command
from ._streams import Message, Stream
from ._supervisor import Backoff, ConnectionEvent, ConnectionState, DisconnectKind
from ._throttle import ThrottleConfig
from .device import Device, DeviceStats, Transport
from .fleet import Fleet
from .gateway import Gateway, Peripheral

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "Backoff",
    "Command",
    "CommandOverflow",
    "ConnectionEvent",
    "ConnectionState",
    "Device",
    "DeviceConfig",
    "DeviceStats",
    "DisconnectKind",
    "Fleet",
    "Gateway",
    "MemoryOutbox",
    "Message",
    "Outbox",
    "OutboxItem",
    "OutboxPolicy",
    "Peripheral",
    "Proxy",
    "SQLiteOutbox",
    "Stream",
    "ThrottleConfig",
    "Transport",
]

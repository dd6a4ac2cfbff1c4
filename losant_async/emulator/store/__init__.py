"""Everything the emulator knows, split by concern: records, applications and devices, credentials, history.

``Store`` is the one object the REST server, the broker and ``LocalLosant`` use. Each
device's history goes to a ``SeriesBackend`` (``MemorySeries`` by default); the rest
(applications, devices, credentials, the other API objects as JSON documents in
``Store.docs``, downloadable blobs) are records in memory. With a data directory
(``DataDir``), history goes to ``DiskSeries`` and ``WorldSaver`` saves the records.
"""

from __future__ import annotations

from ._datadir import DataDir, DataDirError
from ._disk_series import DiskSeries
from ._records import (
    DAY_MS,
    DEVICE_CLASSES,
    KEY_FILTER_TYPES,
    ApiTokenRecord,
    ApplicationRecord,
    AttributeRecord,
    BlobRecord,
    Clock,
    CommandRecord,
    ConnectionLogEntry,
    Counters,
    DeviceRecord,
    KeyRecord,
    StateRecord,
    UnknownObjectError,
    UserRecord,
    check_time,
    new_id,
    new_token,
)
from ._series import (
    DEFAULT_MAX_COMMANDS,
    DEFAULT_MAX_STATES,
    DEFAULT_MAX_TOTAL_STATES,
    MemorySeries,
    SeriesBackend,
)
from ._states import HistoryStore
from ._world import WorldSaver

__all__ = [
    "DAY_MS",
    "DEFAULT_MAX_COMMANDS",
    "DEFAULT_MAX_STATES",
    "DEFAULT_MAX_TOTAL_STATES",
    "DEVICE_CLASSES",
    "KEY_FILTER_TYPES",
    "ApiTokenRecord",
    "ApplicationRecord",
    "AttributeRecord",
    "BlobRecord",
    "Clock",
    "CommandRecord",
    "ConnectionLogEntry",
    "Counters",
    "DataDir",
    "DataDirError",
    "DeviceRecord",
    "DiskSeries",
    "KeyRecord",
    "MemorySeries",
    "SeriesBackend",
    "StateRecord",
    "Store",
    "UnknownObjectError",
    "UserRecord",
    "WorldSaver",
    "check_time",
    "new_id",
    "new_token",
]


class Store(HistoryStore):
    """Everything the emulator knows. Synchronous: the event loop is its only user."""

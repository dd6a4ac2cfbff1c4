"""Testing helpers: the pytest plugin and its fixtures; ``LocalLosant`` and its records, re-exported from ``losant_async.emulator``.

::

    from losant_async.testing import LocalLosant  # the same class as losant_async.emulator.LocalLosant
"""

from __future__ import annotations

from ..emulator import (
    AccessKey,
    Application,
    CommandRecord,
    ConnectionLogEntry,
    Counters,
    Device,
    LocalLosant,
    StateRecord,
    Store,
    UnknownObjectError,
    User,
)

__all__ = [
    "AccessKey",
    "Application",
    "CommandRecord",
    "ConnectionLogEntry",
    "Counters",
    "Device",
    "LocalLosant",
    "StateRecord",
    "Store",
    "UnknownObjectError",
    "User",
]

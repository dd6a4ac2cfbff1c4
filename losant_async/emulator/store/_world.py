"""The store's objects (applications, devices, credentials, documents, files, counters) saved to and loaded from a data directory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from ._base import StoreBase
from ._datadir import DataDir
from ._records import (
    ApiTokenRecord,
    ApplicationRecord,
    BlobRecord,
    DeviceRecord,
    KeyRecord,
    UserRecord,
)

__all__ = ["WorldSaver"]

_RECORDS: dict[str, type[Any]] = {
    "applications": ApplicationRecord,
    "devices": DeviceRecord,
    "keys": KeyRecord,
    "tokens": ApiTokenRecord,
    "users": UserRecord,
    "blobs": BlobRecord,
}
_DOC = "doc:"
_COUNTERS = ("meta", "counters")

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


def _rows(store: StoreBase) -> Iterator[tuple[tuple[str, str], bytes]]:
    for kind in _RECORDS:
        collection: dict[str, Any] = getattr(store, kind)
        for key, record in collection.items():
            yield (kind, key), _encode(record)
    for name, docs in store.docs.items():
        for key, doc in docs.items():
            yield (_DOC + name, key), _encode(doc)
    yield _COUNTERS, _encode(store.counters.as_dict())


class WorldSaver:
    """Writes what changed in the store's objects since the last save, and loads them back.

    A save encodes every object and queues only those whose bytes changed (and deletes the
    ones gone): handlers change records in place, so a diff is what catches every change.
    """

    def __init__(self, store: StoreBase, data: DataDir) -> None:
        self._store = store
        self._data = data
        self._seen: dict[tuple[str, str], int] = {}

    def load(self) -> int:
        """Put the saved objects into the store; returns how many were loaded."""
        store = self._store
        loaded = 0
        for kind, key, body in self._data.read("SELECT kind, id, body FROM world"):
            self._seen[(kind, key)] = hash(body)
            loaded += 1
            if (kind, key) == _COUNTERS:
                for name, value in _decode(body).items():
                    if hasattr(store.counters, name):
                        setattr(store.counters, name, value)
            elif kind.startswith(_DOC):
                store.docs.setdefault(kind[len(_DOC):], {})[key] = _decode(body)
            elif kind in _RECORDS:
                record = msgspec.msgpack.decode(body, type=_RECORDS[kind])
                if isinstance(record, DeviceRecord) and record.connected:
                    # nobody is connected to an emulator that just started
                    record.connected = 0
                getattr(store, kind)[key] = record
        for device_id in store.devices:
            store.series.create(device_id)
        return loaded

    def save(self) -> int:
        """Queue the objects that changed since the last save; returns how many rows were queued."""
        seen = self._seen
        fresh: dict[tuple[str, str], int] = {}
        queued = 0
        for ident, body in _rows(self._store):
            digest = hash(body)
            fresh[ident] = digest
            if seen.get(ident) != digest:
                self._data.write("INSERT OR REPLACE INTO world (kind, id, body) VALUES (?, ?, ?)", (*ident, body))
                queued += 1
        for ident in seen.keys() - fresh.keys():
            self._data.write("DELETE FROM world WHERE kind = ? AND id = ?", ident)
            queued += 1
        self._seen = fresh
        return queued

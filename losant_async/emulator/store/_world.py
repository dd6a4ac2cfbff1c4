"""The store's objects (applications, devices, credentials, documents, files, counters) saved to and loaded from a data directory."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from ._base import StoreBase
from ._datadir import DB_NAME, SCHEMA_VERSION, DataDir, DataDirError
from ._records import (
    ApiTokenRecord,
    ApplicationRecord,
    BlobRecord,
    DeviceRecord,
    KeyRecord,
    UserRecord,
)

__all__ = ["WorldSaver", "load_rows", "read_objects", "world_objects", "world_rows"]

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


def world_objects(store: StoreBase) -> Iterator[tuple[tuple[str, str], Any]]:
    """Every object of the store as ((kind, id), the object): what a data directory saves."""
    for kind in _RECORDS:
        collection: dict[str, Any] = getattr(store, kind)
        for key, record in collection.items():
            yield (kind, key), record
    for name, docs in store.docs.items():
        for key, doc in docs.items():
            yield (_DOC + name, key), doc
    yield _COUNTERS, store.counters.as_dict()


def world_rows(store: StoreBase) -> Iterator[tuple[tuple[str, str], bytes]]:
    """Every object of the store as ((kind, id), its encoded form)."""
    for ident, value in world_objects(store):
        yield ident, _encode(value)


def load_rows(store: StoreBase, rows: Iterable[tuple[str, str, bytes]]) -> None:
    """Put saved objects (kind, id, body) into the store."""
    for kind, key, body in rows:
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


def read_objects(path: str | os.PathLike[str]) -> list[tuple[str, str, bytes]]:
    """The objects saved in a data directory, read without its lock (an emulator may be running on
    it: what it saved up to a second ago); DataDirError when it is none or is from a newer version."""
    db = Path(path) / DB_NAME
    if not db.is_file():
        raise DataDirError(f"{path} is not an emulator data directory (no {DB_NAME})")
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or int(row[0]) > SCHEMA_VERSION:
            raise DataDirError(f"data directory {path} has schema {row and row[0]}; this version reads up to {SCHEMA_VERSION}")
        return conn.execute("SELECT kind, id, body FROM world ORDER BY ord").fetchall()
    except sqlite3.Error as exc:
        raise DataDirError(f"cannot read data directory {path}: {exc}") from None
    finally:
        conn.close()


class WorldSaver:
    """Writes what changed in the store's objects since the last save, and loads them back.

    A save encodes every object and queues only those whose bytes changed (and deletes the
    ones gone): handlers change records in place, so a diff is what catches every change.
    """

    def __init__(self, store: StoreBase, data: DataDir) -> None:
        self._store = store
        self._data = data
        self._seen: dict[tuple[str, str], tuple[int, int]] = {}
        """(kind, id) -> (hash of the saved bytes, its order of creation, which a load keeps)."""
        self._next = 0
        self._blobs: dict[str, BlobRecord] = {}

    def load(self) -> int:
        """Put the saved objects into the store; returns how many were loaded."""
        rows = self._data.read("SELECT kind, id, body, ord FROM world ORDER BY ord")
        for kind, key, body, order in rows:
            self._seen[(kind, key)] = (hash(body), order)
            self._next = max(self._next, order + 1)
        load_rows(self._store, [row[:3] for row in rows])
        return len(rows)

    def save(self) -> int:
        """Queue the objects that changed since the last save; returns how many rows were queued."""
        seen = self._seen
        fresh: dict[tuple[str, str], tuple[int, int]] = {}
        blobs: dict[str, BlobRecord] = {}
        queued = 0
        for ident, value in world_objects(self._store):
            if isinstance(value, BlobRecord):
                # files never change (a frozen record): one that was saved is not encoded again
                blobs[ident[1]] = value
                if self._blobs.get(ident[1]) is value:
                    fresh[ident] = seen[ident]
                    continue
            body = _encode(value)
            digest = hash(body)
            known = seen.get(ident)
            if known is None:
                known = (0, self._next)
                self._next += 1
            fresh[ident] = (digest, known[1])
            if known[0] != digest:
                self._data.write(
                    "INSERT OR REPLACE INTO world (kind, id, ord, body) VALUES (?, ?, ?, ?)", (*ident, known[1], body)
                )
                queued += 1
        for ident in seen.keys() - fresh.keys():
            self._data.write("DELETE FROM world WHERE kind = ? AND id = ?", ident)
            queued += 1
        self._seen = fresh
        self._blobs = blobs
        return queued

"""The data directory: one SQLite database (WAL) behind a lock file, written in batches by a thread."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

import msgspec

from ...errors import LosantError

__all__ = ["DB_NAME", "FLUSH_INTERVAL", "LOCK_NAME", "MAX_QUEUED", "SCHEMA_VERSION", "DataDir", "DataDirError"]

log = logging.getLogger("losant_async.emulator")

SCHEMA_VERSION = 1
"""The layout this version writes; an older one is migrated, a newer one refused."""
DB_NAME = "emulator.sqlite3"
LOCK_NAME = "emulator.lock"
FLUSH_INTERVAL = 0.2
"""Seconds between the writer's batches: what ``kill -9`` can lose (plus one batch's write)."""
MAX_QUEUED = 100_000
"""Writes queued beyond this are committed by the caller itself: the queue's bound (backpressure, nothing dropped)."""

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE world (kind TEXT NOT NULL, id TEXT NOT NULL, ord INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;
CREATE TABLE series (dev INTEGER PRIMARY KEY, device_id TEXT NOT NULL UNIQUE);
CREATE TABLE states (dev INTEGER NOT NULL, time INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (dev, time)) WITHOUT ROWID;
CREATE TABLE commands (seq INTEGER PRIMARY KEY, dev INTEGER NOT NULL, time INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX commands_dev ON commands (dev, seq);
CREATE TABLE connections (seq INTEGER PRIMARY KEY, dev INTEGER NOT NULL, time INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX connections_dev ON connections (dev, seq);
"""

_MIGRATIONS: dict[int, str] = {}
"""Schema version -> the SQL that brings it to the next version (none yet: version 1 is the first)."""


class DataDirError(LosantError):
    """The data directory cannot be used: another emulator holds it, a newer version wrote it, or it is no directory."""


Op = tuple[str, Sequence[Any]]


class DataDir:
    """An open data directory: the lock held, the schema checked, a writer thread running.

    The event loop queues writes (``write``) and never waits for the disk; the writer thread
    commits what is queued every ``flush_interval`` seconds in one transaction. A read
    (``read``) first writes whatever is still queued, so it sees every accepted write.
    """

    def __init__(self, path: str | os.PathLike[str], *, flush_interval: float = FLUSH_INTERVAL) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise DataDirError(f"data directory {self.path} is not a directory")
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)  # it holds secrets
        self._lock_fd = _take_lock(self.path / LOCK_NAME)
        try:
            self._conn = sqlite3.connect(
                self.path / DB_NAME, check_same_thread=False, isolation_level=None, timeout=5.0
            )
        except BaseException:
            os.close(self._lock_fd)
            raise
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.create_function("merge_state", 2, _merge_state, deterministic=True)
            self.schema_from = self._check_schema()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            os.close(self._lock_fd)
            raise DataDirError(f"{self.path / DB_NAME} cannot be read as an emulator database: {exc}") from None
        except BaseException:
            self._conn.close()
            os.close(self._lock_fd)
            raise
        self.flush_interval = flush_interval
        self.failure: str | None = None
        """Why the last batch failed to commit (it is logged too); None while all is well."""
        self.after_flush: list[Callable[[sqlite3.Connection], None]] = []
        """Run by the writer inside each batch's transaction (retention by age)."""
        self._ops: deque[Op] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="losant-emulator-writer", daemon=True)
        self._thread.start()

    # -- schema ------------------------------------------------------------------------------

    def _check_schema(self) -> int:
        """The version found (0 for a new directory), after creating or migrating the schema."""
        tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            self._conn.executescript(f"BEGIN; {_SCHEMA} INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;")
            return 0
        if "meta" not in tables:
            raise DataDirError(f"{self.path / DB_NAME} is not an emulator data directory's database")
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        found = int(row[0]) if row is not None and str(row[0]).isdigit() else -1
        if found > SCHEMA_VERSION:
            raise DataDirError(
                f"data directory {self.path} was written by a newer losant-async (schema {found}; "
                f"this version reads up to {SCHEMA_VERSION}): upgrade losant-async or use another directory"
            )
        if found < 1 or any(v not in _MIGRATIONS for v in range(found, SCHEMA_VERSION)):
            raise DataDirError(f"data directory {self.path} has schema {found}, which this version cannot migrate")
        for version in range(found, SCHEMA_VERSION):
            self._conn.executescript(
                f"BEGIN; {_MIGRATIONS[version]} UPDATE meta SET value = '{version + 1}' WHERE key = 'schema_version'; COMMIT;"
            )
            log.info("data directory %s migrated from schema %d to %d", self.path, version, version + 1)
        return found

    # -- writes ----------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"data directory {self.path} is closed: start an emulator on it to read or write it")

    def write(self, sql: str, params: Sequence[Any]) -> None:
        """Queue a write; the writer commits it within ``flush_interval`` seconds."""
        self._require_open()
        self._ops.append((sql, params))
        if len(self._ops) >= MAX_QUEUED:
            # the disk is behind: wait for it here rather than let the queue grow without bound
            self.flush()

    @property
    def queued(self) -> int:
        """Writes queued and not yet committed."""
        return len(self._ops)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_interval)
            self.flush()

    def flush(self) -> None:
        """Commit every queued write now (on the calling thread)."""
        with self._lock:
            ops: list[Op] = []
            while True:
                try:
                    ops.append(self._ops.popleft())
                except IndexError:
                    break
            if not ops:
                return
            try:
                self._conn.execute("BEGIN")
                for sql, run in groupby(ops, key=lambda op: op[0]):
                    self._conn.executemany(sql, [params for _, params in run])
                for hook in self.after_flush:
                    hook(self._conn)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                self.failure = f"{type(exc).__name__}: {exc}"
                log.error("data directory %s: %d writes lost: %s", self.path, len(ops), self.failure)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a query, after committing what is queued."""
        self._require_open()
        self.flush()
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        """Commit everything queued, stop the writer, close the database and release the lock."""
        if self._closed:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join()
        self.flush()
        self._closed = True
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
        os.close(self._lock_fd)


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(dict[str, Any]).decode


def _merge_state(old: bytes, new: bytes) -> bytes:
    """Two states of one millisecond as one: the later report's attributes win."""
    merged = _decode(old)
    merged.update(_decode(new))
    return _encode(merged)


def _take_lock(path: Path) -> int:
    """An exclusive lock on the lock file, held while the descriptor is open; DataDirError if taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock_fd(fd)
    except OSError:
        try:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        except OSError:  # Windows: the holder's lock covers the bytes too
            holder = "unknown"
        os.close(fd)
        raise DataDirError(
            f"data directory {path.parent} is in use by another emulator (pid {holder}); "
            "stop it first or give this one another --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _lock_fd(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

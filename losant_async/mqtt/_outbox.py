"""Bounded outboxes that hold messages until the broker has them: in memory or on SQLite.

An outbox is a queue with a cursor. ``take`` hands out the next message not yet
sent; ``ack`` removes one for good (QoS 0: once written, QoS 1: once PUBACKed);
``rewind`` after a lost connection makes every unacknowledged message unsent
again, so it is re-sent in its original order. Nothing here does network I/O;
the SQLite outbox runs its file I/O in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from os import PathLike
from typing import Any, Literal

from ..errors import DeviceClosedError, OutboxFullError, OutboxStorageError, ValidationError

__all__ = ["MemoryOutbox", "Outbox", "OutboxItem", "OutboxPolicy", "SQLiteOutbox"]

OutboxPolicy = Literal["wait", "drop_oldest"]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One message waiting for the broker: ``seq`` orders it among its outbox's messages."""

    seq: int
    topic: str
    payload: bytes
    qos: int


class Outbox:
    """The common part: a bounded, ordered index of messages with a send cursor.

    ``policy`` says what a full outbox does to a new message: ``"wait"`` makes the
    sender wait for room (``put(..., wait=False)`` raises ``OutboxFullError``
    instead), ``"drop_oldest"`` discards the oldest message and counts it.
    """

    def __init__(self, capacity: int = 10_000, policy: OutboxPolicy = "wait") -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ValidationError(f"outbox capacity must be a positive int, not {capacity!r}")
        if policy not in ("wait", "drop_oldest"):
            raise ValidationError(f"outbox policy must be 'wait' or 'drop_oldest', not {policy!r}")
        self.capacity: int = capacity
        self.policy: OutboxPolicy = policy
        self._items: dict[int, OutboxItem] = {}
        self._head = 0
        self._next = 0
        self._cursor = 0
        self._closed = False
        # Events are created lazily: most devices never wait on a full or empty outbox.
        self._space: asyncio.Event | None = None
        self._empty: asyncio.Event | None = None
        #: Messages discarded by the drop_oldest policy.
        self.dropped: int = 0
        #: Seconds senders spent waiting for room.
        self.waited: float = 0.0

    # -- state ---------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Messages held: not yet sent, or sent and not yet acknowledged."""
        return len(self._items)

    @property
    def has_unsent(self) -> bool:
        """True when ``take`` may return a message."""
        return self._cursor < self._next

    def __len__(self) -> int:
        return len(self._items)

    # -- producer side --------------------------------------------------------------------
    async def put(self, topic: str, payload: bytes, qos: int, *, wait: bool = True) -> None:
        """Add a message at the end, applying the policy when full."""
        if self._closed:
            raise DeviceClosedError("the outbox is closed")
        if len(self._items) >= self.capacity:
            if self.policy == "drop_oldest":
                self._drop_oldest()
            elif not wait:
                raise OutboxFullError(f"the outbox holds {self.capacity} messages (its capacity)")
            else:
                await self._wait_for_room()
        item = OutboxItem(self._next, topic, payload, qos)
        try:
            seq = await self._persist_put(item)
        except BaseException:
            # Not stored (a cancelled put is undone before the cancellation reaches the caller).
            # The number may have been used on disk, so it is never handed out again; a gap
            # is harmless (take, rewind and drop_oldest skip missing numbers).
            self._next = max(self._next, item.seq + 1)
            raise
        if seq != item.seq:
            item = OutboxItem(seq, topic, payload, qos)
        self._items[seq] = item
        self._next = seq + 1
        if self._empty is not None:
            self._empty.clear()

    async def _wait_for_room(self) -> None:
        started = time.monotonic()
        try:
            while len(self._items) >= self.capacity:
                if self._closed:
                    raise DeviceClosedError("the outbox was closed while waiting for room")
                if self._space is None:
                    self._space = asyncio.Event()
                self._space.clear()
                await self._space.wait()
        finally:
            self.waited += time.monotonic() - started

    def _drop_oldest(self) -> None:
        while self._head < self._next:
            seq = self._head
            self._head += 1
            if self._items.pop(seq, None) is not None:
                self.dropped += 1
                self._forget(seq)
                return

    # -- consumer side --------------------------------------------------------------------
    def take(self) -> OutboxItem | None:
        """The next message not yet handed out, or None."""
        items = self._items
        while self._cursor < self._next:
            item = items.get(self._cursor)
            self._cursor += 1
            if item is not None:
                return item
        return None

    def ack(self, seq: int) -> None:
        """The broker has message ``seq``: remove it for good."""
        if self._items.pop(seq, None) is None:
            return  # already dropped or acknowledged (a duplicate PUBACK)
        self._forget(seq)
        if self._space is not None:
            self._space.set()
        if not self._items and self._empty is not None:
            self._empty.set()

    def rewind(self) -> None:
        """Make every unacknowledged message unsent again (after a lost connection)."""
        while self._head < self._next and self._head not in self._items:
            self._head += 1
        self._cursor = self._head

    async def wait_empty(self) -> None:
        """Return when every message was acknowledged."""
        while self._items:
            if self._closed:
                raise DeviceClosedError("the outbox was closed before it emptied")
            if self._empty is None:
                self._empty = asyncio.Event()
            self._empty.clear()
            await self._empty.wait()

    # -- life -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Prepare for use (load what a persistent outbox kept)."""
        self._closed = False

    async def sync(self) -> None:
        """Make acknowledgements durable (a no-op in memory)."""

    async def aclose(self) -> None:
        """Stop accepting messages and wake every waiter."""
        self._closed = True
        for event in (self._space, self._empty):
            if event is not None:
                event.set()

    # -- persistence hooks ------------------------------------------------------------------
    async def _persist_put(self, item: OutboxItem) -> int:
        """Store ``item`` durably before it becomes visible; return the sequence number it was stored under.

        On any exception (cancellation included) the item must not be stored.
        """
        return item.seq

    def _forget(self, seq: int) -> None:
        """Note that ``seq`` left the outbox (persisted on the next ``sync``)."""

    def _load(self, items: list[OutboxItem]) -> None:
        self._items = {item.seq: item for item in items}
        first = items[0].seq if items else 0
        self._head = self._cursor = first
        self._next = items[-1].seq + 1 if items else 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(depth={self.depth}, capacity={self.capacity}, policy={self.policy!r})"


class MemoryOutbox(Outbox):
    """An outbox in memory: fast, lost when the process ends."""


class _PutTicket:
    """Where one row write stands, shared with its worker thread under ``SQLiteOutbox._ticket_lock``.

    The event loop abandons a write it was cancelled during; the thread checks that
    just before COMMIT. Whichever comes first decides: an abandoned write rolls
    back, a committing one is stored (and then undone by the cancelled put).
    """

    __slots__ = ("abandoned", "committing")

    def __init__(self) -> None:
        self.abandoned = False
        self.committing = False


class SQLiteOutbox(Outbox):
    """An outbox in a SQLite file: what it holds survives a restart of the process.

    The file is opened when the device starts. sqlite3 calls run in worker threads
    (never on the event loop), one at a time. Acknowledgements are made durable in
    batches, so after a crash a few acknowledged messages may be sent again; with
    their original timestamps Losant treats the repeat as the same state. Use one
    file per device.

    A cancelled ``put`` (``send_state`` under ``asyncio.wait_for``, a task group
    shutting down) stores nothing: a row write in progress is rolled back, or, if
    it had already committed, deleted again before the cancellation reaches the
    caller, so a state its caller saw cancelled is never published, now or after a
    restart. SQLite failures surface as ``OutboxStorageError``.
    """

    def __init__(self, path: str | PathLike[str], capacity: int = 100_000, policy: OutboxPolicy = "wait") -> None:
        super().__init__(capacity, policy)
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._db_lock = threading.Lock()
        # Guards only the two flags of a _PutTicket: held for a few instructions, so taking
        # it on the event loop never waits on file I/O.
        self._ticket_lock = threading.Lock()
        self._put_lock: asyncio.Lock | None = None
        self._forgotten: list[int] = []
        self._sync_task: asyncio.Future[None] | None = None
        self._undoing: set[asyncio.Future[None]] = set()

    def _open_db(self) -> list[tuple[int, str, bytes, int]]:
        with self._db_lock:
            try:
                db = sqlite3.connect(self.path, check_same_thread=False)
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute(
                        "CREATE TABLE IF NOT EXISTS outbox "
                        "(seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL)"
                    )
                    db.commit()
                    rows = db.execute("SELECT seq, topic, payload, qos FROM outbox ORDER BY seq").fetchall()
                except BaseException:
                    db.close()
                    raise
            except sqlite3.Error as exc:
                raise OutboxStorageError(f"cannot open the SQLite outbox: {exc}") from exc
            self._db = db
            return rows

    def _insert(self, item: OutboxItem, ticket: _PutTicket) -> int | None:
        """Write ``item``'s row; its sequence number, or None when the put was abandoned first."""
        with self._db_lock:
            db = self._db
            if db is None:
                raise DeviceClosedError("the SQLite outbox is closed")
            try:
                # The number comes from what is committed: never below the caller's, never on an
                # existing row (one left by an earlier process, or a cancelled put being undone).
                (top,) = db.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM outbox").fetchone()
                seq = max(item.seq, int(top))
                db.execute(
                    "INSERT INTO outbox (seq, topic, payload, qos) VALUES (?, ?, ?, ?)",
                    (seq, item.topic, item.payload, item.qos),
                )
                with self._ticket_lock:
                    if ticket.abandoned:
                        db.rollback()
                        return None
                    ticket.committing = True
                db.commit()
            except sqlite3.Error as exc:
                db.rollback()
                raise OutboxStorageError(f"cannot write to the SQLite outbox: {exc}") from exc
            return seq

    def _delete(self, seqs: list[int]) -> None:
        with self._db_lock:
            if self._db is None:
                raise DeviceClosedError("the SQLite outbox is closed")
            try:
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
                self._db.commit()
            except sqlite3.Error as exc:
                self._db.rollback()
                raise OutboxStorageError(f"cannot delete from the SQLite outbox: {exc}") from exc

    def _close_db(self, db: sqlite3.Connection) -> None:
        with self._db_lock:
            db.close()

    async def open(self) -> None:
        """Open the database file and load the messages it still holds."""
        await super().open()
        if self._db is None:
            rows = await asyncio.to_thread(self._open_db)
            self._load([OutboxItem(int(s), str(t), bytes(p), int(q)) for s, t, p, q in rows])

    async def put(self, topic: str, payload: bytes, qos: int, *, wait: bool = True) -> None:
        """Queue a message, written to the database before it counts as stored."""
        if self._db is None:
            raise DeviceClosedError("the SQLite outbox is not open (start the device first)")
        # Whole puts run one at a time so sequence numbers become visible in call order.
        if self._put_lock is None:
            self._put_lock = asyncio.Lock()
        async with self._put_lock:
            await super().put(topic, payload, qos, wait=wait)

    async def _persist_put(self, item: OutboxItem) -> int:
        ticket = _PutTicket()
        # The thread cannot be stopped, so it is shielded: a cancellation decides, through the
        # ticket, whether the row is rolled back or (already committed) deleted again.
        write = asyncio.ensure_future(asyncio.to_thread(self._insert, item, ticket))
        try:
            seq = await asyncio.shield(write)
        except asyncio.CancelledError:
            with self._ticket_lock:
                stored = ticket.committing
                if not stored:
                    ticket.abandoned = True
            if not stored:
                write.add_done_callback(_consume)  # it rolls back; nothing to wait for
                raise
            undo = asyncio.ensure_future(self._undo(write))
            self._undoing.add(undo)
            undo.add_done_callback(self._undoing.discard)
            undo.add_done_callback(_consume)
            # Waited for, so the row is gone before the caller hears "cancelled"; a second
            # cancellation leaves it to finish on its own (aclose waits for it). Either way
            # the caller gets the original cancellation.
            with contextlib.suppress(BaseException):
                await asyncio.shield(undo)
            raise
        if seq is None:  # pragma: no cover - only an abandoned write returns None
            raise asyncio.CancelledError
        return seq

    async def _undo(self, write: asyncio.Future[int | None]) -> None:
        try:
            seq = await write
        except Exception:
            return  # the write failed: nothing was stored
        if seq is not None:
            await asyncio.to_thread(self._delete, [seq])

    def _forget(self, seq: int) -> None:
        self._forgotten.append(seq)

    async def sync(self) -> None:
        """Delete the acknowledged messages from the database file."""
        # One delete at a time; a cancelled caller leaves it running to completion (the
        # thread cannot be stopped), and aclose waits for it before closing the file.
        while self._sync_task is not None and not self._sync_task.done():
            await asyncio.shield(self._sync_task)
        if self._forgotten and self._db is not None:
            batch, self._forgotten = self._forgotten, []
            self._sync_task = asyncio.ensure_future(asyncio.to_thread(self._delete, batch))
            try:
                await asyncio.shield(self._sync_task)
            except DeviceClosedError:
                self._forgotten[:0] = batch

    async def aclose(self) -> None:
        """Close the outbox, finishing pending writes, then the database file."""
        await super().aclose()
        try:
            if self._undoing:
                await asyncio.gather(*self._undoing, return_exceptions=True)
            if self._sync_task is not None:
                await asyncio.gather(self._sync_task, return_exceptions=True)
            await self.sync()
        finally:
            db, self._db = self._db, None
            if db is not None:
                await asyncio.to_thread(self._close_db, db)


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve a background write's or undo's outcome so a failure is not reported as never retrieved."""
    if not future.cancelled():
        future.exception()

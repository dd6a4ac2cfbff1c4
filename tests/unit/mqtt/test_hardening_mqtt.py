"""Issue 11's MQTT findings (1, 6, 7, 9), each pinned by a test named after it: no broker."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from losant_async.errors import (
    DecodeError,
    InvalidIdError,
    LosantError,
    OutboxStorageError,
    TopicNotAllowedError,
    ValidationError,
)
from losant_async.mqtt import Device
from losant_async.mqtt._outbox import OutboxItem, SQLiteOutbox, _PutTicket
from losant_async.mqtt._payloads import MAX_COMMAND_DEPTH, _nesting_depth, _too_deep, decode_command
from losant_async.mqtt._topics import (
    check_publish_topic,
    check_subscribe_filter,
    validate_device_id,
)

DEV = "5f0c0a1b2c3d4e5f6a7b8c9d"
OTHER = "aaaaaaaaaaaaaaaaaaaaaaaa"
WAIT = 30.0  # generous: the machine is shared

pytestmark = pytest.mark.timeout(60)


# -- finding 1: a cancelled put on the SQLite outbox ------------------------------------------


class HeldOutbox(SQLiteOutbox):
    """A SQLite outbox whose next row write can be held in its thread, before or after the commit."""

    def __init__(self, path: Path, *, hold: str) -> None:
        super().__init__(path)
        self.hold = hold  # "before": ahead of the INSERT; "after": once committed; "": never
        self.entered = threading.Event()
        self.release = threading.Event()

    def _insert(self, item: OutboxItem, ticket: _PutTicket) -> int | None:
        hold, self.hold = self.hold, ""
        if hold == "before":
            self.entered.set()
            assert self.release.wait(WAIT)
        result = super()._insert(item, ticket)
        if hold == "after":
            self.entered.set()
            assert self.release.wait(WAIT)
        return result


def rows(path: Path) -> list[tuple[int, bytes]]:
    db = sqlite3.connect(path)
    try:
        return [(int(s), bytes(p)) for s, p in db.execute("SELECT seq, payload FROM outbox ORDER BY seq")]
    finally:
        db.close()


async def reopened(path: Path) -> list[bytes]:
    """What a new process would publish from this file, in order."""
    outbox = SQLiteOutbox(path)
    await outbox.open()
    try:
        out = []
        while (item := outbox.take()) is not None:
            out.append(item.payload)
        return out
    finally:
        await outbox.aclose()


async def test_finding_01_cancelled_send_state_keeps_outbox_usable(tmp_path: Path) -> None:
    # The case: the write committed in its thread, then the caller was cancelled.
    path = tmp_path / "outbox.db"
    outbox = HeldOutbox(path, hold="")
    await outbox.open()
    try:
        await outbox.put("t", b"first", 0)
        outbox.hold = "after"
        put = asyncio.ensure_future(outbox.put("t", b"cancelled", 0))
        assert await asyncio.to_thread(outbox.entered.wait, WAIT)
        assert rows(path)[-1][1] == b"cancelled"  # committed in the file at the racy point
        put.cancel()
        await asyncio.sleep(0)  # let the cancellation land while the thread is still held
        outbox.release.set()
        with pytest.raises(asyncio.CancelledError):
            await put
        assert put.cancelled()
        # Usable at once: later puts succeed, in order, with distinct numbers.
        await outbox.put("t", b"second", 0)
        await outbox.put("t", b"third", 1)
        taken = [outbox.take() for _ in range(3)]
        assert [i.payload for i in taken if i is not None] == [b"first", b"second", b"third"]
        assert outbox.take() is None
        seqs = [i.seq for i in taken if i is not None]
        assert seqs == sorted(set(seqs))
        assert [p for _, p in rows(path)] == [b"first", b"second", b"third"]
    finally:
        await outbox.aclose()
    # The state its caller saw cancelled is not published on the next start.
    assert await reopened(path) == [b"first", b"second", b"third"]


async def test_finding_01_put_cancelled_before_its_row_commits_is_not_stored(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = HeldOutbox(path, hold="before")
    await outbox.open()
    try:
        put = asyncio.ensure_future(asyncio.wait_for(outbox.put("t", b"timed-out", 0), 0.05))
        assert await asyncio.to_thread(outbox.entered.wait, WAIT)
        # wait_for expires while the row write is held in its thread: the put is abandoned.
        # (asyncio.TimeoutError: on 3.10 it is not yet the builtin TimeoutError.)
        with pytest.raises(asyncio.TimeoutError):
            await put
        outbox.release.set()
        await outbox.put("t", b"after", 0)  # the held thread rolls back; no UNIQUE clash
        item = outbox.take()
        assert item is not None and item.payload == b"after"
        assert outbox.take() is None
        assert [p for _, p in rows(path)] == [b"after"]
    finally:
        await outbox.aclose()
    assert await reopened(path) == [b"after"]


async def test_finding_01_cancelled_during_a_wait_for_room_stores_nothing(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "o.db", capacity=1)
    await outbox.open()
    try:
        await outbox.put("t", b"a", 0)
        waiting = asyncio.ensure_future(outbox.put("t", b"b", 0))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        item = outbox.take()
        assert item is not None
        outbox.ack(item.seq)
        await outbox.put("t", b"c", 0)
        nxt = outbox.take()
        assert nxt is not None and nxt.payload == b"c"
    finally:
        await outbox.aclose()


async def test_finding_01_a_row_left_on_the_next_number_does_not_leak_integrity_error(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = SQLiteOutbox(path)
    await outbox.open()
    try:
        await outbox.put("t", b"a", 0)
        # Another writer takes the number this outbox would use next.
        db = sqlite3.connect(path)
        db.execute("INSERT INTO outbox (seq, topic, payload, qos) VALUES (1, 't', x'00', 0)")
        db.commit()
        db.close()
        await outbox.put("t", b"b", 0)  # numbered from what is committed: 2, not 1
        items = [outbox.take(), outbox.take()]
        assert [(i.seq, i.payload) for i in items if i is not None] == [(0, b"a"), (2, b"b")]
    finally:
        await outbox.aclose()


async def test_finding_01_sqlite_failures_are_losant_errors(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = SQLiteOutbox(path)
    await outbox.open()
    try:
        db = sqlite3.connect(path)
        db.execute("DROP TABLE outbox")
        db.commit()
        db.close()
        with pytest.raises(OutboxStorageError, match="cannot write") as caught:
            await outbox.put("t", b"a", 0)
        assert isinstance(caught.value, LosantError)
        assert isinstance(caught.value.__cause__, sqlite3.Error)
        assert outbox.take() is None  # nothing half-registered
    finally:
        await outbox.aclose()
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not a sqlite file" * 100)
    with pytest.raises(OutboxStorageError, match="cannot open"):
        await SQLiteOutbox(bad).open()


# -- finding 6: nesting depth -----------------------------------------------------------------


def command_with(payload: str) -> bytes:
    return ('{"name":"deep","payload":' + payload + "}").encode()


@pytest.mark.parametrize("opener,closer", [("[", "]"), ('{"a":', "}")])
def test_finding_06_command_nested_5000_deep_is_a_decode_error(opener: str, closer: str) -> None:
    payload = command_with(opener * 5000 + "1" + closer * 5000)
    with pytest.raises(DecodeError, match="deeper than 64") as caught:
        decode_command(payload, DEV)
    assert caught.value.raw is not None and len(caught.value.raw) <= 200  # bounded, not the whole body


def test_finding_06_depth_limit_is_exact_and_counts_the_command_object() -> None:
    inner = MAX_COMMAND_DEPTH - 1  # the command object itself is level 1
    ok = decode_command(command_with("[" * inner + "]" * inner), DEV)
    assert ok.name == "deep"
    depth, value = 1, ok.payload
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    assert depth == MAX_COMMAND_DEPTH
    with pytest.raises(DecodeError):
        decode_command(command_with("[" * (inner + 1) + "]" * (inner + 1)), DEV)


def test_finding_06_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"s": "[" * 500 + '\\"{' * 300, "t": ["]]]", "\\\\"]})
    command = decode_command(command_with(text), DEV)
    assert command.payload["s"].startswith("[[[")
    assert _nesting_depth(command_with(text)) == 3
    assert not _too_deep(command_with(text), 3) and _too_deep(command_with(text), 2)


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"a": [1, {"b": [[]]}]},
        ["\"[", {"x": "]\\"}, [[["{"]]]],
        [[[[[[[[[[[[]]]]]]]]]]]],
    ],
)
def test_finding_06_depth_scan_agrees_with_the_structure(doc: object) -> None:
    def depth(value: object) -> int:
        if isinstance(value, list):
            return 1 + max((depth(v) for v in value), default=0)
        if isinstance(value, dict):
            return 1 + max((depth(v) for v in value.values()), default=0)
        return 0

    raw = json.dumps(doc).encode()
    assert _nesting_depth(raw) == depth(doc)


def test_finding_06_depth_scan_is_exact_past_the_cheap_bound() -> None:
    raw = json.dumps([["\"[" * 3, {"x": "]\\" * 4}, [[["{"]]]]] * 50).encode()
    assert _nesting_depth(raw) == 5
    assert not _too_deep(raw, 5) and _too_deep(raw, 4)


# -- finding 7: device ids --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        DEV + "\n",
        "\n" + DEV,
        DEV + " ",
        "\u0660" * 24,  # Arabic-Indic digits: Python's \d says yes
        "\uff10" * 24,  # fullwidth digits
        "\u0966" * 24,  # Devanagari digits
        DEV[:-1],
        DEV + "0",
        "g" * 24,
        "",
        None,
        24,
        DEV.encode(),
    ],
)
def test_finding_07_mqtt_device_id_is_ascii_hex_without_trailing_newline(bad: object) -> None:
    with pytest.raises(InvalidIdError):
        validate_device_id(bad)


def test_finding_07_valid_ids_pass_and_the_device_refuses_a_newline() -> None:
    assert validate_device_id(DEV) == DEV
    assert validate_device_id(DEV.upper()) == DEV.upper()
    with pytest.raises(InvalidIdError):
        Device(DEV + "\n", "k", "s")
    with pytest.raises(InvalidIdError, match="peripheral_id"):
        validate_device_id("\u0660" * 24, what="peripheral_id")


# -- finding 9: Losant's topic rules ----------------------------------------------------------


@pytest.mark.parametrize(
    "topic_filter",
    [
        "#",
        "+",
        "+/+/command",
        "+/#",
        f"+/{DEV}/command",
        "losant/#",
        "losant/+/command",
        f"losant/{DEV}/#",
        f"losant/{DEV}/+",
        f"losant/{OTHER}/command",
        f"losant/{DEV}/state",
        f"losant/{DEV}/command/extra",
        "losant//command",
        "losant/",
        "$SYS/#",
        "$SYS/broker/uptime",
        "$share/group/custom/#",
    ],
)
def test_finding_09_subscribe_filters_losant_refuses_are_refused_first(topic_filter: str) -> None:
    with pytest.raises(TopicNotAllowedError):
        check_subscribe_filter(topic_filter, {DEV}, gateway=False)


@pytest.mark.parametrize("topic_filter", ["#", "+/+/command", "losant/+/command", "losant/#", "$SYS/#"])
def test_finding_09_gateways_get_no_wildcards_over_losant_either(topic_filter: str) -> None:
    with pytest.raises(TopicNotAllowedError):
        check_subscribe_filter(topic_filter, {DEV}, gateway=True)


@pytest.mark.parametrize(
    "topic_filter", [f"losant/{DEV}/command", "custom/#", "a/+/c", "factory//line", "custom/+", "a/b/c/#"]
)
def test_finding_09_allowed_filters_pass(topic_filter: str) -> None:
    assert check_subscribe_filter(topic_filter, {DEV}, gateway=False) == topic_filter


def test_finding_09_gateway_subscribes_to_a_peripherals_command_topic() -> None:
    assert check_subscribe_filter(f"losant/{OTHER}/command", {DEV}, gateway=True)


@pytest.mark.parametrize(
    "topic",
    [
        f"losant/{DEV}/command",
        f"losant/{OTHER}/command",
        "$SYS/x",
        "$anything",
        "a/+/b",
        "a/#",
        "#",
        "losant/state",
        "losant//state",
        f"losant/{DEV}/state/x",
        f"losant/{DEV}/other",
        "losant",
    ],
)
def test_finding_09_publish_topics_losant_refuses_are_refused_first(topic: str) -> None:
    with pytest.raises(TopicNotAllowedError):
        check_publish_topic(topic, {DEV}, gateway=False)
    with pytest.raises(TopicNotAllowedError):
        check_publish_topic(topic, {DEV}, gateway=True)


@pytest.mark.parametrize("topic", [f"losant/{DEV}/state", "factory/line1/temp", "a//b", "/leading", "trailing/"])
def test_finding_09_allowed_publish_topics_pass(topic: str) -> None:
    assert check_publish_topic(topic, {DEV}, gateway=False) == topic


def test_finding_09_malformed_topics_are_validation_errors() -> None:
    for bad in ("", "a\x00b", "\ud800", "x" * 65536, "a\nb", "a/\x1b", "a\x85", "a\ufffe", "a\U0010ffff"):
        with pytest.raises(ValidationError):
            check_publish_topic(bad, {DEV}, gateway=False)
        with pytest.raises(ValidationError):
            check_subscribe_filter(bad, {DEV}, gateway=False)
    with pytest.raises(ValidationError):
        check_subscribe_filter("a/#/b", {DEV}, gateway=False)

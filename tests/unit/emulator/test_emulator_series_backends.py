"""The series backends agree: MemorySeries and DiskSeries keep, merge, range, limit and forget history alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from losant_async.emulator.store import (
    CommandRecord,
    ConnectionLogEntry,
    DataDir,
    DiskSeries,
    MemorySeries,
    SeriesBackend,
)

DEV = "d" * 24
OTHER = "e" * 24


@pytest.fixture(params=["memory", "disk"])
def series(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SeriesBackend]:
    if request.param == "memory":
        yield MemorySeries()
        return
    data = DataDir(tmp_path)
    yield DiskSeries(data)
    data.close()


def _times(series: SeriesBackend, **query: object) -> list[int]:
    args: dict[str, object] = {"start": None, "end": None, "limit": None, "descending": False, **query}
    return [s.time for s in series.states(DEV, **args)]  # type: ignore[arg-type]


def test_states_are_kept_sorted_and_ranged(series: SeriesBackend) -> None:
    series.create(DEV)
    series.create(OTHER)
    for stamp in (30, 10, 20, 40):
        series.add_state(DEV, stamp, {"n": stamp}, 0)
    series.add_state(OTHER, 15, {"n": 1}, 0)
    assert _times(series) == [10, 20, 30, 40]
    assert _times(series, descending=True) == [40, 30, 20, 10]
    assert _times(series, start=15, end=35) == [20, 30]
    assert _times(series, limit=2) == [10, 20]
    assert _times(series, limit=2, descending=True) == [40, 30]
    assert _times(series, start=41) == []
    assert series.accepted(DEV) == 4 and series.accepted(OTHER) == 1
    assert [s.data for s in series.states(DEV, start=20, end=20, limit=None, descending=False)] == [{"n": 20}]


def test_a_same_millisecond_state_merges_later_values_winning(series: SeriesBackend) -> None:
    series.create(DEV)
    series.add_state(DEV, 10, {"a": 1, "b": 1}, 0)
    series.add_state(DEV, 10, {"b": 2, "c": "x"}, 0)
    (state,) = series.states(DEV, start=None, end=None, limit=None, descending=False)
    assert state.data == {"a": 1, "b": 2, "c": "x"}
    assert series.accepted(DEV) == 2


def test_the_composite_state_is_the_newest_value_of_each_attribute(series: SeriesBackend) -> None:
    series.create(DEV)
    series.add_state(DEV, 20, {"a": 2}, 0)
    series.add_state(DEV, 10, {"a": 1, "b": True}, 0)
    assert series.composite(DEV) == {"a": (2, 20), "b": (True, 10)}


def test_removing_states_whole_or_some_attributes(series: SeriesBackend) -> None:
    series.create(DEV)
    for stamp in (10, 20, 30):
        series.add_state(DEV, stamp, {"a": stamp, "b": -stamp}, 0)
    assert series.remove_states(DEV, start=25, end=None, attributes=None) == 1
    assert series.remove_states(DEV, start=None, end=15, attributes=["a"]) == 1
    assert [(s.time, s.data) for s in series.states(DEV, start=None, end=None, limit=None, descending=False)] == [
        (10, {"b": -10}), (20, {"a": 20, "b": -20}),
    ]
    assert series.composite(DEV) == {"a": (20, 20), "b": (-20, 20)}
    assert series.remove_states(DEV, start=None, end=None, attributes=["a", "b"]) == 2
    assert _times(series) == []


def test_commands_and_the_connection_log_keep_their_order(series: SeriesBackend) -> None:
    series.create(DEV)
    series.add_command(CommandRecord(DEV, "go", {"x": [1, 2]}, 5), 0)
    series.add_command(CommandRecord(DEV, "stop", None, 3), 0)
    series.add_connection(ConnectionLogEntry(DEV, True, 1))
    series.add_connection(ConnectionLogEntry(DEV, False, 2, "connection lost"))
    assert series.commands(DEV) == [CommandRecord(DEV, "go", {"x": [1, 2]}, 5), CommandRecord(DEV, "stop", None, 3)]
    assert series.connection_log(DEV) == [ConnectionLogEntry(DEV, True, 1), ConnectionLogEntry(DEV, False, 2, "connection lost")]


def test_a_dropped_device_has_no_history(series: SeriesBackend) -> None:
    series.create(DEV)
    series.add_state(DEV, 10, {"a": 1}, 0)
    series.add_command(CommandRecord(DEV, "go", None, 5), 0)
    series.drop(DEV)
    assert not series.has(DEV)
    assert series.states(DEV, start=None, end=None, limit=None, descending=False) == []
    assert series.commands(DEV) == [] and series.composite(DEV) == {}
    series.create(DEV)  # the same id again starts empty
    assert _times(series) == [] and series.commands(DEV) == []


def test_unknown_devices_are_ignored(series: SeriesBackend) -> None:
    assert series.add_state(DEV, 10, {"a": 1}, 0) == 0
    assert series.states(DEV, start=None, end=None, limit=None, descending=False) == []
    assert series.accepted(DEV) == 0


def test_disk_history_survives_reopening_with_counts_and_composite(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    series = DiskSeries(data)
    series.create(DEV)
    series.add_state(DEV, 10, {"a": 1}, 0)
    series.add_state(DEV, 20, {"b": "x"}, 0)
    data.close()
    data = DataDir(tmp_path)
    again = DiskSeries(data)
    assert again.has(DEV) and again.accepted(DEV) == 2
    assert again.composite(DEV) == {"a": (1, 10), "b": ("x", 20)}
    again.add_state(DEV, 30, {"a": 3}, 0)
    assert again.composite(DEV) == {"a": (3, 30), "b": ("x", 20)}
    data.close()


def test_the_disk_writer_deletes_history_older_than_the_floor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from losant_async.emulator.store import _disk_series

    monkeypatch.setattr(_disk_series, "PRUNE_EVERY_S", 0.0)
    data = DataDir(tmp_path)
    series = DiskSeries(data)
    series.create(DEV)
    series.add_state(DEV, 10, {"a": 1}, 0)
    series.add_state(DEV, 20, {"a": 2}, 0)
    data.flush()
    series.add_state(DEV, 100, {"a": 3}, 15)  # Losant's 30 days now start at 15
    data.flush()
    assert _times(series) == [20, 100]
    assert series.add_state(DEV, 101, {"a": 4}, 15) == 1  # the expired one, counted once
    data.close()


def test_an_older_schema_is_migrated_and_one_without_a_migration_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from losant_async.emulator.store import DataDirError, _datadir

    DataDir(tmp_path / "old").close()  # written at schema 1
    DataDir(tmp_path / "older").close()
    monkeypatch.setattr(_datadir, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(_datadir, "_MIGRATIONS", {1: "ALTER TABLE world ADD COLUMN note TEXT;"})
    data = DataDir(tmp_path / "old")
    assert data.schema_from == 1
    assert data.read("SELECT value FROM meta WHERE key = 'schema_version'") == [("2",)]
    assert "note" in {row[1] for row in data.read("PRAGMA table_info(world)")}
    data.close()
    monkeypatch.setattr(_datadir, "_MIGRATIONS", {})
    with pytest.raises(DataDirError, match="has schema 1, which this version cannot migrate"):
        DataDir(tmp_path / "older")
    # refused, and released: the lock is free again
    monkeypatch.setattr(_datadir, "SCHEMA_VERSION", 1)
    DataDir(tmp_path / "older").close()


def test_a_database_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    from losant_async.emulator.store import DataDirError
    from losant_async.emulator.store._datadir import DB_NAME

    (tmp_path / DB_NAME).write_bytes(b"not a database at all, just text" * 100)
    with pytest.raises(DataDirError, match="cannot be read as an emulator database"):
        DataDir(tmp_path)


def test_a_new_data_directory_is_private(tmp_path: Path) -> None:
    import stat
    import sys

    DataDir(tmp_path / "new").close()
    if sys.platform != "win32":
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700

"""A data directory: a restart keeps everything, kill -9 loses at most the documented window, one emulator per directory."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest

from losant_async.emulator import LocalLosant
from losant_async.emulator.store import DataDirError
from losant_async.emulator.store._datadir import DB_NAME
from losant_async.rest import LosantClient
from tests.integration.emulator.emulator_support import RawMqtt, remaining_length

pytestmark = pytest.mark.timeout(120)


def _string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + remaining_length(len(body)) + body


async def test_a_restart_keeps_ids_keys_tokens_history_and_data_tables(tmp_path: Path) -> None:
    async with LocalLosant(data_dir=tmp_path) as losant:
        app = losant.create_application(name="kept")
        gateway = losant.store.add_device(app.id, "gw", device_class="gateway", attributes={"t": "number"})
        device = app.create_device(name="d1", attributes={"t": "number", "s": "string"}, tags={"floor": "3"})
        key = app.create_access_key(device_ids=[device.id])
        token = app.create_api_token()
        user = losant.create_user("a@example.com", "pw")
        user_token = losant.user_token(user)
        async with LosantClient(token, url=losant.rest_url, max_retries=0) as client:
            table = await client.data_tables.post(
                application_id=app.id, data_table={"name": "stock", "columns": [{"name": "sku", "dataType": "string", "constraint": "optional"}]}, raw=True
            )
            await client.data_table_rows.post(application_id=app.id, data_table_id=table["id"], data_table_row={"sku": "a1"})
            await client.device.send_state(
                application_id=app.id, device_id=device.id, device_state=[{"data": {"t": n, "s": f"v{n}"}, "time": 1_000 * n - 60_000} for n in range(5)]
            )
            await client.device.patch(application_id=app.id, device_id=device.id, device={"description": "patched"})
        await losant.send_command(device.id, "reboot", {"in": 5})
        disconnected = asyncio.Event()
        losant.store.on_connection(lambda entry: None if entry.connected else disconnected.set())
        mqtt = await RawMqtt.open(losant.mqtt_port)
        assert await mqtt.connect(device.id, key.key, key.secret) == 0
        await mqtt.close()
        await asyncio.wait_for(disconnected.wait(), 10)
        states = losant.states(device.id)
        log = losant.connection_log(device.id)
        counters = losant.counters.as_dict()

    async with LocalLosant(data_dir=tmp_path) as again:
        assert again.data_dir == str(tmp_path)
        assert again.states(device.id) == states and len(states) == 5
        assert again.commands_sent(device.id)[0].name == "reboot"
        assert again.connection_log(device.id) == log and [e.connected for e in log] == [True, False]
        assert again.counters.as_dict() == counters
        assert again.store.devices[gateway.id].device_class == "gateway"
        assert again.store.devices[device.id].tag_dict() == {"floor": ["3"]}
        assert again.store.devices[device.id].connected == 0
        assert again.composite_state(device.id) == {"t": 4, "s": "v4"}
        # the same credentials work over MQTT and REST
        mqtt = await RawMqtt.open(again.mqtt_port)
        assert await mqtt.connect(device.id, key.key, key.secret) == 0
        await mqtt.close()
        async with LosantClient(token, url=again.rest_url, max_retries=0) as client:
            got = await client.device.get(application_id=app.id, device_id=device.id, raw=True)
            assert got["description"] == "patched"
            rows = await client.data_table_rows.get(application_id=app.id, data_table_id=table["id"], raw=True)
            assert [r["sku"] for r in rows["items"]] == ["a1"]
        async with LosantClient(user_token, url=again.rest_url, max_retries=0) as client:
            me = await client.me.get(raw=True)
            assert me["email"] == "a@example.com"


async def test_a_device_deleted_stays_deleted_with_its_history(tmp_path: Path) -> None:
    async with LocalLosant(data_dir=tmp_path) as losant:
        app = losant.create_application()
        gone = app.create_device(name="gone", attributes={"t": "number"})
        kept = app.create_device(name="kept", attributes={"t": "number"})
        losant.store.record_state(losant.store.device(gone.id), {"data": {"t": 1}})
        losant.store.remove_device(gone.id)
    async with LocalLosant(data_dir=tmp_path) as again:
        assert set(again.store.devices) == {kept.id}
        assert again.states(gone.id) == []


async def test_a_second_emulator_on_the_directory_refuses(tmp_path: Path) -> None:
    async with LocalLosant(data_dir=tmp_path):
        with pytest.raises(DataDirError, match="in use by another emulator"):
            async with LocalLosant(data_dir=tmp_path):
                pass
    async with LocalLosant(data_dir=tmp_path):  # free again once the first stopped
        pass


async def test_a_directory_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    async with LocalLosant(data_dir=tmp_path):
        pass
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(DataDirError, match="newer losant-async"):
        async with LocalLosant(data_dir=tmp_path):
            pass
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("SELECT value FROM meta").fetchone() == ("99",)
    db.close()


async def test_a_file_that_is_not_a_data_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataDirError, match="not a directory"):
        async with LocalLosant(data_dir=tmp_path / "file"):
            pass
    (tmp_path / "other").mkdir()
    with sqlite3.connect(tmp_path / "other" / DB_NAME) as db:
        db.execute("CREATE TABLE something (x)")
    db.close()
    with pytest.raises(DataDirError, match="not an emulator data directory"):
        async with LocalLosant(data_dir=tmp_path / "other"):
            pass


_INGEST = """
import asyncio, json, sys, time
from losant_async.emulator import LocalLosant

async def main(path, devices):
    async with LocalLosant(data_dir=path) as losant:
        app = losant.create_application(name="ingest")
        store = losant.store
        records = [store.device(app.create_device(name=f"d{i}", attributes={"n": "number"}).id) for i in range(devices)]
        print(json.dumps({"devices": [r.id for r in records]}), flush=True)
        n = 0
        while True:
            for record in records:
                store.record_state(record, {"data": {"n": n}, "time": int(time.time() * 1000)})
                n += 1
                if n == 20_000:
                    print("ingested", flush=True)
                if n % 50 == 0:
                    await asyncio.sleep(0.005)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_kill_9_during_a_1000_device_ingest_loses_at_most_the_documented_window(tmp_path: Path) -> None:
    """A real emulator process ingesting for 1,000 devices, killed with SIGKILL: every state
    accepted more than a second before the kill is on disk, and none is missing in between."""
    child = subprocess.Popen(
        [sys.executable, "-c", _INGEST, str(tmp_path), "1000"],
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, "the ingest process did not start"
        assert len(json.loads(line)["devices"]) == 1000
        assert child.stdout.readline() == b"ingested\n"  # 20 states per device so far
        killed_ms = time.time() * 1000
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        packed = [raw for (raw,) in db.execute("SELECT data FROM states")]
        newest = db.execute("SELECT MAX(time) FROM states").fetchone()[0]
    db.close()
    assert packed, "nothing was committed"
    values = sorted(msgspec.msgpack.decode(raw)["n"] for raw in packed)
    assert values == list(range(len(values))), "a state is missing before the newest one kept"
    window_ms = killed_ms - newest
    print(f"kill -9: {len(values)} states kept, the newest accepted {window_ms:.0f} ms before the kill")
    assert window_ms <= 1000


def test_the_lock_holds_against_another_process(tmp_path: Path) -> None:
    async def hold_and_try() -> tuple[int, bytes]:
        async with LocalLosant(data_dir=tmp_path):
            other = await asyncio.create_subprocess_exec(
                sys.executable, "-c",
                "import asyncio, sys\nfrom losant_async.emulator import LocalLosant\n"
                "async def main():\n    async with LocalLosant(data_dir=sys.argv[1]): pass\nasyncio.run(main())",
                str(tmp_path), stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()},
            )
            _, err = await asyncio.wait_for(other.communicate(), 60)
            assert other.returncode is not None
            return other.returncode, err

    code, err = asyncio.run(hold_and_try())
    assert code != 0
    assert b"in use by another emulator (pid " + str(os.getpid()).encode() in err


async def test_a_clean_stop_with_devices_connected_logs_their_disconnects(tmp_path: Path) -> None:
    async with LocalLosant(data_dir=tmp_path) as losant:
        app = losant.create_application()
        device = app.create_device(name="d", attributes={"t": "number"})
        key = app.create_access_key()
        mqtt = await RawMqtt.open(losant.mqtt_port)
        assert await mqtt.connect(device.id, key.key, key.secret) == 0
        await mqtt.publish(f"losant/{device.id}/state", {"data": {"t": 1}})
        await losant.wait_for_states(device.id, 1)
    await mqtt.wait_closed()
    await mqtt.close()
    async with LocalLosant(data_dir=tmp_path) as again:
        assert [e.connected for e in again.connection_log(device.id)] == [True, False]
        assert [s.data for s in again.states(device.id)] == [{"t": 1}]
        assert not again.store.devices[device.id].connected


async def test_stopping_the_emulator_sends_a_devices_will_and_keeps_the_state_it_carries(tmp_path: Path) -> None:
    """Stopping closes each session without a DISCONNECT from the device, so its will is published
    (MQTT 3.1.1, 3.1.2.5: a connection closed without the client's DISCONNECT publishes the will);
    a will on the state topic is a state, kept in the data directory."""
    async with LocalLosant(data_dir=tmp_path) as losant:
        app = losant.create_application()
        device = app.create_device(name="d", attributes={"online": "boolean"})
        key = app.create_access_key()
        client = await RawMqtt.open(losant.mqtt_port)
        will = json.dumps({"data": {"online": False}}).encode()
        body = (
            _string("MQTT") + bytes([4, 0x02 | 0x04 | 0x80 | 0x40]) + struct.pack("!H", 15) + _string(device.id)
            + _string(f"losant/{device.id}/state") + _string(will) + _string(key.key) + _string(key.secret)
        )
        client.writer.write(_packet(0x10, body))
        assert (await client.expect(2)).body == b"\x00\x00"
    await client.wait_closed()
    await client.close()
    async with LocalLosant(data_dir=tmp_path) as again:
        assert [s.data for s in again.states(device.id)] == [{"online": False}]
        assert again.connection_log(device.id)[-1].reason == "emulator stopped"


async def test_health_answers_and_says_failing_once_a_write_to_the_data_directory_failed(tmp_path: Path) -> None:
    async with LocalLosant(data_dir=tmp_path) as losant:
        app = losant.create_application()
        app.create_device(name="d")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{losant.rest_url}/health") as response:
                assert response.status == 200
                health = await response.json()
            assert health["status"] == "ok" and health["devices"] == 1 and health["writeFailure"] is None
            persistence = losant._persistence  # pyright: ignore[reportPrivateUsage]
            assert persistence is not None
            persistence.data.write("INSERT INTO no_such_table VALUES (1)", ())
            persistence.data.flush()
            async with session.get(f"{losant.rest_url}/health") as response:
                health = await response.json()
        assert health["status"] == "failing" and "no_such_table" in health["writeFailure"]


async def test_health_in_memory() -> None:
    async with (
        LocalLosant() as losant,
        aiohttp.ClientSession() as session,
        session.get(f"{losant.rest_url}/health") as response,
    ):
        health = await response.json()
    assert health["status"] == "ok" and health["dataDir"] is None and health["writesQueued"] == 0

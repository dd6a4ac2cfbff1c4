"""The REST scripting example against the emulator: the right devices, re-tagged, their data exported."""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path
from typing import Any

from examples._support import load_example, run_script

rest = load_example("rest/rest_scripting.py")

PASSWORD = "a long enough password"


def provision(losant: Any) -> tuple[Any, dict[str, str]]:
    """30 matching devices (more than one page of 25) and decoys that must not match."""
    user = losant.create_user("script@example.com", PASSWORD)
    app = losant.create_application(name="rest test")
    attributes = {"pressure": "number", "open": "boolean"}
    matching: dict[str, str] = {}
    for i in range(30):
        kind = "pump" if i % 2 else "valve"
        device = app.create_device(
            name=f"{kind}-{i:02d}", attributes=attributes, tags={"site": "north", "owner": f"team-{i % 3}"}
        )
        matching[device.id] = device.name
    app.create_device(name="meter-01", attributes=attributes, tags={"site": "north"})  # not a pump/valve
    app.create_device(name="pump-south", attributes=attributes, tags={"site": "south"})  # other site
    app.create_device(name="pump-gw", device_class="gateway", tags={"site": "north"})  # a gateway
    return (user, app), matching


def args(tmp_path: Path, **overrides: Any) -> argparse.Namespace:
    values = {"site": "north", "tag": "maintenance=2026-11", "output": str(tmp_path / "out.csv"),
              "hours": 1.0, "dry_run": False}
    values.update(overrides)
    return argparse.Namespace(**values)


async def test_finds_retags_and_exports_every_matching_device(losant_emulator: Any, tmp_path: Path) -> None:
    (user, app), matching = provision(losant_emulator)
    now = int(time.time() * 1000)
    sent: dict[str, list[tuple[int, float]]] = {}
    for n, device_id in enumerate(sorted(matching)[:4]):
        record = losant_emulator.store.device(device_id)
        points = [(now - 60_000 * (3 - i), 1.0 + n + i / 10) for i in range(3)]
        losant_emulator.store.record_state(record, [{"time": t, "data": {"pressure": v}} for t, v in points])
        sent[device_id] = points
    settings = rest.Settings(email=user.email, password=PASSWORD, application_id=app.id,
                             url=losant_emulator.rest_url)

    assert await rest.run(settings, args(tmp_path)) == 0

    for device_id in matching:
        tags = losant_emulator.store.device(device_id).tag_dict()
        assert tags["maintenance"] == ["2026-11"]
        assert tags["site"] == ["north"] and "owner" in tags  # the other tags were kept
    for record in losant_emulator.store.devices.values():
        if record.id not in matching:
            assert "maintenance" not in record.tag_dict(), record.name

    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text(encoding="utf-8"), newline="")))
    exported: dict[str, list[float]] = {}
    for row in rows:
        assert row["device_id"] in matching and row["device_name"] == matching[row["device_id"]]
        exported.setdefault(row["device_id"], []).append(float(row["pressure"]))
    assert exported == {d: [v for _, v in points] for d, points in sent.items()}


async def test_dry_run_changes_nothing(losant_emulator: Any, tmp_path: Path, capsys: Any) -> None:
    (user, app), matching = provision(losant_emulator)
    settings = rest.Settings(email=user.email, password=PASSWORD, application_id=app.id,
                             url=losant_emulator.rest_url)

    assert await rest.run(settings, args(tmp_path, dry_run=True)) == 0

    assert f"{len(matching)} devices match" in capsys.readouterr().out
    assert all("maintenance" not in d.tag_dict() for d in losant_emulator.store.devices.values())
    assert not (tmp_path / "out.csv").exists()


async def test_wrong_password_is_an_error_exit(losant_emulator: Any, tmp_path: Path, capsys: Any) -> None:
    (user, app), _ = provision(losant_emulator)
    env = {"LOSANT_EMAIL": user.email, "LOSANT_PASSWORD": "not the password",
           "LOSANT_APPLICATION_ID": app.id, "LOSANT_URL": losant_emulator.rest_url}

    assert await rest.main(["--output", str(tmp_path / "x.csv")], env=env) == 1

    assert "401" in capsys.readouterr().err


async def test_runs_standalone_on_an_embedded_emulator(tmp_path: Path) -> None:
    result = await run_script("rest/rest_scripting.py", "--output", str(tmp_path / "demo.csv"), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "tagged 6 devices" in result.stdout
    assert (tmp_path / "demo.csv").read_text().count("\n") > 1

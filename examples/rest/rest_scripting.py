"""REST scripting as a user: find devices with an advanced query, re-tag them in bulk, export their data.

What it shows
  * signing in with an email and password (``UserCredentials``): the client
    fetches the user token on first use and renews it when Losant refuses it;
  * paging through every matching device with an advanced query
    (``async for device in client.devices.get(query=...)``: pages are fetched
    ahead while the loop runs);
  * a bulk tag update: one ``device.patch`` per device, a bounded number at a
    time, every failure reported per device instead of aborting the run;
  * a data export: raw time series of those devices over a window
    (``data.time_series_query``) written as CSV, the file written off the event loop.

Run it against an embedded emulator (creates a user, an application, devices
and some history first):
    python examples/rest/rest_scripting.py

Run it against real Losant (careful: it changes the tags of matching devices):
    LOSANT_EMAIL=<email> LOSANT_PASSWORD=<password> LOSANT_APPLICATION_ID=<id> \\
    python examples/rest/rest_scripting.py --site plant-a --tag maintenance=2026-11
Optional: LOSANT_URL (https://api.losant.com); --output (devices-export.csv),
--hours (24) of history to export; --dry-run to only list the devices.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from losant_async.errors import LosantError
from losant_async.rest import BulkResult, LosantClient, UserCredentials
from losant_async.rest.bulk import run_bulk

DEFAULT_URL = "https://api.losant.com"


@dataclass(frozen=True)
class Settings:
    email: str
    password: str = field(repr=False)
    application_id: str
    url: str = DEFAULT_URL


@dataclass(frozen=True)
class Found:
    """One matching device, with what the script needs from it."""

    id: str
    name: str
    tags: tuple[tuple[str, str], ...]


def site_query(site: str) -> dict[str, Any]:
    """Pumps and valves of one site, skipping gateways: an advanced device query."""
    return {
        "$and": [
            {"tags": {"site": site}},
            {"$or": [{"name": {"$startsWith": "pump"}}, {"name": {"$startsWith": "valve"}}]},
            {"deviceClass": {"$ne": "gateway"}},
        ]
    }


async def find_devices(client: LosantClient, application_id: str, query: Mapping[str, Any]) -> list[Found]:
    """Every device matching ``query``, across all pages."""
    found: list[Found] = []
    pages = client.devices.get(application_id=application_id, query=query, per_page=25, sort_field="name")
    async for device in pages:
        tags = tuple((t.key, t.value) for t in device.tags or () if isinstance(t.key, str) and isinstance(t.value, str))
        found.append(Found(id=str(device.id), name=str(device.name), tags=tags))
    return found


async def set_tag(
    client: LosantClient, application_id: str, devices: Sequence[Found], key: str, value: str, *, concurrency: int = 8
) -> list[BulkResult[str, Any]]:
    """Set tag ``key`` to ``value`` on every device, keeping their other tags; one result per device.

    A device PATCH replaces the whole tag list, so each one is sent with the
    device's tags plus the new one. (Real Losant also offers ``devices.patch``,
    one server-side job for a whole query; the emulator does not emulate it.)
    """

    async def patch(device_id: str, tags: list[dict[str, str]]) -> Any:
        return await client.device.patch(application_id=application_id, device_id=device_id, device={"tags": tags})

    updates = [
        (d.id, [{"key": k, "value": v} for k, v in d.tags if k != key] + [{"key": key, "value": value}])
        for d in devices
    ]
    return await run_bulk(updates, patch, concurrency=concurrency)


async def export_csv(
    client: LosantClient, application_id: str, devices: Sequence[Found], *, start_ms: int, end_ms: int, path: Path
) -> int:
    """Raw points of ``devices`` between ``start_ms`` and ``end_ms`` as CSV; returns the number of rows."""
    series = await client.data.time_series_query(
        application_id=application_id,
        query={
            "start": start_ms,
            "end": end_ms,
            "aggregation": "NONE",
            "deviceIds": [d.id for d in devices],
            "limit": 10_000,
            "order": "asc",
        },
    )
    per_device = series.devices or {}
    attributes = sorted({name for dev in per_device.values() for p in dev.points or () for name in (p.data or {})})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["device_id", "device_name", "time", *attributes])
    rows = 0
    for device_id, dev in sorted(per_device.items()):
        for point in dev.points or ():
            data = point.data or {}
            writer.writerow([device_id, dev.name, point.time, *(_cell(data.get(a)) for a in attributes)])
            rows += 1
    # File I/O would block the event loop: anyio runs it in a worker thread.
    await anyio.Path(path).write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return rows


def _cell(value: object) -> object:
    """CSV text as a spreadsheet expects it: JSON's true/false, empty for a missing value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


async def run(settings: Settings, args: argparse.Namespace) -> int:
    key, _, value = args.tag.partition("=")
    if not key or not value:
        raise SystemExit("--tag must look like key=value")
    credentials = UserCredentials(settings.email, settings.password)
    async with LosantClient(credentials, url=settings.url) as client:
        devices = await find_devices(client, settings.application_id, site_query(args.site))
        print(f"{len(devices)} devices match site={args.site}:")
        for d in devices:
            print(f"  {d.id}  {d.name:<12} {dict(d.tags)}")
        if args.dry_run or not devices:
            return 0

        results = await set_tag(client, settings.application_id, devices, key, value)
        failed = [r for r in results if not r.ok]
        print(f"tagged {len(results) - len(failed)} devices {key}={value}; {len(failed)} failed")
        for r in failed:
            print(f"  {r.key}: {r.error}")

        end_ms = int(time.time() * 1000)
        start_ms = end_ms - int(args.hours * 3600 * 1000)
        rows = await export_csv(
            client, settings.application_id, devices, start_ms=start_ms, end_ms=end_ms, path=Path(args.output)
        )
        print(f"exported {rows} points to {args.output}")
        return 1 if failed else 0


# --------------------------------------------------------------------------- the embedded demo


async def seed_demo(url: str, settings: Settings, history: int = 5) -> None:
    """Give the demo devices some history, the way a backfill would: a list of timestamped states per call."""
    async with LosantClient(UserCredentials(settings.email, settings.password), url=url) as client:
        now = int(time.time() * 1000)
        async for device in client.devices.get(application_id=settings.application_id):
            states = [
                {"time": now - (history - i) * 60_000, "data": {"pressure": 2.0 + 0.1 * i, "open": i % 2 == 0}}
                for i in range(history)
            ]
            await client.device.send_state(
                application_id=settings.application_id, device_id=str(device.id), device_state=states
            )


async def run_embedded(args: argparse.Namespace) -> int:
    from losant_async.testing import LocalLosant

    async with LocalLosant() as losant:
        user = losant.create_user("ops@example.com", "correct horse battery")
        app = losant.create_application(name="rest example")
        attributes = {"pressure": "number", "open": "boolean"}
        for i in range(12):
            kind = ("pump", "valve", "meter")[i % 3]
            site = "plant-a" if i < 8 else "plant-b"
            app.create_device(name=f"{kind}-{i:02d}", attributes=attributes, tags={"site": site, "kind": kind})
        settings = Settings(email=user.email, password="correct horse battery", application_id=app.id, url=losant.rest_url)
        await seed_demo(losant.rest_url, settings)
        return await run(settings, args)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--site", default="plant-a", help="value of the site tag to select")
    parser.add_argument("--tag", default="maintenance=2026-11", help="tag to set, key=value")
    parser.add_argument("--output", default="devices-export.csv", help="CSV file to write")
    parser.add_argument("--hours", type=float, default=24.0, help="hours of history to export")
    parser.add_argument("--dry-run", action="store_true", help="only list the matching devices")
    return parser.parse_args(argv)


async def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    args = parse_args(argv)
    try:
        if not any(name.startswith("LOSANT_") and name != "LOSANT_LOG" for name in env):
            return await run_embedded(args)
        missing = [n for n in ("LOSANT_EMAIL", "LOSANT_PASSWORD", "LOSANT_APPLICATION_ID") if not env.get(n)]
        if missing:
            raise SystemExit(f"missing environment variables: {', '.join(missing)}")
        settings = Settings(
            email=env["LOSANT_EMAIL"],
            password=env["LOSANT_PASSWORD"],
            application_id=env["LOSANT_APPLICATION_ID"],
            url=env.get("LOSANT_URL", DEFAULT_URL),
        )
        return await run(settings, args)
    except LosantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""The emulator's storage: bytes per stored state, ingest with a data directory vs in memory, 1M-state queries.

    .venv/bin/python -m benchmarks.emulator_storage [--devices 1000] [--states 1000000] [--json out.json]

Bytes per state: ``tracemalloc`` over the in-memory store, a numeric state of 3
attributes. Ingest: states through ``Store.store_states`` (the path MQTT and REST
take after decoding) for ``--devices`` devices, in memory and with a data
directory, in the same run, as fast as one core allows: ``data_dir_ratio`` is
the event loop's rate with a data directory over the rate in memory, and
``data_dir_ratio_committed`` counts the time to commit everything queued too
(the writer's sustained rate, with the queue bounded at ``MAX_QUEUED``). Queries: a
``LocalLosant`` holding ``--states`` states of one application (in memory with
the per-device bound raised to fit, and on disk), answering Losant's
time-series (``MEAN``, 5-minute buckets over the last day) and last-value
queries over REST, timed by the client.

``--soak SECONDS [--data-dir]``: ``--devices`` devices at ``--rate`` states/s into
a running ``LocalLosant`` (wall clock), the process's RSS every 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp

from losant_async.emulator import LocalLosant
from losant_async.emulator.store import DataDir, DiskSeries, MemorySeries, Store

ATTRIBUTES = {"temperature": "number", "humidity": "number", "pressure": "number"}
START = 1_800_000_000_000


def _state(rng: random.Random) -> dict[str, float]:
    return {"temperature": round(rng.uniform(15, 30), 2), "humidity": round(rng.uniform(30, 60), 2),
            "pressure": round(rng.uniform(990, 1030), 1)}


def bytes_per_state(devices: int = 100, per_device: int = 1000) -> float:
    clock = [START]
    store = Store(clock=lambda: clock[0])
    app = store.add_application("a")
    records = [store.add_device(app.id, f"d{i}", attributes=ATTRIBUTES) for i in range(devices)]
    rng = random.Random(1)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(per_device):
        clock[0] += 1000
        for device in records:
            store.store_states(device, [(clock[0], _state(rng))])
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / (devices * per_device)


def _ingest(store: Store, clock: list[int], devices: int, states: int) -> float:
    app = store.add_application("a")
    records = [store.add_device(app.id, f"d{i}", attributes=ATTRIBUTES) for i in range(devices)]
    rng = random.Random(2)
    payloads = [_state(rng) for _ in range(1000)]
    began = time.perf_counter()
    for n in range(states // devices):
        clock[0] += 1000
        for i, device in enumerate(records):
            store.store_states(device, [(clock[0], payloads[(n + i) % 1000])])
    return time.perf_counter() - began


def ingest_ratio(devices: int, states: int) -> dict[str, float]:
    clock = [START]
    memory = Store(clock=lambda: clock[0], series=MemorySeries())
    memory_s = _ingest(memory, clock, devices, states)
    with tempfile.TemporaryDirectory() as where:
        data = DataDir(where)
        clock = [START]
        disk = Store(clock=lambda: clock[0], series=DiskSeries(data))
        disk_s = _ingest(disk, clock, devices, states)
        began = time.perf_counter()
        data.close()
        commit_s = time.perf_counter() - began
    return {
        "states": states,
        "memory_states_per_s": states / memory_s,
        "data_dir_states_per_s": states / disk_s,
        "data_dir_ratio": memory_s / disk_s,
        "data_dir_final_commit_s": commit_s,
        "data_dir_ratio_committed": memory_s / (disk_s + commit_s),
    }


async def _queries(losant: LocalLosant, devices: int, states: int) -> dict[str, float]:
    store = losant.store
    app = losant.create_application("q")
    token = app.create_api_token()
    records = [store.device(app.create_device(name=f"d{i}", attributes=ATTRIBUTES).id) for i in range(devices)]
    rng = random.Random(3)
    payloads = [_state(rng) for _ in range(1000)]
    now = store.clock()
    per_device = states // devices
    step = max(1, 29 * 86_400_000 // per_device)
    began = time.perf_counter()
    for n in range(per_device):
        stamp = now - (per_device - n) * step
        for i, device in enumerate(records):
            store.store_states(device, [(stamp, payloads[(n + i) % 1000])])
    store.states(records[0].id, limit=1)  # with a data directory: commits what is queued
    fill_s = time.perf_counter() - began
    out = {"fill_s": fill_s, "stored": sum(store.accepted_count(r.id) for r in records)}
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{losant.rest_url}/applications/{app.id}/data"
    queries = {
        "time_series_last_day_mean_s": ("time-series-query", {"duration": 86_400_000, "aggregation": "MEAN"}),
        "time_series_one_device_30_days_s": ("time-series-query", {
            "duration": 30 * 86_400_000, "aggregation": "MEAN", "resolution": 86_400_000,
            "deviceIds": [records[0].id]}),
        "last_value_s": ("last-value-query", {"attribute": "temperature"}),
    }
    async with aiohttp.ClientSession(headers=headers) as session:
        # the server's first request loads its catalog and schemas: not the queries' cost
        async with session.get(f"{losant.rest_url}/applications/{app.id}") as response:
            assert response.status == 200, await response.text()
        for name, (path, body) in queries.items():
            began = time.perf_counter()
            async with session.post(f"{base}/{path}", json=body) as response:
                assert response.status == 200, await response.text()
                await response.read()
            out[name] = time.perf_counter() - began
    return out


async def query_times(devices: int, states: int) -> dict[str, dict[str, float]]:
    per_device = states // devices
    out: dict[str, dict[str, float]] = {}
    async with LocalLosant(max_states=per_device, max_total_states=states) as losant:
        out["memory"] = await _queries(losant, devices, states)
    with tempfile.TemporaryDirectory() as where:
        async with LocalLosant(data_dir=Path(where)) as losant:
            out["data_dir"] = await _queries(losant, devices, states)
    return out


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


async def soak(seconds: float, devices: int, rate: float, data_dir: Path | None) -> dict[str, Any]:
    """``devices`` devices at ``rate`` states/s each into a running LocalLosant (wall clock) for
    ``seconds``; RSS every 10 s. Linux only (/proc)."""
    samples: list[tuple[float, float]] = []
    async with LocalLosant(data_dir=data_dir) as losant:
        store = losant.store
        app = losant.create_application("soak")
        records = [store.device(app.create_device(name=f"d{i}", attributes=ATTRIBUTES).id) for i in range(devices)]
        rng = random.Random(4)
        payloads = [_state(rng) for _ in range(1000)]
        began = time.monotonic()
        next_sample = 0.0
        sent = 0
        tick = 0.1
        while (elapsed := time.monotonic() - began) < seconds:
            if elapsed >= next_sample:
                samples.append((round(elapsed, 1), round(_rss_mb(), 1)))
                next_sample += 10
            due = int((elapsed + tick) * rate * devices)
            stamp = store.clock()
            while sent < due:
                device = records[sent % devices]
                store.store_states(device, [(stamp, payloads[sent % 1000])])
                sent += 1
            await asyncio.sleep(max(0.0, began + elapsed + tick - time.monotonic()))
        samples.append((round(time.monotonic() - began, 1), round(_rss_mb(), 1)))
        kept = sum(store.accepted_count(r.id) for r in records)
    minute = next((rss for t, rss in samples if t >= 60), samples[-1][1])
    return {
        "backend": "data_dir" if data_dir else "memory", "seconds": seconds, "devices": devices, "rate": rate,
        "states": sent, "accepted": kept, "evicted": losant.counters.states_evicted,
        "rss_start_mb": samples[0][1], "rss_1min_mb": minute, "rss_end_mb": samples[-1][1],
        "growth_after_1min_mb": round(samples[-1][1] - minute, 1), "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--states", type=int, default=1_000_000)
    parser.add_argument("--ingest-states", type=int, default=200_000)
    parser.add_argument("--skip-queries", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--soak", type=float, metavar="SECONDS",
                        help="only the soak: --devices at --rate states/s for SECONDS, RSS every 10 s")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--data-dir", action="store_true", help="the soak with a data directory (else in memory)")
    args = parser.parse_args()
    if args.soak:
        with tempfile.TemporaryDirectory() as where:
            out = asyncio.run(soak(args.soak, args.devices, args.rate, Path(where) if args.data_dir else None))
        print(json.dumps(out), flush=True)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2) + "\n")
        return
    result: dict[str, Any] = {"bytes_per_state": bytes_per_state()}
    print(f"bytes per stored state (3 numbers, tracemalloc): {result['bytes_per_state']:.1f}", flush=True)
    result["ingest"] = ingest_ratio(args.devices, args.ingest_states)
    print("ingest:", json.dumps(result["ingest"]), flush=True)
    if not args.skip_queries:
        result["queries"] = asyncio.run(query_times(args.devices, args.states))
        print("queries:", json.dumps(result["queries"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

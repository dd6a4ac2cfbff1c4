"""What the emulator's web console costs (issue 24): ingest with and without console pages open, first paint, the 10,000-device list.

::

    .venv/bin/python -m benchmarks.console_load                  # 10,000 devices at 1 state/s
    .venv/bin/python -m benchmarks.console_load --devices 2000 --phase 10 --rounds 2

Three processes: the emulator (``LocalLosant``, its fleet provisioned as the simulator
names and tags it), the fleet (``losant-async simulate`` pointed at that emulator as at
a real Losant) and this one, which drives a headless Chromium (Debian's, through
Playwright). After the fleet is connected, phases alternate in one run: no console
open, then a tab on the fleet overview and a tab on a device page, and so on. For each
phase: states the emulator stored per second and the emulator's CPU seconds per 1,000
states. Ratios are console-open over console-closed, medians over rounds. In the open
phases: the device page's first contentful paint, and how long the device list (50 of
10,000 devices, sorted, unfiltered and filtered) takes to answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("LOSANT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


# -- the emulator's process -------------------------------------------------------------------

def _emulator_main(devices: int, conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_emulator(devices, conn))


async def _emulator(devices: int, conn: Connection) -> None:
    from losant_async.cli._emulator_host import SIMULATOR_TAG
    from losant_async.emulator import LocalLosant
    from losant_async.simulator import SENSOR_ATTRIBUTES, device_name

    async with LocalLosant() as losant:
        app = losant.create_application(name="console benchmark")
        ids = [app.create_device(name=device_name(i), attributes=dict(SENSOR_ATTRIBUTES),
                                 tags={"simulator": SIMULATOR_TAG}).id for i in range(devices)]
        key = app.create_access_key()
        conn.send({
            "rest_url": losant.rest_url, "mqtt_port": losant.mqtt_port, "console_url": losant.console_url,
            "application_id": app.id, "key": key.key, "secret": key.secret, "token": app.create_api_token(),
            "device_id": ids[0],
        })
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def stats() -> dict[str, Any]:
            store = losant.store
            return {"stored": store.counters.states_accepted, "cpu": time.process_time(),
                    "connected": sum(1 for d in store.devices.values() if d.connected)}

        def serve() -> None:  # a thread: blocking pipe reads stay off the event loop
            while True:
                try:
                    message = conn.recv()
                except EOFError:
                    message = "stop"
                if message == "stop":
                    loop.call_soon_threadsafe(done.set)
                    return
                conn.send(asyncio.run_coroutine_threadsafe(_call(stats), loop).result())

        threading.Thread(target=serve, daemon=True).start()
        await done.wait()


async def _call(fn: Any) -> Any:
    return fn()


# -- this process -------------------------------------------------------------------------------

class Emulator:
    def __init__(self, devices: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_emulator_main, args=(devices, child), daemon=True)
        self._proc.start()
        child.close()
        self._lock = asyncio.Lock()

    async def info(self) -> dict[str, Any]:
        found: dict[str, Any] = await asyncio.to_thread(self._conn.recv)
        return found

    async def stats(self) -> dict[str, Any]:
        async with self._lock:
            self._conn.send("stats")
            found: dict[str, Any] = await asyncio.to_thread(self._conn.recv)
            return found

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self._proc.join(20)
        if self._proc.is_alive():
            self._proc.kill()


async def _fleet(info: dict[str, Any], devices: int, rate: float, seconds: float) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSANT_")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "losant_async.cli", "simulate", "--devices", str(devices), "--rate", str(rate),
        "--duration", str(seconds), "--quiet", "--command-interval", "0", "--no-throttle",
        "--connect-concurrency", "200", "--url", info["rest_url"], "--broker", f"mqtt://127.0.0.1:{info['mqtt_port']}",
        "--application", info["application_id"], "--key", info["key"], "--secret", info["secret"],
        "--token", info["token"], stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
    )


async def _phase(emulator: Emulator, seconds: float) -> dict[str, float]:
    before = await emulator.stats()
    started = time.monotonic()
    await asyncio.sleep(seconds)  # a measuring window, not a synchronisation
    after = await emulator.stats()
    elapsed = time.monotonic() - started
    stored = after["stored"] - before["stored"]
    return {"states_per_s": stored / elapsed,
            "cpu_ms_per_kstate": (after["cpu"] - before["cpu"]) * 1e6 / stored if stored else float("nan"),
            "connected": after["connected"]}


async def _open_console(browser: Any, info: dict[str, Any]) -> tuple[Any, float | None]:
    context = await browser.new_context(viewport={"width": 1200, "height": 760})
    login = await context.new_page()
    await login.goto(info["console_url"])
    await login.goto(info["rest_url"] + "/console/fleet")
    device = await context.new_page()
    await device.goto(f"{info['rest_url']}/console/devices/{info['device_id']}")
    await device.locator("#chart canvas").wait_for(timeout=15_000)
    paint = await device.evaluate(
        "() => { const p = performance.getEntriesByName('first-contentful-paint')[0]; return p ? p.startTime : null; }")
    return context, paint


async def _list_ms(session: Any, url: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        async with session.get(url) as response:
            body = await response.read()
            assert response.status == 200 and body.count(b"data-device-id=") > 0, response.status
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.console_load", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1.0, help="states per second per device")
    parser.add_argument("--phase", type=float, default=15.0, help="seconds of one phase")
    parser.add_argument("--rounds", type=int, default=3, help="closed/open pairs of phases")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    import aiohttp
    from playwright.async_api import async_playwright

    emulator = Emulator(args.devices)
    fleet: asyncio.subprocess.Process | None = None
    try:
        info = await emulator.info()
        print(f"emulator up with {args.devices} devices; starting the fleet", flush=True)
        fleet = await _fleet(info, args.devices, args.rate, 3600)
        deadline = time.monotonic() + 300
        while (await emulator.stats())["connected"] < args.devices:
            if fleet.returncode is not None or time.monotonic() > deadline:
                err = await fleet.stderr.read() if fleet.stderr else b""
                raise SystemExit(f"the fleet did not connect: {err.decode()[-2000:]}")
            await asyncio.sleep(1)  # polling the emulator's count, with a deadline
        print("fleet connected; warming up", flush=True)
        await _phase(emulator, args.phase)
        closed: list[dict[str, float]] = []
        opened: list[dict[str, float]] = []
        paints: list[float] = []
        lists: list[float] = []
        filtered: list[float] = []
        async with async_playwright() as playwright, \
                aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            await (await session.get(info["console_url"])).release()
            base = f"{info['rest_url']}/console/applications/{info['application_id']}"
            for round_ in range(args.rounds):
                closed.append(await _phase(emulator, args.phase))
                context, paint = await _open_console(browser, info)
                if paint is not None:
                    paints.append(paint)
                lists.append(await _list_ms(session, base + "?page=37"))
                filtered.append(await _list_ms(session, base + "?name=sim-0009&tag=simulator"))
                opened.append(await _phase(emulator, args.phase))
                await context.close()
                print(f"round {round_ + 1}: closed {closed[-1]['states_per_s']:,.0f} states/s "
                      f"{closed[-1]['cpu_ms_per_kstate']:.0f} CPU ms/kstate; open {opened[-1]['states_per_s']:,.0f} "
                      f"states/s {opened[-1]['cpu_ms_per_kstate']:.0f} CPU ms/kstate; paint {paint} ms; "
                      f"list {lists[-1]:.0f} ms, filtered {filtered[-1]:.0f} ms", flush=True)
            await browser.close()
    finally:
        if fleet is not None and fleet.returncode is None:
            fleet.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(fleet.wait(), 60)
            except asyncio.TimeoutError:
                fleet.kill()
                await fleet.wait()
        emulator.stop()

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    ingest = statistics.median(o["states_per_s"] / c["states_per_s"] for c, o in zip(closed, opened, strict=True))
    cpu = statistics.median(o["cpu_ms_per_kstate"] / c["cpu_ms_per_kstate"] for c, o in zip(closed, opened, strict=True))
    figures = {
        "devices": args.devices, "rate": args.rate, "phase_s": args.phase, "rounds": args.rounds,
        "offered_states_per_s": args.devices * args.rate,
        "closed_states_per_s": med(closed, "states_per_s"), "open_states_per_s": med(opened, "states_per_s"),
        "ingest_ratio_open_over_closed": ingest,
        "closed_cpu_ms_per_kstate": med(closed, "cpu_ms_per_kstate"),
        "open_cpu_ms_per_kstate": med(opened, "cpu_ms_per_kstate"),
        "cpu_ratio_open_over_closed": cpu,
        "device_page_first_paint_ms": statistics.median(paints) if paints else None,
        "device_list_ms": statistics.median(lists), "device_list_filtered_ms": statistics.median(filtered),
        "load_average": os.getloadavg(), "cores": os.cpu_count(),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

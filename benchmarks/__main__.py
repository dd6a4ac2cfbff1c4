"""``python -m benchmarks [case ...] [--runs N] [--quick] [--profile]``: run cases, print the table, write JSON and PNG."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

from benchmarks._cases_local import case_decode, case_emulator
from benchmarks._cases_mqtt import case_commands, case_fleet, case_publish
from benchmarks._cases_rest import case_fanout, case_rest_state
from benchmarks._cases_scale import case_scale
from benchmarks._cases_scenario import case_scenario
from benchmarks._cases_tls import case_throttle, case_tls_fleet, case_tls_publish
from benchmarks._chart import write_chart
from benchmarks._context import Context
from benchmarks._harness import (
    CaseResult,
    format_markdown,
    format_table,
    results_document,
    results_from_document,
)
from benchmarks._infra import (
    BENCH_DIR,
    OfficialEnv,
    http_server,
    machine_info,
    official_env,
    raise_open_files,
    start_broker,
)

CaseFn = Callable[[Context], Awaitable[list[CaseResult]]]

# name -> (function, needs): needs is a subset of {"broker", "http", "official"}
CASES: dict[str, tuple[CaseFn, set[str]]] = {
    "publish": (case_publish, {"broker", "official"}),
    "fleet": (case_fleet, {"broker"}),
    "commands": (case_commands, {"broker", "official"}),
    "tls-publish": (case_tls_publish, {"broker", "official"}),
    "tls-fleet": (case_tls_fleet, {"broker"}),
    "throttle": (case_throttle, {"broker"}),
    "rest": (case_rest_state, {"http", "official"}),
    "fanout": (case_fanout, {"http", "official"}),
    "decode": (case_decode, set()),
    "emulator": (case_emulator, set()),
    "scale": (case_scale, {"broker"}),
    "scenario": (case_scenario, set()),
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("cases", nargs="*", metavar="case", help=f"any of: {', '.join(CASES)} (default: all)")
    ap.add_argument("--runs", type=int, default=None, help="runs per contender (default 3)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, shorter runs")
    ap.add_argument("--profile", action="store_true", help="cProfile our side in the last run; saved in results/")
    ap.add_argument("--no-official", action="store_true", help="skip the official clients (no venv)")
    ap.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto",
                    help="auto: mosquitto when installed, else the embedded amqtt broker")
    ap.add_argument("--fleet-sizes", type=lambda v: [int(x) for x in v.split(",")], default=None,
                    metavar="N,N,...", help="fleet case sizes (default 100,1000,5000,10000; quick 100,1000,10000)")
    ap.add_argument("--scale-rate", type=float, default=1.0, metavar="R",
                    help="scale case: states per second per device (default 1, the issue's figure; a higher rate "
                         "loads each socket harder where the open-files limit caps the fleet)")
    ap.add_argument("--replot", action="store_true",
                    help="measure nothing: redraw latest.png and latest.md from latest.json")
    ap.add_argument("--results", type=Path, default=BENCH_DIR / "results", help="where latest.json/png go")
    a = ap.parse_args(argv)
    unknown = [c for c in a.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if not 0 < a.scale_rate <= 100:
        ap.error("--scale-rate must be above 0 and at most 100")
    if a.runs is not None and a.runs < 1:
        ap.error("--runs must be at least 1")
    return a


def log(line: str) -> None:
    """Progress goes to stderr, so stdout carries only the table."""
    print(line, file=sys.stderr, flush=True)


async def run(a: argparse.Namespace) -> int:
    names = a.cases or list(CASES)
    needs = set().union(*(CASES[n][1] for n in names))
    started = time.monotonic()
    # Before the broker starts: it and every worker inherit the limit.
    open_files = raise_open_files()
    if "official" in needs and not a.no_official:
        official = await asyncio.to_thread(official_env, log)
    else:
        official = OfficialEnv(None, {}, "official clients not requested (--no-official)")
    if official.skipped:
        log(f"skipped: official baselines: {official.skipped}")
    wrk = shutil.which("wrk")
    mosquitto_pub = shutil.which("mosquitto_pub")
    ctx = Context(runs=a.runs or 3, quick=a.quick, profile=a.profile, official=official, wrk=wrk,
                  mosquitto_pub=mosquitto_pub, results_dir=a.results, log=log, fleet_sizes=a.fleet_sizes,
                  scale_rate=a.scale_rate)
    if "http" in needs and not wrk:
        log("skipped: wrk limit (wrk not installed; apt-get install wrk)")
    results: list[CaseResult] = []
    broker_kind = "none (no MQTT case run)"
    async with contextlib.AsyncExitStack() as stack:
        if "broker" in needs:
            broker = await stack.enter_async_context(start_broker(a.broker))
            ctx.broker = broker
            broker_kind = broker.kind
            log(f"broker: {broker.kind} on 127.0.0.1:{broker.port} (open files: {open_files})")
        if "http" in needs:
            ctx.http_url = await stack.enter_async_context(http_server())
            log(f"HTTP server: aiohttp.web fixed replies at {ctx.http_url} (own process)")
        for name in names:
            fn, _ = CASES[name]
            log(f"case {name}...")
            t0 = time.monotonic()
            try:
                results.extend(await fn(ctx))
            except Exception as exc:
                # One broken case must not cost the figures of the others.
                log(f"case {name} failed: {type(exc).__name__}: {exc}")
                results.append(CaseResult(case=name, title="(case failed)",
                                          notes=[f"FAILED: {type(exc).__name__}: {exc}"]))
            log(f"case {name} took {time.monotonic() - t0:.0f}s")
    elapsed = time.monotonic() - started
    machine = machine_info(broker=broker_kind, official=official, wrk=wrk)
    table = format_table(results)
    header = (f"{machine['cores']} cores, {machine['cpu']}, Python {machine['python']}, "
              f"broker {broker_kind}; {'quick' if a.quick else 'full'} run, {ctx.runs} runs each, {elapsed:.0f}s")
    libs = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items())
    official_libs = ", ".join(f"{k} {v}" for k, v in machine["official"].items())
    print(f"losant_async benchmarks: {header}")
    print(f"libraries: {libs}")
    print(f"official clients: {official_libs}; wrk: {machine['wrk']}")
    print()
    print(table)
    a.results.mkdir(parents=True, exist_ok=True)
    doc = results_document(results, machine=machine, run={
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "quick": a.quick, "runs": ctx.runs, "seconds": round(elapsed, 1), "cases": names,
    })
    (a.results / "latest.json").write_text(json.dumps(doc, indent=2))
    (a.results / "latest.md").write_text(format_markdown(doc))
    why = write_chart(results, a.results / "latest.png", header)
    print(f"wrote {a.results / 'latest.json'}, latest.md" + (f"; chart skipped: {why}" if why else " and latest.png"))
    return 0


def replot(results_dir: Path) -> int:
    source = results_dir / "latest.json"
    if not source.exists():
        print(f"--replot: {source} does not exist; run the benchmarks first", file=sys.stderr)
        return 2
    doc = json.loads(source.read_text())
    results = results_from_document(doc)
    m, run_info = doc["machine"], doc["run"]
    header = (f"{m['cores']} cores, {m['cpu']}, Python {m['python']}, broker {m['broker']}; "
              f"{'quick' if run_info['quick'] else 'full'} run, {run_info['runs']} runs each, {run_info['seconds']:.0f}s")
    print(format_table(results))
    (results_dir / "latest.md").write_text(format_markdown(doc))
    why = write_chart(results, results_dir / "latest.png", header)
    print(f"wrote {results_dir / 'latest.md'}" + (f"; chart skipped: {why}" if why else " and latest.png"))
    return 0


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if a.replot:
        return replot(a.results)
    return asyncio.run(run(a))


if __name__ == "__main__":
    sys.exit(main())

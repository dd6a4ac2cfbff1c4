"""REST cases: 4 send_state against a fixed-reply server, 5 command fan-out to 1,000 devices."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._context import Context, record
from benchmarks._harness import CaseResult, Contender, Target
from benchmarks._infra import WorkerFailed, run_worker
from benchmarks._payloads import APP_ID, device_id

__all__ = ["case_fanout", "case_rest_state"]

OURS = "losant_async LosantClient"


async def _client(ctx: Context, argv: list[str], name: str, python: str | None, timeout: float) -> dict[str, Any]:
    async with run_worker(argv, name=name, python=python) as w:
        try:
            return await w.result(timeout)
        except WorkerFailed as exc:
            return {"error": str(exc)}


def _per_s(doc: dict[str, Any]) -> float | None:
    if "done" not in doc or not doc.get("elapsed"):
        return None
    return float(doc["done"]) / float(doc["elapsed"])


async def _wrk(ctx: Context, connections: int, duration: float) -> dict[str, Any]:
    assert ctx.wrk and ctx.http_url
    path = f"/applications/{APP_ID}/devices/{device_id(1)}/state?_actions=false&_links=true&_embedded=true"
    body = '{"data":{"temperature":21.5,"humidity":40,"status":"ok","battery":3.71}}'
    with tempfile.TemporaryDirectory(prefix="losant-bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = '{body}'\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            'wrk.headers["Authorization"] = "Bearer bench-token"\n'
        )
        argv = [ctx.wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", str(script),
                ctx.http_url + path]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), duration + 30)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return {"error": "wrk did not finish"}
    m = re.search(r"Requests/sec:\s*([\d.]+)", out.decode())
    if not m:
        return {"error": f"wrk output not understood: {(out or err).decode()[-200:]}"}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out.decode())
    doc: dict[str, Any] = {"rate": float(m.group(1))}
    if errors:
        doc["error"] = f"{errors.group(1)} non-2xx replies"
    return doc


async def case_rest_state(ctx: Context) -> list[CaseResult]:
    """Case 4: send_state requests per second at concurrency 1, 16, 64."""
    assert ctx.http_url
    duration = ctx.pick(1.5, 2.0)
    out: list[CaseResult] = []
    for conc in (1, 16, 64):
        result = CaseResult(
            case=f"4-rest-state-c{conc}",
            title=f"REST device.send_state, concurrency {conc}, fixed-reply aiohttp.web server (own process)",
            params={"concurrency": conc, "seconds": duration},
        )
        ours = Contender(OURS, "ours", "req/s")
        raw = Contender("aiohttp one session", "baseline", "req/s")
        result.contenders = [ours, raw]
        seq = pool = wrk = None
        if conc in (1, 64):
            seq = Contender("losant-rest (official) sequential", "baseline", "req/s")
            result.contenders.append(seq)
        if conc in (16, 64):
            pool = Contender("losant-rest (official) 16 threads", "baseline", "req/s")
            result.contenders.append(pool)
        if conc == 64:
            wrk = Contender("wrk (C, 1 thread, 64 conns)", "limit", "req/s")
            result.contenders.append(wrk)
            if not ctx.wrk:
                wrk.skipped = "wrk not installed (apt-get install wrk)"
        for c in (seq, pool):
            if c and ctx.official.skipped:
                c.skipped = ctx.official.skipped
        timeout = duration + 60
        for run, profiling in ctx.plan():
            for c in result.contenders:
                if c.skipped or (profiling and c is not ours):
                    continue
                if c is wrk:
                    doc = await _wrk(ctx, 64, duration)
                    record(c, run, doc, doc.get("rate"))
                    ctx.log(f"  [{result.case} run {run + 1}] {c.name}: {doc.get('rate') or doc.get('error')}")
                    continue
                if c is seq or c is pool:
                    assert ctx.official.python
                    argv = ["benchmarks/official/rest.py", "--url", ctx.http_url, "--mode",
                            "seq" if c is seq else "pool", "--duration", str(duration)]
                    python: str | None = ctx.official.python
                else:
                    argv = ["-m", "benchmarks.workers.rest_client", "--impl", "ours" if c is ours else "aiohttp",
                            "--url", ctx.http_url, "--concurrency", str(conc), "--duration", str(duration)]
                    python = None
                    profile = ctx.profile_path(f"rest-state-c{conc}") if profiling else None
                    if profile:
                        argv += ["--profile", profile]
                        result.profile = profile
                doc = await _client(ctx, argv, c.name, python, timeout)
                if profiling:
                    continue
                value = _per_s(doc)
                record(c, run, doc, value)
                ctx.log(f"  [{result.case} run {run + 1}] {c.name}: "
                        + (f"{value:,.0f} req/s" if value else str(doc.get("error") or doc.get("skipped"))))
        if conc == 64:
            result.targets = [
                Target("send_state at concurrency 64 >= 97% of raw aiohttp", ours.name, raw.name, 0.97),
                Target("send_state at concurrency 64 >= 9x official sequential", ours.name,
                       "losant-rest (official) sequential", 9.0),
            ]
        out.append(result)
    return out


async def case_fanout(ctx: Context) -> list[CaseResult]:
    """Case 5: a command to 1,000 devices: one call each (bounded concurrency) vs one multi-device call."""
    assert ctx.http_url
    n = 1_000
    conc = 64
    result = CaseResult(
        case="5-rest-fanout",
        title=f"REST command fan-out to {n:,} devices (devices/s)",
        params={"devices": n, "concurrency": conc},
    )
    one = Contender(f"{OURS} send_command x{n} (c={conc})", "ours", "devices/s")
    multi = Contender(f"{OURS} multi-device command, 1 call", "ours", "devices/s")
    raw = Contender(f"aiohttp x{n} (c={conc})", "baseline", "devices/s")
    official = Contender(f"losant-rest (official) x{n} sequential", "baseline", "devices/s")
    if ctx.official.skipped:
        official.skipped = ctx.official.skipped
    result.contenders = [one, multi, raw, official]
    for run in range(ctx.runs):
        for c in result.contenders:
            if c.skipped:
                continue
            python: str | None = None
            if c is official:
                assert ctx.official.python
                argv = ["benchmarks/official/rest.py", "--url", ctx.http_url, "--mode", "fanout",
                        "--devices", str(n)]
                python = ctx.official.python
            else:
                impl = "aiohttp" if c is raw else "ours"
                mode = "multi" if c is multi else "fanout"
                argv = ["-m", "benchmarks.workers.rest_client", "--impl", impl, "--mode", mode,
                        "--url", ctx.http_url, "--concurrency", str(conc), "--devices", str(n)]
            doc = await _client(ctx, argv, c.name, python, 120)
            value = _per_s(doc)
            record(c, run, doc, value, seconds=doc.get("elapsed"))
            ctx.log(f"  [{result.case} run {run + 1}] {c.name}: "
                    + (f"{value:,.0f} devices/s" if value else str(doc.get("error") or doc.get("skipped"))))
    result.notes.append("the multi-device call is one request; the server's reply is fixed, so it measures the client side only")
    return [result]



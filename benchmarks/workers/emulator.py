"""Case 7 server side: LocalLosant in its own process with N provisioned devices.

Prints ``READY <json>`` (MQTT port, device ids, an access key for them: local,
throw-away credentials that only exist in this process), counts every state
the emulator stores, and on a line on stdin (or EOF) prints one JSON line.
With ``--serve`` it is the emulator beside a ``losant-async simulate`` process:
READY also gives the REST URL, application, API token and a device-ids file,
and the result adds the commands sent, the broker's counters and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.workers._common import raise_fd_limit, run_and_emit


class Seen:
    def __init__(self, expect: int) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.expect = expect
        self.all_in = asyncio.Event()

    def __call__(self, _record: Any) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += 1
        if self.count >= self.expect:
            self.all_in.set()


async def main(n: int, expect: int) -> dict[str, Any]:
    from losant_async.testing import LocalLosant

    seen = Seen(expect)
    on_state = seen

    async with LocalLosant(ws_port=None) as losant:
        app = losant.create_application("bench")
        ids = [app.create_device(f"sim-{i}", attributes={"temperature": "number", "humidity": "number",
                                                          "status": "string", "battery": "number",
                                                          "seq": "number"}).id for i in range(n)]
        key = app.create_access_key()
        unlisten = losant.store.on_state(on_state)
        sys.stdout.write("READY " + json.dumps({"port": losant.mqtt_port, "ids": ids, "key": key.key,
                                                "secret": key.secret}) + "\n")
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)  # the harness says when the fleet is done
        # States still in flight after the fleet's flush: wait for them, a bounded time.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(seen.all_in.wait(), 10)
        unlisten()
        counters = losant.counters
        return {
            "stored": seen.count,
            "t_first": seen.first,
            "t_last": seen.last,
            "too_old": counters.states_too_old,
            "invalid": counters.states_invalid,
            "refused": counters.mqtt_connects_refused,
            "denied": counters.mqtt_publishes_denied,
        }


async def serve(n: int, ids_file: str, data_dir: str | None = None) -> dict[str, Any]:
    import resource

    from losant_async.simulator import SENSOR_ATTRIBUTES
    from losant_async.testing import LocalLosant

    async with LocalLosant(ws_port=None, data_dir=data_dir) as losant:
        app = losant.create_application("bench")
        ids = [app.create_device(f"sim-{i:05d}", attributes=dict(SENSOR_ATTRIBUTES)).id for i in range(n)]
        # before the fleet exists: nothing else waits on this loop yet
        Path(ids_file).write_text("\n".join(ids) + "\n", encoding="utf-8")  # noqa: ASYNC240
        key = app.create_access_key()
        token = app.create_api_token(scopes=["all.Application"])
        sys.stdout.write("READY " + json.dumps({
            "rest_url": losant.rest_url, "broker": f"mqtt://{losant.mqtt_host}:{losant.mqtt_port}",
            "application": app.id, "key": key.key, "secret": key.secret, "token": token,
        }) + "\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        counters = losant.counters.as_dict()
    return {
        "stored": counters["states_accepted"],
        "commands_sent": counters["commands_sent"],
        "counters": counters,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--expect", type=int, default=0)
    ap.add_argument("--serve", metavar="IDS_FILE", help="serve a simulate process; write the device ids here")
    ap.add_argument("--data-dir", metavar="PATH", help="with --serve: keep everything in this data directory")
    a = ap.parse_args()
    raise_fd_limit(a.devices * 2 + 200)
    if a.serve:
        run_and_emit(lambda: asyncio.run(serve(a.devices, a.serve, a.data_dir)), ready="READY {}")
    else:
        run_and_emit(lambda: asyncio.run(main(a.devices, a.expect)), ready="READY {}")

"""The machine's own ceiling: a fixed unit of Python and loopback-socket work, as many times as fit in a window.

Each unit encodes a small state, sends it over a socket pair and reads it back:
bytecode, a system call each way, like a simulator's state. Run alone, then two
at once over the same window: the ratio of their total to one alone is how far
this machine's cores go in parallel (2.0 on two real cores; less where virtual
cores share a physical one, or the host takes its share), whatever our code does.

Starts its window at ``--start-at`` (a ``time.monotonic()`` value, one clock for
every process on the host) so that several copies overlap exactly; prints one
JSON line: ``units``, ``cpu_seconds``, ``seconds``.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from typing import Any

from benchmarks.workers._common import run_and_emit

_STATE = {"temperature": 21.5, "humidity": 40.25, "battery": 3.7, "seq": 0}


def spin(start_at: float, seconds: float) -> dict[str, Any]:
    a, b = socket.socketpair()
    try:
        state = dict(_STATE)
        units = 0
        pause = start_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # a worker process of its own: nothing else waits on this thread
        cpu0 = time.process_time()
        t0 = time.monotonic()
        end = t0 + seconds
        while True:
            for _ in range(200):
                state["seq"] = units
                a.send(json.dumps(state).encode())
                json.loads(b.recv(4096))
                units += 1
            if time.monotonic() >= end:
                break
        return {"units": units, "cpu_seconds": time.process_time() - cpu0, "seconds": time.monotonic() - t0}
    finally:
        a.close()
        b.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start-at", type=float, required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    run_and_emit(lambda: spin(a.start_at, a.seconds))


if __name__ == "__main__":
    main()

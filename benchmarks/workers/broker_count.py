"""The broker's own count of PUBLISH packets it has received, once that count has settled.

mosquitto keeps ``$SYS/broker/publish/messages/received`` (retained; republished
every ``sys_interval`` seconds while it changes). Read before and after a run, the
difference is what arrived at the broker, counted by the broker: a count that costs
neither a subscriber's CPU nor the broker's fan-out, which on a small machine would
take cores from what is measured. Prints one JSON line: ``received``, ``settled``.
Short of ``--at-least``, settled means unchanged for ``--quiet`` seconds: a broker
starved of CPU may pause its count, so a short count is waited on longer.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from benchmarks.workers._common import run_and_emit
from benchmarks.workers._wire import MqttSocket

TOPIC = "$SYS/broker/publish/messages/received"


def settled_count(port: int, quiet: float, deadline: float, at_least: int | None) -> dict[str, Any]:
    conn = MqttSocket("127.0.0.1", port, f"bench-broker-count-{os.getpid()}")
    try:
        conn.subscribe(TOPIC)
        value: int | None = None
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            payloads, _ = conn.read_publishes(min(end, time.monotonic() + quiet))
            if payloads:
                value = int(payloads[-1])
                if at_least is not None and value >= at_least:
                    return {"received": value, "settled": True}
            elif value is not None:
                # Unchanged for longer than the broker's republish interval: nothing more is arriving.
                return {"received": value, "settled": True}
        if value is None:
            raise RuntimeError(f"the broker published no {TOPIC} (is sys_interval set?)")
        return {"received": value, "settled": False}
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--quiet", type=float, default=2.5, help="seconds without a change that mean settled")
    ap.add_argument("--deadline", type=float, default=120.0)
    ap.add_argument("--at-least", type=int, default=None,
                    help="return as soon as the count reaches this (else only once it has settled)")
    a = ap.parse_args()
    run_and_emit(lambda: settled_count(a.port, a.quiet, a.deadline, a.at_least))


if __name__ == "__main__":
    main()

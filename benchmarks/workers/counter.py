"""Independent subscriber: counts the messages the broker delivers on a topic and when they arrived.

Prints ``READY`` once subscribed, then one JSON line: ``count``, the time the
``skip``-th message arrived (end of warm-up) with the count then, the time the last arrived.
Stops at ``expect`` messages, after ``idle`` seconds without one, or at ``deadline``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks.workers._wire import MqttSocket


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--skip", type=int, default=0, help="warm-up messages before the window opens")
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--deadline", type=float, default=120.0)
    a = ap.parse_args()

    conn = MqttSocket("127.0.0.1", a.port, f"bench-counter-{os.getpid()}")
    conn.subscribe(a.topic)
    print("READY", flush=True)
    deadline = time.monotonic() + a.deadline
    count = 0
    t_first = t_skip = t_last = None
    n_skip = 0
    last_seen = None
    while count < a.expect:
        now = time.monotonic()
        if now >= deadline or (last_seen is not None and now - last_seen > a.idle):
            break
        limit = min(deadline, (last_seen + a.idle) if last_seen else deadline)
        got, at = conn.count_publishes(limit)
        if not got:
            continue
        if t_first is None:
            t_first = at
        if t_skip is None and count + got >= a.skip:
            t_skip = at
            n_skip = count + got
        count += got
        t_last = last_seen = at
    conn.close()
    json.dump(
        {
            "count": count,
            "expect": a.expect,
            "t_first": t_first,
            "t_skip": t_skip,
            "n_skip": n_skip,
            "t_last": t_last,
        },
        sys.stdout,
    )
    print(flush=True)


if __name__ == "__main__":
    main()

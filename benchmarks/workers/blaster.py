"""Case 3 command source: publishes Losant commands round-robin to N devices over a raw socket.

A paced phase (fixed rate, for latency) then a blast phase (as fast as the
socket takes them, for throughput). Each command's payload carries the
monotonic time it was encoded, so the receiving handler can measure latency
(CLOCK_MONOTONIC is shared by processes on one Linux host).

The blast's packets are encoded before anything is sent, so the blast phase is
socket writes only; several blasters (``--first-seq`` apart) share a blast so
the publishers are not what the receivers' rate measures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone

from benchmarks.workers._common import emit
from benchmarks.workers._wire import MqttSocket, publish_packet

BATCH = 200


def command(seq: int, phase: str) -> bytes:
    now = datetime.now(timezone.utc)
    date = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    return json.dumps(
        {"name": "bench", "payload": {"seq": seq, "t": time.monotonic(), "phase": phase},
         "time": {"$date": date}},
        separators=(",", ":"),
    ).encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--devices", required=True, help="comma-separated device ids")
    ap.add_argument("--paced", type=int, default=0)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--blast", type=int, default=0)
    ap.add_argument("--first-seq", type=int, default=0, help="sequence number of this blaster's first command")
    ap.add_argument("--wait-go", action="store_true",
                    help="once encoded and connected, print READY and start when a line arrives on stdin")
    a = ap.parse_args()
    topics = [f"losant/{d}/command" for d in a.devices.split(",")]
    first = a.first_seq + a.paced
    chunks = [
        b"".join(publish_packet(topics[(first + j) % len(topics)], command(first + j, "b"))
                 for j in range(k, min(a.blast, k + BATCH)))
        for k in range(0, a.blast, BATCH)
    ]
    conn = MqttSocket("127.0.0.1", a.port, f"bench-blaster-{os.getpid()}")
    if a.wait_go:
        print("READY", flush=True)
        sys.stdin.readline()
    seq = a.first_seq
    start = time.monotonic()
    for k in range(a.paced):
        # Pacing, not synchronisation: hold the offered rate so latency is not queueing delay.
        delay = start + k / a.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        conn.send(publish_packet(topics[seq % len(topics)], command(seq, "p")))
        seq += 1
    t_blast = time.monotonic()
    for chunk in chunks:
        conn.send(chunk)
    seq += a.blast
    t_end = time.monotonic()
    conn.close()
    emit({"sent": a.paced + a.blast, "t_blast_start": t_blast, "t_blast_end": t_end})


if __name__ == "__main__":
    main()

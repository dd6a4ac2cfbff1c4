"""Case 3 baseline: N official losant-mqtt Devices in one process (looped round-robin, or a thread each), counting commands."""

from __future__ import annotations

import argparse
import threading
import time

from _shim import emit, point_mqtt_at, track_subacks


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = max(1, -(-int(p * len(xs)) // 100))
    return xs[min(k, len(xs)) - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--devices", required=True)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--deadline", type=float, default=120.0)
    ap.add_argument("--mode", choices=["loop", "threads"], default="loop",
                    help="loop: non-blocking devices looped round-robin; threads: connect(blocking=True) each")
    a = ap.parse_args()
    ids = a.devices.split(",")
    lat: list[float] = []
    st = {"blast": 0, "total": 0, "first": None, "last": None, "seen": time.monotonic(), "subs": 0}

    lock = threading.Lock()  # device threads share the tally in "threads" mode

    def on_command(device, msg):
        now = time.monotonic()
        payload = msg["payload"]
        with lock:
            st["seen"] = now
            st["total"] += 1
            if payload.get("phase") == "p":
                lat.append(now - payload["t"])
            else:
                st["blast"] += 1
                if st["first"] is None:
                    st["first"] = now
                st["last"] = now

    try:
        Device = point_mqtt_at(a.port)
        devices = []
        subacked = track_subacks()
        t0 = time.monotonic()
        threads = []
        for did in ids:
            d = Device(did, "bench-key", "bench-secret", secure=False)
            d.add_event_observer("command", on_command)
            if a.mode == "threads":
                # connect(blocking=True) runs paho's loop_forever: one thread per device.
                t = threading.Thread(target=d.connect, kwargs={"blocking": True}, daemon=True)
                threads.append(t)
                t.start()
            else:
                d.connect(blocking=False)
            devices.append(d)

        deadline = time.monotonic() + 60
        pending = list(devices)
        while pending and time.monotonic() < deadline:
            if a.mode == "loop":
                for d in pending:
                    d.loop(0)
            else:
                time.sleep(0.01)
            pending = [d for d in pending if d._device_id not in subacked]
        connect_s = time.monotonic() - t0
        if pending:
            raise TimeoutError(f"{len(pending)} devices not connected after 60 s")
        print("READY", flush=True)
        end = time.monotonic() + a.deadline
        while st["total"] < a.expect:
            now = time.monotonic()
            if now > end or now - st["seen"] > a.idle:
                break
            if a.mode == "loop":
                for d in devices:
                    d.loop(0)
            else:
                time.sleep(0.05)  # the device threads do the work; this only watches the count
        for d in devices:
            d.close()
        for t in threads:
            t.join(5)
        emit({
            "connect_s": connect_s, "received": st["total"], "expect": a.expect, "paced": len(lat),
            "p50_ms": percentile(lat, 50) * 1000 if lat else None,
            "p99_ms": percentile(lat, 99) * 1000 if lat else None,
            "blast": st["blast"], "t_first": st["first"], "t_last": st["last"],
        })
    except Exception as exc:
        print("READY", flush=True)
        emit({"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main()

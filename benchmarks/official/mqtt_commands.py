"""Case 3 baseline: N official losant-mqtt Devices in one process, looped round-robin, counting commands."""

from __future__ import annotations

import argparse
import time

from _shim import emit, point_mqtt_at


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = max(1, -(-int(p * len(xs)) // 100))
    return xs[min(k, len(xs)) - 1]


def make_on_subscribe(subacked: set[int], key: int):
    def on_subscribe(*_args) -> None:
        subacked.add(key)

    return on_subscribe


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--devices", required=True)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--deadline", type=float, default=120.0)
    a = ap.parse_args()
    ids = a.devices.split(",")
    lat: list[float] = []
    st = {"blast": 0, "total": 0, "first": None, "last": None, "seen": time.monotonic(), "subs": 0}

    def on_command(device, msg):
        now = time.monotonic()
        payload = msg["payload"]
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
        subacked: set[int] = set()
        t0 = time.monotonic()
        for did in ids:
            d = Device(did, "bench-key", "bench-secret", secure=False)
            d.add_event_observer("command", on_command)
            d.connect(blocking=False)
            # Ready means SUBACKed: the client object exists once connect() returned.
            d._mqtt_client.on_subscribe = make_on_subscribe(subacked, id(d))
            devices.append(d)

        deadline = time.monotonic() + 60
        pending = list(devices)
        while pending and time.monotonic() < deadline:
            for d in pending:
                d.loop(0)
            pending = [d for d in pending if id(d) not in subacked]
        connect_s = time.monotonic() - t0
        if pending:
            raise TimeoutError(f"{len(pending)} devices not connected after 60 s")
        print("READY", flush=True)
        end = time.monotonic() + a.deadline
        while st["total"] < a.expect:
            now = time.monotonic()
            if now > end or now - st["seen"] > a.idle:
                break
            for d in devices:
                d.loop(0)
        for d in devices:
            d.close()
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

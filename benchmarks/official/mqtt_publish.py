"""Case 1 baseline: the official losant-mqtt Device (paho 1.x, non-blocking loop) publishing states at QoS 0 (TCP or its TLS mode)."""

from __future__ import annotations

import argparse
import time

from _shim import emit, point_mqtt_at

STATE = {"temperature": 21.5, "humidity": 40, "status": "ok", "battery": 3.71}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--device-id", required=True)
    ap.add_argument("--tls-ca", help="its TLS mode, trusting this CA file instead of its own")
    a = ap.parse_args()
    try:
        Device = point_mqtt_at(a.port, a.tls_ca)
        dev = Device(a.device_id, "bench-key", "bench-secret", secure=bool(a.tls_ca))
        dev.connect(blocking=False)
        deadline = time.monotonic() + 10
        while not dev.is_connected():
            if time.monotonic() > deadline:
                raise TimeoutError("no CONNACK in 10 s")
            dev.loop(0.05)
        t0 = time.monotonic()
        failed = 0
        for i in range(a.count):
            if not dev.send_state({**STATE, "seq": i}):
                failed += 1
            if i % 100 == 99:
                dev.loop(0)  # its own loop: read acks/pings and drain its wakeup pipe
        client = dev._mqtt_client
        while client._out_packet and time.monotonic() < deadline + 120:
            dev.loop(0.01)
        t1 = time.monotonic()
        dev.close()
        dev.loop(0.1)
        emit({"sent": a.count, "failed": failed, "t_start": t0, "t_end": t1})
    except Exception as exc:
        emit({"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main()

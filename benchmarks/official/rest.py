"""Cases 4 and 5 baseline: the official losant-rest client (requests, a new connection per call)."""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from _shim import emit

APP_ID = "5f0c0ffee0c0ffee0c0ffee0"
STATE = {"temperature": 21.5, "humidity": 40, "status": "ok", "battery": 3.71}


def device_id(i: int) -> str:
    return f"d{i:023x}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--mode", choices=["seq", "pool", "fanout"], required=True)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--devices", type=int, default=1000)
    a = ap.parse_args()
    try:
        from losant_rest import Client

        client = Client("bench-token", url=a.url)

        def send(i: int) -> None:
            client.device.send_state(applicationId=APP_ID, deviceId=device_id(i % 1000),
                                     deviceState={"data": {**STATE, "seq": i}})

        for i in range(20):
            send(i)  # warm-up
        if a.mode == "fanout":
            t0 = time.monotonic()
            for i in range(a.devices):
                client.device.send_command(applicationId=APP_ID, deviceId=device_id(i),
                                           deviceCommand={"name": "reboot", "payload": {"delay": 5}})
            emit({"done": a.devices, "elapsed": time.monotonic() - t0})
            return
        count = [0]
        lock = threading.Lock()
        end = time.monotonic() + a.duration

        def loop() -> None:
            n = 0
            while time.monotonic() < end:
                send(n)
                n += 1
            with lock:
                count[0] += n

        t0 = time.monotonic()
        if a.mode == "seq":
            loop()
        else:
            with ThreadPoolExecutor(a.threads) as pool:
                for f in [pool.submit(loop) for _ in range(a.threads)]:
                    f.result()
        emit({"done": count[0], "elapsed": time.monotonic() - t0})
    except Exception as exc:
        emit({"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main()

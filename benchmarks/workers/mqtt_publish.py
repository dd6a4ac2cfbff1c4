"""Case 1 publisher: one connection publishes ``count`` states at QoS 0/1 through one implementation.

Implementations: ``ours`` (losant_async Device), ``aiomqtt-awaited``,
``aiomqtt-gathered`` (chunks of 100), ``paho`` (paho-mqtt 2 with its network
thread). Delivery is counted by the independent subscriber, not here.
With ``--tls-ca`` each connects over TLS (``--port`` is then the TLS listener),
trusting that CA file only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import time
from typing import Any

import msgspec

from benchmarks._payloads import STATE
from benchmarks.workers._common import profiled, run_and_emit

_enc = msgspec.json.Encoder()
GATHER_CHUNK = 100


def tls_context(a: argparse.Namespace) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=a.tls_ca) if a.tls_ca else None


def state_bytes(i: int) -> bytes:
    # Same content as ours sends: the state with a sequence number and a fresh timestamp.
    return _enc.encode({"data": {**STATE, "seq": i}, "time": int(time.time() * 1000)})


async def run_ours(a: argparse.Namespace) -> dict[str, Any]:
    from losant_async.mqtt import Device

    async with Device(
        a.device_id, "bench-key", "bench-secret", host="127.0.0.1", port=a.port,
        transport="tls" if a.tls_ca else "tcp", tls_context=tls_context(a), qos=a.qos, throttle=False,
    ) as device:
        t0 = time.monotonic()
        with profiled(a.profile):
            for i in range(a.count):
                await device.send_state({**STATE, "seq": i})
            await device.flush()
        t1 = time.monotonic()
    return {"sent": a.count, "t_start": t0, "t_end": t1}


async def run_aiomqtt(a: argparse.Namespace, gathered: bool) -> dict[str, Any]:
    import aiomqtt

    quiet = logging.getLogger("bench.aiomqtt")
    quiet.setLevel(logging.ERROR)  # its per-call "pending calls" warning would cost more than the publish
    topic = f"losant/{a.device_id}/state"
    async with aiomqtt.Client(
        "127.0.0.1", a.port, identifier=a.device_id, username="bench-key", password="bench-secret",
        logger=quiet, clean_session=True, protocol=aiomqtt.ProtocolVersion.V311,
        max_inflight_messages=100, tls_context=tls_context(a),
    ) as client:
        t0 = time.monotonic()
        with profiled(a.profile):
            if gathered:
                for start in range(0, a.count, GATHER_CHUNK):
                    await asyncio.gather(
                        *(client.publish(topic, state_bytes(i), qos=a.qos)
                          for i in range(start, min(a.count, start + GATHER_CHUNK)))
                    )
            else:
                for i in range(a.count):
                    await client.publish(topic, state_bytes(i), qos=a.qos)
        t1 = time.monotonic()
    return {"sent": a.count, "t_start": t0, "t_end": t1}


def run_paho(a: argparse.Namespace) -> dict[str, Any]:
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    topic = f"losant/{a.device_id}/state"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=a.device_id,
                         protocol=mqtt.MQTTv311, clean_session=True)
    client.username_pw_set("bench-key", "bench-secret")
    if a.tls_ca:
        client.tls_set(ca_certs=a.tls_ca)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", a.port, 15)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise TimeoutError("paho: no CONNACK in 10 s")
        t0 = time.monotonic()
        with profiled(a.profile):
            infos = [client.publish(topic, state_bytes(i), qos=a.qos) for i in range(a.count)]
            for info in infos:
                info.wait_for_publish(60)
        t1 = time.monotonic()
        acked = all(i.is_published() for i in infos)
    finally:
        client.disconnect()
        client.loop_stop()
    return {"sent": a.count, "t_start": t0, "t_end": t1, "acked": acked}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", required=True, choices=["ours", "aiomqtt-awaited", "aiomqtt-gathered", "paho"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--qos", type=int, default=0)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--device-id", required=True)
    ap.add_argument("--tls-ca", help="connect over TLS, trusting this CA file (PEM)")
    ap.add_argument("--profile")
    a = ap.parse_args()
    def run() -> dict[str, Any]:
        if a.impl == "ours":
            return asyncio.run(run_ours(a))
        if a.impl == "paho":
            return run_paho(a)
        return asyncio.run(run_aiomqtt(a, gathered=a.impl == "aiomqtt-gathered"))

    run_and_emit(run)


if __name__ == "__main__":
    main()

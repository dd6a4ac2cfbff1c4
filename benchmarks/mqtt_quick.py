"""Quick MQTT measurement: Device vs raw aiomqtt on loopback mosquitto, one run each.

    .venv/bin/python -m benchmarks.mqtt_quick [--states 100000] [--devices 100] [--fleet 1000]
    .venv/bin/python -m benchmarks.mqtt_quick --paths [--states 100000]

``--paths`` measures only the publish paths users run, side by side: plain TCP,
TLS (a trustme CA on a loopback TLS listener) and throttle on (limits set so
high that the throttle always has tokens: what it costs, not what it holds back).

Delivered rates: a ``mosquitto_sub`` process counts what the broker delivers and
the clock stops when it has seen every message. Commands: a paho publisher in
another process sends to 100 devices of one process. RSS: resident memory added
per connected device when a Fleet of ``--fleet`` devices is up. Needs mosquitto.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from losant_async.mqtt import Command, Device, Fleet, ThrottleConfig
from tests.support.brokers import Broker, running_broker

DEV = "0123456789abcdef01234567"


@contextlib.asynccontextmanager
async def counting_subscriber(broker: Broker, topic: str, count: int, qos: int) -> AsyncIterator[asyncio.subprocess.Process]:
    sub = shutil.which("mosquitto_sub")
    assert sub, "mosquitto_sub is needed"
    proc = await asyncio.create_subprocess_exec(
        sub, "-h", broker.host, "-p", str(broker.port), "-t", topic, "-q", str(qos), "-C", str(count),
        stdout=asyncio.subprocess.DEVNULL,
    )
    # Subscribed once a retained-free probe comes back: publish probes until the subscriber counts one.
    async with aiomqtt.Client(broker.host, broker.port) as probe:
        await probe.subscribe("bench/ready")
        await probe.publish("bench/ready", b"x")
        async for _ in probe.messages:
            break
    await asyncio.sleep(0.3)  # benchmark only: give mosquitto_sub time to SUBSCRIBE before the clock starts
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def device_states(broker: Broker, n: int, qos: int, *, tls: bool = False, throttle: bool = False) -> float:
    topic = f"losant/{DEV}/state"
    where: dict[str, Any] = dict(host=broker.host, port=broker.port, transport="tcp")
    if tls:
        assert broker.tls is not None and broker.tls_port is not None
        where = dict(host=broker.host, port=broker.tls_port, transport="tls", tls_context=broker.tls.client_context)
    if throttle:
        # Limits no run reaches: every message takes the path a throttled device takes with tokens left.
        where["throttle"] = ThrottleConfig(per_topic=10**9, per_connection=10**9)
    async with counting_subscriber(broker, topic, n, qos) as sub, Device(DEV, "k", "s", qos=qos, **where) as device:
        start = time.perf_counter()
        cpu = time.process_time()
        for i in range(n):
            await device.send_state({"temperature": 21.5, "i": i})
        await device.flush()
        LAST_CPU_US[0] = (time.process_time() - cpu) / n * 1e6
        await asyncio.wait_for(sub.wait(), 120)
        return n / (time.perf_counter() - start)


#: CPU microseconds this process spent per state in the last ``device_states`` run (less
#: sensitive to a loaded machine than the delivered rate).
LAST_CPU_US = [0.0]


async def raw_aiomqtt(broker: Broker, n: int, qos: int) -> float:
    import msgspec

    topic = f"losant/{DEV}/state"
    enc = msgspec.json.Encoder()
    async with counting_subscriber(broker, topic, n, qos) as sub, aiomqtt.Client(
        broker.host, broker.port, max_inflight_messages=100
    ) as client:
        client.pending_calls_threshold = 10**9
        start = time.perf_counter()
        if qos == 0:
            for i in range(n):
                await client.publish(topic, enc.encode({"data": {"temperature": 21.5, "i": i}, "time": time.time_ns() // 10**6}), 0)
        else:
            batch = 100
            for base in range(0, n, batch):
                await asyncio.gather(*(
                    client.publish(topic, enc.encode({"data": {"temperature": 21.5, "i": i}, "time": time.time_ns() // 10**6}), 1)
                    for i in range(base, min(n, base + batch))
                ))
        await asyncio.wait_for(sub.wait(), 120)
        return n / (time.perf_counter() - start)


PUBLISHER = r"""
import sys, time, paho.mqtt.client as mqtt
host, port, n_dev, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
c.connect(host, port)
c.loop_start()
topics = [f"losant/{i:024x}/command" for i in range(1, n_dev + 1)]
payload = b'{"name":"set","payload":{"v":1},"time":{"$date":"2024-01-01T00:00:00.000Z"}}'
for k in range(per):
    for t in topics:
        c.publish(t, payload, 0)
    if k % 20 == 0:
        while len(c._out_packet) > 5000:
            time.sleep(0.001)
while c._out_packet:
    time.sleep(0.01)
c.disconnect(); c.loop_stop()
"""


async def commands(broker: Broker, n_dev: int, per: int) -> float:
    total = n_dev * per
    got = 0
    done = asyncio.Event()
    first: list[float] = []

    def on_command(_: Command) -> None:
        nonlocal got
        if not first:
            first.append(time.perf_counter())
        got += 1
        if got >= total:
            done.set()

    devices = [Device(f"{i:024x}", "k", "s", host=broker.host, port=broker.port, transport="tcp") for i in range(1, n_dev + 1)]
    for d in devices:
        d.on_command(on_command)
    async with Fleet(devices, connect_concurrency=20):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PUBLISHER, broker.host, str(broker.port), str(n_dev), str(per)
        )
        try:
            await asyncio.wait_for(done.wait(), 120)
        except asyncio.TimeoutError:
            print(f"  commands: only {got}/{total} arrived")
        end = time.perf_counter()
        await proc.wait()
    return got / (end - first[0]) if first else 0.0


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def fleet_rss(broker: Broker, n: int) -> tuple[float, float]:
    devices = [Device(f"{i:024x}", "k", "s", host=broker.host, port=broker.port, transport="tcp") for i in range(1, n + 1)]
    before = rss_kib()
    start = time.perf_counter()
    async with Fleet(devices, connect_concurrency=50) as fleet:
        took = time.perf_counter() - start
        assert fleet.connected == n
        after = rss_kib()
    return took, (after - before) / n


async def paths(n: int) -> None:
    async with running_broker(prefer="mosquitto", tls=True) as broker:
        print(f"mosquitto on 127.0.0.1:{broker.port} (TLS {broker.tls_port}), {os.cpu_count()} CPUs, one run each")
        for qos, count in ((0, n), (1, n // 2)):
            plain = await device_states(broker, count, qos)
            plain_cpu = LAST_CPU_US[0]
            tls = await device_states(broker, count, qos, tls=True)
            tls_cpu = LAST_CPU_US[0]
            throttled = await device_states(broker, count, qos, throttle=True)
            throttled_cpu = LAST_CPU_US[0]
            print(f"QoS {qos} states/s   plain {plain:>9,.0f}   TLS {tls:>9,.0f} ({tls / plain:.2f}x)"
                  f"   throttle on {throttled:>9,.0f} ({throttled / plain:.2f}x)", flush=True)
            print(f"QoS {qos} CPU us/state plain {plain_cpu:>6.1f}   TLS {tls_cpu:>6.1f}"
                  f"   throttle on {throttled_cpu:>6.1f}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--states", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--per-device", type=int, default=500)
    parser.add_argument("--fleet", type=int, default=1000)
    parser.add_argument("--paths", action="store_true", help="only QoS 0/1 over plain TCP, TLS and throttle on")
    args = parser.parse_args()
    if args.paths:
        await paths(args.states)
        return
    async with running_broker(prefer="mosquitto") as broker:
        assert broker.kind == "mosquitto", "this benchmark needs mosquitto"
        print(f"mosquitto on 127.0.0.1:{broker.port}, {os.cpu_count()} CPUs, one run each")
        q0 = await device_states(broker, args.states, 0)
        print(f"QoS 0 states/s   Device {q0:>9,.0f}", flush=True)
        r0 = await raw_aiomqtt(broker, args.states // 4, 0)
        print(f"QoS 0 states/s   aiomqtt {r0:>8,.0f}   (Device = {q0 / r0:.1f}x)", flush=True)
        q1 = await device_states(broker, args.states // 2, 1)
        print(f"QoS 1 states/s   Device {q1:>9,.0f}", flush=True)
        r1 = await raw_aiomqtt(broker, args.states // 4, 1)
        print(f"QoS 1 states/s   aiomqtt {r1:>8,.0f}   (Device = {q1 / r1:.1f}x, gathered by 100)", flush=True)
        c = await commands(broker, args.devices, args.per_device)
        print(f"commands/s over {args.devices} devices: {c:,.0f}", flush=True)
        if args.fleet:
            took, per = await fleet_rss(broker, args.fleet)
            print(f"fleet of {args.fleet}: connected in {took:.2f} s, RSS {per:.1f} KiB per device", flush=True)


if __name__ == "__main__":
    asyncio.run(main())

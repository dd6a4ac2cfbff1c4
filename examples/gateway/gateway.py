"""A gateway process: several sensors reported through one MQTT connection that loses nothing.

What it shows
  * one ``Gateway`` connection (QoS 1) carrying the state of several peripherals,
    each a simulated sensor behind a small async interface (``Sensor``);
  * every reading stamped with the time it was taken and kept in a SQLite outbox
    until the broker acknowledged it: a broker outage, or a restart of this process
    with the same outbox file, loses no reading and keeps its original time;
  * commands routed to the sensor of the peripheral they are addressed to
    (``calibrate {"offset": 1.5}``, ``set_interval {"seconds": 10}``);
  * a clean stop on SIGINT/SIGTERM: sensors stop, the outbox gets a few seconds
    to drain, and whatever is left stays in the file for the next start.
  It prints one JSON object per line (readings, commands, connection changes),
  the way a daemon logs for a collector.

Run it against an embedded emulator (nothing to set up; stops after --duration):
    python examples/gateway/gateway.py

Run it against real Losant: create a gateway device, peripherals whose parent is
that gateway (attributes ``temperature`` and ``humidity``, numbers), and an
access key for them, then:
    LOSANT_DEVICE_ID=<gateway id> LOSANT_PERIPHERAL_IDS=<id>,<id>,... \\
    LOSANT_ACCESS_KEY=<key> LOSANT_ACCESS_SECRET=<secret> \\
    python examples/gateway/gateway.py --interval 5
Optional: LOSANT_MQTT_HOST (broker.losant.com), LOSANT_MQTT_PORT, LOSANT_MQTT_TRANSPORT
(tls by default for broker.losant.com, tcp otherwise). Stop it with Ctrl-C.
Keep --interval at 0.5 s or more per peripheral: Losant allows 30 messages per 15 s per topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import anyio

from losant_async.errors import LosantError
from losant_async.mqtt import Backoff, Gateway, Peripheral, SQLiteOutbox, Transport

TRANSPORTS = ("tls", "tcp", "websockets", "wss")  # what LOSANT_MQTT_TRANSPORT may say


def log(event: str, **fields: Any) -> None:
    """One JSON line on stdout (flushed: a supervisor or a test reads it live)."""
    print(json.dumps({"event": event, **fields}), flush=True)


def epoch_ms() -> int:
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- the sensors


class Sensor(Protocol):
    """What the gateway needs from a sensor; a real one would talk to a bus (I2C, Modbus, BLE)."""

    interval: float
    """Seconds between two readings."""

    async def read(self) -> dict[str, float]:
        """One reading: attribute name -> value."""
        ...

    def apply(self, name: str, payload: Any) -> bool:
        """Carry out a command; False when the sensor does not know it."""
        ...


class SimulatedSensor:
    """An environment sensor: temperature on a slow wave plus noise, and humidity."""

    def __init__(self, index: int, interval: float, seed: int | None = None) -> None:
        self.interval = interval
        self.offset = 0.0
        self._base = 20.0 + 2.0 * index
        self._rng = random.Random(seed if seed is not None else index)
        self._started = time.monotonic()

    async def read(self) -> dict[str, float]:
        # A real sensor answers after a bus transaction; yield so the loop keeps serving.
        await asyncio.sleep(0)
        t = time.monotonic() - self._started
        temperature = self._base + 3.0 * math.sin(t / 60.0) + self._rng.gauss(0, 0.1) + self.offset
        humidity = 45.0 + 10.0 * math.cos(t / 90.0) + self._rng.gauss(0, 0.5)
        return {"temperature": round(temperature, 3), "humidity": round(humidity, 2)}

    def apply(self, name: str, payload: Any) -> bool:
        args = payload if isinstance(payload, Mapping) else {}
        if name == "calibrate" and isinstance(args.get("offset"), (int, float)):
            self.offset = float(args["offset"])
            return True
        if name == "set_interval" and isinstance(args.get("seconds"), (int, float)):
            self.interval = max(0.01, float(args["seconds"]))
            return True
        return False


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Who the gateway is, where its broker is, and how it behaves; the secret stays out of the repr."""

    gateway_id: str
    peripheral_ids: tuple[str, ...]
    key: str = field(repr=False)
    secret: str = field(repr=False)
    host: str = "broker.losant.com"
    port: int | None = None
    transport: Transport = "tls"
    outbox: Path = Path("gateway-outbox.sqlite3")
    interval: float = 5.0
    drain_timeout: float = 5.0
    reconnect_cap: float = 60.0
    """Longest wait between two reconnect attempts (seconds)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str], args: argparse.Namespace) -> Settings | None:
        """Settings from LOSANT_* variables, or None when none is set (use the emulator)."""
        if not any(name.startswith("LOSANT_") and name != "LOSANT_LOG" for name in env):
            return None
        missing = [
            name
            for name in ("LOSANT_DEVICE_ID", "LOSANT_PERIPHERAL_IDS", "LOSANT_ACCESS_KEY", "LOSANT_ACCESS_SECRET")
            if not env.get(name)
        ]
        if missing:
            raise SystemExit(f"missing environment variables: {', '.join(missing)}")
        host = env.get("LOSANT_MQTT_HOST", "broker.losant.com")
        transport = env.get("LOSANT_MQTT_TRANSPORT", "tls" if host == "broker.losant.com" else "tcp")
        if transport not in TRANSPORTS:
            raise SystemExit("LOSANT_MQTT_TRANSPORT must be tls, tcp, websockets or wss")
        port = env.get("LOSANT_MQTT_PORT")
        return cls(
            gateway_id=env["LOSANT_DEVICE_ID"],
            peripheral_ids=tuple(p.strip() for p in env["LOSANT_PERIPHERAL_IDS"].split(",") if p.strip()),
            key=env["LOSANT_ACCESS_KEY"],
            secret=env["LOSANT_ACCESS_SECRET"],
            host=host,
            port=int(port) if port else None,
            transport=cast(Transport, transport),
            outbox=Path(args.outbox or "gateway-outbox.sqlite3"),
            interval=args.interval,
            drain_timeout=args.drain_timeout,
            reconnect_cap=args.reconnect_cap,
        )


# --------------------------------------------------------------------------- the gateway


async def report(peripheral: Peripheral, sensor: Sensor) -> None:
    """Read one sensor until cancelled; each reading goes to the outbox stamped with when it was taken."""
    while True:
        started = time.monotonic()
        data = await sensor.read()
        taken = epoch_ms()
        # Returns once the reading is in the outbox (on disk): from here on it survives
        # an outage or a restart, and goes out with the time it was taken.
        await peripheral.send_state(data, time=taken)
        log("reading", peripheral=peripheral.device_id, time=taken, data=data)
        await asyncio.sleep(max(0.0, sensor.interval - (time.monotonic() - started)))


async def route_commands(peripheral: Peripheral, sensor: Sensor) -> None:
    """Hand every command addressed to this peripheral to its sensor."""
    async with peripheral.commands() as commands:
        async for command in commands:
            done = sensor.apply(command.name, command.payload)
            log("command", peripheral=peripheral.device_id, name=command.name, payload=command.payload, applied=done)


async def log_connection(gateway: Gateway) -> None:
    async with gateway.events() as events:
        async for event in events:
            log("connection", state=event.state.value, reason=event.reason)


async def run_gateway(settings: Settings, stop: anyio.Event, sensors: Mapping[str, Sensor] | None = None) -> int:
    """Run until ``stop`` is set, then drain for up to ``drain_timeout`` s; returns how many messages remain."""
    if sensors is None:
        sensors = {pid: SimulatedSensor(i, settings.interval) for i, pid in enumerate(settings.peripheral_ids)}
    gateway = Gateway(
        settings.gateway_id,
        settings.key,
        settings.secret,
        host=settings.host,
        port=settings.port,
        transport=settings.transport,
        qos=1,
        outbox=SQLiteOutbox(settings.outbox),
        backoff=Backoff(initial=min(1.0, settings.reconnect_cap), cap=settings.reconnect_cap),
        # Start even while the broker is unreachable: readings wait in the outbox.
        wait_ready=False,
        # Leaving the ``async with`` flushes the outbox for at most this long.
        close_timeout=settings.drain_timeout,
    )
    async with gateway:
        log("started", gateway=settings.gateway_id, peripherals=list(sensors), pending=gateway.stats.outbox_depth)
        async with anyio.create_task_group() as tg:
            tg.start_soon(log_connection, gateway, name="connection log")
            for peripheral_id, sensor in sensors.items():
                peripheral = await gateway.peripheral(peripheral_id)
                tg.start_soon(report, peripheral, sensor, name=f"report {peripheral_id}")
                tg.start_soon(route_commands, peripheral, sensor, name=f"commands {peripheral_id}")
            await stop.wait()
            tg.cancel_scope.cancel()
    pending = gateway.stats.outbox_depth
    log("stopped", pending=pending, outbox=str(settings.outbox))
    return pending


def install_signal_handlers(stop: anyio.Event) -> None:
    """SIGINT and SIGTERM ask for a clean stop (sensors stop, the outbox drains for a while)."""
    loop = asyncio.get_running_loop()

    def handler(signum: int) -> None:
        log("signal", name=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, handler, signum)


# --------------------------------------------------------------------------- the embedded demo


async def run_embedded(args: argparse.Namespace, stop: anyio.Event) -> None:
    """Provision a gateway and three peripherals on a local emulator, run, and show what arrived."""
    from losant_async.testing import LocalLosant

    # The demo's devices live only as long as its emulator, so its outbox is temporary too.
    with tempfile.TemporaryDirectory() as tmp:
        async with LocalLosant() as losant:
            app = losant.create_application(name="gateway example")
            gateway = app.create_device(name="gateway", device_class="gateway")
            attributes = {"temperature": "number", "humidity": "number"}
            peripherals = [
                app.create_device(
                    name=f"sensor-{i}", device_class="peripheral", parent_id=gateway.id, attributes=attributes
                )
                for i in range(3)
            ]
            key = app.create_access_key()
            settings = Settings(
                gateway_id=gateway.id,
                peripheral_ids=tuple(p.id for p in peripherals),
                key=key.key,
                secret=key.secret,
                host=losant.mqtt_host,
                port=losant.mqtt_port,
                transport="tcp",
                outbox=Path(args.outbox) if args.outbox else Path(tmp) / "outbox.sqlite3",
                interval=args.interval,
                drain_timeout=args.drain_timeout,
                reconnect_cap=args.reconnect_cap,
            )

            async def demo() -> None:
                # What a dashboard button would do: recalibrate one sensor; then stop after a while.
                first = min(2.0, args.duration / 2)
                with anyio.move_on_after(first):
                    await stop.wait()
                if not stop.is_set():
                    await losant.send_command(peripherals[0].id, "calibrate", {"offset": 1.5})
                with anyio.move_on_after(args.duration - first):
                    await stop.wait()
                stop.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(demo)
                await run_gateway(settings, stop)
            for p in peripherals:
                log("stored", peripheral=p.id, states=len(losant.states(p.id)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings per sensor")
    parser.add_argument(
        "--outbox", default=None, help="SQLite outbox file (gateway-outbox.sqlite3; a temporary one for the demo)"
    )
    parser.add_argument("--drain-timeout", type=float, default=5.0, help="seconds to drain on stop")
    parser.add_argument("--reconnect-cap", type=float, default=60.0, help="longest wait between reconnects")
    parser.add_argument("--duration", type=float, default=10.0, help="embedded demo only: seconds to run")
    return parser.parse_args(argv)


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop = anyio.Event()
    install_signal_handlers(stop)
    try:
        settings = Settings.from_env(os.environ, args)
        if settings is None:
            await run_embedded(args, stop)
        else:
            await run_gateway(settings, stop)
    except Exception as exc:
        # Task groups wrap what failed inside them in an exception group.
        error = first_losant_error(exc)
        if error is None:
            raise
        log("error", type=type(error).__name__, message=str(error))
        return 1
    return 0


def first_losant_error(exc: BaseException) -> LosantError | None:
    """``exc`` itself, or the first LosantError inside an exception group."""
    if isinstance(exc, LosantError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = first_losant_error(inner)
        if found is not None:
            return found
    return None


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

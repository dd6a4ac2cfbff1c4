"""A custom high-volume fleet: device profiles, command handlers, ramp-up, clean stop, throughput.

What it shows (a script built on the library, not the ``losant-async simulate`` CLI)
  * device profiles: a sine wave (temperature), a random walk (tank level) and
    event bursts (a door counter that reports several events in quick
    succession, then goes quiet);
  * a command handler per device (``set_rate {"per_second": 2}``, ``pause``,
    ``resume``, ``burst`` for the event profile);
  * a ``Fleet`` connecting devices a few at a time (``connect_concurrency``)
    and reporting loops that ramp up: device ``i`` starts ``i/N`` of the ramp-up
    period after the first, so the broker never sees the whole fleet at once;
  * a clean stop (end of ``--duration``, or Ctrl-C/SIGTERM): loops stop, every
    device flushes what it queued, connections close;
  * throughput printed at the end: states sent, per profile and per second.

Run it against an embedded emulator (creates the devices itself):
    python examples/simulator/simulator.py --devices 50 --duration 10

Run it against real Losant: create standalone devices with the attributes
``temperature``, ``level`` and ``events`` (numbers) and an access key, then:
    LOSANT_DEVICE_IDS=<id>,<id>,... (or LOSANT_DEVICE_ID=<id>) LOSANT_ACCESS_KEY=<key> LOSANT_ACCESS_SECRET=<secret> \\
    python examples/simulator/simulator.py --duration 60 --rate 0.5
Optional: LOSANT_MQTT_HOST (broker.losant.com), LOSANT_MQTT_PORT, LOSANT_MQTT_TRANSPORT.
Losant allows 30 messages per 15 s per device: keep --rate at 1 or less (bursts
included) against real Losant; the library throttles to stay under the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

import anyio

from losant_async.errors import LosantError
from losant_async.mqtt import Command, Device, Fleet, Transport

TRANSPORTS = ("tls", "tcp", "websockets", "wss")  # what LOSANT_MQTT_TRANSPORT may say

ATTRIBUTES: Mapping[str, str] = {"temperature": "number", "level": "number", "events": "number"}
"""Every attribute a profile reports (name -> Losant data type); devices need them declared."""


# --------------------------------------------------------------------------- profiles


class Profile(Protocol):
    """What a simulated device reports, and how it reacts to commands."""

    name: str
    rate: float
    """Reports per second while running."""

    def next(self, t: float) -> list[dict[str, float]]:
        """The states to report at ``t`` seconds since this device started (usually one)."""
        ...

    def command(self, name: str, payload: Any) -> bool:
        """Apply a command this profile understands; False otherwise."""
        ...


class _Base:
    name = "base"

    def __init__(self, rate: float, rng: random.Random) -> None:
        self.rate = rate
        self.rng = rng

    def command(self, name: str, payload: Any) -> bool:
        args = payload if isinstance(payload, Mapping) else {}
        if name == "set_rate" and isinstance(args.get("per_second"), (int, float)) and args["per_second"] > 0:
            self.rate = float(args["per_second"])
            return True
        return False


class SineWave(_Base):
    """A temperature following a slow sine wave, with a little noise."""

    name = "sine"

    def __init__(self, rate: float, rng: random.Random, *, period: float = 60.0, amplitude: float = 5.0) -> None:
        super().__init__(rate, rng)
        self.period = period
        self.amplitude = amplitude
        self.phase = rng.uniform(0, 2 * math.pi)

    def next(self, t: float) -> list[dict[str, float]]:
        value = 21.0 + self.amplitude * math.sin(2 * math.pi * t / self.period + self.phase)
        return [{"temperature": round(value + self.rng.gauss(0, 0.05), 3)}]


class RandomWalk(_Base):
    """A tank level wandering between 0 and 100."""

    name = "walk"

    def __init__(self, rate: float, rng: random.Random, *, step: float = 1.5) -> None:
        super().__init__(rate, rng)
        self.step = step
        self.level = rng.uniform(20, 80)

    def next(self, t: float) -> list[dict[str, float]]:
        self.level = min(100.0, max(0.0, self.level + self.rng.uniform(-self.step, self.step)))
        return [{"level": round(self.level, 2)}]


class EventBursts(_Base):
    """A counter that is mostly quiet, then reports a burst of events."""

    name = "bursts"

    def __init__(self, rate: float, rng: random.Random, *, probability: float = 0.2, size: int = 3) -> None:
        super().__init__(rate, rng)
        self.probability = probability
        self.size = size
        self.total = 0
        self._forced = False

    def next(self, t: float) -> list[dict[str, float]]:
        if not self._forced and self.rng.random() >= self.probability:
            return []
        self._forced = False
        states = []
        for _ in range(self.size):
            self.total += 1
            states.append({"events": float(self.total)})
        return states

    def command(self, name: str, payload: Any) -> bool:
        if name == "burst":
            self._forced = True
            return True
        return super().command(name, payload)


PROFILES = (SineWave, RandomWalk, EventBursts)


def make_profile(index: int, rate: float, seed: int) -> Profile:
    """Profiles in turn: device 0 a sine, 1 a walk, 2 bursts, 3 a sine..."""
    cls = PROFILES[index % len(PROFILES)]
    profile: Profile = cls(rate, random.Random(seed * 1_000_003 + index))
    return profile


# --------------------------------------------------------------------------- running the fleet


@dataclass(frozen=True)
class Broker:
    """Where the fleet connects, with which access key; the secret stays out of the repr."""

    host: str = "broker.losant.com"
    port: int | None = None
    transport: Transport = "tls"
    key: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)


@dataclass
class Report:
    """What a run did; ``sent`` per device is what the server should have stored."""

    devices: int
    elapsed: float
    sent: dict[str, int]
    by_profile: Counter[str]
    commands: dict[str, list[str]]
    errors: list[str]

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    @property
    def per_second(self) -> float:
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    def render(self) -> str:
        lines = [
            f"{self.devices} devices, {self.total} states in {self.elapsed:.1f} s: {self.per_second:,.0f} states/s",
        ]
        for name, count in sorted(self.by_profile.items()):
            lines.append(f"  {name:<7} {count:>8} states")
        handled = sum(len(c) for c in self.commands.values())
        lines.append(f"  commands handled: {handled}; errors: {len(self.errors)}")
        return "\n".join(lines)


@dataclass
class _Sim:
    device: Device
    profile: Profile
    paused: bool = False
    sent: int = 0
    last_ms: int = 0
    commands: list[str] = field(default_factory=list)
    wake: anyio.Event = field(default_factory=anyio.Event)

    def handle(self, command: Command) -> None:
        """The device's command handler (called by the device for each command it receives)."""
        if command.name == "pause":
            self.paused = True
        elif command.name == "resume":
            self.paused = False
        elif not self.profile.command(command.name, command.payload):
            return
        self.commands.append(command.name)
        self.wake.set()  # a new rate or a burst takes effect now, not after the current wait

    def stamp(self) -> int:
        # Losant keeps one state per device per millisecond (a later one overwrites):
        # states sent within one millisecond get the next free one.
        ms = max(time.time_ns() // 1_000_000, self.last_ms + 1)
        self.last_ms = ms
        return ms


async def simulate(
    device_ids: Sequence[str],
    broker: Broker,
    *,
    duration: float,
    rate: float = 1.0,
    ramp_up: float = 2.0,
    connect_concurrency: int = 20,
    qos: Literal[0, 1] = 0,
    seed: int = 1,
    stop: anyio.Event | None = None,
) -> Report:
    """Run the fleet for ``duration`` seconds of reporting (or until ``stop``), then stop cleanly."""
    stop = stop or anyio.Event()
    sims: dict[str, _Sim] = {}
    for i, device_id in enumerate(device_ids):
        device = Device(
            device_id, broker.key, broker.secret,
            host=broker.host, port=broker.port, transport=broker.transport, qos=qos,
        )
        sim = _Sim(device, make_profile(i, rate, seed))
        device.on_command(sim.handle)
        sims[device_id] = sim

    errors: list[str] = []
    # Entering connects every device, ``connect_concurrency`` at a time.
    async with Fleet([s.device for s in sims.values()], connect_concurrency=connect_concurrency):
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i, sim in enumerate(sims.values()):
                tg.start_soon(_report, sim, ramp_up * i / len(sims), errors, name=f"report {sim.device.device_id}")
            with anyio.move_on_after(duration):
                await stop.wait()
            tg.cancel_scope.cancel()
        elapsed = time.monotonic() - started
        # Everything queued goes out before the connections close.
        flushes = await asyncio.gather(*(s.device.flush(timeout=15) for s in sims.values()), return_exceptions=True)
        errors += [f"flush: {e}" for e in flushes if isinstance(e, BaseException)]
    by_profile: Counter[str] = Counter()
    for sim in sims.values():
        by_profile[sim.profile.name] += sim.sent
    return Report(
        devices=len(sims),
        elapsed=elapsed,
        sent={device_id: s.sent for device_id, s in sims.items()},
        by_profile=by_profile,
        commands={device_id: s.commands for device_id, s in sims.items() if s.commands},
        errors=errors,
    )


async def _report(sim: _Sim, delay: float, errors: list[str]) -> None:
    """One device's reporting loop: starts after its ramp-up delay, runs until cancelled."""
    await anyio.sleep(delay)
    begun = time.monotonic()
    while True:
        if not sim.paused:
            for state in sim.profile.next(time.monotonic() - begun):
                try:
                    await sim.device.send_state(state, time=sim.stamp())
                except LosantError as exc:
                    errors.append(f"{sim.device.device_id}: {exc}")
                    continue
                sim.sent += 1
        sim.wake = anyio.Event()
        with anyio.move_on_after(1.0 / sim.profile.rate):
            await sim.wake.wait()


# --------------------------------------------------------------------------- the script


def broker_from_env(env: Mapping[str, str]) -> tuple[list[str], Broker]:
    # LOSANT_DEVICE_IDS lists several devices; LOSANT_DEVICE_ID (the library's name) is one.
    device_ids = env.get("LOSANT_DEVICE_IDS") or env.get("LOSANT_DEVICE_ID", "")
    missing = [n for n in ("LOSANT_ACCESS_KEY", "LOSANT_ACCESS_SECRET") if not env.get(n)]
    if not device_ids:
        missing.insert(0, "LOSANT_DEVICE_IDS (or LOSANT_DEVICE_ID)")
    if missing:
        raise SystemExit(f"missing environment variables: {', '.join(missing)}")
    host = env.get("LOSANT_MQTT_HOST", "broker.losant.com")
    transport = env.get("LOSANT_MQTT_TRANSPORT", "tls" if host == "broker.losant.com" else "tcp")
    if transport not in TRANSPORTS:
        raise SystemExit("LOSANT_MQTT_TRANSPORT must be tls, tcp, websockets or wss")
    port = env.get("LOSANT_MQTT_PORT")
    ids = [d.strip() for d in device_ids.split(",") if d.strip()]
    broker = Broker(host=host, port=int(port) if port else None, transport=cast(Transport, transport),
                    key=env["LOSANT_ACCESS_KEY"], secret=env["LOSANT_ACCESS_SECRET"])
    return ids, broker


async def run_embedded(args: argparse.Namespace, stop: anyio.Event) -> Report:
    """Provision ``--devices`` devices on a local emulator, simulate, and check what it stored."""
    from losant_async.testing import LocalLosant

    async with LocalLosant() as losant:
        app = losant.create_application(name="simulator example")
        ids = [app.create_device(name=f"sim-{i:04d}", attributes=ATTRIBUTES).id for i in range(args.devices)]
        key = app.create_access_key()
        broker = Broker(host=losant.mqtt_host, port=losant.mqtt_port, transport="tcp", key=key.key, secret=key.secret)

        async def operator() -> None:
            # What a workflow or a dashboard would do mid-run: ask a bursts device for a burst.
            bursty = ids[2 % len(ids)]
            with contextlib.suppress(TimeoutError):
                # The last sine device starts near the end of the ramp-up (bursts report only now and then).
                last_sine = ids[(len(ids) - 1) // 3 * 3]
                await losant.wait_for_states(last_sine, 1, timeout=args.ramp_up + 30)
                await losant.send_command(bursty, "burst")

        async with anyio.create_task_group() as tg:
            tg.start_soon(operator)
            report = await simulate(ids, broker, duration=args.duration, rate=args.rate, ramp_up=args.ramp_up,
                                    connect_concurrency=args.connect_concurrency, qos=args.qos, stop=stop)
            tg.cancel_scope.cancel()
        stored = 0
        for device_id, sent in report.sent.items():
            with contextlib.suppress(TimeoutError):
                await losant.wait_for_states(device_id, sent, timeout=5)
            stored += len(losant.states(device_id))
        print(f"the emulator stored {stored} of {report.total} states")
        return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=30, help="embedded demo: how many devices to create")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of reporting")
    parser.add_argument("--rate", type=float, default=1.0, help="reports per second per device")
    parser.add_argument("--ramp-up", type=float, default=2.0, help="seconds over which devices start reporting")
    parser.add_argument("--connect-concurrency", type=int, default=20, help="connections opened at once")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=0)
    args = parser.parse_args(argv)
    if args.devices < 1 or args.duration <= 0 or args.rate <= 0 or args.ramp_up < 0:
        parser.error("--devices, --duration and --rate must be positive, --ramp-up >= 0")
    return args


async def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    args = parse_args(argv)
    stop = anyio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        if any(name.startswith("LOSANT_") and name != "LOSANT_LOG" for name in env):
            ids, broker = broker_from_env(env)
            report = await simulate(ids, broker, duration=args.duration, rate=args.rate, ramp_up=args.ramp_up,
                                    connect_concurrency=args.connect_concurrency, qos=args.qos, stop=stop)
        else:
            report = await run_embedded(args, stop)
    except LosantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.render())
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""The ``emulator`` and ``simulate`` commands: the async bodies that ``main`` runs."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
from collections.abc import AsyncIterator, Sequence
from typing import Protocol, TextIO

import anyio
from anyio import CancelScope

from ..simulator import (
    Progress,
    Shard,
    Simulation,
    SimulationConfig,
    SimulationReport,
    StoredStates,
    Target,
    split_fleet,
)
from ._args import SimulateArgs
from ._emulator_host import EmulatorHost
from ._render import ProgressView, make_view
from ._world import provision_demo, provision_fleet, real_targets

__all__ = ["Interrupted", "Runner", "run_emulator", "run_simulate"]


class Runner(Protocol):
    """What runs a fleet: :class:`Simulation` (one process), the processes runner or the Ray runner."""

    def progress(self) -> Progress: ...

    def stop(self) -> None: ...

    async def run(self) -> SimulationReport: ...

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Wrappers such as coreutils' timeout deliver one Ctrl-C twice (to the child and to its
# group); a second signal this close to the first is the same one, not a user's second press.
_SAME_SIGNAL = 0.3


class Interrupted(Exception):
    """A second Ctrl-C: stop at once, without a report."""


@contextlib.asynccontextmanager
async def _signals() -> AsyncIterator[AsyncIterator[signal.Signals] | None]:
    """SIGINT/SIGTERM as an async iterator, or ``None`` where the platform cannot (Windows: Ctrl-C raises)."""
    try:
        receiver = anyio.open_signal_receiver(*_SIGNALS)
        entered = receiver.__enter__()
    except NotImplementedError:
        yield None
        return
    try:
        yield entered
    finally:
        receiver.__exit__(None, None, None)


async def run_emulator(ns: argparse.Namespace, out: TextIO) -> int:
    """Run the emulator with a demo application until SIGINT/SIGTERM."""
    from ..testing import LocalLosant

    if getattr(ns, "coverage", False):
        from ..testing._rest import coverage_report

        text, unanswered = coverage_report()
        print(text, file=out, flush=True)
        return 1 if unanswered else 0

    async with _signals() as signals, LocalLosant(
        rest_port=ns.rest_port, mqtt_port=ns.mqtt_port, throttle=ns.throttle
    ) as losant:
        demo = provision_demo(losant)
        mqtt_url = f"mqtt://{losant.mqtt_host}:{losant.mqtt_port}"
        lines = [
            "Local Losant emulator running (Ctrl-C to stop).",
            f"  REST API:   {losant.rest_url}",
            f"  MQTT:       {mqtt_url}",
        ]
        if losant.ws_port:
            lines.append(f"  WebSockets: ws://{losant.mqtt_host}:{losant.ws_port}")
        lines += [
            f"Demo application {demo.application_name!r}: {demo.application_id}",
            f"  access key:    {demo.key}",
            f"  access secret: {demo.secret}",
            f"  API token:     {demo.token}",
            "  devices:",
            *(f"    {name:<14} {dev_id}  {cls}" for name, dev_id, cls in demo.devices),
            "Simulate a fleet against it (in another terminal):",
            f"  export LOSANT_URL={losant.rest_url} LOSANT_MQTT_HOST={losant.mqtt_host} "
            f"LOSANT_MQTT_PORT={losant.mqtt_port} LOSANT_MQTT_TRANSPORT=tcp",
            f"  export LOSANT_APPLICATION_ID={demo.application_id} LOSANT_API_TOKEN={demo.token}",
            f"  export LOSANT_ACCESS_KEY={demo.key} LOSANT_ACCESS_SECRET={demo.secret}",
            "  losant-async simulate --no-throttle --devices 10",
        ]
        print("\n".join(lines), file=out, flush=True)
        if signals is None:
            await anyio.sleep_forever()
        else:
            async for _ in signals:
                break
        print("Stopping the emulator...", file=out, flush=True)
    print("Emulator stopped.", file=out, flush=True)
    return 0


async def _show(sim: Runner, view: ProgressView) -> None:
    with view:
        while True:
            view.update(sim.progress())
            await anyio.sleep(view.interval)


async def _watch(sim: Runner, signals: AsyncIterator[signal.Signals], scope: CancelScope,
                 err: TextIO) -> None:
    first_at: float | None = None
    async for _ in signals:
        now = anyio.current_time()
        if first_at is None:
            first_at = now
            print("\nInterrupted: stopping the fleet (Ctrl-C again to quit at once)...", file=err, flush=True)
            sim.stop()
        elif now - first_at > _SAME_SIGNAL:
            scope.cancel()
            return


async def _drive(sim: Runner, view: ProgressView, err: TextIO) -> SimulationReport:
    report: SimulationReport | None = None
    async with _signals() as signals, anyio.create_task_group() as tg:
        if signals is not None:
            tg.start_soon(_watch, sim, signals, tg.cancel_scope, err)
        tg.start_soon(_show, sim, view)
        report = await sim.run()
        tg.cancel_scope.cancel()
    if report is None:
        raise Interrupted
    return report


def _shards(args: SimulateArgs) -> list[Shard]:
    config = args.config
    if args.ray:
        return split_fleet(config.devices, -(-config.devices // args.devices_per_actor))
    if args.processes > 1:
        return split_fleet(config.devices, args.processes)
    return [config.shard]


def _runner(args: SimulateArgs, targets: Sequence[Target], stored: StoredStates | None) -> Runner:
    config = args.config
    if args.ray:
        from ..simulator._ray import RayRunner

        return RayRunner(config, targets, stored, address=args.ray_address, cpus_per_actor=args.cpus_per_actor)
    if args.processes > 1:
        from ..simulator._processes import ProcessRunner

        return ProcessRunner(config, targets, stored)
    (target,) = targets
    return Simulation(config, dataclasses.replace(target, stored=stored))


def _engine_line(args: SimulateArgs, shards: int) -> str:
    if args.ray:
        where = f"Ray at {args.ray_address}" if args.ray_address else "a local Ray on 127.0.0.1"
        return f"Running {shards} shards as actors on {where}."
    if args.processes > 1:
        return f"Running {shards} shard processes on this machine."
    if args.config.shard.count > 1:
        return f"Running shard {args.config.shard} of the fleet."
    return ""


async def run_simulate(args: SimulateArgs, out: TextIO, err: TextIO) -> SimulationReport:
    """Provision (or start the emulator), run the fleet with progress, return the report."""
    config: SimulationConfig = args.config
    view = make_view(args.quiet, out)
    shards = _shards(args)
    line = _engine_line(args, len(shards))
    if config.scenario is not None:
        print(f"Scenario {config.model.name!r}: "
              + ", ".join(f"{t.count} x {t.name} every {t.period:g} s" for t in config.types() if t.count),
              file=out, flush=True)
    if args.embedded:
        print("No Losant credentials given: starting the embedded Losant emulator on 127.0.0.1 "
              f"(in its own process) and provisioning {config.shard_devices if len(shards) == 1 else config.devices} "
              "devices.", file=out, flush=True)
        if config.scenario is not None:
            return await _run_embedded_scenario(args, shards, line, view, out, err)
        async with EmulatorHost(config, shards) as host:
            _say_target(host.targets, config.transport, out)
            if line:
                print(line, file=out, flush=True)
            return await _drive(_runner(args, host.targets, host), view, err)
    targets = await real_targets(args, shards)
    _say_target(targets, config.transport, out)
    if line:
        print(line, file=out, flush=True)
    return await _drive(_runner(args, targets, None), view, err)


async def _run_embedded_scenario(args: SimulateArgs, shards: Sequence[Shard], line: str, view: ProgressView,
                                 out: TextIO, err: TextIO) -> SimulationReport:
    """A scenario on the embedded emulator: its devices are provisioned over REST, as on Losant."""
    from ..rest import LosantClient

    config = args.config
    # The host provisions the built-in fleet; asked for one device, it provisions one we remove.
    async with EmulatorHost(SimulationConfig(devices=1), [Shard()]) as host:
        (base,) = host.targets
        assert base.api_token is not None and base.rest_url is not None
        async with LosantClient(base.api_token, url=base.rest_url) as client:
            for stray in base.device_ids:
                await client.device.delete(application_id=base.application_id, device_id=stray)
            fleets = await provision_fleet(client, base.application_id, config, shards, reuse=False)
        targets = [base.shard(tuple(ids), tuple(groups)) for ids, groups in fleets]
        _say_target(targets, config.transport, out)
        if line:
            print(line, file=out, flush=True)
        return await _drive(_runner(args, targets, host), view, err)


def _say_target(targets: Sequence[Target], transport: str, out: TextIO) -> None:
    target = targets[0]
    devices = sum(len(t.device_ids) for t in targets)
    gateways = sum(len(t.gateways) for t in targets)
    parts = [f"Fleet: {devices} devices"
             + (f" behind {_plural(gateways, 'gateway')}" if gateways else "")]
    if target.mqtt_host and transport == "mqtt":
        parts.append(f"broker {target.mqtt_transport}://{target.mqtt_host}:{target.mqtt_port}")
    if target.rest_url:
        parts.append(f"REST {target.rest_url}")
    if transport == "rest":
        parts.append("states over REST, so no commands (no device listens)")
    elif not target.commands_possible:
        parts.append("no API token, so no commands")
    print("; ".join(parts), file=out, flush=True)



def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")

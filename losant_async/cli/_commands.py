"""The ``emulator`` and ``simulate`` commands: the async bodies that ``main`` runs."""

from __future__ import annotations

import argparse
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import TextIO

import anyio
from anyio import CancelScope

from ..simulator import Simulation, SimulationReport, Target
from ._args import SimulateArgs
from ._render import ProgressView, make_view
from ._world import embedded_target, provision_demo, real_target

__all__ = ["Interrupted", "run_emulator", "run_simulate"]

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
            f"  export LOSANT_URL={losant.rest_url} LOSANT_BROKER={mqtt_url}",
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


async def _show(sim: Simulation, view: ProgressView) -> None:
    with view:
        while True:
            view.update(sim.progress())
            await anyio.sleep(view.interval)


async def _watch(sim: Simulation, signals: AsyncIterator[signal.Signals], scope: CancelScope,
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


async def _drive(sim: Simulation, view: ProgressView, err: TextIO) -> SimulationReport:
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


async def run_simulate(args: SimulateArgs, out: TextIO, err: TextIO) -> SimulationReport:
    """Provision (or start the emulator), run the fleet with progress, return the report."""
    config = args.config
    view = make_view(args.quiet, out)
    if args.embedded:
        print("No Losant credentials given: starting the embedded Losant emulator on 127.0.0.1 "
              f"and provisioning {config.devices} devices.", file=out, flush=True)
        async with embedded_target(config) as (target, _losant):
            _say_target(target, config.transport, out)
            return await _drive(Simulation(config, target), view, err)
    target = await real_target(args)
    _say_target(target, config.transport, out)
    return await _drive(Simulation(config, target), view, err)


def _say_target(target: Target, transport: str, out: TextIO) -> None:
    parts = [f"Fleet: {len(target.device_ids)} devices"
             + (f" behind {_plural(len(target.gateways), 'gateway')}" if target.gateways else "")]
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

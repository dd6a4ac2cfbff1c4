"""The ``emulator`` and ``simulate`` commands: the async bodies that ``main`` runs."""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import signal
from collections.abc import AsyncIterator, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import anyio
from anyio import CancelScope

from ..errors import ValidationError
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

if TYPE_CHECKING:
    from ..emulator import LocalLosant
    from ._certs import CertificateFiles

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


async def run_emulator(ns: argparse.Namespace, out: TextIO, data_dir: Path | None = None) -> int:
    """Run the emulator (with a seed, a restored data directory or the demo application) until SIGINT/SIGTERM."""
    from ..emulator import LocalLosant

    if getattr(ns, "coverage", False):
        from ..emulator._rest import coverage_report

        text, unanswered = coverage_report()
        print(text, file=out, flush=True)
        return 1 if unanswered else 0
    if getattr(ns, "action", None) == "export":
        return _export(ns.file, data_dir, out)
    seed_path: Path | None = getattr(ns, "seed", None)
    seed = None
    if seed_path is not None:
        from ..emulator._seed import apply_seed, read_seed
        from ..emulator.store import Store

        seed = read_seed(seed_path)
        apply_seed(Store(), copy.deepcopy(seed))  # a bad seed fails before anything listens

    tls_dir = getattr(ns, "mqtt_tls", None)
    cert_files, mqtt_ssl = None, None
    if tls_dir is not None:
        from ._certs import CertificateFiles, server_tls_context

        cert_files = CertificateFiles.in_directory(tls_dir)
        mqtt_ssl = server_tls_context(cert_files)
    async with _signals() as signals, LocalLosant(
        rest_port=ns.rest_port, mqtt_port=ns.mqtt_port, throttle=ns.throttle, mqtt_ssl=mqtt_ssl, data_dir=data_dir
    ) as losant:
        mqtt_url = f"{'mqtts' if mqtt_ssl else 'mqtt'}://{losant.mqtt_host}:{losant.mqtt_port}"
        lines = [
            "Local Losant emulator running (Ctrl-C to stop).",
            f"  REST API:   {losant.rest_url}",
            f"  MQTT:       {mqtt_url}",
        ]
        if losant.ws_port:
            lines.append(f"  WebSockets: ws://{losant.mqtt_host}:{losant.ws_port}")
        lines += [
            f"  Console:    {losant.console_url}",
            "              (open it in a browser; the link holds the console token: keep it to yourself)",
        ]
        lines.append(f"  Health:     {losant.rest_url}/health")
        lines.append(f"  Data:       {losant.data_dir}" if losant.data_dir else
                     "  Data:       in memory (gone at stop; --data-dir keeps it)")
        restored = len(losant.store.applications)
        if seed is not None and seed_path is not None:
            lines += _seed_lines(losant, seed, seed_path)
        elif restored:
            lines.append(f"Restored {restored} application(s) and {len(losant.store.devices)} device(s):")
            lines += [f"  {app.name!r}: {app.id}" for app in losant.store.applications.values()]
        else:
            lines += _demo_lines(losant, tls=mqtt_ssl is not None, cert_files=cert_files)
        print("\n".join(lines), file=out, flush=True)
        if signals is None:
            await anyio.sleep_forever()
        else:
            async for _ in signals:
                break
        print("Stopping the emulator...", file=out, flush=True)
    print("Emulator stopped." + (f" Everything is kept in {data_dir}." if data_dir else ""), file=out, flush=True)
    return 0


def _demo_lines(losant: LocalLosant, *, tls: bool, cert_files: CertificateFiles | None) -> list[str]:
    demo = provision_demo(losant)
    lines = [
        f"Demo application {demo.application_name!r}: {demo.application_id}",
        f"  access key:    {demo.key}",
        f"  access secret: {demo.secret}",
        f"  API token:     {demo.token}",
        "  devices:",
        *(f"    {name:<14} {dev_id}  {cls}" for name, dev_id, cls in demo.devices),
        "Simulate a fleet against it (in another terminal):",
        f"  export LOSANT_URL={losant.rest_url} LOSANT_MQTT_HOST={losant.mqtt_host} "
        f"LOSANT_MQTT_PORT={losant.mqtt_port} LOSANT_MQTT_TRANSPORT={'tls' if tls else 'tcp'}",
        f"  export LOSANT_APPLICATION_ID={demo.application_id} LOSANT_API_TOKEN={demo.token}",
        f"  export LOSANT_ACCESS_KEY={demo.key} LOSANT_ACCESS_SECRET={demo.secret}",
        *_device_export(demo.devices),
        "  losant-async simulate --no-throttle --devices 10",
    ]
    if cert_files is not None:
        from ..emulator import Application

        app = Application(demo.application_id, demo.application_name, losant.store)
        app.create_certificate_authority(cert_files.ca.read_text(), name="losant-async test CA")
        app.create_certificate(cert_files.device.read_text())
        lines += [
            "Device certificates: the test CA and device.pem are registered in the demo application;",
            f"  Device(<device id>, certificate=({str(cert_files.device)!r}, {str(cert_files.device_key)!r}),",
            f"         host={losant.mqtt_host!r}, port={losant.mqtt_port}, "
            f"tls_context=ssl.create_default_context(cafile={str(cert_files.ca)!r}))",
        ]
    return lines


def _seed_lines(losant: LocalLosant, seed: dict[str, Any], path: Path) -> list[str]:
    from ..emulator._seed import apply_seed, dump_seed

    before = json.dumps(seed, sort_keys=True)
    world, created = apply_seed(losant.store, seed)
    lines = [f"Seed {path}: {created} object(s) created"]
    if json.dumps(world, sort_keys=True) != before:
        dump_seed(path, world)
        lines[0] += f"; the ids, keys, secrets and tokens it lacked were generated and written back to {path}"
    for app in world.get("applications", []):
        lines.append(f"  application {app.get('name')!r}: {app['id']} ({len(app.get('devices', []))} device(s))")
        lines += [f"    access key {k['key']}  secret {k['secret']}" for k in app.get("keys", [])]
        lines += [f"    API token {t['token']}" for t in app.get("tokens", [])]
    for user in world.get("users", []):
        lines.append(f"  user {user.get('email')}: {user['id']}")
    return lines


def _export(path: Path, data_dir: Path | None, out: TextIO) -> int:
    from ..emulator._seed import dump_seed, export_world
    from ..emulator.store import MemorySeries, Store
    from ..emulator.store._world import load_rows, read_objects

    if data_dir is None:
        raise ValidationError("export reads a data directory: give --data-dir PATH (or $LOSANT_EMULATOR_DATA_DIR)")
    store = Store(series=MemorySeries(max_states=1, max_commands=1))
    load_rows(store, read_objects(data_dir))
    world = export_world(store)
    dump_seed(path, world)
    print(f"Wrote {len(world['applications'])} application(s), {len(store.devices)} device(s) and "
          f"{len(world['users'])} user(s) of {data_dir} to {path}", file=out, flush=True)
    return 0


def _device_export(devices: list[tuple[str, str, str]]) -> list[str]:
    """The device the README's REST and MQTT snippets act as: the first standalone one."""
    chosen = next((d for d in devices if d[2] == "standalone"), devices[0] if devices else None)
    return [] if chosen is None else [f"  export LOSANT_DEVICE_ID={chosen[1]}"]


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
            _say_target(host.targets, config.transports, out)
            if args.console:
                print(f"Console: {host.console_url}\n  (open it in a browser; the link holds the console token)",
                      file=out, flush=True)
            if line:
                print(line, file=out, flush=True)
            report = await _drive(_runner(args, host.targets, host), view, err)
            if args.console and not report.interrupted:
                await _keep_console_open(report, out)
            return report
    targets = await real_targets(args, shards)
    _say_target(targets, config.transports, out)
    if line:
        print(line, file=out, flush=True)
    return await _drive(_runner(args, targets, None), view, err)


async def _keep_console_open(report: SimulationReport, out: TextIO) -> None:
    from ._render import print_summary

    print_summary(report, out)
    print("The emulator and its console stay open: Ctrl-C to stop.", file=out, flush=True)
    async with _signals() as signals:
        if signals is None:
            await anyio.sleep_forever()
        else:
            async for _ in signals:
                break


async def _run_embedded_scenario(args: SimulateArgs, shards: Sequence[Shard], line: str, view: ProgressView,
                                 out: TextIO, err: TextIO) -> SimulationReport:
    """A scenario on the embedded emulator: its devices are provisioned over REST, as on Losant."""
    from ..rest import LosantClient

    config = args.config
    # The host makes the application, key and token; the scenario's devices are provisioned here.
    async with EmulatorHost(SimulationConfig(devices=1), [Shard()], provision=False) as host:
        (base,) = host.targets
        assert base.api_token is not None and base.rest_url is not None
        async with LosantClient(base.api_token, url=base.rest_url) as client:
            fleets = await provision_fleet(client, base.application_id, config, shards, reuse=False)
        targets = [base.shard(tuple(ids), tuple(groups)) for ids, groups in fleets]
        _say_target(targets, config.transports, out)
        if args.console:
            print(f"Console: {host.console_url}\n  (open it in a browser; the link holds the console token)",
                  file=out, flush=True)
        if line:
            print(line, file=out, flush=True)
        report = await _drive(_runner(args, targets, host), view, err)
        if args.console and not report.interrupted:
            await _keep_console_open(report, out)
        return report


def _say_target(targets: Sequence[Target], transports: AbstractSet[str], out: TextIO) -> None:
    target = targets[0]
    devices = sum(len(t.device_ids) for t in targets)
    gateways = sum(len(t.gateways) for t in targets)
    parts = [f"Fleet: {devices} devices"
             + (f" behind {_plural(gateways, 'gateway')}" if gateways else "")]
    if target.mqtt_host and "mqtt" in transports:
        parts.append(f"broker {target.mqtt_transport}://{target.mqtt_host}:{target.mqtt_port}")
    if target.rest_url:
        parts.append(f"REST {target.rest_url}")
    if "mqtt" not in transports:
        parts.append("states over REST, so no commands (no device listens)")
    elif "rest" in transports:
        parts.append("some device types report over REST (commands go to the MQTT ones only)")
    elif not target.commands_possible:
        parts.append("no API token, so no commands")
    print("; ".join(parts), file=out, flush=True)



def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")

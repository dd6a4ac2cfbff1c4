"""Command-line parsing for ``losant-async``: the argparse tree and the environment-variable fallbacks."""

from __future__ import annotations

import argparse
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from .._version import __version__
from ..errors import ValidationError
from ..simulator import Shard, SimulationConfig, parse_shard
from ..simulator._scenario import Scenario, fleet_size, load_scenario

__all__ = [
    "DATA_DIR_ENV",
    "DEPRECATED_ENV",
    "ENV",
    "Broker",
    "Credentials",
    "SimulateArgs",
    "build_parser",
    "resolve_data_dir",
    "parse_broker",
    "resolve_simulate",
]

DEFAULT_REST_URL = "https://api.losant.com"
DEFAULT_BROKER = "mqtts://broker.losant.com"

# The names the library reads too (LOSANT_DEVICE_ID and LOSANT_LOG are read by ``main``).
ENV = {
    "url": "LOSANT_URL",
    "application": "LOSANT_APPLICATION_ID",
    "key": "LOSANT_ACCESS_KEY",
    "secret": "LOSANT_ACCESS_SECRET",
    "token": "LOSANT_API_TOKEN",
    "mqtt_host": "LOSANT_MQTT_HOST",
    "mqtt_port": "LOSANT_MQTT_PORT",
    "mqtt_transport": "LOSANT_MQTT_TRANSPORT",
}
DEPRECATED_ENV = {"LOSANT_BROKER": "LOSANT_MQTT_HOST (with LOSANT_MQTT_PORT and LOSANT_MQTT_TRANSPORT)"}
_TRANSPORT_SCHEME = {"tcp": "mqtt", "tls": "mqtts", "websockets": "ws", "wss": "wss"}

_ID = re.compile(r"^[A-Fa-f\d]{24}$")

MQTTTransport = Literal["tcp", "tls", "websockets", "wss"]

_SCHEMES: Mapping[str, tuple[MQTTTransport, int, bool]] = {
    # scheme: (transport, default port, TLS)
    "mqtt": ("tcp", 1883, False),
    "tcp": ("tcp", 1883, False),
    "mqtts": ("tls", 8883, True),
    "ssl": ("tls", 8883, True),
    "tls": ("tls", 8883, True),
    "ws": ("websockets", 80, False),
    "wss": ("wss", 443, True),
}


@dataclass(frozen=True, slots=True)
class Broker:
    """An MQTT endpoint parsed from ``mqtt://``, ``mqtts://``, ``ws://``, ``wss://`` or ``host[:port]``."""

    host: str
    port: int
    transport: MQTTTransport
    tls: bool


def parse_broker(text: str) -> Broker:
    """Parse a broker address; a bare host means TLS on 8883, as Losant's own broker wants."""
    raw = text.strip()
    if not raw:
        raise ValidationError("the broker address is empty")
    if "://" not in raw:
        raw = "mqtts://" + raw
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValidationError(
            f"broker scheme {parts.scheme!r} is not one of {', '.join(sorted(_SCHEMES))}"
        )
    transport, default_port, tls = _SCHEMES[scheme]
    if not parts.hostname:
        raise ValidationError(f"broker address {text!r} has no host")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValidationError(f"broker address {text!r} has an invalid port") from None
    return Broker(host=parts.hostname, port=port, transport=transport, tls=tls)


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where real Losant is and who we are there; secrets are kept out of the repr."""

    url: str | None = None
    broker: str | None = None
    application: str | None = None
    key: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @property
    def any_given(self) -> bool:
        """Whether the user pointed us at a Losant at all (else the embedded emulator runs)."""
        return any((self.url, self.broker, self.application, self.key, self.secret, self.token))


@dataclass(frozen=True, slots=True)
class SimulateArgs:
    """Everything ``simulate`` needs, validated."""

    config: SimulationConfig
    credentials: Credentials
    device_ids_file: Path | None
    json_path: Path | None
    quiet: bool
    processes: int = 1
    ray: bool = False
    ray_address: str | None = None
    devices_per_actor: int = 1000
    cpus_per_actor: float = 1.0
    console: bool = False
    """Print the embedded emulator's console link and keep it open after the run until Ctrl-C."""

    @property
    def embedded(self) -> bool:
        return not self.credentials.any_given


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _processes(text: str) -> int:
    if text.strip().lower() == "auto":
        return max(1, os.cpu_count() or 1)
    return _positive_int(text)


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number >= 0")
    return value


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _period(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s`` or plain seconds."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:])
    number = raw[:-1] if unit is not None else raw
    try:
        value = float(number) * (unit or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a period such as 7d, 12h, 30m or 90s") from None
    if not 0 < value <= 30 * 86400:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 and at most 30d (Losant keeps no older states)")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``losant-async`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="losant-async",
        description="Losant tools: a local emulator and a fleet simulator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    emu = sub.add_parser(
        "emulator",
        help="run the local Losant emulator with a demo application",
        description="Run the local Losant emulator in the foreground and print its URLs and the "
        "credentials of a demo application. Ctrl-C stops it. Losant's rate limits are off "
        "unless --throttle is given.",
    )
    emu.add_argument("--rest-port", type=_port, default=0, metavar="P", help="REST port (default: any free port)")
    emu.add_argument("--mqtt-port", type=_port, default=0, metavar="P", help="MQTT port (default: any free port)")
    emu.add_argument("--throttle", action="store_true", help="turn Losant's rate limits on (off by default): 30 msgs/15 s per "
                     "topic and 300 per connection (disconnect and a ban from 30 s, doubling up to 1 h), "
                     "300 new connections/15 s per application, 30 REST sendState/sendCommand per 15 s per device")
    emu.add_argument("--coverage", action="store_true", help="print how each catalog action is answered (full effect or recorded, not run), then exit")
    emu.add_argument("--mqtt-tls", type=Path, metavar="DIR", help="serve MQTT over TLS with DIR/server.pem and register "
                     "DIR/ca.pem and DIR/device.pem in the demo application (made by 'losant-async certificates DIR')")
    _data_dir_option(emu)
    emu.add_argument("--seed", type=Path, metavar="FILE", help="start with the applications, devices, keys, tokens and "
                     "users of FILE (TOML or JSON; ids and secrets it lacks are generated and written back to it) "
                     "instead of the demo application")
    emu.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None,
                     help="log the emulator's events at this level on stderr (default: warnings and errors only)")
    emu_sub = emu.add_subparsers(dest="action", metavar="ACTION")
    export = emu_sub.add_parser(
        "export", help="write a data directory's world as a seed file",
        description="Write the applications, devices, keys, tokens and users of a data directory as a seed "
        "file (TOML for .toml, else JSON) that --seed reads back. It holds secrets: the file is made private. "
        "Works while an emulator runs on the directory (what it saved up to a second ago).",
    )
    export.add_argument("file", type=Path, metavar="FILE", help="where to write (.toml or .json)")
    _data_dir_option(export)

    certs = sub.add_parser(
        "certificates",
        help="make a test CA, a TLS certificate for the emulator and a device certificate",
        description="Write a test certificate authority (ca.pem, ca.key), a TLS certificate for 127.0.0.1 "
        "(server.pem, server.key) and a device client certificate (device.pem, device.key) into DIR. "
        "Test material only: the CA key is written beside its certificate.",
    )
    certs.add_argument("directory", type=Path, metavar="DIR")
    certs.add_argument("--name", default="device", help="the device certificate's common name (default: device)")
    certs.add_argument("--days", type=_positive_int, default=365, metavar="N", help="validity in days (default 365)")

    sim = sub.add_parser(
        "simulate",
        help="simulate a fleet of devices",
        description="Simulate a fleet reporting state while a controller sends commands. With no "
        "credentials it runs against an embedded emulator; with --url/--broker/--application/"
        f"--key/--secret/--token (or {', '.join(ENV.values())}) against real Losant, throttled. "
        "Exit code 0 only when no state and no command was lost: every command the controller's rounds "
        "were due to send during the reporting ('commands due') must be sent and received, so a "
        "controller that falls behind fails the run.",
    )
    sim.add_argument("--scenario", type=Path, metavar="FILE",
                     help="a scenario file (TOML): device types, attributes and their generators "
                     "(default: the built-in temperature/humidity/battery fleet; see docs/simulator.md)")
    sim.add_argument("--devices", type=_positive_int, default=None, metavar="N",
                     help="number of devices (default 10); with --scenario, the devices its types share")
    sim.add_argument("--rate", type=_positive_float, default=1.0, metavar="R", help="states per second per device (default 1)")
    sim.add_argument("--duration", type=_positive_float, default=10.0, metavar="S", help="seconds of reporting (default 10)")
    sim.add_argument("--transport", choices=("mqtt", "rest"), default="mqtt", help="how states are sent")
    sim.add_argument("--gateway", action="store_true", help="report through gateways (up to 50 peripherals each)")
    sim.add_argument("--qos", type=int, choices=(0, 1), default=0, help="MQTT QoS of states (default 0)")
    sim.add_argument("--json", type=Path, metavar="PATH", help="write a JSON report here")
    sim.add_argument("--quiet", action="store_true", help="no progress lines, summary only")
    sim.add_argument("--connect-concurrency", type=_positive_int, default=50, metavar="N", help="connections opened at once")
    sim.add_argument("--command-interval", type=float, default=1.0, metavar="S", help="seconds between command rounds (0: none); every round due before the end of "
                     "the reporting counts, sent or not")
    sim.add_argument("--command-wait", type=_nonnegative_float, default=5.0, metavar="S",
                     help="after the reporting, seconds to wait for commands still on their way; "
                     "those not in by then count as lost (default 5)")
    sim.add_argument("--console", action="store_true",
                     help="print the embedded emulator's web console link and keep the emulator open "
                     "after the run, until Ctrl-C")
    sim.add_argument("--backfill", type=_period, default=0.0, metavar="PERIOD",
                     help="first send the scenario's values for this past period (e.g. 7d, 12h) with their "
                     "original times, in arrays of states, then go on live (at most 30d)")
    sim.add_argument("--seed", type=int, default=0,
                     help="seed of the sensor values (default 0; same seed, same fleet in every shard)")
    scale = sim.add_argument_group("scaling out (one fleet, many cores or machines)")
    scale.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                       help="run only the K-th of N deterministic slices of the fleet "
                       "(merge the JSON reports with 'losant-async report merge')")
    scale.add_argument("--processes", type=_processes, default=1, metavar="N",
                       help="shard processes on this machine ('auto': one per core; default 1)")
    scale.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run the shards as Ray actors (extra losant-async[ray]); with no address "
                       "a local Ray on 127.0.0.1")
    scale.add_argument("--devices-per-actor", type=_positive_int, default=1000, metavar="N",
                       help="devices per Ray actor (default 1000)")
    scale.add_argument("--cpus-per-actor", type=_positive_float, default=1.0, metavar="C",
                       help="CPUs Ray reserves per actor (default 1)")
    real = sim.add_argument_group("real Losant (any of these turns the embedded emulator off)")
    real.add_argument("--url", help=f"REST API URL (default {DEFAULT_REST_URL}; env {ENV['url']})")
    real.add_argument("--broker", help=f"MQTT broker, e.g. mqtts://host:8883 (default {DEFAULT_BROKER}; env "
                      f"{ENV['mqtt_host']}, {ENV['mqtt_port']}, {ENV['mqtt_transport']})")
    real.add_argument("--application", help=f"application ID (env {ENV['application']})")
    real.add_argument("--key", help=f"access key (env {ENV['key']})")
    real.add_argument("--secret", help=f"access secret (env {ENV['secret']}; prefer the env var)")
    real.add_argument("--token", help=f"API token, to create devices and send commands (env {ENV['token']})")
    real.add_argument(
        "--device-ids",
        type=Path,
        metavar="FILE",
        help="existing device IDs, one per line (gateway mode: 'PERIPHERAL_ID GATEWAY_ID')",
    )
    real.add_argument("--no-throttle", action="store_true", help="do not throttle (private instances only)")

    rep = sub.add_parser("report", help="work with simulate's JSON reports",
                         description="Work with the JSON reports of 'simulate --json'.")
    rep_sub = rep.add_subparsers(dest="report_command", metavar="ACTION", required=True)
    merge = rep_sub.add_parser(
        "merge", help="sum the reports of a fleet's shards into one",
        description="Sum the JSON reports of the shards of one fleet (simulate --shard K/N): states, "
        "commands and errors added, latency percentiles from the merged histograms. Exit code 0 only "
        "when the merged run lost nothing.",
    )
    merge.add_argument("reports", nargs="+", type=Path, metavar="REPORT.json")
    merge.add_argument("--json", type=Path, metavar="PATH", help="write the merged JSON report here")
    return parser


def resolve_simulate(ns: argparse.Namespace, env: Mapping[str, str]) -> SimulateArgs:
    """Merge flags with environment variables (flags win) and validate; ``ValidationError`` names the problem."""

    def pick(name: str) -> str | None:
        value = getattr(ns, name)
        if value is None or value == "":
            value = env.get(ENV[name]) or None
        return value if value is None else str(value).strip() or None

    scenario: Scenario | None = None
    transport = ns.transport
    devices = ns.devices or 10
    if getattr(ns, "scenario", None) is not None:
        scenario = load_scenario(ns.scenario)
        if ns.devices is not None and not scenario.uses_shares:
            raise ValidationError(f"--devices: scenario {str(ns.scenario)!r} gives every device type a count; "
                                  "give a type a share to size it with --devices")
        devices = fleet_size(scenario, devices)
        chosen = {t.transport for t in scenario.device_types if t.transport is not None}
        if len(chosen) == 1:
            transport = chosen.pop()  # the types that name none report like the others
    creds = Credentials(
        url=pick("url"),
        broker=(str(ns.broker).strip() or None) if ns.broker else broker_from_env(env),
        application=pick("application"),
        key=pick("key"),
        secret=pick("secret"),
        token=pick("token"),
    )
    real = creds.any_given
    if real and ns.console:
        raise ValidationError("--console shows the embedded emulator's console: give no Losant credentials")
    if not real and ns.device_ids is not None:
        raise ValidationError("--device-ids needs real Losant credentials (--application, --key, --secret)")
    if creds.application is not None and not _ID.match(creds.application):
        raise ValidationError("the application ID must be 24 hexadecimal characters")
    if real:
        missing = []
        if creds.application is None:
            missing.append(f"--application ({ENV['application']})")
        used = {transport} if scenario is None else {t.transport or transport for t in scenario.device_types}
        if "mqtt" in used:
            if creds.key is None:
                missing.append(f"--key ({ENV['key']})")
            if creds.secret is None:
                missing.append(f"--secret ({ENV['secret']})")
        if "rest" in used and creds.token is None:
            missing.append(f"--token ({ENV['token']})")
        if ns.device_ids is None and creds.token is None:
            missing.append(f"--device-ids FILE or --token ({ENV['token']}) to create devices")
        if missing:
            raise ValidationError("running against Losant needs " + ", ".join(missing))
        creds = Credentials(
            url=creds.url or DEFAULT_REST_URL,
            broker=creds.broker or DEFAULT_BROKER,
            application=creds.application,
            key=creds.key,
            secret=creds.secret,
            token=creds.token,
        )
        parse_broker(creds.broker or "")  # fail now, before anything is sent
    if ns.command_interval < 0:
        raise ValidationError("--command-interval must be >= 0")
    ray_on = ns.ray is not None
    if ray_on and ns.processes != 1:
        raise ValidationError("--ray and --processes are two ways to run shards: choose one")
    if ns.shard is not None and (ray_on or ns.processes != 1):
        raise ValidationError("--shard runs one slice here; it cannot be combined with --processes or --ray")
    shard = ns.shard or Shard()
    if shard.count > devices:
        raise ValidationError(f"--shard {shard}: {devices} devices cannot be cut into {shard.count} slices")
    if ns.json is not None and not ns.json.parent.is_dir():
        # Checked now: finding out after a 30-minute run would lose its report.
        raise ValidationError(f"--json: directory {str(ns.json.parent)!r} does not exist")
    config = SimulationConfig(
        devices=devices,
        rate=ns.rate,
        duration=ns.duration,
        transport=transport,
        gateway=ns.gateway,
        qos=ns.qos,
        throttle=real and not ns.no_throttle,
        connect_concurrency=ns.connect_concurrency,
        command_interval=ns.command_interval,
        command_wait=ns.command_wait,
        seed=ns.seed,
        shard=shard,
        scenario=scenario,
        backfill=getattr(ns, "backfill", 0.0),
    )
    processes = min(ns.processes, devices)
    if real and not ns.no_throttle:
        # Every shard of the run shares the application's connection budget: fail before sending.
        from ..simulator import connection_budget

        actors = -(-devices // ns.devices_per_actor) if ray_on else 1
        connection_budget(max(processes, actors, shard.count))
    return SimulateArgs(
        config=config,
        credentials=creds,
        device_ids_file=ns.device_ids,
        json_path=ns.json,
        quiet=ns.quiet,
        processes=processes,
        ray=ray_on,
        ray_address=ns.ray or None,
        devices_per_actor=ns.devices_per_actor,
        cpus_per_actor=ns.cpus_per_actor,
        console=ns.console,
    )


def broker_from_env(env: Mapping[str, str]) -> str | None:
    """The broker address from ``LOSANT_MQTT_HOST``/``_PORT``/``_TRANSPORT`` (or the deprecated ``LOSANT_BROKER``)."""
    host = (env.get(ENV["mqtt_host"]) or "").strip()
    port = (env.get(ENV["mqtt_port"]) or "").strip()
    transport = (env.get(ENV["mqtt_transport"]) or "").strip().lower()
    if transport and transport not in _TRANSPORT_SCHEME:
        raise ValidationError(
            f"{ENV['mqtt_transport']} must be one of {', '.join(_TRANSPORT_SCHEME)}, not {transport!r}"
        )
    if host:
        if port and not port.isdigit():
            raise ValidationError(f"{ENV['mqtt_port']} must be a port number, not {port[:20]!r}")
        if "://" in host:
            return host  # a full address: the port and transport are in it
        scheme = _TRANSPORT_SCHEME[transport or "tls"]
        return f"{scheme}://{host}" + (f":{port}" if port else "")
    old = (env.get("LOSANT_BROKER") or "").strip()
    if old:
        warnings.warn(f"LOSANT_BROKER is deprecated; use {DEPRECATED_ENV['LOSANT_BROKER']}",
                      FutureWarning, stacklevel=2)
        return old
    if port or transport:
        raise ValidationError(f"{ENV['mqtt_port']}/{ENV['mqtt_transport']} need {ENV['mqtt_host']}")
    return None


def read_device_ids(path: Path, *, gateway: bool) -> list[tuple[str, str | None]]:
    """Read ``--device-ids``: one ID per line (``PERIPHERAL GATEWAY`` in gateway mode); ``#`` starts a comment."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"cannot read --device-ids file {str(path)!r}: {exc.strerror}") from None
    out: list[tuple[str, str | None]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        want = 2 if gateway else 1
        if len(fields) != want:
            shape = "PERIPHERAL_ID GATEWAY_ID" if gateway else "one device ID"
            raise ValidationError(f"{path}:{lineno}: expected {shape}")
        for value in fields:
            if not _ID.match(value):
                raise ValidationError(f"{path}:{lineno}: {value[:30]!r} is not a 24-hex-character device ID")
        out.append((fields[0], fields[1] if gateway else None))
    return out


DATA_DIR_ENV = "LOSANT_EMULATOR_DATA_DIR"


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, metavar="PATH", default=argparse.SUPPRESS,
                        help="keep everything (objects, credentials, history) in PATH across restarts "
                        f"(default: ${DATA_DIR_ENV}, else in memory)")


def resolve_data_dir(ns: argparse.Namespace, env: Mapping[str, str]) -> Path | None:
    """The emulator's data directory: ``--data-dir``, else ``$LOSANT_EMULATOR_DATA_DIR``, else None."""
    given: Path | None = getattr(ns, "data_dir", None)
    if given is not None:
        return given
    value = env.get(DATA_DIR_ENV, "").strip()
    return Path(value) if value else None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv`` (``None``: ``sys.argv[1:]``)."""
    return build_parser().parse_args(argv)

"""Command-line parsing for ``losant-async``: the argparse tree and the environment-variable fallbacks."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from .._version import __version__
from ..errors import ValidationError
from ..simulator import SimulationConfig

__all__ = ["Broker", "Credentials", "SimulateArgs", "build_parser", "parse_broker", "resolve_simulate"]

DEFAULT_REST_URL = "https://api.losant.com"
DEFAULT_BROKER = "mqtts://broker.losant.com"

ENV = {
    "url": "LOSANT_URL",
    "broker": "LOSANT_BROKER",
    "application": "LOSANT_APPLICATION_ID",
    "key": "LOSANT_ACCESS_KEY",
    "secret": "LOSANT_ACCESS_SECRET",
    "token": "LOSANT_API_TOKEN",
}

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
        "credentials of a demo application. Ctrl-C stops it.",
    )
    emu.add_argument("--rest-port", type=_port, default=0, metavar="P", help="REST port (default: any free port)")
    emu.add_argument("--mqtt-port", type=_port, default=0, metavar="P", help="MQTT port (default: any free port)")
    emu.add_argument("--throttle", action="store_true", help="enforce Losant's MQTT message limits")
    emu.add_argument("--coverage", action="store_true", help="print which catalog actions answer 501, then exit")

    sim = sub.add_parser(
        "simulate",
        help="simulate a fleet of devices",
        description="Simulate a fleet reporting state while a controller sends commands. With no "
        "credentials it runs against an embedded emulator; with --url/--broker/--application/"
        f"--key/--secret/--token (or {', '.join(ENV.values())}) against real Losant, throttled.",
    )
    sim.add_argument("--devices", type=_positive_int, default=10, metavar="N", help="number of devices (default 10)")
    sim.add_argument("--rate", type=_positive_float, default=1.0, metavar="R", help="states per second per device (default 1)")
    sim.add_argument("--duration", type=_positive_float, default=10.0, metavar="S", help="seconds of reporting (default 10)")
    sim.add_argument("--transport", choices=("mqtt", "rest"), default="mqtt", help="how states are sent")
    sim.add_argument("--gateway", action="store_true", help="report through gateways (up to 50 peripherals each)")
    sim.add_argument("--qos", type=int, choices=(0, 1), default=0, help="MQTT QoS of states (default 0)")
    sim.add_argument("--json", type=Path, metavar="PATH", help="write a JSON report here")
    sim.add_argument("--quiet", action="store_true", help="no progress lines, summary only")
    sim.add_argument("--connect-concurrency", type=_positive_int, default=50, metavar="N", help="connections opened at once")
    sim.add_argument("--command-interval", type=float, default=1.0, metavar="S", help="seconds between command rounds (0: none)")
    sim.add_argument("--seed", type=int, help="random seed of the sensor values")
    real = sim.add_argument_group("real Losant (any of these turns the embedded emulator off)")
    real.add_argument("--url", help=f"REST API URL (default {DEFAULT_REST_URL}; env {ENV['url']})")
    real.add_argument("--broker", help=f"MQTT broker, e.g. mqtts://host:8883 (default {DEFAULT_BROKER}; env {ENV['broker']})")
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
    return parser


def resolve_simulate(ns: argparse.Namespace, env: Mapping[str, str]) -> SimulateArgs:
    """Merge flags with environment variables (flags win) and validate; ``ValidationError`` names the problem."""

    def pick(name: str) -> str | None:
        value = getattr(ns, name)
        if value is None or value == "":
            value = env.get(ENV[name]) or None
        return value if value is None else str(value).strip() or None

    creds = Credentials(
        url=pick("url"),
        broker=pick("broker"),
        application=pick("application"),
        key=pick("key"),
        secret=pick("secret"),
        token=pick("token"),
    )
    real = creds.any_given
    if not real and ns.device_ids is not None:
        raise ValidationError("--device-ids needs real Losant credentials (--application, --key, --secret)")
    if creds.application is not None and not _ID.match(creds.application):
        raise ValidationError("the application ID must be 24 hexadecimal characters")
    if real:
        missing = []
        if creds.application is None:
            missing.append(f"--application ({ENV['application']})")
        if ns.transport == "mqtt":
            if creds.key is None:
                missing.append(f"--key ({ENV['key']})")
            if creds.secret is None:
                missing.append(f"--secret ({ENV['secret']})")
        if ns.transport == "rest" and creds.token is None:
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
    if ns.json is not None and not ns.json.parent.is_dir():
        # Checked now: finding out after a 30-minute run would lose its report.
        raise ValidationError(f"--json: directory {str(ns.json.parent)!r} does not exist")
    config = SimulationConfig(
        devices=ns.devices,
        rate=ns.rate,
        duration=ns.duration,
        transport=ns.transport,
        gateway=ns.gateway,
        qos=ns.qos,
        throttle=real and not ns.no_throttle,
        connect_concurrency=ns.connect_concurrency,
        command_interval=ns.command_interval,
        seed=ns.seed,
    )
    return SimulateArgs(
        config=config,
        credentials=creds,
        device_ids_file=ns.device_ids,
        json_path=ns.json,
        quiet=ns.quiet,
    )


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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv`` (``None``: ``sys.argv[1:]``)."""
    return build_parser().parse_args(argv)

"""``losant-async`` argument parsing: defaults, environment variables, and errors raised before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from losant_async.cli._args import (
    DEFAULT_BROKER,
    DEFAULT_REST_URL,
    SimulateArgs,
    parse_args,
    parse_broker,
    read_device_ids,
    resolve_simulate,
)
from losant_async.errors import ValidationError

APP = "5" * 24
DEV1, DEV2, GW = "1" * 24, "2" * 24, "9" * 24


def _resolve(argv: list[str], env: dict[str, str] | None = None) -> SimulateArgs:
    return resolve_simulate(parse_args(["simulate", *argv]), env or {})


def test_no_credentials_means_the_embedded_emulator_unthrottled() -> None:
    args = _resolve(["--devices", "50", "--duration", "5"])
    assert args.embedded
    assert args.config.devices == 50 and args.config.duration == 5.0 and args.config.rate == 1.0
    assert args.config.transport == "mqtt" and args.config.qos == 0 and not args.config.throttle
    assert args.json_path is None and not args.quiet


def test_flags_are_parsed() -> None:
    args = _resolve(["--devices", "3", "--rate", "0.5", "--duration", "2", "--transport", "rest",
                     "--json", "out.json", "--quiet", "--seed", "4"])
    assert args.config.transport == "rest" and args.config.rate == 0.5 and args.config.seed == 4
    assert args.json_path == Path("out.json") and args.quiet


def test_environment_variables_select_real_losant_with_throttling_and_defaults() -> None:
    env = {"LOSANT_APPLICATION_ID": APP, "LOSANT_ACCESS_KEY": "k", "LOSANT_ACCESS_SECRET": "s",
           "LOSANT_API_TOKEN": "t"}
    args = _resolve(["--devices", "2"], env)
    assert not args.embedded
    assert args.config.throttle
    creds = args.credentials
    assert (creds.application, creds.key, creds.secret, creds.token) == (APP, "k", "s", "t")
    assert creds.url == DEFAULT_REST_URL and creds.broker == DEFAULT_BROKER
    assert "secret='s'" not in repr(creds) and "token='t'" not in repr(creds)


def test_flags_win_over_environment_variables() -> None:
    env = {"LOSANT_APPLICATION_ID": APP, "LOSANT_ACCESS_KEY": "envkey", "LOSANT_ACCESS_SECRET": "s",
           "LOSANT_API_TOKEN": "t", "LOSANT_URL": "http://env"}
    args = _resolve(["--key", "flagkey", "--url", "http://flag", "--no-throttle"], env)
    assert args.credentials.key == "flagkey" and args.credentials.url == "http://flag"
    assert not args.config.throttle


@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        (["--key", "k"], {}, "--application"),
        (["--application", APP, "--key", "k", "--token", "t"], {}, "--secret"),
        (["--application", APP, "--key", "k", "--secret", "s"], {}, "--device-ids FILE or --token"),
        (["--application", APP, "--transport", "rest", "--device-ids", "f"], {}, "--token"),
        (["--application", "nothex"], {}, "24 hexadecimal"),
        (["--device-ids", "f"], {}, "needs real Losant"),
        (["--application", APP, "--key", "k", "--secret", "s", "--token", "t", "--rate", "5"], {},
         "30 per 15 s"),
        (["--application", APP, "--key", "k", "--secret", "s", "--token", "t", "--broker", "http://x"],
         {}, "scheme"),
        (["--gateway", "--transport", "rest"], {}, "gateway"),
        (["--json", "/nonexistent-dir/report.json"], {}, "does not exist"),
    ],
)
def test_bad_combinations_are_named(argv: list[str], env: dict[str, str], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        _resolve(argv, env)


MIXED = """
name = "mixed"
[[device_types]]
name = "a"
count = 1
transport = "rest"
[device_types.attributes.x]
type = "number"
generator = { kind = "counter" }
[[device_types]]
name = "b"
count = 1
transport = "mqtt"
[device_types.attributes.x]
type = "number"
generator = { kind = "counter" }
"""


def test_a_scenario_mixing_transports_needs_the_credentials_of_both_against_losant(tmp_path: Path) -> None:
    scenario = tmp_path / "mixed.toml"
    scenario.write_text(MIXED)
    base = ["--scenario", str(scenario), "--application", APP]
    with pytest.raises(ValidationError, match=r"--key .*--secret"):
        _resolve([*base, "--token", "t"])
    with pytest.raises(ValidationError, match=r"--token"):
        _resolve([*base, "--key", "k", "--secret", "s", "--device-ids", "f"])
    args = _resolve([*base, "--key", "k", "--secret", "s", "--token", "t"])
    assert args.config.transports == {"mqtt", "rest"}
    # A type that names no transport reports like the ones that do, when they agree: all over REST here.
    one = tmp_path / "one.toml"
    one.write_text(MIXED.replace('transport = "mqtt"\n', ""))
    assert _resolve(["--scenario", str(one), "--application", APP, "--token", "t"]).config.transports == {"rest"}


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(ValidationError) as info:
        _resolve(["--application", APP, "--key", "k", "--secret", "hunter2-secret"])
    assert "hunter2-secret" not in str(info.value)


@pytest.mark.parametrize("bad", [["--devices", "0"], ["--rate", "-1"], ["--duration", "x"], ["--qos", "2"],
                                 ["--transport", "amqp"]])
def test_argparse_rejects_bad_numbers_with_exit_2(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(["simulate", *bad])
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_emulator_ports() -> None:
    ns = parse_args(["emulator", "--rest-port", "8080", "--mqtt-port", "1884"])
    assert (ns.rest_port, ns.mqtt_port, ns.throttle) == (8080, 1884, False)
    assert parse_args(["emulator"]).rest_port == 0


@pytest.mark.parametrize(
    ("text", "host", "port", "transport", "tls"),
    [
        ("broker.losant.com", "broker.losant.com", 8883, "tls", True),
        ("mqtt://127.0.0.1:1884", "127.0.0.1", 1884, "tcp", False),
        ("mqtts://h", "h", 8883, "tls", True),
        ("ws://h", "h", 80, "websockets", False),
        ("wss://h:9443", "h", 9443, "wss", True),
    ],
)
def test_parse_broker(text: str, host: str, port: int, transport: str, tls: bool) -> None:
    b = parse_broker(text)
    assert (b.host, b.port, b.transport, b.tls) == (host, port, transport, tls)


@pytest.mark.parametrize("text", ["", "http://h", "mqtt://", "mqtt://h:99999"])
def test_parse_broker_rejects(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_broker(text)


def test_read_device_ids(tmp_path: Path) -> None:
    f = tmp_path / "ids.txt"
    f.write_text(f"# my fleet\n{DEV1}\n\n{DEV2}  # second\n")
    assert read_device_ids(f, gateway=False) == [(DEV1, None), (DEV2, None)]
    g = tmp_path / "gw.txt"
    g.write_text(f"{DEV1} {GW}\n{DEV2} {GW}\n")
    assert read_device_ids(g, gateway=True) == [(DEV1, GW), (DEV2, GW)]
    with pytest.raises(ValidationError, match=r"gw.txt:1: expected one device ID"):
        read_device_ids(g, gateway=False)
    bad = tmp_path / "bad.txt"
    bad.write_text("xyz\n")
    with pytest.raises(ValidationError, match=r"bad\.txt:1"):
        read_device_ids(bad, gateway=False)
    with pytest.raises(ValidationError, match="cannot read"):
        read_device_ids(tmp_path / "missing.txt", gateway=False)


def test_mqtt_environment_variables_name_the_broker() -> None:
    env = {"LOSANT_APPLICATION_ID": APP, "LOSANT_ACCESS_KEY": "k", "LOSANT_ACCESS_SECRET": "s",
           "LOSANT_API_TOKEN": "t", "LOSANT_MQTT_HOST": "broker.example", "LOSANT_MQTT_PORT": "1884",
           "LOSANT_MQTT_TRANSPORT": "tcp"}
    assert _resolve([], env).credentials.broker == "mqtt://broker.example:1884"
    env.pop("LOSANT_MQTT_PORT")
    env.pop("LOSANT_MQTT_TRANSPORT")
    assert _resolve([], env).credentials.broker == "mqtts://broker.example"
    # A flag still wins.
    assert _resolve(["--broker", "mqtt://flag:1"], env).credentials.broker == "mqtt://flag:1"
    with pytest.raises(ValidationError, match="LOSANT_MQTT_TRANSPORT"):
        _resolve([], {**env, "LOSANT_MQTT_TRANSPORT": "carrier-pigeon"})
    with pytest.raises(ValidationError, match="LOSANT_MQTT_HOST"):
        _resolve([], {"LOSANT_MQTT_PORT": "1883"})


def test_the_old_broker_variable_still_works_with_a_deprecation_warning() -> None:
    env = {"LOSANT_APPLICATION_ID": APP, "LOSANT_ACCESS_KEY": "k", "LOSANT_ACCESS_SECRET": "s",
           "LOSANT_API_TOKEN": "t", "LOSANT_BROKER": "mqtt://old:1883"}
    with pytest.warns(FutureWarning, match="LOSANT_MQTT_HOST"):
        args = _resolve([], env)
    assert args.credentials.broker == "mqtt://old:1883"


def test_scaling_flags() -> None:
    args = _resolve(["--devices", "100", "--shard", "2/4", "--command-wait", "2"])
    assert args.config.shard.index == 1 and args.config.shard.count == 4 and args.config.command_wait == 2.0
    assert args.config.shard_devices == 25
    assert _resolve(["--processes", "3"]).processes == 3
    assert _resolve(["--processes", "auto"]).processes >= 1
    ray = _resolve(["--ray", "--devices-per-actor", "5"])
    assert ray.ray and ray.ray_address is None and ray.devices_per_actor == 5
    assert _resolve(["--ray", "ray://head:10001"]).ray_address == "ray://head:10001"
    with pytest.raises(ValidationError, match="choose one"):
        _resolve(["--ray", "--processes", "2"])
    with pytest.raises(ValidationError, match="--shard"):
        _resolve(["--shard", "1/2", "--processes", "2"])
    with pytest.raises(ValidationError, match="slices"):
        _resolve(["--devices", "2", "--shard", "1/3"])


def test_the_command_wait_is_named_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["simulate", "--help"])
    text = capsys.readouterr().out
    assert "--command-wait" in text and "lost" in text

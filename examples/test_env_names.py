"""The examples, the README and the docs use the library's environment variable names, and LOSANT_LOG alone selects no Losant."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from examples._support import EXAMPLES, load_example

ROOT = EXAMPLES.parent
LIBRARY_NAMES = {
    "LOSANT_API_TOKEN", "LOSANT_URL", "LOSANT_APPLICATION_ID", "LOSANT_DEVICE_ID",
    "LOSANT_ACCESS_KEY", "LOSANT_ACCESS_SECRET", "LOSANT_MQTT_HOST", "LOSANT_MQTT_PORT",
    "LOSANT_MQTT_TRANSPORT", "LOSANT_LOG",
    "LOSANT_EMULATOR_DATA_DIR",  # the emulator's data directory (docs/emulator.md)
}
# What one example needs beyond those (each documented in its header).
EXAMPLE_ONLY = {"LOSANT_PERIPHERAL_IDS", "LOSANT_DEVICE_IDS", "LOSANT_EMAIL", "LOSANT_PASSWORD"}
# The test suite's broker switch (README, Quick start); the console's browser and screenshot switches (docs/console.md).
TEST_ONLY = {"LOSANT_TEST_BROKER", "LOSANT_CHROMIUM", "LOSANT_CONSOLE_SCREENSHOTS"}
DEVICE_ID = "5f0c3a1b2c3d4e5f6a7b8c9d"


def _names(path: Path) -> set[str]:
    return set(re.findall(r"\bLOSANT_[A-Z][A-Z_]*[A-Z]\b", path.read_text(encoding="utf-8")))


@pytest.mark.parametrize(
    "path",
    sorted([*EXAMPLES.glob("*/*.py"), ROOT / "README.md", *(ROOT / "docs").glob("*.md")]),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_only_the_library_names_are_used(path: Path) -> None:
    unknown = _names(path) - LIBRARY_NAMES - EXAMPLE_ONLY - TEST_ONLY
    assert not unknown, f"{path.relative_to(ROOT)} uses {sorted(unknown)}"


def _gateway_args() -> argparse.Namespace:
    return argparse.Namespace(outbox=None, interval=1.0, drain_timeout=5.0, reconnect_cap=60.0)


def test_losant_log_alone_keeps_the_gateway_on_its_emulator() -> None:
    gateway = load_example("gateway/gateway.py")
    assert gateway.Settings.from_env({"LOSANT_LOG": "debug"}, _gateway_args()) is None


def test_the_gateway_reads_losant_device_id_and_any_transport() -> None:
    gateway = load_example("gateway/gateway.py")
    env = {
        "LOSANT_DEVICE_ID": DEVICE_ID, "LOSANT_PERIPHERAL_IDS": "a1, b2",
        "LOSANT_ACCESS_KEY": "k", "LOSANT_ACCESS_SECRET": "s",
        "LOSANT_MQTT_HOST": "mqtt.example.test", "LOSANT_MQTT_PORT": "443", "LOSANT_MQTT_TRANSPORT": "wss",
    }
    settings = gateway.Settings.from_env(env, _gateway_args())
    assert (settings.gateway_id, settings.peripheral_ids) == (DEVICE_ID, ("a1", "b2"))
    assert (settings.host, settings.port, settings.transport) == ("mqtt.example.test", 443, "wss")
    with pytest.raises(SystemExit, match="LOSANT_DEVICE_ID"):
        gateway.Settings.from_env({k: v for k, v in env.items() if k != "LOSANT_DEVICE_ID"}, _gateway_args())
    with pytest.raises(SystemExit, match="tls, tcp, websockets or wss"):
        gateway.Settings.from_env({**env, "LOSANT_MQTT_TRANSPORT": "udp"}, _gateway_args())


def test_the_simulator_takes_one_device_as_losant_device_id() -> None:
    simulator = load_example("simulator/simulator.py")
    ids, broker = simulator.broker_from_env(
        {"LOSANT_DEVICE_ID": DEVICE_ID, "LOSANT_ACCESS_KEY": "k", "LOSANT_ACCESS_SECRET": "s"}
    )
    assert ids == [DEVICE_ID]
    assert (broker.host, broker.transport) == ("broker.losant.com", "tls")
    ids, _ = simulator.broker_from_env(
        {"LOSANT_DEVICE_IDS": f"{DEVICE_ID},{DEVICE_ID[::-1]}", "LOSANT_ACCESS_KEY": "k", "LOSANT_ACCESS_SECRET": "s"}
    )
    assert ids == [DEVICE_ID, DEVICE_ID[::-1]]
    with pytest.raises(SystemExit, match=r"LOSANT_DEVICE_IDS \(or LOSANT_DEVICE_ID\)"):
        simulator.broker_from_env({"LOSANT_ACCESS_KEY": "k", "LOSANT_ACCESS_SECRET": "s"})

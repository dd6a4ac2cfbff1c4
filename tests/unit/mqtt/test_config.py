"""Device options validated into one frozen DeviceConfig; Device.from_env reads LOSANT_* variables."""

from __future__ import annotations

import dataclasses

import pytest

from losant_async.errors import ValidationError
from losant_async.mqtt import Device, Gateway, Proxy
from losant_async.mqtt._config import DeviceConfig

ENV = {
    "LOSANT_DEVICE_ID": "0123456789abcdef01234567",
    "LOSANT_ACCESS_KEY": "the-key",
    "LOSANT_ACCESS_SECRET": "s3cr3t-value",
}


def test_from_env_reads_credentials_and_connection_settings() -> None:
    env = ENV | {"LOSANT_MQTT_HOST": "mqtt.private.example", "LOSANT_MQTT_PORT": "1884", "LOSANT_MQTT_TRANSPORT": "tcp"}
    device = Device.from_env(environ=env, qos=1)
    assert (device.device_id, device.host, device.port, device.transport, device.qos) == (
        "0123456789abcdef01234567", "mqtt.private.example", 1884, "tcp", 1,
    )
    assert device._config.key == "the-key" and device._config.secret == "s3cr3t-value"
    assert isinstance(Gateway.from_env(environ=ENV), Gateway)
    assert Device.from_env(environ=ENV).port == 8883  # tls to broker.losant.com by default


@pytest.mark.parametrize("missing", sorted(ENV))
def test_from_env_names_a_missing_variable_without_printing_secrets(missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    with pytest.raises(ValidationError, match=missing) as info:
        Device.from_env(environ=env)
    assert "s3cr3t-value" not in str(info.value) and "the-key" not in str(info.value)


@pytest.mark.parametrize(("name", "value"), [("LOSANT_MQTT_PORT", "s3cr3t-value"), ("LOSANT_MQTT_TRANSPORT", "s3cr3t-value")])
def test_from_env_names_a_malformed_variable_without_its_value(name: str, value: str) -> None:
    with pytest.raises(ValidationError, match=name) as info:
        Device.from_env(environ=ENV | {name: value})
    assert value not in str(info.value)


def test_config_is_frozen_and_keeps_secrets_out_of_its_repr() -> None:
    cfg = DeviceConfig.build("0123456789abcdef01234567", "the-key", "s3cr3t-value", host="127.0.0.1", transport="tcp")
    assert "s3cr3t-value" not in repr(cfg) and "the-key" not in repr(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.port = 1  # type: ignore[misc]
    assert cfg.throttle is None and cfg.ban_detection is False  # a private host: opt in with throttle=True
    on = DeviceConfig.build("0123456789abcdef01234567", "k", "s", host="127.0.0.1", throttle=True)
    assert on.throttle is not None and on.ban_detection is True  # throttle=True brings ban detection
    off = DeviceConfig.build("0123456789abcdef01234567", "k", "s", throttle=False)
    assert off.throttle is None and off.ban_detection is True  # against Losant, bans are detected regardless


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"keepalive": 0}, "keepalive"),
        ({"max_inflight": 70000}, "max_inflight"),
        ({"connect_timeout": float("nan")}, "connect_timeout"),
        ({"ready_timeout": -1}, "ready_timeout"),
        ({"stream_size": 0}, "stream_size"),
        ({"command_overflow": "block"}, "command_overflow"),
        ({"websocket_path": "mqtt"}, "websocket_path"),
        ({"proxy": "ftp://proxy:21"}, "proxy scheme"),
        ({"proxy": "http://"}, "no host"),
        ({"throttle": "yes"}, "throttle"),
    ],
)
def test_each_bad_option_is_named_before_anything_starts(kwargs: dict[str, object], word: str) -> None:
    with pytest.raises(ValidationError, match=word):
        Device("0123456789abcdef01234567", "k", "s", **kwargs)  # type: ignore[arg-type]


def test_an_outbox_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValidationError, match="outbox"):
        Device("0123456789abcdef01234567", "k", "s", outbox=[])  # type: ignore[arg-type]


def test_proxy_urls_parse_and_hide_the_password() -> None:
    proxy = Proxy.parse("http://alice:pa%40ss@proxy.corp:3129")
    assert (proxy.scheme, proxy.host, proxy.port, proxy.username, proxy.password) == (
        "http", "proxy.corp", 3129, "alice", "pa@ss",
    )
    assert "pa@ss" not in repr(proxy)
    assert Proxy.parse("socks5h://127.0.0.1").port == 1080

"""The canary: every private aiomqtt/paho name the ``_connection`` package relies on exists with the expected kind."""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest

from losant_async.errors import MQTTError
from losant_async.mqtt import _connection
from losant_async.mqtt._connection import PRIVATE_NEEDS, check_internals, internals


async def test_the_installed_aiomqtt_and_paho_have_every_private_name_we_use() -> None:
    client = aiomqtt.Client("127.0.0.1", 1883)
    assert check_internals(client, paho.MQTTMessageInfo(0)) == []


class _FakePaho:
    """paho.Client as a future release might look: one method renamed, one re-signed, one attribute retyped."""

    def __init__(self) -> None:
        self._sock = None
        self._in_packet: dict[str, Any] = {"command": 0}  # "packet" renamed away
        self._out_packet: collections.deque[Any] = collections.deque()
        self._out_messages: dict[int, Any] = {}
        self._out_message_mutex = threading.RLock()
        self._inflight_messages = 0
        self._max_inflight_messages = "20"  # retyped
        self._last_msg_out = 0.0
        self._last_msg_in = 0.0  # paho 2.1's name: either one passes
        self._ping_t = 0

    def _handle_pubackcomp(self, cmd: str, extra: int) -> None: ...  # re-signed

    # _handle_publish: renamed away
    def _send_puback(self, mid: int) -> None: ...
    def _update_inflight(self) -> None: ...
    def _mid_generate(self) -> int: ...
    def _packet_read(self) -> None: ...
    def _loop_rc_handle(self, rc: int) -> None: ...
    def _reset_sockets(self, sockpair_only: bool = False) -> None: ...
    def _call_socket_register_write(self) -> None: ...


class _FakeAiomqtt:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._client = _FakePaho()
        self._connected: asyncio.Future[None] = loop.create_future()
        self._disconnected: asyncio.Future[None] = loop.create_future()
        self._misc_task = None

    def _client_connect(self) -> None: ...
    def _misc_loop(self) -> None: ...


class _FakeModule:
    time_func = staticmethod(lambda: 0.0)


async def test_the_canary_names_each_missing_or_changed_name() -> None:
    fake = _FakeAiomqtt(asyncio.get_running_loop())
    problems = check_internals(fake, paho.MQTTMessageInfo(0), module=_FakeModule)
    assert "paho.Client._handle_publish is missing" in problems
    assert "paho.Client._handle_pubackcomp takes ('cmd', 'extra'), expected ('cmd',)" in problems
    assert any(p.startswith("paho.Client._max_inflight_messages is a str") for p in problems)
    assert "paho.Client._in_packet has no 'packet'" in problems
    assert "paho.mqtt.client.MQTT_ERR_AGAIN is missing" in problems
    assert not any("_send_puback" in p or "_misc_loop" in p for p in problems)  # the ones still there pass
    # Nothing else: the fake's paho client is not a paho.Client, and its module has only time_func.
    others = {p for p in problems if "_client is a _FakePaho" not in p and not p.startswith("paho.mqtt.client.")}
    assert others == {
        "paho.Client._handle_publish is missing",
        "paho.Client._handle_pubackcomp takes ('cmd', 'extra'), expected ('cmd',)",
        "paho.Client._max_inflight_messages is a str, expected <class 'int'>",
        "paho.Client._in_packet has no 'packet'",
    }
    assert "paho.mqtt.client.time_func is missing" not in problems


async def test_every_entry_is_checked_so_a_missing_one_on_the_real_client_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    client = aiomqtt.Client("127.0.0.1", 1883)
    for owner, name, _ in PRIVATE_NEEDS:
        target = client if owner == "aiomqtt.Client" else client._client if owner == "paho.Client" else None
        if target is None or name not in vars(target):
            continue
        value = vars(target)[name]
        delattr(target, name)
        try:
            assert f"{owner}.{name} is missing" in check_internals(client, paho.MQTTMessageInfo(0))
        finally:
            setattr(target, name, value)


async def test_a_changed_release_fails_the_first_connect_with_the_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(internals, "_checked", False)
    monkeypatch.setattr(internals, "check_internals", lambda *a: ["paho.Client._handle_publish is missing"])
    with pytest.raises(MQTTError, match=r"paho.Client._handle_publish is missing"):
        _connection.Connection(
            host="127.0.0.1", port=1, client_id="x", username="u", password="p", transport="tcp",
            tls_context=None, keepalive=15, max_inflight=10, connect_timeout=1.0,
            on_message=lambda t, p: None, on_ack=lambda m: None,
        )

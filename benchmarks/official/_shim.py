"""Points Losant's official clients at the loopback broker; runs inside the official venv only.

losant-mqtt hard-codes broker.losant.com:1883 for insecure connections, so
the endpoint is swapped and paho's connect is given the benchmark's port.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def point_mqtt_at(port: int, ca_file: str | None = None) -> Any:
    """losant-mqtt's Device class, connecting to 127.0.0.1:``port``.

    With ``ca_file`` its TLS mode (``secure=True``) trusts that CA instead of the one
    it ships: the module's CA path is swapped in memory; no installed file changes.
    """
    import paho.mqtt.client as mqtt
    from losantmqtt import Device

    if ca_file is not None:
        import losantmqtt.device

        losantmqtt.device.ROOT_CA_PATH = ca_file  # read by Device.connect at call time
    Device.mqtt_endpoint = "127.0.0.1"
    original = mqtt.Client.connect

    def connect(self: Any, host: str, _port: int = 1883, *args: Any, **kwargs: Any) -> Any:
        if host != "127.0.0.1":  # never let a benchmark reach the real broker
            raise RuntimeError(f"benchmark refused to connect to {host}")
        return original(self, host, port, *args, **kwargs)

    mqtt.Client.connect = connect  # type: ignore[method-assign]
    return Device


def track_subacks() -> set[str]:
    """Client ids whose subscription was acknowledged (losant-mqtt sets no on_subscribe of its own).

    Hooked in paho's constructor so no SUBACK can arrive before the hook is in place,
    even when a device's network loop runs in its own thread.
    """
    import paho.mqtt.client as mqtt

    acked: set[str] = set()
    original = mqtt.Client.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        client_id = self._client_id.decode() if isinstance(self._client_id, bytes) else str(self._client_id)
        self.on_subscribe = lambda *_a: acked.add(client_id)

    mqtt.Client.__init__ = init  # type: ignore[method-assign]
    return acked


def emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()

"""Points Losant's official clients at the loopback broker; runs inside the official venv only.

losant-mqtt hard-codes broker.losant.com:1883 for insecure connections, so
the endpoint is swapped and paho's connect is given the benchmark's port.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def point_mqtt_at(port: int) -> Any:
    import paho.mqtt.client as mqtt
    from losantmqtt import Device

    Device.mqtt_endpoint = "127.0.0.1"
    original = mqtt.Client.connect

    def connect(self: Any, host: str, _port: int = 1883, *args: Any, **kwargs: Any) -> Any:
        if host != "127.0.0.1":  # never let a benchmark reach the real broker
            raise RuntimeError(f"benchmark refused to connect to {host}")
        return original(self, host, port, *args, **kwargs)

    mqtt.Client.connect = connect  # type: ignore[method-assign]
    return Device


def emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()

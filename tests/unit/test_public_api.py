"""The public surface: every name in ``__all__`` resolves, and each layer loads only what it needs."""

from __future__ import annotations

import subprocess
import sys

import losant_async
import losant_async.mqtt
import losant_async.rest
import losant_async.testing


def test_every_public_name_resolves() -> None:
    for package in (losant_async, losant_async.rest, losant_async.mqtt, losant_async.testing):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"


def test_top_level_reexports_every_subpackage_public_class() -> None:
    wanted = {"LosantClient", "DeviceCredentials", "UserCredentials", "Device", "Gateway", "Fleet", "Command"}
    assert wanted <= set(losant_async.__all__)
    assert losant_async.LosantClient is losant_async.rest.LosantClient
    assert losant_async.Device is losant_async.mqtt.Device


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        _ = losant_async.NoSuchThing  # type: ignore[attr-defined]
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:  # pragma: no cover - the assertion is the point
        raise AssertionError("expected AttributeError")


def _loaded_after(statement: str) -> set[str]:
    script = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    return set(out.stdout.split())


def test_device_import_does_not_load_rest() -> None:
    loaded = _loaded_after("from losant_async import Device")
    assert "losant_async.mqtt" in loaded
    assert not any(m.startswith("losant_async.rest") for m in loaded)


def test_client_import_does_not_load_mqtt_or_every_resource() -> None:
    loaded = _loaded_after("from losant_async import LosantClient")
    assert "losant_async.rest.client" in loaded
    assert not any(m.startswith("losant_async.mqtt") or m == "aiomqtt" for m in loaded)
    assert not any(m.startswith("losant_async.rest._generated.resources.") for m in loaded)

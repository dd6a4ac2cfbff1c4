"""Where a simulation runs: the embedded emulator provisioned for it, or devices on real Losant."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import LosantError, ValidationError
from ..simulator import SENSOR_ATTRIBUTES, GatewayGroup, SimulationConfig, Target, plan_gateways
from ._args import SimulateArgs, parse_broker, read_device_ids

if TYPE_CHECKING:
    from ..rest import LosantClient
    from ..testing import Application, LocalLosant

__all__ = ["DemoWorld", "EmulatorStored", "embedded_target", "provision_demo", "real_target"]

SIMULATOR_TAG = "losant-async-simulator"


class EmulatorStored:
    """The simulator's view of what the embedded emulator stored."""

    def __init__(self, losant: LocalLosant) -> None:
        self._losant = losant

    async def wait_stored(self, expected: Mapping[str, int], within: float) -> int:
        """Wait (sharing one deadline) until each device's states are stored; count what is there."""
        with anyio.move_on_after(within):
            for device_id, count in expected.items():
                if count <= 0 or len(self._losant.states(device_id)) >= count:
                    continue
                try:
                    await self._losant.wait_for_states(device_id, count, within)
                except TimeoutError:
                    break
        return sum(len(self._losant.states(device_id)) for device_id in expected)


def _create_fleet(app: Application, config: SimulationConfig) -> tuple[list[str], list[GatewayGroup]]:
    attributes = dict(SENSOR_ATTRIBUTES)
    tags = {"simulator": SIMULATOR_TAG}
    if not config.gateway:
        ids = [
            app.create_device(name=f"sim-{i:05d}", device_class="standalone", attributes=attributes, tags=tags).id
            for i in range(config.devices)
        ]
        return ids, []
    groups: list[GatewayGroup] = []
    ids = []
    n = 0
    for g, size in enumerate(plan_gateways(config.devices, config.rate, throttled=config.throttle)):
        gw = app.create_device(name=f"sim-gateway-{g:04d}", device_class="gateway", tags=tags)
        members = []
        for _ in range(size):
            dev = app.create_device(
                name=f"sim-{n:05d}",
                device_class="peripheral",
                parent_id=gw.id,
                attributes=attributes,
                tags=tags,
            )
            members.append(dev.id)
            n += 1
        ids.extend(members)
        groups.append(GatewayGroup(gateway_id=gw.id, peripheral_ids=tuple(members)))
    return ids, groups


@contextlib.asynccontextmanager
async def embedded_target(config: SimulationConfig) -> AsyncIterator[tuple[Target, LocalLosant]]:
    """Start the emulator on loopback, provision the fleet, yield the target and the emulator."""
    from ..testing import LocalLosant

    async with LocalLosant(throttle=False) as losant:
        app = losant.create_application(name="losant-async simulator")
        key = app.create_access_key()
        token = app.create_api_token(scopes=["all.Application"])
        ids, groups = _create_fleet(app, config)
        yield (
            Target(
                application_id=app.id,
                device_ids=tuple(ids),
                gateways=tuple(groups),
                key=key.key,
                secret=key.secret,
                mqtt_host=losant.mqtt_host,
                mqtt_port=losant.mqtt_port,
                mqtt_transport="tcp",
                rest_url=losant.rest_url,
                api_token=token,
                stored=EmulatorStored(losant),
                embedded=True,
            ),
            losant,
        )


def _device_id(device: Any) -> str:
    for name in ("id", "device_id"):
        value = getattr(device, name, None)
        if isinstance(value, str):
            return value
    if isinstance(device, Mapping):
        return str(device.get("id") or device.get("deviceId"))
    raise LosantError("the API returned a device without an ID")


async def _existing_devices(client: LosantClient, application_id: str, device_class: str) -> list[Any]:
    found = []
    async for dev in client.devices.get(
        application_id=application_id,
        tag_filter=[{"key": "simulator", "value": SIMULATOR_TAG}],
        device_class=device_class,
    ):
        found.append(dev)
    return found


async def _create_device(client: LosantClient, application_id: str, body: dict[str, Any]) -> str:
    dev = await client.devices.post(application_id=application_id, device=body)
    return _device_id(dev)


async def _provision_real(
    client: LosantClient, application_id: str, config: SimulationConfig
) -> tuple[list[str], list[GatewayGroup]]:
    """Reuse devices tagged by earlier runs, create the missing ones (tagged, so a rerun finds them)."""
    tags = [{"key": "simulator", "value": SIMULATOR_TAG}]
    attributes = [{"name": n, "dataType": t} for n, t in SENSOR_ATTRIBUTES.items()]
    if not config.gateway:
        have = [_device_id(d) for d in await _existing_devices(client, application_id, "standalone")]
        for i in range(len(have), config.devices):
            have.append(await _create_device(client, application_id, {
                "name": f"sim-{i:05d}", "deviceClass": "standalone", "attributes": attributes, "tags": tags,
            }))
        return have[: config.devices], []
    # Gateway layouts depend on the rate, so gateway runs always build a fresh layout.
    groups: list[GatewayGroup] = []
    ids: list[str] = []
    for g, size in enumerate(plan_gateways(config.devices, config.rate, throttled=config.throttle)):
        gw = await _create_device(client, application_id, {
            "name": f"sim-gateway-{g:04d}", "deviceClass": "gateway", "tags": tags,
        })
        members: list[str] = []
        for _ in range(size):
            members.append(await _create_device(client, application_id, {
                "name": f"sim-{len(ids) + len(members):05d}", "deviceClass": "peripheral",
                "gatewayId": gw, "attributes": attributes, "tags": tags,
            }))
        ids.extend(members)
        groups.append(GatewayGroup(gateway_id=gw, peripheral_ids=tuple(members)))
    return ids, groups


@dataclass(frozen=True, slots=True)
class _Fleet:
    ids: list[str]
    groups: list[GatewayGroup]


def _fleet_from_file(args: SimulateArgs) -> _Fleet:
    assert args.device_ids_file is not None
    config = args.config
    rows = read_device_ids(args.device_ids_file, gateway=config.gateway)
    if len(rows) < config.devices:
        raise ValidationError(
            f"--device-ids lists {len(rows)} devices but --devices asks for {config.devices}"
        )
    rows = rows[: config.devices]
    ids = [r[0] for r in rows]
    if not config.gateway:
        return _Fleet(ids, [])
    by_gateway: dict[str, list[str]] = {}
    for pid, gid in rows:
        assert gid is not None
        by_gateway.setdefault(gid, []).append(pid)
    return _Fleet(ids, [GatewayGroup(g, tuple(p)) for g, p in by_gateway.items()])


async def real_target(args: SimulateArgs) -> Target:
    """Build the target for real Losant: devices from ``--device-ids`` or created with the token."""
    creds, config = args.credentials, args.config
    assert creds.application is not None and creds.url is not None and creds.broker is not None
    broker = parse_broker(creds.broker) if config.transport == "mqtt" else None
    if args.device_ids_file is not None:
        fleet = _fleet_from_file(args)
    else:
        from ..rest import LosantClient

        assert creds.token is not None
        async with LosantClient(creds.token, url=creds.url) as client:
            ids, groups = await _provision_real(client, creds.application, config)
        fleet = _Fleet(ids, groups)
    return Target(
        application_id=creds.application,
        device_ids=tuple(fleet.ids),
        gateways=tuple(fleet.groups),
        key=creds.key,
        secret=creds.secret,
        mqtt_host=broker.host if broker else None,
        mqtt_port=broker.port if broker else None,
        mqtt_transport=broker.transport if broker else "tcp",
        rest_url=creds.url,
        api_token=creds.token,
        stored=None,
        embedded=False,
    )


@dataclass(frozen=True, slots=True)
class DemoWorld:
    """What ``losant-async emulator`` provisions and prints."""

    application_id: str
    application_name: str
    key: str
    secret: str
    token: str
    devices: list[tuple[str, str, str]]
    """(name, id, class)."""


def provision_demo(losant: LocalLosant) -> DemoWorld:
    """A small demo application: three sensors, a gateway with two peripherals, a key and a token."""
    app = losant.create_application(name="demo")
    key = app.create_access_key()
    token = app.create_api_token(scopes=["all.Application"])
    attributes = dict(SENSOR_ATTRIBUTES)
    devices: list[tuple[str, str, str]] = []
    for i in range(1, 4):
        dev = app.create_device(name=f"sensor-{i}", device_class="standalone", attributes=attributes,
                                tags={"kind": "sensor"})
        devices.append((f"sensor-{i}", dev.id, "standalone"))
    gw = app.create_device(name="gateway-1", device_class="gateway", tags={"kind": "gateway"})
    devices.append(("gateway-1", gw.id, "gateway"))
    for i in range(1, 3):
        dev = app.create_device(name=f"peripheral-{i}", device_class="peripheral", parent_id=gw.id,
                                attributes=attributes, tags={"kind": "peripheral"})
        devices.append((f"peripheral-{i}", dev.id, "peripheral"))
    return DemoWorld(
        application_id=app.id,
        application_name="demo",
        key=key.key,
        secret=key.secret,
        token=token,
        devices=devices,
    )
